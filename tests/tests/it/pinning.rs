//! Whole-model pinning (issue 10): each storage attack that gocryptfs' per-block
//! authentication cannot see is refused by `--expect` with exit 26 and the path named; the
//! manifests agree across producers; the KBS form costs one attestation; signatures are
//! checked. Black-box: the `ccmount` binary of this build (skips when it is missing).
//! See: issue #10.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use blake2::Digest as _;
use e2e::gocryptfs;
use gocryptfs_format::NoProgress;
use gocryptfs_format::manifest::{
    CheckError, CheckMode, Difference, EntryKind, Expected, Manifest, ModelDigest, check,
};
use gocryptfs_format::{CipherDir, KeySource};
use test_kbs::{Endpoint, KbsConfig, Policy, TestKbs};

const PASSWORD: &str = "pin-s3cret";

struct Fx {
    bin: PathBuf,
    tmp: tempfile::TempDir,
}

impl Fx {
    fn new() -> Option<Fx> {
        Some(Fx {
            bin: e2e::ccmount_bin()?,
            tmp: tempfile::tempdir().unwrap(),
        })
    }

    fn p(&self, s: &str) -> PathBuf {
        self.tmp.path().join(s)
    }

    fn pass(&self) -> PathBuf {
        let p = self.p("pass");
        if !p.exists() {
            fs::write(&p, format!("{PASSWORD}\n")).unwrap();
        }
        p
    }

    fn run(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let mut c = Command::new(&self.bin);
        c.arg("-q");
        for a in args {
            c.arg(a.as_ref());
        }
        e2e::run_with_timeout(&mut c, Duration::from_secs(120))
    }

    /// A small model tree: two directories, files across block boundaries, a symlink.
    fn plain(&self) -> PathBuf {
        let plain = self.p("plain");
        fs::create_dir_all(plain.join("model")).unwrap();
        fs::create_dir_all(plain.join("tokenizer")).unwrap();
        let bytes = |n: usize, seed: u8| -> Vec<u8> {
            (0..n)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect()
        };
        fs::write(plain.join("model/a.bin"), bytes(5000, 1)).unwrap();
        fs::write(plain.join("model/b.bin"), bytes(3 * 4096 + 100, 2)).unwrap();
        fs::write(plain.join("model/config.json"), b"{\"layers\": 2}\n").unwrap();
        fs::write(plain.join("model/empty"), b"").unwrap();
        fs::write(plain.join("tokenizer/t.json"), bytes(700, 3)).unwrap();
        std::os::unix::fs::symlink("model/config.json", plain.join("config.json")).unwrap();
        plain
    }

    /// `ccmount encrypt --manifest`: (cipherdir, manifest path).
    fn encrypted(&self) -> (PathBuf, PathBuf) {
        self.encrypted_with(&[])
    }

    /// Encrypted with a manifest that names the model (`--model test-model`, version 3).
    fn encrypted_tagged(&self) -> (PathBuf, PathBuf) {
        self.encrypted_with(&[&"--model", &MODEL, &"--model-version", &"3"])
    }

    fn encrypted_with(&self, extra: &[&dyn AsRef<std::ffi::OsStr>]) -> (PathBuf, PathBuf) {
        let plain = self.plain();
        let cipher = self.p("cipher");
        let man = self.p("manifest.json");
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"encrypt",
            &plain,
            &cipher,
            &"--passfile",
            &"PASS",
            &"--scryptn",
            &"10",
            &"--manifest",
            &man,
        ];
        let pass = self.pass();
        args[4] = &pass;
        args.extend_from_slice(extra);
        let o = self.run(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        (cipher, man)
    }

