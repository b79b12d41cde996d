//! Every variant of the gocryptfs 2.3 corpus decrypts to exactly what `MANIFEST.json` lists:
//! names (raw bytes), types, sizes, SHA-256, symlink targets, xattrs, and nothing else.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use e2e::corpus::{self, Variant};
use gocryptfs_format::cipherdir::FileKind;
use gocryptfs_format::decrypt::{DecryptOptions, decrypt_tree};
use gocryptfs_format::verify::{VerifyOptions, verify, verify_no_key};
use gocryptfs_format::walk::walk;
use gocryptfs_format::{Backend, CipherDir, KeySource, MasterKey, NoProgress, OpenOptions};
use sha2::{Digest, Sha256};

const VARIANTS: [&str; 8] = [
    "default",
    "xchacha",
    "aessiv",
    "plaintextnames",
    "deterministic",
    "longnamemax62",
    "zerokey",
    "reverse/cipher_view",
];

fn open(root: &Path, name: &str, v: &Variant, by_password: bool, backend: Backend) -> CipherDir {
    let key = if by_password && name != "zerokey" {
        KeySource::password_from_passfile(corpus::manifest().password.as_bytes()).unwrap()
    } else {
        KeySource::MasterKey(MasterKey::from_hex(&v.masterkey_hex).unwrap())
    };
    let opts = OpenOptions {
        backend,
        policy: corpus::gocryptfs_policy(),
        ..OpenOptions::default()
    };
    CipherDir::open(root, key, &opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Checks the library view (walk + read_at + read_link + xattrs) against the manifest.
fn check_view(dir: &CipherDir, name: &str, v: &Variant) {
    let tree = walk(dir).unwrap();
    assert!(tree.problems.is_empty(), "{name}: {:?}", tree.problems);
    let got: BTreeMap<Vec<u8>, _> = tree
        .entries
        .iter()
        .map(|e| (e.plain_path.as_os_str().as_bytes().to_vec(), e))
        .collect();
    assert_eq!(got.len(), v.entries.len(), "{name}: entry count");
    for me in &v.entries {
        let e = got
            .get(&me.plain_bytes())
            .unwrap_or_else(|| panic!("{name}: missing {:?}", me.plain));
        assert_eq!(
            e.cipher_path.as_os_str(),
            OsStr::new(&me.cipher),
            "{name}: cipher path"
        );
        match me.kind.as_str() {
            "dir" => assert_eq!(e.kind, FileKind::Dir),
            "symlink" => {
                assert_eq!(e.kind, FileKind::Symlink);
                let t = dir.read_link(e).unwrap();
                assert_eq!(t.as_bytes(), me.target.as_deref().unwrap().as_bytes());
            }
            "file" => {
                assert_eq!(e.kind, FileKind::File);
                assert_eq!(
                    Some(e.plain_size),
                    me.size,
                    "{name}: size of {:?}",
                    me.plain
                );
                assert_eq!(Some(e.meta.len()), me.cipher_size);
                let f = dir.open_file(e).unwrap();
                let mut buf = vec![0u8; f.plain_size() as usize + 10];
                let n = f.read_at(0, &mut buf).unwrap();
                assert_eq!(n as u64, f.plain_size());
                assert_eq!(
                    hex::encode(Sha256::digest(&buf[..n])),
                    me.sha256.as_deref().unwrap(),
                    "{name}: content of {:?}",
                    me.plain
                );
                // Random access: odd windows across block boundaries equal the whole read.
                for (off, len) in [
                    (1u64, 4095usize),
                    (4095, 2),
                    (4096, 4096),
                    (5000, 9000),
                    (3, 1),
                ] {
                    let mut w = vec![0u8; len];
                    let k = f.read_at(off, &mut w).unwrap();
                    let lo = (off as usize).min(n);
                    let hi = (off as usize + len).min(n);
                    assert_eq!(&w[..k], &buf[lo..hi], "{name}: window {off}+{len}");
                }
            }
            k => panic!("unknown type {k}"),
        }
        let (xattrs, bad) = dir.xattrs(e).unwrap();
        assert!(bad.is_empty(), "{name}: {bad:?}");
        let want: BTreeMap<&[u8], &[u8]> = me
            .xattrs
            .iter()
            .map(|(k, x)| (k.as_bytes(), x.plain_value.as_bytes()))
            .collect();
        let have: BTreeMap<&[u8], &[u8]> = xattrs
            .iter()
            .map(|x| (x.name.as_bytes(), x.value.as_slice()))
            .collect();
        assert_eq!(have, want, "{name}: xattrs of {:?}", me.plain);
        if let Some((k, x)) = me.xattrs.iter().next() {
            assert_eq!(
                dir.get_xattr(e, OsStr::new(k)).unwrap().unwrap(),
                x.plain_value.as_bytes()
            );
        }
    }
}

#[test]
fn every_variant_matches_the_manifest_by_password() {
    let m = corpus::manifest();
    let tmp = tempfile::tempdir().unwrap();
    for name in VARIANTS {
        let v = &m.variants[name];
        let root = corpus::materialize(name, tmp.path());
        let dir = open(&root, name, v, true, Backend::preferred());
        assert_eq!(
            dir.config().map(|c| c
                .flags
                .iter()
                .map(|f| f.name().to_owned())
                .collect::<Vec<_>>()),
            (name != "zerokey").then(|| v.feature_flags.clone()),
        );
        check_view(&dir, name, v);
    }
}

#[test]
fn every_variant_matches_the_manifest_by_master_key_and_both_backends() {
    let m = corpus::manifest();
    let tmp = tempfile::tempdir().unwrap();
    for name in VARIANTS {
        let v = &m.variants[name];
        let root = corpus::materialize(name, tmp.path());
        for backend in Backend::all() {
            let dir = open(&root, name, v, false, backend);
            check_view(&dir, name, v);
        }
    }
}

#[test]
fn every_variant_decrypts_offline_and_verifies() {
    let m = corpus::manifest();
    let tmp = tempfile::tempdir().unwrap();
    for name in VARIANTS {
        let v = &m.variants[name];
        let root = corpus::materialize(name, tmp.path());
        let dir = open(&root, name, v, false, Backend::preferred());
        let out = tmp.path().join(format!("out-{}", name.replace('/', "_")));
        let s = decrypt_tree(&dir, &out, &DecryptOptions::default(), &NoProgress).unwrap();
        assert!(s.is_ok(), "{name}: {:?}", s.problems);
        let snap = e2e::tree::snapshot(&out);
        assert_eq!(snap.len(), v.entries.len(), "{name}");
        for me in &v.entries {
            let node = &snap[&me.plain_bytes()];
            match me.kind.as_str() {
                "file" => {
                    assert_eq!(node.kind, 'f');
                    assert_eq!(
                        Some(&node.digest),
                        me.sha256.as_ref(),
                        "{name}: {:?}",
                        me.plain
                    );
                }
                "dir" => assert_eq!(node.kind, 'd'),
                _ => {
                    assert_eq!(node.kind, 'l');
                    assert_eq!(node.digest, hex::encode(me.target.as_deref().unwrap()));
                }
            }
            for (k, x) in &me.xattrs {
                assert_eq!(
                    node.xattrs[k.as_bytes()],
                    x.plain_value.as_bytes(),
                    "{name}"
                );
            }
        }
        // The verify report agrees, and its manifest holds the same hashes and file IDs.
        let r = verify(&dir, &VerifyOptions::default(), &NoProgress);
        assert!(r.is_ok(), "{name}: {:?}", r.findings);
        for f in &r.files {
            let me = v
                .entries
                .iter()
                .find(|e| e.plain_bytes() == f.path.as_os_str().as_bytes())
                .unwrap();
            assert_eq!(f.sha256.as_ref(), me.sha256.as_ref(), "{name}");
            if f.size > 0 {
                let id = &std::fs::read(root.join(&me.cipher)).unwrap()[2..18];
                assert_eq!(f.file_id.as_deref(), Some(hex::encode(id).as_str()));
            }
        }
        // Holes in the sparse corpus files are warnings, not errors.
        if name == "default" {
            assert!(r.findings.iter().any(|f| f.message.contains("hole")));
        }
        if name != "zerokey" {
            let nk = verify_no_key(&root, &corpus::gocryptfs_policy(), &NoProgress).unwrap();
            assert!(nk.is_ok(), "{name}: {:?}", nk.findings);
            assert_eq!(nk.stats.files, r.stats.files, "{name}");
        }
    }
}

#[test]
fn zerokey_without_config_uses_default_layout() {
    let tmp = tempfile::tempdir().unwrap();
    let root = corpus::materialize("zerokey", tmp.path());
    assert!(!root.join("gocryptfs.conf").exists());
    let key = KeySource::MasterKey(MasterKey::from_bytes(&[0u8; 32]).unwrap());
    let dir = CipherDir::open(&root, key, &OpenOptions::default()).unwrap();
    let e = dir.resolve(Path::new("hello.txt")).unwrap();
    let mut buf = [0u8; 64];
    let n = dir.open_file(&e).unwrap().read_at(0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello zerokey\n");
    // A password cannot open a tree without config: a clear config error.
    let err = CipherDir::open(
        &root,
        KeySource::password_from_passfile(b"x").unwrap(),
        &OpenOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no gocryptfs.conf"), "{err}");
}

#[test]
fn reverse_plain_side_is_refused_with_a_clear_message() {
    let root = corpus::dir().join("reverse/plain");
    let err = CipherDir::open(
        &root,
        KeySource::password_from_passfile(b"test-password-123").unwrap(),
        &OpenOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("reverse"), "{err}");
}
