//! Secret hygiene (issue 9): key types print no key bytes, and a planted password, master
//! key and KBS resource never show up in `ccmount`'s output at the most verbose level (`-vv`,
//! trace), in its error text, in `/proc/<pid>/cmdline` or `/proc/<pid>/environ`; a running
//! `ccmount` has core dumps off (`RLIMIT_CORE` 0).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use gocryptfs_format::cryptocore::{Backend, ContentAlgo, ContentCipher, MasterKey};
use gocryptfs_format::{CipherDir, KeySource};
use test_kbs::{Endpoint, KbsConfig, Policy, TestKbs};

use e2e::ccmount_bin as ccmount;

const PASSWORD: &str = "test-password-123";
const RESOURCE: &[u8] = b"planted-kbs-resource-9f3e1a7c";

fn master_key_bytes() -> Vec<u8> {
    let m = e2e::corpus::manifest();
    hex::decode(m.variants["default"].masterkey_hex.replace('-', "")).unwrap()
}

/// Every printable form of a secret we look for: raw, hex (both cases, and gocryptfs'
/// dashed groups), base64 (standard and url-safe, padded or not), and `Debug` of the bytes.
fn forms(secret: &[u8]) -> Vec<String> {
    let mut v = Vec::new();
    if let Ok(s) = std::str::from_utf8(secret) {
        v.push(s.to_owned());
    }
    let hex = hex::encode(secret);
    v.push(hex.clone());
    v.push(hex.to_uppercase());
    let groups: Vec<&str> = (0..hex.len())
        .step_by(8)
        .map(|i| &hex[i..(i + 8).min(hex.len())])
        .collect();
    v.push(groups.join("-"));
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    for e in [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD] {
        v.push(e.encode(secret));
    }
    // `{:?}` of the bytes, e.g. `[116, 101, 115, ...` (first 6 bytes are enough).
    let dbg = format!("{:?}", &secret[..secret.len().min(6)]);
    v.push(dbg.trim_end_matches(']').to_owned());
    v
}

fn assert_absent(haystack: &[u8], secrets: &[&[u8]], what: &str) {
    let text = String::from_utf8_lossy(haystack);
    for s in secrets {
        for f in forms(s) {
            assert!(
                !text.contains(&f),
                "{what} contains a secret form {f:?}:\n{text}"
            );
        }
    }
}

#[test]
fn key_types_debug_prints_no_key_bytes() {
    let mk = master_key_bytes();
    let key = MasterKey::from_bytes(&mk).unwrap();
    let secrets: [&[u8]; 2] = [&mk, PASSWORD.as_bytes()];
    assert_absent(
        format!("{key:?} {key:#?}").as_bytes(),
        &secrets,
        "MasterKey",
    );
    let ks = KeySource::MasterKey(key.clone());
    assert_absent(format!("{ks:?}").as_bytes(), &secrets, "KeySource");
    let pw = KeySource::password_from_passfile(PASSWORD.as_bytes()).unwrap();
    assert_absent(format!("{pw:?} {pw:#?}").as_bytes(), &secrets, "KeySource");

    let c = ContentCipher::new(ContentAlgo::AesGcm, Backend::AwsLc, &mk).unwrap();
    assert_absent(format!("{c:?}").as_bytes(), &secrets, "ContentCipher");

    // A whole open cipher directory: config, content cipher, name cipher, caches.
    let tmp = tempfile::tempdir().unwrap();
    let root = e2e::corpus::materialize("default", tmp.path());
    for ks in [
        KeySource::MasterKey(key),
        KeySource::password_from_passfile(PASSWORD.as_bytes()).unwrap(),
    ] {
        let dir = CipherDir::open(&root, ks, &e2e::corpus::gocryptfs_opts()).unwrap();
        assert_absent(
            format!("{dir:?} {dir:#?}").as_bytes(),
            &secrets,
            "CipherDir",
        );
    }

    let s = attest::Secret::from_slice(RESOURCE);
    assert_absent(format!("{s:?} {s:#?}").as_bytes(), &[RESOURCE], "Secret");
    let kp = attest::jwe::TeeKeyPair::from_ec_scalar(&[0x5a; 32]).unwrap();
    assert_absent(
        format!("{kp:?} {kp:#?}").as_bytes(),
        &[&[0x5a; 32]],
        "TeeKeyPair",
    );
}

