//! Hostile input, one named test per case: each gives a clear error (or a finding naming the
//! path and block) and never panics or returns tampered bytes. Trees are copies of the
//! gocryptfs-made `default` corpus variant, damaged on purpose.

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use e2e::corpus;
use gocryptfs_format::decrypt::{DecryptOptions, decrypt_tree};
use gocryptfs_format::verify::{
    FindingKind, Report, Severity, VerifyOptions, verify, verify_no_key,
};
use gocryptfs_format::{
    CipherDir, ConfigError, Error, ErrorKind, KeySource, MasterKey, NoProgress, Policy,
};
use tempfile::TempDir;

const CBS: u64 = 4128;

struct Tree {
    _tmp: TempDir,
    root: PathBuf,
    key: String,
}

impl Tree {
    fn default_variant() -> Tree {
        let tmp = tempfile::tempdir().unwrap();
        let root = corpus::materialize("default", tmp.path());
        let key = corpus::manifest().variants["default"].masterkey_hex.clone();
        Tree {
            _tmp: tmp,
            root,
            key,
        }
    }

    fn cipher(&self, plain: &str) -> PathBuf {
        let m = corpus::manifest();
        let e = m.variants["default"]
            .entries
            .iter()
            .find(|e| e.plain.as_deref() == Some(plain))
            .unwrap();
        self.root.join(&e.cipher)
    }

    fn open(&self) -> CipherDir {
        let k = KeySource::MasterKey(MasterKey::from_hex(&self.key).unwrap());
        CipherDir::open(&self.root, k, &corpus::gocryptfs_opts()).unwrap()
    }

    fn verify(&self) -> Report {
        verify(&self.open(), &VerifyOptions::default(), &NoProgress)
    }

    fn out(&self) -> PathBuf {
        self._tmp.path().join("out")
    }
}

fn errors(r: &Report) -> Vec<(FindingKind, Option<String>, Option<u64>)> {
    r.findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| {
            (
                f.kind,
                f.path.as_ref().map(|p| p.to_string_lossy().into_owned()),
                f.block,
            )
        })
        .collect()
}

fn flip(path: &Path, offset: u64) {
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    b[0] ^= 0x01;
    f.write_all_at(&b, offset).unwrap();
}

fn edit_conf(t: &Tree, f: impl Fn(&mut serde_json::Value)) -> Error {
    let p = t.root.join("gocryptfs.conf");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    fs::remove_file(&p).unwrap();
    fs::write(&p, v.to_string()).unwrap();
    CipherDir::open(
        &t.root,
        KeySource::password_from_passfile(b"test-password-123").unwrap(),
        &corpus::gocryptfs_opts(),
    )
    .unwrap_err()
}

#[test]
fn bit_flip_in_block_n_reports_that_block() {
    let t = Tree::default_variant();
    let c = t.cipher("size1M");
    flip(&c, 18 + 5 * CBS + 100);
    flip(&c, 18 + 200 * CBS + 4000);
    let r = t.verify();
    assert!(!r.is_ok());
    let e = errors(&r);
    assert!(
        e.contains(&(FindingKind::Authentication, Some("size1M".into()), Some(5))),
        "{e:?}"
    );
    assert!(
        e.contains(&(
            FindingKind::Authentication,
            Some("size1M".into()),
            Some(200)
        )),
        "{e:?}"
    );
    assert_eq!(e.len(), 2, "{e:?}");
    let dir = t.open();
    let f = dir
        .open_file(&dir.resolve(Path::new("size1M")).unwrap())
        .unwrap();
    let mut buf = vec![0u8; 4096];
    match f.read_at(5 * 4096 + 10, &mut buf) {
        Err(Error::Authentication { path, block }) => {
            assert_eq!(path, Path::new("size1M"));
            assert_eq!(block, 5);
        }
        other => panic!("{other:?}"),
    }
    assert!(f.read_at(4 * 4096, &mut buf).is_ok());
    // Decrypt reports it, exits as corruption, and writes no file and no temp file.
    let s = decrypt_tree(&dir, &t.out(), &DecryptOptions::default(), &NoProgress).unwrap();
    assert!(!s.is_ok());
    assert!(!t.out().join("size1M").exists());
    assert!(t.out().join("size4096").exists());
    assert!(
        fs::read_dir(t.out())
            .unwrap()
            .all(|e| { !e.unwrap().file_name().to_string_lossy().ends_with(".tmp") })
    );
    assert_eq!(s.into_result().unwrap_err().kind(), ErrorKind::Corrupt);
}