    fn verify_expect(&self, cipher: &Path, pin: &dyn AsRef<std::ffi::OsStr>) -> Output {
        self.run(&[
            &"verify",
            &cipher,
            &"--passfile",
            &self.pass(),
            &"--expect",
            pin,
        ])
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The cipher path (absolute) of a plaintext path.
fn cipher_of(cipher: &Path, plain: &str) -> PathBuf {
    let dir = open(cipher);
    cipher.join(dir.resolve(Path::new(plain)).unwrap().cipher_path)
}

fn open(cipher: &Path) -> CipherDir {
    CipherDir::open(
        cipher,
        KeySource::password_from_passfile(PASSWORD.as_bytes()).unwrap(),
        &e2e::corpus::gocryptfs_opts(),
    )
    .unwrap()
}

/// Exit 26 and a `mismatch:` line naming each of `paths`.
fn assert_refused(o: &Output, paths: &[&str]) {
    let err = stderr(o);
    assert_eq!(code(o), 26, "{err}");
    for p in paths {
        assert!(
            err.lines()
                .any(|l| l.starts_with("mismatch: ") && l.contains(p)),
            "no mismatch line names {p}:\n{err}"
        );
    }
}

#[test]
fn clean_tree_is_accepted_by_manifest_and_digest() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    let o = f.verify_expect(&cipher, &man);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let digest = ModelDigest::of(&fs::read(&man).unwrap()).to_string();
    let o = f.verify_expect(&cipher, &digest);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let wrong = format!("sha256:{}", "0".repeat(64));
    let o = f.verify_expect(&cipher, &wrong);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("model digest differs"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn swapped_ciphertexts_are_refused() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    let (a, b) = (
        cipher_of(&cipher, "model/a.bin"),
        cipher_of(&cipher, "model/b.bin"),
    );
    let tmp = cipher.join("swap.tmp");
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    // Every block still authenticates: plain verify accepts the swapped tree.
    let o = f.run(&[&"verify", &cipher, &"--passfile", &f.pass()]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_refused(
        &f.verify_expect(&cipher, &man),
        &["model/a.bin", "model/b.bin"],
    );
}

#[test]
fn deleted_file_is_refused() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    fs::remove_file(cipher_of(&cipher, "model/config.json")).unwrap();
    let o = f.verify_expect(&cipher, &man);
    assert_refused(&o, &["model/config.json"]);
    assert!(stderr(&o).contains("model/config.json: missing"));
}

#[test]
fn added_file_is_refused() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    {
        // Whoever adds it holds the key (an old mount, a leaked password): it authenticates.
        let dir = open(&cipher);
        let parent = dir.resolve(Path::new("model")).unwrap().cipher_path;
        gocryptfs_format::writer::Writer::new(&dir)
            .write_bytes(&parent, "extra.bin".as_ref(), b"backdoor", 0o644)
            .unwrap();
    }
    let o = f.verify_expect(&cipher, &man);
    assert_refused(&o, &["model/extra.bin"]);
    assert!(stderr(&o).contains("model/extra.bin: extra file"));
}

#[test]
fn truncated_at_block_boundary_is_refused() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    let b = cipher_of(&cipher, "model/b.bin");
    // Drop the last (partial) block: 18-byte header + 3 whole 4128-byte blocks remain.
    let file = fs::OpenOptions::new().write(true).open(&b).unwrap();
    file.set_len(18 + 3 * 4128).unwrap();
    drop(file);
    let o = f.run(&[&"verify", &cipher, &"--passfile", &f.pass()]);
    assert_eq!(
        code(&o),
        0,
        "a block-boundary truncation is invisible to fsck"
    );
    let o = f.verify_expect(&cipher, &man);
    assert_refused(&o, &["model/b.bin"]);
    assert!(stderr(&o).contains("size differs: expected 12388, found 12288"));
}

#[test]
fn renamed_directory_is_refused() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    // Swap the encrypted names of two sibling directories: every name still decrypts.
    let (m, t) = (cipher_of(&cipher, "model"), cipher_of(&cipher, "tokenizer"));
    let tmp = cipher.join("swap.tmp");
    fs::rename(&m, &tmp).unwrap();
    fs::rename(&t, &m).unwrap();
    fs::rename(&tmp, &t).unwrap();
    let o = f.verify_expect(&cipher, &man);
    assert_refused(&o, &["model/a.bin", "tokenizer/a.bin", "tokenizer/t.json"]);
}