fn ok(out: &std::process::Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn planted_password_and_master_key_never_printed_at_trace_level() {
    let Some(bin) = ccmount() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let root = e2e::corpus::materialize("default", tmp.path());
    let mk = master_key_bytes();
    let mkfile = tmp.path().join("mk");
    std::fs::write(&mkfile, hex::encode(&mk)).unwrap();
    let pw = e2e::corpus::password_file();
    let secrets: [&[u8]; 2] = [&mk, PASSWORD.as_bytes()];
    let run = |args: &[&str]| {
        // The corpus holds an absolute symlink and holes (refused by default).
        let out = Command::new(&bin)
            .args(["-vv", "--allow-outside-symlinks", "--allow-holes"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert_absent(&out.stdout, &secrets, &format!("stdout of {args:?}"));
        assert_absent(&out.stderr, &secrets, &format!("stderr of {args:?}"));
        out
    };
    let r = root.to_str().unwrap();
    let o1 = tmp.path().join("o1");
    let o2 = tmp.path().join("o2");
    ok(&run(&[
        "decrypt",
        r,
        o1.to_str().unwrap(),
        "--passfile",
        pw.to_str().unwrap(),
    ]));
    ok(&run(&[
        "decrypt",
        r,
        o2.to_str().unwrap(),
        "--masterkey-file",
        mkfile.to_str().unwrap(),
        "--json",
    ]));
    ok(&run(&[
        "verify",
        r,
        "--passfile",
        pw.to_str().unwrap(),
        "--json",
    ]));
    ok(&run(&[
        "verify",
        r,
        "--masterkey-file",
        mkfile.to_str().unwrap(),
    ]));
    ok(&run(&[
        "--log-format",
        "json",
        "verify",
        r,
        "--passfile",
        pw.to_str().unwrap(),
    ]));
    // Error paths print no key either: a wrong password, a corrupt block.
    let wrong = tmp.path().join("wrong");
    std::fs::write(&wrong, "not-the-password\n").unwrap();
    let out = run(&["verify", r, "--passfile", wrong.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(12));
    assert_absent(&out.stderr, &[b"not-the-password"], "wrong-password error");
}

fn proc_file(pid: u32, name: &str) -> Vec<u8> {
    std::fs::read(format!("/proc/{pid}/{name}")).unwrap_or_default()
}

/// A `ccmount get-resource` blocked on a slow KBS: its argv, environment and limits are
/// inspected while it runs, then its output once it finished.
#[test]
fn planted_kbs_resource_not_in_output_cmdline_or_environ() {
    let Some(bin) = ccmount() else { return };
    let kbs = TestKbs::start(
        KbsConfig::default()
            .with_resource("default/key/model", RESOURCE.to_vec())
            .with_policy(Policy::allow_all()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    kbs.write_ca(&ca).unwrap();
    let out_file = dir.path().join("secret");
    kbs.faults()
        .set_delay(Duration::from_millis(1500), Some(Endpoint::Resource));
    let child = Command::new(&bin)
        .args(["--kbs-url", &kbs.url(), "--kbs-cert", ca.to_str().unwrap()])
        .args(["--tee", "sample", "--timeout", "20s", "-vv"])
        .args(["get-resource", "kbs:///default/key/model", "--out"])
        .arg(&out_file)
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until the resource request is in flight (the secret is about to arrive).
    let t = Instant::now();
    while kbs.request_count(Endpoint::Resource) == 0 && t.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let cmdline = proc_file(pid, "cmdline");
    let environ = proc_file(pid, "environ");
    let limits = String::from_utf8_lossy(&proc_file(pid, "limits")).into_owned();
    let out = child.wait_with_output().unwrap();
    ok(&out);
    assert_eq!(std::fs::read(&out_file).unwrap(), RESOURCE);
    assert!(
        !cmdline.is_empty(),
        "read /proc/{pid}/cmdline while running"
    );
    assert_absent(&cmdline, &[RESOURCE], "cmdline");
    assert_absent(&environ, &[RESOURCE], "environ");
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .unwrap_or_default()
        .split_whitespace()
        .skip(4)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(core, ["0", "0"], "core dumps off while running:\n{limits}");
    assert_absent(&out.stdout, &[RESOURCE], "stdout");
    assert_absent(&out.stderr, &[RESOURCE], "stderr");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("TRACE"),
        "ran at trace level"
    );
}

/// Where a test writes a planted value it must find again (sanity check of `forms`).
#[test]
fn forms_find_what_they_should() {
    let hay = format!("x {} y", hex::encode(b"k3y"));
    let r = std::panic::catch_unwind(|| assert_absent(hay.as_bytes(), &[b"k3y"], "t"));
    assert!(r.is_err());
}