#[test]
fn truncated_file() {
    let t = Tree::default_variant();
    let c = t.cipher("size1M");
    let len = fs::metadata(&c).unwrap().len();
    fs::OpenOptions::new()
        .write(true)
        .open(&c)
        .unwrap()
        .set_len(len - 100)
        .unwrap();
    let e = errors(&t.verify());
    assert_eq!(
        e,
        vec![(
            FindingKind::Authentication,
            Some("size1M".into()),
            Some(255)
        )]
    );
    // A tail shorter than nonce + tag: "block is too short".
    fs::OpenOptions::new()
        .write(true)
        .open(&c)
        .unwrap()
        .set_len(18 + 255 * CBS + 20)
        .unwrap();
    let e = errors(&t.verify());
    assert_eq!(
        e,
        vec![(FindingKind::BlockTooShort, Some("size1M".into()), Some(255))]
    );
    let nk = verify_no_key(&t.root, &Policy::default(), &NoProgress).unwrap();
    assert!(nk.findings.iter().any(|f| f.kind == FindingKind::Size));
    // A truncated header.
    let c2 = t.cipher("size4097");
    fs::OpenOptions::new()
        .write(true)
        .open(&c2)
        .unwrap()
        .set_len(10)
        .unwrap();
    let e = errors(&t.verify());
    assert!(
        e.contains(&(FindingKind::Header, Some("size4097".into()), None)),
        "{e:?}"
    );
}

#[test]
fn block_swapped_within_a_file() {
    let t = Tree::default_variant();
    let c = t.cipher("size1M");
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&c)
        .unwrap();
    let mut a = vec![0u8; CBS as usize];
    let mut b = vec![0u8; CBS as usize];
    f.read_exact_at(&mut a, 18 + CBS).unwrap();
    f.read_exact_at(&mut b, 18 + 2 * CBS).unwrap();
    f.write_all_at(&b, 18 + CBS).unwrap();
    f.write_all_at(&a, 18 + 2 * CBS).unwrap();
    let e = errors(&t.verify());
    assert_eq!(
        e,
        vec![
            (FindingKind::Authentication, Some("size1M".into()), Some(1)),
            (FindingKind::Authentication, Some("size1M".into()), Some(2)),
        ]
    );
}

#[test]
fn block_moved_between_files() {
    let t = Tree::default_variant();
    let src = fs::read(t.cipher("size4096")).unwrap();
    let dst = fs::OpenOptions::new()
        .write(true)
        .open(t.cipher("size4097"))
        .unwrap();
    // Same block number, same size, other file: the file ID in the AAD differs.
    dst.write_all_at(&src[18..18 + CBS as usize], 18).unwrap();
    let e = errors(&t.verify());
    assert_eq!(
        e,
        vec![(
            FindingKind::Authentication,
            Some("size4097".into()),
            Some(0)
        )]
    );
}

#[test]
fn file_moved_to_another_directory() {
    let t = Tree::default_variant();
    let c = t.cipher("subdir/file.txt");
    let moved = t.root.join(c.file_name().unwrap());
    fs::rename(&c, &moved).unwrap();
    let r = t.verify();
    let e = errors(&r);
    assert_eq!(e.len(), 1, "{e:?}");
    assert_eq!(e[0].0, FindingKind::Name);
    // Hidden from the listing, as gocryptfs hides it.
    let dir = t.open();
    let root = dir.root_entry().unwrap();
    let listing = dir.read_dir(&root).unwrap();
    assert!(listing.entries.iter().all(|x| x.name != "file.txt"));
    assert_eq!(listing.problems.len(), 1);
}

