//! Interop with the real gocryptfs 2.3 binary, generated at test time: trees written through
//! a gocryptfs mount decrypt byte-exact with ours (every `-init` variant), and trees written
//! by ours mount in gocryptfs with identical content and pass `gocryptfs -fsck` (every writer
//! option). Needs root, `/dev/fuse`, gocryptfs and fusermount3; skips with a reason otherwise.

use std::fs;
use std::path::Path;

use e2e::gocryptfs::{self, Mount};
use e2e::skip_unless;
use e2e::tree::{self, TreeOpts};
use gocryptfs_format::configfile::{Layout, NameLayout};
use gocryptfs_format::decrypt::{DecryptOptions, decrypt_tree};
use gocryptfs_format::verify::{VerifyOptions, verify, verify_no_key};
use gocryptfs_format::writer::{InitOptions, encrypt_tree};
use gocryptfs_format::{CipherDir, ContentAlgo, KeySource, MasterKey, NoProgress, OpenOptions};

const PASSWORD: &[u8] = b"interop password \xe2\x9c\x93";

fn passfile(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("pass");
    let mut data = PASSWORD.to_vec();
    data.push(b'\n');
    fs::write(&p, data).unwrap();
    p
}

/// Writes a random tree through a gocryptfs mount of a fresh `-init ARGS` tree, then checks
/// ours decrypts it exactly.
fn gocryptfs_writes_we_read(args: &[&str], seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let pass = passfile(tmp.path());
    let cipher = tmp.path().join("cipher");
    gocryptfs::init(&cipher, &pass, args);
    let mnt = tmp.path().join("mnt");
    let m = Mount::new(&cipher, &mnt, Some(&pass), &[]);
    tree::generate(m.path(), seed, TreeOpts::default());
    let via_mount = tree::snapshot(m.path());
    m.unmount();
    let reference = tmp.path().join("reference");
    fs::create_dir(&reference).unwrap();
    tree::generate(&reference, seed, TreeOpts::default());
    let want = tree::snapshot(&reference);
    assert!(tree::diff(&via_mount, &want, true, false).is_empty());

    let key = KeySource::password_from_passfile(&fs::read(&pass).unwrap()).unwrap();
    let dir = CipherDir::open(&cipher, key, &e2e::corpus::gocryptfs_opts()).unwrap();
    let out = tmp.path().join("out");
    let s = decrypt_tree(&dir, &out, &DecryptOptions::default(), &NoProgress).unwrap();
    assert!(s.is_ok(), "{args:?}: {:?}", s.problems);
    let d = tree::diff(&tree::snapshot(&out), &via_mount, true, true);
    assert!(d.is_empty(), "{args:?}: {d:#?}");
    let r = verify(&dir, &VerifyOptions::default(), &NoProgress);
    assert!(r.is_ok(), "{args:?}: {:?}", r.findings);
    let nk = verify_no_key(&cipher, &e2e::corpus::gocryptfs_policy(), &NoProgress).unwrap();
    assert!(nk.is_ok(), "{args:?}: {:?}", nk.findings);
}

#[test]
fn gocryptfs_default_tree_decrypts_byte_exact() {
    skip_unless!(gocryptfs::skip_reason());
    gocryptfs_writes_we_read(&[], 1);
}

#[test]
fn gocryptfs_xchacha_tree_decrypts_byte_exact() {
    skip_unless!(gocryptfs::skip_reason());
    gocryptfs_writes_we_read(&["-xchacha"], 2);
}

#[test]
fn gocryptfs_aessiv_tree_decrypts_byte_exact() {
    skip_unless!(gocryptfs::skip_reason());
    gocryptfs_writes_we_read(&["-aessiv"], 3);
}

#[test]
fn gocryptfs_plaintextnames_tree_decrypts_byte_exact() {
    skip_unless!(gocryptfs::skip_reason());
    gocryptfs_writes_we_read(&["-plaintextnames"], 4);
}

#[test]
fn gocryptfs_deterministic_names_tree_decrypts_byte_exact() {
    skip_unless!(gocryptfs::skip_reason());
    gocryptfs_writes_we_read(&["-deterministic-names"], 5);
}

#[test]
fn gocryptfs_longnamemax_tree_decrypts_byte_exact() {
    skip_unless!(gocryptfs::skip_reason());
    gocryptfs_writes_we_read(&["-longnamemax", "62"], 6);
}

