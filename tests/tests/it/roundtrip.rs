//! Writer → reader round trips on random trees (ours both ways: this proves internal
//! consistency only; compatibility is `interop.rs`), and random-access reads.

use std::fs;
use std::path::Path;

use e2e::tree::{self, TreeOpts};
use gocryptfs_format::configfile::{Layout, NameLayout};
use gocryptfs_format::decrypt::{DecryptOptions, decrypt_tree};
use gocryptfs_format::verify::{VerifyOptions, verify};
use gocryptfs_format::walk::walk;
use gocryptfs_format::writer::{InitOptions, encrypt_tree};
use gocryptfs_format::{Backend, CipherDir, ContentAlgo, FileKind, KeySource, NoProgress};
use proptest::prelude::*;

fn layouts() -> impl Strategy<Value = Layout> {
    (
        prop_oneof![
            Just(ContentAlgo::AesGcm),
            Just(ContentAlgo::XChaCha20Poly1305),
            Just(ContentAlgo::AesSiv)
        ],
        prop_oneof![
            Just(NameLayout::Plaintext),
            (any::<bool>(), any::<bool>(), 62u8..=255).prop_map(|(d, r, l)| {
                NameLayout::Encrypted {
                    dir_iv: d,
                    raw64: r,
                    long_name_max: l,
                }
            }),
        ],
    )
        .prop_map(|(content, names)| Layout {
            content,
            hkdf: true,
            names,
        })
}

fn round_trip(layout: Layout, seed: u64, backend: Backend) {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    let small = TreeOpts {
        random_files: 4,
        max_size: 20_000,
        big: seed.is_multiple_of(4),
        ..TreeOpts::default()
    };
    tree::generate(&plain, seed, small);
    let cipher = tmp.path().join("cipher");
    let opts = InitOptions {
        layout,
        scrypt_log_n: 10,
        backend,
        ..InitOptions::default()
    };
    let sum = encrypt_tree(&plain, &cipher, b"pw", &opts, &NoProgress).unwrap();
    assert!(sum.skipped.is_empty());
    // Our trees never hold holes: they open, decrypt and verify under the default policy
    // (only the absolute symlink of the generated tree needs its opt-in).
    let opts = gocryptfs_format::OpenOptions {
        policy: gocryptfs_format::Policy {
            allow_outside_symlinks: true,
            allow_plaintext_names: true,
            ..gocryptfs_format::Policy::default()
        },
        ..gocryptfs_format::OpenOptions::default()
    };
    let dir = CipherDir::open(
        &cipher,
        KeySource::password_from_passfile(b"pw").unwrap(),
        &opts,
    )
    .unwrap();
    assert_eq!(dir.layout(), layout);
    let out = tmp.path().join("out");
    let s = decrypt_tree(&dir, &out, &DecryptOptions::default(), &NoProgress).unwrap();
    assert!(s.is_ok(), "{:?}", s.problems);
    let d = tree::diff(&tree::snapshot(&out), &tree::snapshot(&plain), true, true);
    assert!(d.is_empty(), "{layout:?}: {d:#?}");
    let r = verify(&dir, &VerifyOptions::default(), &NoProgress);
    assert!(r.is_ok(), "{:?}", r.findings);
    // A sparse source is encrypted block by block: no hole (no unauthenticated block).
    assert!(r.files.iter().all(|f| f.holes == 0), "{:?}", r.files);
    assert!(
        r.files
            .iter()
            .any(|f| f.path == Path::new("sparse/all-hole"))
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 10, .. ProptestConfig::default() })]

    #[test]
    fn random_trees_round_trip(layout in layouts(), seed in any::<u64>()) {
        round_trip(layout, seed, Backend::preferred());
    }
}

#[test]
fn portable_backend_round_trip() {
    round_trip(Layout::default(), 99, Backend::RustCrypto);
}

#[test]
fn random_access_reads_match_sequential() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    tree::generate(&plain, 5, TreeOpts::default());
    let cipher = tmp.path().join("cipher");
    let opts = InitOptions {
        scrypt_log_n: 10,
        ..InitOptions::default()
    };
    encrypt_tree(&plain, &cipher, b"pw", &opts, &NoProgress).unwrap();
    let dir = CipherDir::open(
        &cipher,
        KeySource::password_from_passfile(b"pw").unwrap(),
        &e2e::corpus::gocryptfs_opts(),
    )
    .unwrap();
    let mut rng = tree::Rng::new(42);
    for e in walk(&dir)
        .unwrap()
        .entries
        .iter()
        .filter(|e| e.kind == FileKind::File)
    {
        let want = fs::read(plain.join(&e.plain_path)).unwrap();
        let f = dir.open_file(e).unwrap();
        assert_eq!(f.plain_size(), want.len() as u64);
        for _ in 0..20 {
            let off = rng.below(want.len() as u64 + 10);
            let len = rng.below(300_000) as usize;
            let mut buf = vec![0xAAu8; len];
            let n = f.read_at(off, &mut buf).unwrap();
            let lo = (off as usize).min(want.len());
            let hi = (off as usize + len).min(want.len());
            assert_eq!(&buf[..n], &want[lo..hi]);
        }
        // Read + Seek adapter.
        let mut r = f.reader();
        use std::io::{Read, Seek, SeekFrom};
        let mid = want.len() as u64 / 2;
        r.seek(SeekFrom::Start(mid)).unwrap();
        let mut rest = Vec::new();
        r.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, want[mid as usize..]);
        // Concurrent read_at from several threads on one open file.
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let f = &f;
                let want = &want;
                s.spawn(move || {
                    let mut buf = vec![0u8; 70_000];
                    let off = (t * 12_345).min(want.len() as u64);
                    let n = f.read_at(off, &mut buf).unwrap();
                    assert_eq!(&buf[..n], &want[off as usize..(off as usize + n)]);
                });
            }
        });
    }
}

/// A master key is checked against file blocks; a tree whose files start with holes (which
/// authenticate nothing) must still open, and a wrong key must still be caught by the names.
#[test]
fn master_key_check_skips_hole_blocks() {
    use gocryptfs_format::writer::init_with_key;
    use gocryptfs_format::{Error, MasterKey};
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    for name in ["a", "b", "c", "d", "e"] {
        let f = fs::File::create(plain.join(name)).unwrap();
        f.set_len(3 * 4096).unwrap();
    }
    let cipher = tmp.path().join("cipher");
    let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
    let opts = InitOptions {
        scrypt_log_n: 10,
        ..InitOptions::default()
    };
    let dir = init_with_key(&cipher, &key, b"pw", &opts).unwrap();
    gocryptfs_format::writer::encrypt_tree_into(&dir, &plain, &NoProgress).unwrap();
    CipherDir::open(
        &cipher,
        KeySource::MasterKey(key),
        &e2e::corpus::gocryptfs_opts(),
    )
    .unwrap();
    let wrong = KeySource::MasterKey(MasterKey::from_bytes(&[8u8; 32]).unwrap());
    let err = CipherDir::open(&cipher, wrong, &e2e::corpus::gocryptfs_opts()).unwrap_err();
    assert!(matches!(err, Error::WrongMasterKey { .. }), "{err}");
}