#[test]
fn rolled_back_file_is_refused() {
    e2e::skip_unless!(gocryptfs::skip_reason());
    let Some(f) = Fx::new() else { return };
    let (cipher, _) = f.encrypted();
    let a = cipher_of(&cipher, "model/a.bin");
    let v1 = fs::read(&a).unwrap();
    // v2 written through the real gocryptfs.
    let mnt = f.p("mnt");
    let mount = gocryptfs::Mount::new(&cipher, &mnt, Some(&f.pass()), &[]);
    fs::write(
        mount.path().join("model/a.bin"),
        b"version 2 of the weights",
    )
    .unwrap();
    mount.unmount();
    let v2_man = f.p("v2.json");
    let o = f.run(&[
        &"manifest",
        &cipher,
        &"--passfile",
        &f.pass(),
        &"--out",
        &v2_man,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // Put v1's ciphertext back: same key, valid header and blocks.
    fs::write(&a, &v1).unwrap();
    let (fsck, out) = gocryptfs::fsck(&cipher, &f.pass());
    assert_eq!(fsck, 0, "gocryptfs -fsck accepts the rollback: {out}");
    let o = f.verify_expect(&cipher, &v2_man);
    assert_refused(&o, &["model/a.bin"]);
    assert!(stderr(&o).contains("file ID differs"), "{}", stderr(&o));
}

#[test]
fn encrypt_and_manifest_agree() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    let again = f.p("again.json");
    let o = f.run(&[
        &"manifest",
        &cipher,
        &"--passfile",
        &f.pass(),
        &"--out",
        &again,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let (x, y) = (fs::read(&man).unwrap(), fs::read(&again).unwrap());
    assert_eq!(x, y, "encrypt --manifest and manifest differ");
    // stdout is the digest, which is sha256 of the file.
    let printed = String::from_utf8_lossy(&o.stdout).trim().to_owned();
    assert_eq!(printed, ModelDigest::of(&y).to_string());
    // verify --manifest writes the same canonical document.
    let third = f.p("third.json");
    let o = f.run(&[
        &"verify",
        &cipher,
        &"--passfile",
        &f.pass(),
        &"--manifest",
        &third,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(fs::read(&third).unwrap(), y);
    let m = Manifest::parse(&y).unwrap();
    assert_eq!(m.entries.len(), 8, "{m:?}");
    assert!(matches!(
        &m.get(Path::new("config.json")).unwrap().kind,
        EntryKind::Symlink(t) if t == "model/config.json"
    ));
}

#[test]
fn gocryptfs_made_tree_has_the_same_plaintext_digests() {
    e2e::skip_unless!(gocryptfs::skip_reason());
    let Some(f) = Fx::new() else { return };
    let (_, ours) = f.encrypted();
    let go = f.p("go");
    gocryptfs::init(&go, &f.pass(), &[]);
    let mnt = f.p("gomnt");
    let mount = gocryptfs::Mount::new(&go, &mnt, Some(&f.pass()), &[]);
    let out = e2e::run_with_timeout(
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", f.p("plain").display()))
            .arg(mount.path())
            .stdin(Stdio::null()),
        Duration::from_secs(60),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    mount.unmount();
    let theirs = f.p("go.json");
    let o = f.run(&[
        &"manifest",
        &go,
        &"--passfile",
        &f.pass(),
        &"--out",
        &theirs,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let a = Manifest::parse(&fs::read(&ours).unwrap()).unwrap();
    let b = Manifest::parse(&fs::read(&theirs).unwrap()).unwrap();
    assert_eq!(a.params.feature_flags, b.params.feature_flags);
    assert_eq!(a.entries.len(), b.entries.len());
    for (x, y) in a.entries.iter().zip(&b.entries) {
        assert_eq!(x.path, y.path);
        match (&x.kind, &y.kind) {
            (EntryKind::File(p), EntryKind::File(q)) => {
                assert_eq!(
                    (p.size, p.sha256),
                    (q.size, q.sha256),
                    "{}",
                    x.path.display()
                );
                // Fresh random file IDs per tree: that is what pins a tree, not just content.
                if p.size > 0 {
                    assert_ne!(p.file_id, q.file_id);
                }
            }
            (k, l) => assert_eq!(k, l),
        }
    }
    assert_ne!(a.digest(), b.digest());
}

#[test]
fn failed_check_leaves_no_output_and_receipt_has_no_secret() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    // Accepted: decrypt + receipt.
    let out = f.p("out");
    let receipt = f.p("receipt.json");
    let o = f.run(&[
        &"decrypt",
        &cipher,
        &out,
        &"--passfile",
        &f.pass(),
        &"--expect",
        &man,
        &"--receipt",
        &receipt,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(fs::read(out.join("model/a.bin")).unwrap().len(), 5000);
    let text = fs::read_to_string(&receipt).unwrap();
    assert!(!text.contains(PASSWORD));
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["schema"], "ccmount.receipt/v1");
    assert_eq!(
        v["model_digest"],
        ModelDigest::of(&fs::read(&man).unwrap()).to_string()
    );
    assert_eq!(v["pin"]["kind"], "file");
    assert!(v["time"].as_str().unwrap().ends_with('Z'));
    assert!(v["kbs_url"].is_null());
    // Refused: nothing is written.
    fs::remove_file(cipher_of(&cipher, "tokenizer/t.json")).unwrap();
    let out2 = f.p("out2");
    let o = f.run(&[
        &"decrypt",
        &cipher,
        &out2,
        &"--passfile",
        &f.pass(),
        &"--expect",
        &man,
    ]);
    assert_refused(&o, &["tokenizer/t.json"]);
    assert!(!out2.exists(), "a refused model left output behind");
}

/// A minisign key pair made with aws-lc's Ed25519 (the format minisign writes).
struct Signer {
    kp: Ed25519KeyPair,
    key_id: [u8; 8],
}

impl Signer {
    fn new(seed: u8) -> Self {
        Signer {
            kp: Ed25519KeyPair::from_seed_unchecked(&[seed; 32]).unwrap(),
            key_id: [seed; 8],
        }
    }

    fn public_file(&self) -> String {
        let mut b = b"Ed".to_vec();
        b.extend_from_slice(&self.key_id);
        b.extend_from_slice(self.kp.public_key().as_ref());
        format!(
            "untrusted comment: minisign public key {}\n{}\n",
            hex::encode(self.key_id),
            STANDARD.encode(b)
        )
    }

    /// A prehashed (`ED`) detached signature of `data`.
    fn sign(&self, data: &[u8], comment: &str) -> String {
        let prehash = blake2::Blake2b512::digest(data);
        let sig = self.kp.sign(&prehash);
        let mut line = b"ED".to_vec();
        line.extend_from_slice(&self.key_id);
        line.extend_from_slice(sig.as_ref());
        let mut global = sig.as_ref().to_vec();
        global.extend_from_slice(comment.as_bytes());
        let gsig = self.kp.sign(&global);
        format!(
            "untrusted comment: signature from minisign secret key\n{}\ntrusted comment: {comment}\n{}\n",
            STANDARD.encode(line),
            STANDARD.encode(gsig.as_ref())
        )
    }
}

/// The model name every manifest of these tests carries (version 3).
const MODEL: &str = "test-model";

fn signed_verify(f: &Fx, cipher: &Path, man: &Path, pubkey: &Path) -> Output {
    f.run(&[
        &"verify",
        &cipher,
        &"--passfile",
        &f.pass(),
        &"--expect",
        &man,
        &"--expect-signed-by",
        &pubkey,
        &"--expect-model",
        &MODEL,
    ])
}

#[test]
fn good_signature_is_accepted() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted_tagged();
    let s = Signer::new(5);
    let pubkey = f.p("minisign.pub");
    fs::write(&pubkey, s.public_file()).unwrap();
    let data = fs::read(&man).unwrap();
    let mut sig = man.clone().into_os_string();
    sig.push(".minisig");
    fs::write(
        &sig,
        s.sign(&data, "timestamp:1700000000\tfile:manifest.json"),
    )
    .unwrap();
    let o = signed_verify(&f, &cipher, &man, &pubkey);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

#[test]
fn bad_signature_is_refused() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted_tagged();
    let s = Signer::new(5);
    let pubkey = f.p("minisign.pub");
    fs::write(&pubkey, s.public_file()).unwrap();
    let data = fs::read(&man).unwrap();
    let mut sig = man.clone().into_os_string();
    sig.push(".minisig");
    let sig = PathBuf::from(sig);
    // No signature at all.
    let o = signed_verify(&f, &cipher, &man, &pubkey);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    // Signed by another key.
    fs::write(&sig, Signer::new(6).sign(&data, "c")).unwrap();
    let o = signed_verify(&f, &cipher, &man, &pubkey);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    assert!(stderr(&o).contains("another key"), "{}", stderr(&o));
    // Right key, but over other bytes (a manifest swapped under a valid signature).
    fs::write(&sig, s.sign(b"some other manifest\n", "c")).unwrap();
    let o = signed_verify(&f, &cipher, &man, &pubkey);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    assert!(stderr(&o).contains("does not verify"), "{}", stderr(&o));
    // Trusted comment altered after signing.
    let good = s.sign(&data, "timestamp:1");
    fs::write(&sig, good.replace("timestamp:1", "timestamp:2")).unwrap();
    let o = signed_verify(&f, &cipher, &man, &pubkey);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    // A signature only makes sense over a file.
    let o = f.run(&[
        &"verify",
        &cipher,
        &"--passfile",
        &f.pass(),
        &"--expect",
        &"sha256:0000000000000000000000000000000000000000000000000000000000000000",
        &"--expect-signed-by",
        &pubkey,
        &"--expect-model",
        &MODEL,
    ]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
}

#[test]
fn minisign_cli_signature_is_accepted() {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join("minisign").is_file()))
        .unwrap_or(false);
    e2e::skip_unless!(
        (!found).then(|| "minisign is not installed (apt-get install minisign)".to_owned())
    );
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted_tagged();
    let (pk, sk) = (f.p("m.pub"), f.p("m.key"));
    let out = e2e::run_with_timeout(
        Command::new("minisign")
            .arg("-G")
            .arg("-W")
            .arg("-p")
            .arg(&pk)
            .arg("-s")
            .arg(&sk),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = e2e::run_with_timeout(
        Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(&sk)
            .arg("-m")
            .arg(&man),
        Duration::from_secs(30),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let o = signed_verify(&f, &cipher, &man, &pk);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    // One flipped byte in the manifest: the signature no longer matches.
    let mut data = fs::read(&man).unwrap();
    let i = data.iter().position(|&b| b == b'a').unwrap();
    data[i] = b'b';
    fs::write(&man, &data).unwrap();
    let o = signed_verify(&f, &cipher, &man, &pk);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
}

#[test]
fn kbs_pin_shares_the_key_attestation() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    let kbs = TestKbs::start(
        KbsConfig::default()
            .with_resource("default/key/model", format!("{PASSWORD}\n").into_bytes())
            .with_resource("default/manifest/model", fs::read(&man).unwrap())
            .with_resource(
                "default/manifest/digest",
                ModelDigest::of(&fs::read(&man).unwrap())
                    .to_string()
                    .into_bytes(),
            )
            .with_policy(Policy::allow_all()),
    )
    .unwrap();
    let ca = f.p("ca.pem");
    kbs.write_ca(&ca).unwrap();
    let url = kbs.url();
    let kbs_args = |extra: &[&dyn AsRef<std::ffi::OsStr>]| -> Output {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
            &"--kbs-url",
            &url,
            &"--kbs-cert",
            &ca,
            &"--tee",
            &"sample",
            &"--timeout",
            &"10s",
        ];
        args.extend_from_slice(extra);
        f.run(&args)
    };
    let out = f.p("out");
    let receipt = f.p("r.json");
    let o = kbs_args(&[
        &"decrypt",
        &cipher,
        &out,
        &"--key",
        &"kbs:///default/key/model",
        &"--expect",
        &"kbs:///default/manifest/model",
        &"--receipt",
        &receipt,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(
        kbs.request_count(Endpoint::Attest),
        1,
        "one attestation for key and manifest"
    );
    assert_eq!(kbs.request_count(Endpoint::Resource), 2);
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&receipt).unwrap()).unwrap();
    assert_eq!(v["key_resource"], "kbs:///default/key/model");
    assert_eq!(v["pin"]["source"], "kbs:///default/manifest/model");
    assert_eq!(v["tee"], "sample");
    assert!(
        v["token_expiry"].as_str().is_some_and(|t| t.ends_with('Z')),
        "{v}"
    );
    assert!(
        v["kbs_url"]
            .as_str()
            .unwrap()
            .starts_with("https://127.0.0.1")
    );
    let text = fs::read_to_string(&receipt).unwrap();
    assert!(!text.contains(PASSWORD));
    // A digest held by the KBS works the same; a tampered tree is refused.
    kbs.clear_requests();
    fs::remove_file(cipher_of(&cipher, "model/a.bin")).unwrap();
    let o = kbs_args(&[
        &"verify",
        &cipher,
        &"--key",
        &"kbs:///default/key/model",
        &"--expect",
        &"kbs:///default/manifest/model",
    ]);
    assert_refused(&o, &["model/a.bin"]);
    assert_eq!(kbs.request_count(Endpoint::Attest), 1);
    let o = kbs_args(&[
        &"verify",
        &cipher,
        &"--passfile",
        &f.pass(),
        &"--expect",
        &"kbs:///default/manifest/digest",
    ]);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    assert!(stderr(&o).contains("model digest differs"));
}

/// The library entry point `mount --expect` calls: both modes on one tampered tree.
#[test]
fn check_api_structure_and_full_modes() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    let expected = Expected::parse(&fs::read(&man).unwrap()).unwrap();
    let dir = open(&cipher);
    for mode in [CheckMode::Full, CheckMode::Structure] {
        let v = check(&dir, &expected, mode, &NoProgress).unwrap();
        assert_eq!(v.digest, expected.digest());
        assert_eq!(v.entries.len(), 8);
        let a = v
            .entries
            .iter()
            .find(|e| e.plain_path == Path::new("model/a.bin"))
            .unwrap();
        assert_eq!(
            dir.open_file(a).unwrap().file_id(),
            v.file_id(Path::new("model/a.bin"))
        );
    }
    // A bare digest cannot be checked without hashing.
    let digest = Expected::Digest(expected.digest());
    assert!(matches!(
        check(&dir, &digest, CheckMode::Structure, &NoProgress),
        Err(CheckError::DigestNeedsFullCheck)
    ));
    assert!(check(&dir, &digest, CheckMode::Full, &NoProgress).is_ok());
    // Swap two files and truncate a third: structure mode sees file IDs and sizes.
    let (a, t) = (
        cipher_of(&cipher, "model/a.bin"),
        cipher_of(&cipher, "model/b.bin"),
    );
    let tmp = cipher.join("swap.tmp");
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&t, &a).unwrap();
    fs::rename(&tmp, &t).unwrap();
    let dir = open(&cipher);
    let Err(CheckError::Mismatch(m)) = check(&dir, &expected, CheckMode::Structure, &NoProgress)
    else {
        panic!("structure check accepted swapped files")
    };
    for p in ["model/a.bin", "model/b.bin"] {
        assert!(
            m.differences
                .iter()
                .any(|d| matches!(d, Difference::FileId { path, .. } if path == Path::new(p))),
            "{m:?}"
        );
    }
    let Err(CheckError::Mismatch(m)) = check(&dir, &expected, CheckMode::Full, &NoProgress) else {
        panic!("full check accepted swapped files")
    };
    assert!(
        m.differences
            .iter()
            .any(|d| matches!(d, Difference::Content { .. }))
    );
    assert!(m.to_string().contains("differences"));
}

/// Storage changed after the check (the race `decrypt --expect` must survive): the pinned
/// decrypt pass writes no entry that differs from the accepted manifest.
#[test]
fn storage_changed_after_the_check_is_not_written() {
    use gocryptfs_format::decrypt::{DecryptOptions, decrypt_tree_pinned};
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    let manifest = Manifest::parse(&fs::read(&man).unwrap()).unwrap();
    // After the check: swap two files, truncate a third, add a fourth.
    let (a, b) = (
        cipher_of(&cipher, "model/a.bin"),
        cipher_of(&cipher, "tokenizer/t.json"),
    );
    let tmp = cipher.join("swap.tmp");
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    let dir = open(&cipher);
    let parent = dir.resolve(Path::new("model")).unwrap().cipher_path;
    gocryptfs_format::writer::Writer::new(&dir)
        .write_bytes(&parent, "extra.bin".as_ref(), b"backdoor", 0o644)
        .unwrap();
    let out = f.p("out");
    let s = decrypt_tree_pinned(
        &dir,
        &out,
        &DecryptOptions::default(),
        &manifest,
        &NoProgress,
    )
    .unwrap();
    let bad: Vec<String> = s
        .problems
        .iter()
        .filter(|p| !p.warning)
        .map(|p| p.path.display().to_string())
        .collect();
    for p in ["model/a.bin", "tokenizer/t.json", "model/extra.bin"] {
        assert!(bad.iter().any(|b| b == p), "{p} not refused: {bad:?}");
        assert!(!out.join(p).exists(), "{p} was written");
    }
    assert_eq!(
        fs::read(out.join("model/config.json")).unwrap(),
        b"{\"layers\": 2}\n"
    );
    assert!(s.into_result().is_err());
    // No temporary file left behind.
    for d in ["model", "tokenizer"] {
        for e in fs::read_dir(out.join(d)).unwrap() {
            let n = e.unwrap().file_name();
            assert!(!gocryptfs_format::decrypt::is_temp_name(&n), "{n:?} left");
        }
    }
}

/// Whether `mnt` is in the mount table.
fn mounted(mnt: &Path) -> bool {
    let want = mnt.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(want.as_str()))
}

/// Unmounts on drop, so a failed assertion leaves no mount behind.
struct Unmount(PathBuf);
impl Drop for Unmount {
    fn drop(&mut self) {
        if mounted(&self.0) {
            let _ = Command::new("fusermount3").arg("-uz").arg(&self.0).status();
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
}

#[test]
fn mount_expect_refuses_a_swapped_tree_before_going_live() {
    e2e::skip_unless!(gocryptfs::skip_reason());
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    let (a, b) = (
        cipher_of(&cipher, "model/a.bin"),
        cipher_of(&cipher, "model/b.bin"),
    );
    let tmp = cipher.join("swap.tmp");
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    let mnt = f.p("mnt");
    fs::create_dir(&mnt).unwrap();
    let _guard = Unmount(mnt.clone());
    for mode in ["full", "structure"] {
        let o = f.run(&[
            &"mount",
            &cipher,
            &mnt,
            &"--passfile",
            &f.pass(),
            &"--expect",
            &man,
            &"--expect-mode",
            &mode,
        ]);
        assert_refused(&o, &["model/a.bin", "model/b.bin"]);
        assert!(!mounted(&mnt), "{mode}: the refused model was mounted");
    }
}

#[test]
fn mount_expect_serves_only_the_accepted_tree() {
    e2e::skip_unless!(gocryptfs::skip_reason());
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    let plain = f.p("plain");
    let mnt = f.p("mnt");
    fs::create_dir(&mnt).unwrap();
    let _guard = Unmount(mnt.clone());
    let receipt = f.p("receipt.json");
    let o = f.run(&[
        &"--receipt",
        &receipt,
        &"mount",
        &cipher,
        &mnt,
        &"--passfile",
        &f.pass(),
        &"--expect",
        &man,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(mounted(&mnt));
    let r: serde_json::Value = serde_json::from_slice(&fs::read(&receipt).unwrap()).unwrap();
    assert!(r.to_string().contains("sha256:"), "{r}");
    assert!(!r.to_string().contains(PASSWORD));
    for p in ["model/config.json", "tokenizer/t.json", "model/empty"] {
        assert_eq!(
            fs::read(mnt.join(p)).unwrap(),
            fs::read(plain.join(p)).unwrap(),
            "{p}"
        );
    }
    assert_eq!(
        fs::read_link(mnt.join("config.json")).unwrap(),
        Path::new("model/config.json")
    );

    // The storage changes under the live mount: a.bin and b.bin swap ciphertexts, and a
    // file is added by someone holding the key. Neither is served.
    let (a, b) = (
        cipher_of(&cipher, "model/a.bin"),
        cipher_of(&cipher, "model/b.bin"),
    );
    let tmp = cipher.join("swap.tmp");
    fs::rename(&a, &tmp).unwrap();
    fs::rename(&b, &a).unwrap();
    fs::rename(&tmp, &b).unwrap();
    {
        let dir = open(&cipher);
        let parent = dir.resolve(Path::new("model")).unwrap().cipher_path;
        gocryptfs_format::writer::Writer::new(&dir)
            .write_bytes(&parent, "late.bin".as_ref(), b"backdoor", 0o644)
            .unwrap();
    }
    for p in ["model/a.bin", "model/b.bin"] {
        // Hidden at lookup (its size no longer matches: ENOENT) or refused at open (its
        // file ID differs: EIO); never the other file's bytes.
        let err = fs::read(mnt.join(p)).expect_err(p);
        assert!(matches!(err.raw_os_error(), Some(2 | 5)), "{p}: {err}");
    }
    let late = fs::metadata(mnt.join("model/late.bin")).expect_err("late file served");
    assert_eq!(late.kind(), std::io::ErrorKind::NotFound);
    let names: Vec<_> = fs::read_dir(mnt.join("model"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(!names.iter().any(|n| n == "late.bin"), "{names:?}");

    let o = f.run(&[&"umount", &mnt]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert!(!mounted(&mnt));
}

/// A receipt names its cipher directory absolutely, whatever form the command line used.
#[test]
fn receipt_paths_are_absolute() {
    let Some(f) = Fx::new() else { return };
    let (cipher, man) = f.encrypted();
    let o = e2e::run_with_timeout(
        Command::new(&f.bin)
            .current_dir(f.tmp.path())
            .args(["verify", "-q", "cipher", "--passfile", "pass", "--expect"])
            .arg(&man)
            .args(["--receipt", "r.json"]),
        Duration::from_secs(120),
    );
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(f.p("r.json")).unwrap()).unwrap();
    assert_eq!(
        v["cipherdir"].as_str().unwrap(),
        fs::canonicalize(&cipher).unwrap().to_str().unwrap()
    );
}