/// The legacy layout (no HKDF, padded base64) of gocryptfs 1.2 and older, made by mounting
/// with `-masterkey -hkdf=false -raw64=false` (gocryptfs 2.3 no longer creates such configs).
#[test]
fn gocryptfs_legacy_nohkdf_padded_names_tree_decrypts() {
    skip_unless!(gocryptfs::skip_reason());
    let tmp = tempfile::tempdir().unwrap();
    let cipher = tmp.path().join("cipher");
    fs::create_dir(&cipher).unwrap();
    fs::write(cipher.join("gocryptfs.diriv"), [0x5au8; 16]).unwrap();
    let key = [0x3cu8; 32];
    let mk = format!("-masterkey={}", hex::encode(key));
    let mnt = tmp.path().join("mnt");
    let m = Mount::new(&cipher, &mnt, None, &[&mk, "-hkdf=false", "-raw64=false"]);
    tree::generate(m.path(), 7, TreeOpts::default());
    let want = tree::snapshot(m.path());
    m.unmount();
    let opts = OpenOptions {
        layout_without_config: Layout {
            content: ContentAlgo::AesGcm,
            hkdf: false,
            names: NameLayout::Encrypted {
                dir_iv: true,
                raw64: false,
                long_name_max: 255,
            },
        },
        ..e2e::corpus::gocryptfs_opts()
    };
    let dir = CipherDir::open(
        &cipher,
        KeySource::MasterKey(MasterKey::from_bytes(&key).unwrap()),
        &opts,
    )
    .unwrap();
    let out = tmp.path().join("out");
    let s = decrypt_tree(&dir, &out, &DecryptOptions::default(), &NoProgress).unwrap();
    assert!(s.is_ok(), "{:?}", s.problems);
    let d = tree::diff(&tree::snapshot(&out), &want, true, true);
    assert!(d.is_empty(), "{d:#?}");
}

/// Encrypts a random tree with ours, mounts it with gocryptfs (content, modes and xattrs must
/// match), unmounts, and runs `gocryptfs -fsck` (must exit 0).
fn we_write_gocryptfs_reads(opts: &InitOptions, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let pass = passfile(tmp.path());
    let plain = tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    tree::generate(&plain, seed, TreeOpts::default());
    let cipher = tmp.path().join("cipher");
    encrypt_tree(&plain, &cipher, PASSWORD, opts, &NoProgress).unwrap();
    let mnt = tmp.path().join("mnt");
    let m = Mount::new(&cipher, &mnt, Some(&pass), &["-ro"]);
    let d = tree::diff(
        &tree::snapshot(m.path()),
        &tree::snapshot(&plain),
        true,
        true,
    );
    m.unmount();
    assert!(d.is_empty(), "{:?}: {d:#?}", opts.layout);
    let (code, out) = gocryptfs::fsck(&cipher, &pass);
    assert_eq!(code, 0, "{:?}: gocryptfs -fsck: {out}", opts.layout);
    let conf = fs::metadata(cipher.join("gocryptfs.conf")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&conf.permissions()) & 0o777,
        0o400
    );
}

fn opts(layout: Layout, log_n: u8) -> InitOptions {
    InitOptions {
        layout,
        scrypt_log_n: log_n,
        ..InitOptions::default()
    }
}

fn names(dir_iv: bool, long_name_max: u8) -> NameLayout {
    NameLayout::Encrypted {
        dir_iv,
        raw64: true,
        long_name_max,
    }
}

#[test]
fn our_default_tree_passes_gocryptfs_fsck() {
    skip_unless!(gocryptfs::skip_reason());
    // Real defaults, scrypt N=2^16 included.
    we_write_gocryptfs_reads(&InitOptions::default(), 11);
}

#[test]
fn our_xchacha_tree_passes_gocryptfs_fsck() {
    skip_unless!(gocryptfs::skip_reason());
    let l = Layout {
        content: ContentAlgo::XChaCha20Poly1305,
        ..Layout::default()
    };
    we_write_gocryptfs_reads(&opts(l, 10), 12);
}

#[test]
fn our_plaintextnames_tree_passes_gocryptfs_fsck() {
    skip_unless!(gocryptfs::skip_reason());
    let l = Layout {
        names: NameLayout::Plaintext,
        ..Layout::default()
    };
    we_write_gocryptfs_reads(&opts(l, 10), 13);
}

#[test]
fn our_deterministic_names_tree_passes_gocryptfs_fsck() {
    skip_unless!(gocryptfs::skip_reason());
    let l = Layout {
        names: names(false, 255),
        ..Layout::default()
    };
    we_write_gocryptfs_reads(&opts(l, 10), 14);
}

#[test]
fn our_longnamemax_tree_passes_gocryptfs_fsck() {
    skip_unless!(gocryptfs::skip_reason());
    let l = Layout {
        names: names(true, 62),
        ..Layout::default()
    };
    we_write_gocryptfs_reads(&opts(l, 10), 15);
}

#[test]
fn our_scryptn_tree_passes_gocryptfs_fsck() {
    skip_unless!(gocryptfs::skip_reason());
    we_write_gocryptfs_reads(&opts(Layout::default(), 12), 16);
}
