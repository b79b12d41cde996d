//! The gocryptfs 2.3 corpus (`tests/fixtures/gocryptfs-2.3/`) and its `MANIFEST.json`.
//!
//! Git lost the corpus' symlinks (each is a plain file holding the cipher target) and its
//! xattrs. [`materialize`] copies a variant into a temp directory and restores both from the
//! manifest, so readers see exactly what gocryptfs wrote.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use base64::Engine;
use serde::Deserialize;

/// The whole manifest.
#[derive(Debug, Deserialize)]
pub struct Manifest {
    pub password: String,
    pub variants: BTreeMap<String, Variant>,
}

/// One variant (a cipher tree).
#[derive(Debug, Deserialize)]
pub struct Variant {
    pub masterkey_hex: String,
    pub feature_flags: Vec<String>,
    pub entries: Vec<ManifestEntry>,
}

/// One plaintext entry and where gocryptfs stored it.
#[derive(Debug, Deserialize)]
pub struct ManifestEntry {
    pub plain: Option<String>,
    pub plain_b64: String,
    pub cipher: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub size: Option<u64>,
    pub cipher_size: Option<u64>,
    pub sha256: Option<String>,
    pub target: Option<String>,
    pub cipher_target: Option<String>,
    #[serde(default)]
    pub xattrs: BTreeMap<String, ManifestXattr>,
}

/// An xattr as gocryptfs stored it.
#[derive(Debug, Deserialize)]
pub struct ManifestXattr {
    pub cipher_name: String,
    pub cipher_value_hex: String,
    pub plain_value: String,
}

impl ManifestEntry {
    /// The plaintext path as raw bytes.
    #[must_use]
    pub fn plain_bytes(&self) -> Vec<u8> {
        base64::engine::general_purpose::STANDARD
            .decode(&self.plain_b64)
            .expect("manifest plain_b64")
    }
}

/// The corpus directory.
#[must_use]
pub fn dir() -> PathBuf {
    crate::tests_dir().join("fixtures/gocryptfs-2.3")
}

/// Parses `MANIFEST.json`.
#[must_use]
pub fn manifest() -> Manifest {
    let text = fs::read(dir().join("MANIFEST.json")).expect("read MANIFEST.json");
    serde_json::from_slice(&text).expect("parse MANIFEST.json")
}

/// `KAT.json` as JSON.
#[must_use]
pub fn kat() -> serde_json::Value {
    let text = fs::read(dir().join("KAT.json")).expect("read KAT.json");
    serde_json::from_slice(&text).expect("parse KAT.json")
}

/// The corpus password file (`test-password-123\n`).
#[must_use]
pub fn password_file() -> PathBuf {
    dir().join("password.txt")
}

/// Copies a directory tree (files, dirs; symlinks as symlinks).
pub fn copy_tree(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("create copy root");
    for e in fs::read_dir(src).expect("list corpus") {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        let to = dst.join(e.file_name());
        if ft.is_dir() {
            copy_tree(&e.path(), &to);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(e.path()).unwrap(), &to).unwrap();
        } else {
            fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Copies variant `name` into `dest` and restores symlinks and xattrs from the manifest.
/// Returns the materialised cipher root.
pub fn materialize(name: &str, dest: &Path) -> PathBuf {
    let m = manifest();
    let v = m
        .variants
        .get(name)
        .unwrap_or_else(|| panic!("no variant {name}"));
    let root = dest.join(name.replace('/', "_"));
    copy_tree(&dir().join(name), &root);
    for e in &v.entries {
        let p = root.join(&e.cipher);
        if e.kind == "symlink" {
            let target = e.cipher_target.as_deref().expect("symlink cipher_target");
            fs::remove_file(&p).unwrap_or_else(|err| panic!("remove {}: {err}", p.display()));
            std::os::unix::fs::symlink(target, &p).unwrap();
        }
        for x in e.xattrs.values() {
            let value = hex::decode(&x.cipher_value_hex).unwrap();
            rustix::fs::lsetxattr(
                &p,
                x.cipher_name.as_str(),
                &value,
                rustix::fs::XattrFlags::empty(),
            )
            .unwrap_or_else(|err| panic!("setxattr on {}: {err}", p.display()));
        }
    }
    root
}

/// The policy that reproduces gocryptfs' own behaviour (every opt-in on): plaintext names,
/// absolute or climbing symlinks and holes accepted, modes kept. The corpus holds both, and the
/// byte-exact comparisons with gocryptfs need them; the default policy's refusals are tested
/// separately (`host_attacks.rs`).
#[must_use]
pub fn gocryptfs_policy() -> gocryptfs_format::Policy {
    gocryptfs_format::Policy {
        allow_plaintext_names: true,
        allow_outside_symlinks: true,
        preserve_modes: true,
        allow_holes: true,
        ..gocryptfs_format::Policy::default()
    }
}

/// [`gocryptfs_policy`] in [`gocryptfs_format::OpenOptions`] (otherwise the defaults).
#[must_use]
pub fn gocryptfs_opts() -> gocryptfs_format::OpenOptions {
    gocryptfs_format::OpenOptions {
        policy: gocryptfs_policy(),
        ..gocryptfs_format::OpenOptions::default()
    }
}
