//! Sealed secrets of the Confidential Containers data hub (issue 18, part 1), made by an
//! independent implementation (`tests/tools/cdh_seal.py`: the openssl CLI and Python's
//! standard library), against the test KBS: `ccmount unseal`, a sealed `--passfile`,
//! `[[secrets]] sealed_file`, the signing key from the KBS or a local key directory, and the
//! refusals (forged signature 26; unsupported or hostile input 2).

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use test_kbs::{KbsConfig, Policy, TestKbs};

const API_KEY: &[u8] = b"api-key-0123";

struct Fx {
    bin: PathBuf,
    kbs: TestKbs,
    dir: tempfile::TempDir,
    ca: PathBuf,
}

impl Fx {
    fn new() -> Option<Fx> {
        let bin = e2e::ccmount_bin()?;
        if Command::new("openssl").arg("version").output().is_err() {
            eprintln!("SKIP: no openssl CLI to seal secrets with");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let pw = std::fs::read(e2e::corpus::password_file()).unwrap();
        let kbs = TestKbs::start(
            KbsConfig::default()
                .with_resource("default/key/api", API_KEY.to_vec())
                .with_resource("default/key/other", b"not this one".to_vec())
                .with_resource("default/key/model-pass", pw)
                .with_policy(Policy::allow_all()),
        )
        .unwrap();
        let ca = dir.path().join("ca.pem");
        kbs.write_ca(&ca).unwrap();
        let fx = Fx { bin, kbs, dir, ca };
        // The signing key: made by the sealing tool, its JWK stored in the KBS.
        fx.seal("kbs:///default/key/api", "kbs:///default/keys/sealing", &[]);
        let jwk = std::fs::read(fx.dir.path().join("key.jwk")).unwrap();
        fx.kbs.set_resource("default/keys/sealing", jwk).unwrap();
        Some(fx)
    }

    fn p(&self, s: &str) -> PathBuf {
        self.dir.path().join(s)
    }

    /// A sealed secret naming `name`, signed with the fixture's key, `kid` in the header.
    fn seal(&self, name: &str, kid: &str, extra: &[&str]) -> String {
        let out = Command::new("python3")
            .arg(e2e::tests_dir().join("tools/cdh_seal.py"))
            .arg(self.dir.path())
            .args([name, kid])
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.p(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn run(&self, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
        let mut c = Command::new(&self.bin);
        c.args(["--kbs-url", &self.kbs.url(), "--kbs-cert"])
            .arg(&self.ca)
            .args(["--tee", "sample", "--timeout", "10s", "-q"]);
        for a in args {
            c.arg(a);
        }
        e2e::run_with_timeout(c.stdin(Stdio::null()), Duration::from_secs(120))
    }
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn unseal_with_the_signing_key_from_the_kbs() {
    let Some(f) = Fx::new() else { return };
    let sealed = f.write(
        "api.sealed",
        &f.seal("kbs:///default/key/api", "kbs:///default/keys/sealing", &[]),
    );
    let out = f.p("api-key");
    let o = f.run(&[&"unseal", &sealed, &"--out", &out]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(std::fs::read(&out).unwrap(), API_KEY);
    use std::os::unix::fs::PermissionsExt as _;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o400
    );
    // The output exists: 5 without --force.
    let o = f.run(&[&"unseal", &sealed, &"--out", &out]);
    assert_eq!(o.status.code(), Some(5), "{}", err(&o));
}

#[test]
fn a_forged_sealed_secret_is_refused_and_nothing_is_written() {
    let Some(f) = Fx::new() else { return };
    let good = f.seal("kbs:///default/key/api", "kbs:///default/keys/sealing", &[]);
    // The host swaps the payload for one naming another resource, keeping the signature.
    let other = f.seal(
        "kbs:///default/key/other",
        "kbs:///default/keys/sealing",
        &[],
    );
    let g: Vec<&str> = good.trim().split('.').collect();
    let o: Vec<&str> = other.trim().split('.').collect();
    let forged = f.write(
        "forged.sealed",
        &format!("sealed.{}.{}.{}", g[1], o[2], g[3]),
    );
    let out = f.p("never");
    let r = f.run(&[&"unseal", &forged, &"--out", &out]);
    assert_eq!(r.status.code(), Some(26), "{}", err(&r));
    assert!(err(&r).contains("signature does not verify"), "{}", err(&r));
    assert!(err(&r).contains("forged.sealed"), "{}", err(&r));
    assert!(!out.exists());
    // Only an explicit opt-in skips the check (and says so).
    let r = f.run(&[
        &"--insecure-skip-sealed-signature",
        &"unseal",
        &forged,
        &"--out",
        &out,
    ]);
    assert_eq!(r.status.code(), Some(0), "{}", err(&r));
    assert_eq!(std::fs::read(&out).unwrap(), b"not this one");
}

#[test]
fn sealed_passfile_and_local_signing_key() {
    let Some(f) = Fx::new() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let cipher = e2e::corpus::materialize("default", tmp.path());
    // kid: a path under --sealed-key-dir.
    let keys = f.p("keys");
    std::fs::create_dir(&keys).unwrap();
    std::fs::copy(f.p("key.jwk"), keys.join("model.jwk")).unwrap();
    let pass = f.write(
        "model.pass",
        &f.seal("kbs:///default/key/model-pass", "model.jwk", &[]),
    );
    let o = f.run(&[
        &"--sealed-key-dir",
        &keys,
        &"verify",
        &cipher,
        &"--passfile",
        &pass,
        &"--allow-holes",
        &"--allow-outside-symlinks",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    // No key dir given: the default one has no such key.
    let o = f.run(&[&"verify", &cipher, &"--passfile", &pass, &"--allow-holes"]);
    assert_ne!(o.status.code(), Some(0), "{}", err(&o));
}

#[test]
fn unsupported_and_hostile_sealed_secrets_are_usage_errors() {
    let Some(f) = Fx::new() else { return };
    let cases: Vec<(String, &str)> = vec![
        (
            f.seal("kbs:///default/key/api", "../../etc/keys/k.jwk", &[]),
            "kid",
        ),
        (
            f.seal(
                "kbs:///default/key/api",
                "kbs:///default/keys/sealing",
                &["--alg", "ES384"],
            ),
            "only ES256",
        ),
        (
            f.seal(
                "kbs:///default/key/api",
                "kbs:///default/keys/sealing",
                &["--type", "envelope"],
            ),
            "not supported",
        ),
        ("sealed.not-a-jws".to_owned(), "malformed"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let p = f.write(&format!("bad{i}.sealed"), text);
        let o = f.run(&[&"unseal", &p, &"--out", &f.p("x")]);
        assert_eq!(o.status.code(), Some(2), "{want}: {}", err(&o));
        assert!(err(&o).contains(want), "{want}: {}", err(&o));
        assert_eq!(err(&o).lines().count(), 1, "{}", err(&o));
    }
}

#[test]
fn secrets_delivery_unseals_a_list() {
    let Some(f) = Fx::new() else { return };
    let sealed = f.write(
        "api.sealed",
        &f.seal("kbs:///default/key/api", "kbs:///default/keys/sealing", &[]),
    );
    let out = f.p("out/api-key");
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let cfg = f.write(
        "ccmount.toml",
        &format!(
            "[[secrets]]\nsealed_file = {:?}\npath = {:?}\nmode = \"0440\"\n",
            sealed.to_str().unwrap(),
            out.to_str().unwrap()
        ),
    );
    let o = f.run(&[&"--config", &cfg, &"secrets", &"--once"]);
    assert_eq!(o.status.code(), Some(0), "{}", err(&o));
    assert_eq!(std::fs::read(&out).unwrap(), API_KEY);
    // Both resource and sealed_file, or neither: a usage error.
    let bad = f.write(
        "bad.toml",
        "[[secrets]]\nresource = \"kbs:///a/b/c\"\nsealed_file = \"x\"\npath = \"/tmp/y\"\n",
    );
    let o = f.run(&[&"--config", &bad, &"secrets", &"--once"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}