#[test]
fn wrong_password() {
    let t = Tree::default_variant();
    let err = CipherDir::open(
        &t.root,
        KeySource::password_from_passfile(b"not-the-password\n").unwrap(),
        &corpus::gocryptfs_opts(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::WrongPassword { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::WrongKey);
    assert!(err.to_string().contains("wrong password"));
}

#[test]
fn wrong_master_key() {
    let t = Tree::default_variant();
    let k = KeySource::MasterKey(MasterKey::from_bytes(&[0x55; 32]).unwrap());
    let err = CipherDir::open(&t.root, k, &corpus::gocryptfs_opts()).unwrap_err();
    assert!(matches!(err, Error::WrongMasterKey { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::WrongKey);
}

#[test]
fn unknown_feature_flag() {
    let t = Tree::default_variant();
    let err = edit_conf(&t, |v| {
        v["FeatureFlags"]
            .as_array_mut()
            .unwrap()
            .push("FutureFlag".into());
    });
    assert!(
        matches!(
            &err,
            Error::Config {
                source: ConfigError::UnknownFlag { index: _ },
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.kind(), ErrorKind::BadCipherDir);
}

#[test]
fn fido2_flag_is_refused_no_token_in_a_tee() {
    let t = Tree::default_variant();
    let err = edit_conf(&t, |v| {
        v["FeatureFlags"]
            .as_array_mut()
            .unwrap()
            .push("FIDO2".into());
        v["FIDO2"] = serde_json::json!({"CredentialID": "AAAA", "HMACSalt": "AAAA"});
    });
    assert!(
        matches!(
            &err,
            Error::Config {
                source: ConfigError::Fido2,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("no token in a TEE"), "{err}");
}

#[test]
fn weak_scrypt_parameters() {
    let t = Tree::default_variant();
    let err = edit_conf(&t, |v| v["ScryptObject"]["N"] = 512.into());
    assert!(
        matches!(
            &err,
            Error::Config {
                source: ConfigError::WeakScrypt(_),
                ..
            }
        ),
        "{err}"
    );
    let err = edit_conf(&t, |v| v["ScryptObject"]["R"] = 4.into());
    assert!(
        matches!(
            &err,
            Error::Config {
                source: ConfigError::WeakScrypt(_),
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn malformed_json() {
    let t = Tree::default_variant();
    let p = t.root.join("gocryptfs.conf");
    let text = fs::read(&p).unwrap();
    fs::remove_file(&p).unwrap();
    fs::write(&p, &text[..text.len() / 2]).unwrap();
    let err = CipherDir::open(
        &t.root,
        KeySource::password_from_passfile(b"test-password-123").unwrap(),
        &corpus::gocryptfs_opts(),
    )
    .unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Config {
                source: ConfigError::Json(_),
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("malformed"), "{err}");
}

#[test]
fn bad_diriv_length() {
    let t = Tree::default_variant();
    let d = t.cipher("subdir").join("gocryptfs.diriv");
    fs::remove_file(&d).unwrap();
    fs::write(&d, [7u8; 15]).unwrap();
    let e = errors(&t.verify());
    assert!(e.iter().any(|x| x.0 == FindingKind::DirIv), "{e:?}");
    let dir = t.open();
    let sub = dir.resolve(Path::new("subdir")).unwrap();
    let err = dir.read_dir(&sub).unwrap_err();
    assert!(err.to_string().contains("15 bytes, expected 16"), "{err}");
    let nk = verify_no_key(&t.root, &Policy::default(), &NoProgress).unwrap();
    assert!(nk.findings.iter().any(|f| f.kind == FindingKind::DirIv));
}

#[test]
fn non_canonical_base64_name() {
    let t = Tree::default_variant();
    let c = t.cipher("size1");
    let name = c.file_name().unwrap().to_str().unwrap().to_owned();
    // 22 Raw64 characters carry 132 bits for 128: the last character's low 4 bits must be 0.
    let last = name.chars().last().unwrap();
    const ALPHA: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = ALPHA.find(last).unwrap();
    let evil = format!("{}{}", &name[..21], &ALPHA[idx + 1..idx + 2]);
    fs::rename(&c, t.root.join(&evil)).unwrap();
    let r = t.verify();
    let f = r
        .findings
        .iter()
        .find(|f| f.kind == FindingKind::Name)
        .unwrap();
    assert!(f.message.contains("non-canonical"), "{}", f.message);
    let nk = verify_no_key(&t.root, &Policy::default(), &NoProgress).unwrap();
    assert!(
        nk.findings
            .iter()
            .any(|f| f.message.contains("non-canonical"))
    );
}

#[test]
fn names_decrypting_to_dot_dotdot_slash_or_nul() {
    let t = Tree::default_variant();
    let dir = t.open();
    let iv = dir.dir_iv(Path::new("")).unwrap();
    for evil in [
        &b"."[..],
        b"..",
        b"a/b",
        b"../../etc/passwd",
        b"nul\0byte",
        b"",
    ] {
        let name = dir.names().encrypt_name_unchecked(evil, &iv);
        fs::write(t.root.join(name), b"x").unwrap();
    }
    let r = t.verify();
    let names: Vec<_> = r
        .findings
        .iter()
        .filter(|f| f.kind == FindingKind::Name)
        .map(|f| f.message.clone())
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    for want in ["\".\"", "\"..\"", "'/'", "NUL", "padding"] {
        assert!(names.iter().any(|m| m.contains(want)), "{want}: {names:?}");
    }
    // Decrypt skips them and writes nothing outside OUTDIR.
    let parent_before: Vec<_> = fs::read_dir(t._tmp.path()).unwrap().collect();
    let s = decrypt_tree(&dir, &t.out(), &DecryptOptions::default(), &NoProgress).unwrap();
    assert!(!s.is_ok());
    assert_eq!(
        fs::read_dir(t._tmp.path()).unwrap().count(),
        parent_before.len() + 1
    );
}

#[test]
fn zeroed_header_and_zero_nonce() {
    let t = Tree::default_variant();
    let c = t.cipher("size4095");
    let f = fs::OpenOptions::new().write(true).open(&c).unwrap();
    f.write_all_at(&[0u8; 18], 0).unwrap();
    let c2 = t.cipher("size4096");
    let f2 = fs::OpenOptions::new().write(true).open(&c2).unwrap();
    f2.write_all_at(&[0u8; 16], 18).unwrap();
    let e = errors(&t.verify());
    assert!(
        e.contains(&(FindingKind::Header, Some("size4095".into()), None)),
        "{e:?}"
    );
    assert!(
        e.contains(&(FindingKind::AllZeroNonce, Some("size4096".into()), Some(0))),
        "{e:?}"
    );
}

#[test]
fn missing_long_name_file_and_swapped_name_files() {
    let t = Tree::default_variant();
    let longs: Vec<PathBuf> = fs::read_dir(&t.root)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".name"))
        .collect();
    assert!(longs.len() >= 2);
    // Swap two .name files: hashes no longer match.
    let a = fs::read(&longs[0]).unwrap();
    let b = fs::read(&longs[1]).unwrap();
    fs::remove_file(&longs[0]).unwrap();
    fs::remove_file(&longs[1]).unwrap();
    fs::write(&longs[0], &b).unwrap();
    fs::write(&longs[1], &a).unwrap();
    let r = t.verify();
    assert_eq!(
        r.findings
            .iter()
            .filter(|f| f.kind == FindingKind::LongName && f.message.contains("does not match"))
            .count(),
        2
    );
    fs::remove_file(&longs[0]).unwrap();
    let r = t.verify();
    assert!(
        r.findings
            .iter()
            .any(|f| f.message.contains(".name file is missing"))
    );
}
