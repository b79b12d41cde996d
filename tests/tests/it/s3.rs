//! Cipher trees in object storage (`s3://BUCKET/PREFIX`), end to end against a real
//! S3-compatible server process (moto, `e2e::s3`) on 127.0.0.1: trees written by the real
//! gocryptfs and uploaded with boto3, every command (`info`, `verify`, `manifest`,
//! `--expect`, `decrypt`, `encrypt` to a bucket checked by `gocryptfs -fsck` and a real
//! gocryptfs mount), listing pagination, tampering, wrong keys and credentials, a missing
//! bucket or prefix, an unreachable endpoint, s3fs-style symlink objects, the PAI-EAS flow
//! with the password and the storage credentials both from the test KBS, and an object
//! replaced between listing and reading (`If-Match`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use e2e::gocryptfs::{self, Mount};
use e2e::s3::S3Server;
use e2e::{ccmount_bin, run_with_timeout, skip_unless, tree};

const PASSWORD: &[u8] = b"object storage model password\n";

/// A tree the real gocryptfs wrote (scrypt N=2^10), what S3 can hold: no symlinks, no
/// holes (decrypted modes and xattrs are not compared: objects carry neither).
struct Model {
    dir: tempfile::TempDir,
    cipher: PathBuf,
    plain: PathBuf,
    pass: PathBuf,
}

fn model(seed: u64, extra: impl FnOnce(&Path)) -> Model {
    let dir = tempfile::tempdir().unwrap();
    let cipher = dir.path().join("cipher");
    let pass = dir.path().join("pass");
    std::fs::write(&pass, PASSWORD).unwrap();
    gocryptfs::init(&cipher, &pass, &[]);
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    tree::generate(
        &plain,
        seed,
        tree::TreeOpts {
            random_files: 8,
            max_size: 300_000,
            sparse: false,
            ..tree::TreeOpts::default()
        },
    );
    std::fs::remove_dir_all(plain.join("links")).unwrap();
    extra(&plain);
    let mnt = dir.path().join("mnt");
    let m = Mount::new(&cipher, &mnt, Some(&pass), &[]);
    e2e::corpus::copy_tree(&plain, m.path());
    m.unmount();
    Model {
        dir,
        cipher,
        plain,
        pass,
    }
}

fn ccm(bin: &Path, s3: &S3Server, args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut cmd = Command::new(bin);
    s3.env(&mut cmd);
    cmd.args(s3.flags()).args(["--timeout", "30s"]);
    for a in args {
        cmd.arg(a);
    }
    run_with_timeout(&mut cmd, Duration::from_secs(300))
}

/// `ccmount encrypt PLAIN URL --passfile PASS --scryptn 10`.
fn encrypt_to(bin: &Path, s3: &S3Server, plain: &Path, url: &str, pass: &Path) -> Output {
    ccm(
        bin,
        s3,
        &[
            &"encrypt",
            &plain,
            &url,
            &"--passfile",
            &pass,
            &"--scryptn",
            &"10",
        ],
    )
}

fn code(out: &Output, want: i32) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(want),
        "stderr: {err}\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    err
}

fn same_tree(a: &Path, b: &Path) {
    let d = tree::diff(&tree::snapshot(a), &tree::snapshot(b), false, false);
    assert!(d.is_empty(), "{d:#?}");
}

macro_rules! setup {
    () => {{
        skip_unless!(gocryptfs::skip_reason());
        skip_unless!(e2e::s3::skip_reason());
        let Some(bin) = ccmount_bin() else { return };
        let s3 = S3Server::start();
        s3.make_bucket("models");
        (bin, s3)
    }};
}

#[test]
fn every_command_reads_a_real_gocryptfs_tree_from_the_bucket() {
    let (bin, s3) = setup!();
    let m = model(71, |_| {});
    s3.upload(&m.cipher, "models", "llama/v1");
    let url = "s3://models/llama/v1";

    let out = ccm(&bin, &s3, &[&"info", &url, &"--json"]);
    code(&out, 0);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(info["creator"].as_str().unwrap().starts_with("gocryptfs"));

    let out = ccm(
        &bin,
        &s3,
        &[&"verify", &url, &"--passfile", &m.pass, &"--json"],
    );
    code(&out, 0);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    let local = run_with_timeout(
        Command::new(&bin)
            .args(["verify", "--json", "--passfile"])
            .arg(&m.pass)
            .arg(&m.cipher),
        Duration::from_secs(120),
    );
    let local: serde_json::Value = serde_json::from_slice(&local.stdout).unwrap();
    assert_eq!(report["stats"]["files"], local["stats"]["files"]);
    assert_eq!(report["stats"]["bytes"], local["stats"]["bytes"]);

    // Structure only, without the key: the same counts as the local no-key check.
    let out = ccm(&bin, &s3, &[&"verify", &url, &"--no-key", &"--json"]);
    code(&out, 0);
    let nk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let local_nk = run_with_timeout(
        Command::new(&bin)
            .args(["verify", "--no-key", "--json"])
            .arg(&m.cipher),
        Duration::from_secs(120),
    );
    let local_nk: serde_json::Value = serde_json::from_slice(&local_nk.stdout).unwrap();
    for k in ["files", "dirs", "bytes", "errors"] {
        assert_eq!(nk["stats"][k], local_nk["stats"][k], "{k}: {nk}");
    }

    // The manifest of the bucket's tree is the local tree's manifest.
    let man = m.dir.path().join("m.json");
    let out = ccm(
        &bin,
        &s3,
        &[&"manifest", &url, &"--passfile", &m.pass, &"--out", &man],
    );
    code(&out, 0);
    let local_man = m.dir.path().join("local.json");
    let lo = run_with_timeout(
        Command::new(&bin)
            .args(["manifest", "--passfile"])
            .arg(&m.pass)
            .arg(&m.cipher)
            .arg("--out")
            .arg(&local_man),
        Duration::from_secs(120),
    );
    assert!(
        lo.status.success(),
        "{}",
        String::from_utf8_lossy(&lo.stderr)
    );
    assert_eq!(
        std::fs::read(&man).unwrap(),
        std::fs::read(&local_man).unwrap()
    );

    code(
        &ccm(
            &bin,
            &s3,
            &[&"verify", &url, &"--passfile", &m.pass, &"--expect", &man],
        ),
        0,
    );
    let out_dir = m.dir.path().join("out");
    let receipt = m.dir.path().join("receipt.json");
    code(
        &ccm(
            &bin,
            &s3,
            &[
                &"decrypt",
                &url,
                &out_dir,
                &"--passfile",
                &m.pass,
                &"--expect",
                &man,
                &"--receipt",
                &receipt,
            ],
        ),
        0,
    );
    same_tree(&out_dir, &m.plain);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    assert_eq!(r["cipherdir"], url);

    // Unpinned, into a non-empty OUTDIR: refused without --force (5), then written.
    let err = code(
        &ccm(
            &bin,
            &s3,
            &[&"decrypt", &url, &out_dir, &"--passfile", &m.pass],
        ),
        5,
    );
    assert!(err.contains("--force"), "{err}");
    code(
        &ccm(
            &bin,
            &s3,
            &[
                &"decrypt",
                &url,
                &out_dir,
                &"--passfile",
                &m.pass,
                &"--force",
            ],
        ),
        0,
    );
    same_tree(&out_dir, &m.plain);

    // Another model's pin: refused, nothing written.
    let other = m.dir.path().join("other");
    std::fs::write(&other, format!("sha256:{}", "ab".repeat(32))).unwrap();
    let out_dir2 = m.dir.path().join("out2");
    let pin = format!("sha256:{}", "ab".repeat(32));
    code(
        &ccm(
            &bin,
            &s3,
            &[
                &"decrypt",
                &url,
                &out_dir2,
                &"--passfile",
                &m.pass,
                &"--expect",
                &pin,
            ],
        ),
        26,
    );
    assert!(!out_dir2.exists() || std::fs::read_dir(&out_dir2).unwrap().next().is_none());
}

#[test]
fn listing_pages_through_directories_of_thousands_of_entries_and_skips_directory_markers() {
    let (bin, s3) = setup!();
    // 1500 files in one directory: two listing pages of 1000 keys.
    let m = model(72, |plain| {
        let d = plain.join("many");
        std::fs::create_dir(&d).unwrap();
        for i in 0..1500 {
            std::fs::write(
                d.join(format!("shard-{i:05}.json")),
                format!("{{\"i\":{i}}}"),
            )
            .unwrap();
        }
    });
    // With the directory marker objects s3fs/ossfs leave (empty "dir/" objects).
    s3.upload_with_dir_markers(&m.cipher, "models", "many");
    assert!(
        s3.keys("models", "many")
            .iter()
            .any(|(k, _)| k.ends_with('/'))
    );
    let out_dir = m.dir.path().join("out");
    code(
        &ccm(
            &bin,
            &s3,
            &[
                &"decrypt",
                &"s3://models/many",
                &out_dir,
                &"--passfile",
                &m.pass,
            ],
        ),
        0,
    );
    same_tree(&out_dir, &m.plain);
}

#[test]
fn the_host_editing_the_bucket_is_refused_with_its_exit_code() {
    let (bin, s3) = setup!();
    let m = model(73, |_| {});
    s3.upload(&m.cipher, "models", "t");
    let url = "s3://models/t";
    // Wrong password: 12.
    let wrong = m.dir.path().join("wrong");
    std::fs::write(&wrong, b"not the password\n").unwrap();
    code(
        &ccm(&bin, &s3, &[&"verify", &url, &"--passfile", &wrong]),
        12,
    );
    // A flipped bit in the big file's block 100: 26, naming file and block; decrypt does
    // not write that file.
    let (big_key, _) = s3
        .keys("models", "t")
        .into_iter()
        .find(|(_, size)| *size > 1_000_000)
        .unwrap();
    s3.admin(
        "flip",
        &[&"models", &big_key, &(18 + 100 * 4128 + 40).to_string()],
    );
    let err = code(
        &ccm(&bin, &s3, &[&"verify", &url, &"--passfile", &m.pass]),
        26,
    );
    let out = ccm(&bin, &s3, &[&"verify", &url, &"--passfile", &m.pass]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("big.bin") && stdout.contains("block 100"),
        "{stdout}{err}"
    );
    let out_dir = m.dir.path().join("out");
    let err = code(
        &ccm(
            &bin,
            &s3,
            &[&"decrypt", &url, &out_dir, &"--passfile", &m.pass],
        ),
        26,
    );
    assert!(
        err.contains("big.bin") && err.contains("block 100"),
        "{err}"
    );
    assert!(!out_dir.join("big.bin").exists());
    assert!(
        !std::fs::read_dir(&out_dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".ccmount-")),
        "a temporary file was left"
    );
    // A file stored the way s3fs/ossfs store a symlink (mode metadata): refused by name.
    let (small_key, _) = s3
        .keys("models", "t")
        .into_iter()
        .find(|(k, size)| *size > 100 && *size < 1000 && !k.contains("gocryptfs"))
        .unwrap();
    // Its content stays the cipher file's (sizes check out); only the metadata says link.
    let body = m.cipher.join(small_key.strip_prefix("t/").unwrap());
    s3.admin(
        "put",
        &[&"models", &small_key, &body, &(0o120_777).to_string()],
    );
    let err = code(
        &ccm(
            &bin,
            &s3,
            &[
                &"decrypt",
                &url,
                &m.dir.path().join("o2"),
                &"--passfile",
                &m.pass,
            ],
        ),
        26,
    );
    assert!(err.contains("symlink"), "{err}");
    // A deleted diriv: the directory's names cannot be read: 26.
    let (diriv, _) = s3
        .keys("models", "t")
        .into_iter()
        .find(|(k, _)| k.ends_with("/gocryptfs.diriv") && k.matches('/').count() > 2)
        .unwrap();
    s3.admin("rm", &[&"models", &diriv]);
    code(
        &ccm(&bin, &s3, &[&"verify", &url, &"--passfile", &m.pass]),
        26,
    );
    // The no-key check sees it too.
    let out = ccm(&bin, &s3, &[&"verify", &url, &"--no-key", &"--json"]);
    code(&out, 26);
    let nk: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        nk["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "diriv"),
        "{nk}"
    );
}

#[test]
fn storage_failures_have_their_own_exit_codes() {
    let (bin, s3) = setup!();
    let m = model(74, |_| {});
    s3.upload(&m.cipher, "models", "f");
    // Right and wrong secret on a server that checks signatures (tree at the bucket's root,
    // see e2e::s3): 0, then 61 without echoing the secret.
    let auth = S3Server::start_authenticated();
    auth.make_bucket("signed-model");
    auth.upload(&m.cipher, "signed-model", "");
    code(
        &ccm(
            &bin,
            &auth,
            &[&"verify", &"s3://signed-model", &"--passfile", &m.pass],
        ),
        0,
    );
    let mut cmd = Command::new(&bin);
    auth.env(&mut cmd);
    cmd.env("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-123")
        .args(auth.flags())
        .args(["verify", "s3://signed-model", "--passfile"])
        .arg(&m.pass);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(120));
    let err = code(&out, 61);
    assert!(!err.contains("wrong-secret-value-123"), "{err}");
    // No such bucket, no such prefix: 62.
    code(
        &ccm(
            &bin,
            &s3,
            &[&"verify", &"s3://nosuchbucket/f", &"--passfile", &m.pass],
        ),
        62,
    );
    code(
        &ccm(
            &bin,
            &s3,
            &[
                &"decrypt",
                &"s3://models/nothing",
                &m.dir.path().join("o"),
                &"--passfile",
                &m.pass,
            ],
        ),
        62,
    );
    code(&ccm(&bin, &s3, &[&"info", &"s3://models/nothing"]), 62);
    // The same settings from `[source]` of --config instead of flags; a bad value there: 2.
    let cfg = m.dir.path().join("ccmount.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nendpoint = \"{}\"\nallow_http = true\nconcurrency = 4\nchunk_size = \"1MiB\"\n",
            s3.endpoint
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&bin);
    s3.env(&mut cmd);
    cmd.arg("--config")
        .arg(&cfg)
        .args(["verify", "s3://models/f", "--passfile"])
        .arg(&m.pass);
    code(&run_with_timeout(&mut cmd, Duration::from_secs(120)), 0);
    std::fs::write(&cfg, "[source]\naddressing = \"sideways\"\n").unwrap();
    let mut cmd = Command::new(&bin);
    s3.env(&mut cmd);
    cmd.arg("--config")
        .arg(&cfg)
        .args(["info", "s3://models/f"]);
    let err = code(&run_with_timeout(&mut cmd, Duration::from_secs(60)), 2);
    assert!(err.contains("addressing"), "{err}");
    // Nothing listens: 60 within the deadline. Port 1 (tcpmux, privileged, never served
    // here): a port freed by a test could be taken by another test's server meanwhile.
    let port = 1;
    let mut cmd = Command::new(&bin);
    s3.env(&mut cmd);
    cmd.args([
        "--s3-endpoint",
        &format!("http://127.0.0.1:{port}"),
        "--s3-allow-http",
        "--timeout",
        "3s",
    ])
    .args(["verify", "s3://models/f", "--passfile"])
    .arg(&m.pass);
    code(&run_with_timeout(&mut cmd, Duration::from_secs(60)), 60);
    // Plain HTTP without the flag, and a malformed location: 2, before any request.
    let mut cmd = Command::new(&bin);
    s3.env(&mut cmd);
    cmd.args(["--s3-endpoint", &s3.endpoint, "info", "s3://models/f"]);
    let err = code(&run_with_timeout(&mut cmd, Duration::from_secs(60)), 2);
    assert!(err.contains("--s3-allow-http"), "{err}");
    code(&ccm(&bin, &s3, &[&"info", &"s3://models/../etc"]), 2);
    code(&ccm(&bin, &s3, &[&"info", &"s3://Models/x"]), 2);
}

#[test]
fn encrypt_writes_a_tree_into_the_bucket_that_the_real_gocryptfs_checks_and_mounts() {
    let (bin, s3) = setup!();
    let d = tempfile::tempdir().unwrap();
    let plain = d.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    tree::generate(
        &plain,
        75,
        tree::TreeOpts {
            random_files: 6,
            sparse: false,
            ..tree::TreeOpts::default()
        },
    );
    std::fs::remove_dir_all(plain.join("links")).unwrap();
    let pass = d.path().join("pass");
    std::fs::write(&pass, PASSWORD).unwrap();
    let _ = code(
        &encrypt_to(&bin, &s3, &plain, "s3://models/owner/v1", &pass),
        0,
    );
    // Never merged into an existing tree.
    let _ = code(
        &encrypt_to(&bin, &s3, &plain, "s3://models/owner/v1", &pass),
        5,
    );
    let dl = d.path().join("dl");
    s3.download("models", "owner/v1", &dl);
    let (rc, out) = gocryptfs::fsck(&dl, &pass);
    assert_eq!(rc, 0, "{out}");
    let mnt = d.path().join("mnt");
    let m = Mount::new(&dl, &mnt, Some(&pass), &["-ro"]);
    same_tree(m.path(), &plain);
    m.unmount();
    // And ccmount reads it back from the bucket.
    let out_dir = d.path().join("out");
    code(
        &ccm(
            &bin,
            &s3,
            &[
                &"decrypt",
                &"s3://models/owner/v1",
                &out_dir,
                &"--passfile",
                &pass,
            ],
        ),
        0,
    );
    same_tree(&out_dir, &plain);
    // A symlink cannot go into a bucket: refused by its plaintext path before anything is
    // derived or uploaded (a usage error: the input, not the bucket, is at fault).
    std::os::unix::fs::symlink("edge/size1", plain.join("link")).unwrap();
    let err = code(
        &encrypt_to(&bin, &s3, &plain, "s3://models/owner/v2", &pass),
        2,
    );
    assert!(err.contains("symlink") && err.contains("link:"), "{err}");
    assert!(s3.keys("models", "owner/v2").is_empty());
}

#[test]
fn pai_eas_flow_password_and_storage_credentials_from_one_attestation() {
    skip_unless!(gocryptfs::skip_reason());
    skip_unless!(e2e::s3::skip_reason());
    let Some(bin) = ccmount_bin() else { return };
    // Signatures checked: the decrypt works only with the credentials from the KBS.
    let s3 = S3Server::start_authenticated();
    s3.make_bucket("pai-model");
    let m = model(76, |_| {});
    s3.upload(&m.cipher, "pai-model", "");
    let kbs = test_kbs::TestKbs::start(
        test_kbs::KbsConfig::default()
            .with_resource("default/aliyun/model-decryption-key", PASSWORD.to_vec())
            .with_resource("default/aliyun/oss-credentials", s3.credentials_json())
            .with_policy(test_kbs::Policy::allow_all()),
    )
    .unwrap();
    let ca = m.dir.path().join("ca.pem");
    kbs.write_ca(&ca).unwrap();
    let out_dir = m.dir.path().join("out");
    let mut cmd = Command::new(&bin);
    // No storage credentials in the environment: only the KBS has them.
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(s3.flags())
        .args(["--kbs-url", &kbs.url(), "--kbs-cert"])
        .arg(&ca)
        .args(["--tee", "sample", "--timeout", "30s"])
        .args(["decrypt", "s3://pai-model"])
        .arg(&out_dir)
        .args([
            "--key",
            "kbs:///default/aliyun/model-decryption-key",
            "--s3-credentials",
            "kbs:///default/aliyun/oss-credentials",
        ]);
    let out = run_with_timeout(&mut cmd, Duration::from_secs(300));
    code(&out, 0);
    same_tree(&out_dir, &m.plain);
    assert_eq!(kbs.request_count(test_kbs::Endpoint::Auth), 1);
    assert_eq!(kbs.request_count(test_kbs::Endpoint::Resource), 2);

    // The same job from a config file: `[model]` with an s3:// cipherdir, `[source]` with
    // the endpoint and the KBS-held credentials, run by `ccmount secrets --once`.
    let cfg = m.dir.path().join("ccmount.toml");
    let job_out = m.dir.path().join("job-out");
    std::fs::write(
        &cfg,
        format!(
            "[kbs]\nurl = \"{}\"\ncert = \"{}\"\n\n[source]\nendpoint = \"{}\"\nallow_http = true\ncredentials = \"kbs:///default/aliyun/oss-credentials\"\n\n[model]\ncipherdir = \"s3://pai-model\"\nkey = \"kbs:///default/aliyun/model-decryption-key\"\ndecrypt_to = \"{}\"\n",
            kbs.url(),
            ca.display(),
            s3.endpoint,
            job_out.display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&bin);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("AWS_") {
            cmd.env_remove(k);
        }
    }
    cmd.arg("--config").arg(&cfg).args([
        "--tee",
        "sample",
        "--timeout",
        "30s",
        "secrets",
        "--once",
    ]);
    code(&run_with_timeout(&mut cmd, Duration::from_secs(300)), 0);
    same_tree(&job_out, &m.plain);
}

/// An object replaced after the listing: the read is pinned to the listed ETag, so the
/// file fails (never mixed content), with the changed-object error.
#[test]
fn an_object_replaced_after_listing_is_never_read() {
    skip_unless!(gocryptfs::skip_reason());
    skip_unless!(e2e::s3::skip_reason());
    let s3 = S3Server::start();
    s3.make_bucket("models");
    let m = model(77, |_| {});
    s3.upload(&m.cipher, "models", "c");
    // The library's own view: list and open first, then the host swaps an object.
    // SAFETY of the env: tests in this binary that read AWS_* pass it to children only.
    let creds = s3_source::Credentials::from_json(&s3.credentials_json()).unwrap();
    let opts = s3_source::S3Options {
        endpoint: Some(s3.endpoint.clone()),
        region: Some("us-east-1".into()),
        allow_http: true,
        credentials: Some(creds),
        ..s3_source::S3Options::default()
    };
    let bucket =
        s3_source::Bucket::connect(s3_source::S3Location::parse("s3://models/c").unwrap(), opts)
            .unwrap();
    let key = gocryptfs_format::KeySource::password_from_passfile(PASSWORD).unwrap();
    let tree = s3_source::RemoteTree::open(bucket, key, &e2e::corpus::gocryptfs_opts()).unwrap();
    let (i, f) = tree
        .files
        .iter()
        .enumerate()
        .find(|(_, f)| f.plain.ends_with("big.bin"))
        .unwrap();
    let local = std::fs::read(m.cipher.join(&f.key)).unwrap();
    let mut swapped = local.clone();
    swapped[18 + 4128 * 3] ^= 1;
    let body = m.dir.path().join("swapped");
    std::fs::write(&body, &swapped).unwrap();
    s3.admin("put", &[&"models", &format!("c/{}", f.key), &body]);
    let mut got = Vec::new();
    tree.stream(&[i], |ev| -> Result<(), ()> {
        got.push(ev);
        Ok(())
    })
    .unwrap();
    assert!(
        matches!(
            got.last(),
            Some(s3_source::FileEvent::Failed {
                error: s3_source::S3Error::Changed { .. },
                ..
            })
        ),
        "{got:?}"
    );
    assert!(
        !got.iter()
            .any(|e| matches!(e, s3_source::FileEvent::Data(_)))
    );
}

/// Unmounts (lazily) when dropped, so a failed assertion leaves no mount behind.
struct Mounted<'a> {
    bin: &'a Path,
    path: PathBuf,
}

impl Drop for Mounted<'_> {
    fn drop(&mut self) {
        let _ = run_with_timeout(
            Command::new(self.bin)
                .args(["umount", "--lazy"])
                .arg(&self.path),
            Duration::from_secs(30),
        );
    }
}

fn mount_s3<'a>(
    bin: &'a Path,
    s3: &S3Server,
    url: &str,
    mnt: &Path,
    extra: &[&dyn AsRef<std::ffi::OsStr>],
) -> (Output, Mounted<'a>) {
    std::fs::create_dir_all(mnt).unwrap();
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![
        &"--s3-chunk-size",
        &"256KiB",
        &"mount",
        &url,
        &mnt,
        &"--cache-size",
        &"1MiB",
    ];
    args.extend_from_slice(extra);
    let out = ccm(bin, s3, &args);
    (
        out,
        Mounted {
            bin,
            path: mnt.to_path_buf(),
        },
    )
}

#[test]
fn mount_serves_the_bucket_tree_and_never_a_tampered_or_replaced_block() {
    use std::os::unix::fs::FileExt as _;
    let (bin, s3) = setup!();
    let m = model(79, |_| {});
    s3.upload(&m.cipher, "models", "mnt/v1");
    let url = "s3://models/mnt/v1";
    let mnt = m.dir.path().join("view");
    // 256 KiB segments and a 1 MiB cache: many segments per file, read-ahead and eviction.
    let (out, guard) = mount_s3(&bin, &s3, url, &mnt, &[&"--passfile", &m.pass]);
    code(&out, 0);
    same_tree(&m.plain, &mnt);
    // Random reads across segment boundaries.
    let want = std::fs::read(m.plain.join("big.bin")).unwrap();
    let f = std::fs::File::open(mnt.join("big.bin")).unwrap();
    let half = want.len() / 2;
    for (off, len) in [
        (0usize, 10usize),
        (262_140, 9),
        (half - 1, half - 9),
        (want.len() - 5, 5),
    ] {
        let mut buf = vec![0u8; len];
        f.read_exact_at(&mut buf, off as u64).unwrap();
        assert_eq!(buf, want[off..off + len], "offset {off}");
    }
    // Read-only.
    assert!(std::fs::write(mnt.join("new"), b"x").is_err());
    drop(f);
    drop(guard);

    // The host flips a bit in block 100 of big.bin: that read fails (EIO), the rest of the
    // file and the other files are served.
    s3.upload(&m.cipher, "models", "mnt/t");
    let (big_key, _) = s3
        .keys("models", "mnt/t")
        .into_iter()
        .find(|(k, size)| *size > 1_000_000 && k.starts_with("mnt/t/"))
        .unwrap();
    s3.admin(
        "flip",
        &[&"models", &big_key, &(18 + 100 * 4128 + 40).to_string()],
    );
    let mnt2 = m.dir.path().join("view2");
    let (out, guard) = mount_s3(
        &bin,
        &s3,
        "s3://models/mnt/t",
        &mnt2,
        &[&"--passfile", &m.pass, &"--direct-io"],
    );
    code(&out, 0);
    let f = std::fs::File::open(mnt2.join("big.bin")).unwrap();
    let mut buf = vec![0u8; 4096];
    let err = f.read_exact_at(&mut buf, 100 * 4096).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "{err}");
    f.read_exact_at(&mut buf, 0).unwrap();
    assert_eq!(buf, want[..4096]);
    // The host replaces the object after the mount listed it: never read (If-Match).
    let local = std::fs::read(m.cipher.join(big_key.strip_prefix("mnt/t/").unwrap())).unwrap();
    let body = m.dir.path().join("replaced");
    std::fs::write(&body, &local).unwrap();
    s3.admin("put", &[&"models", &big_key, &body]);
    let err = f.read_exact_at(&mut buf, 900_000).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(5), "{err}");
    drop(f);
    drop(guard);

    // A wrong password fails before anything is mounted: 12.
    let wrong = m.dir.path().join("wrong");
    std::fs::write(&wrong, b"not the password\n").unwrap();
    let mnt3 = m.dir.path().join("view3");
    let (out, _guard) = mount_s3(&bin, &s3, url, &mnt3, &[&"--passfile", &wrong]);
    code(&out, 12);
    assert_eq!(std::fs::read_dir(&mnt3).unwrap().count(), 0);
}

#[test]
fn pinned_mount_of_a_bucket_serves_only_the_accepted_tree() {
    let (bin, s3) = setup!();
    let m = model(83, |_| {});
    s3.upload(&m.cipher, "models", "pin");
    let url = "s3://models/pin";
    let pin = m.dir.path().join("pin.json");
    let out = ccm(
        &bin,
        &s3,
        &[
            &"manifest",
            &m.cipher,
            &"--passfile",
            &m.pass,
            &"--out",
            &pin,
        ],
    );
    code(&out, 0);
    let mnt = m.dir.path().join("view");
    let receipt = m.dir.path().join("receipt.json");
    let (out, guard) = mount_s3(
        &bin,
        &s3,
        url,
        &mnt,
        &[
            &"--passfile",
            &m.pass,
            &"--expect",
            &pin,
            &"--receipt",
            &receipt,
        ],
    );
    code(&out, 0);
    same_tree(&m.plain, &mnt);
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&receipt).unwrap()).unwrap();
    assert_eq!(r["cipherdir"], url, "{r}");
    drop(guard);
    // One more object in the bucket than the pin lists: refused before going live.
    let extra = m.dir.path().join("extra");
    std::fs::create_dir(&extra).unwrap();
    let enc_extra = m.dir.path().join("enc-extra");
    let mm = Mount::new(&m.cipher, &enc_extra, Some(&m.pass), &[]);
    std::fs::write(mm.path().join("added.bin"), b"planted").unwrap();
    mm.unmount();
    s3.upload(&m.cipher, "models", "pin2");
    let mnt2 = m.dir.path().join("view2");
    let (out, _guard) = mount_s3(
        &bin,
        &s3,
        "s3://models/pin2",
        &mnt2,
        &[&"--passfile", &m.pass, &"--expect", &pin],
    );
    code(&out, 26);
}

/// A small valid safetensors file: one F32 tensor of 1000 elements.
fn safetensors_bytes() -> Vec<u8> {
    let json = br#"{"w":{"dtype":"F32","shape":[1000],"data_offsets":[0,4000]}}"#;
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json);
    out.extend((0..4000u32).map(|i| (i % 251) as u8));
    out
}

#[test]
fn load_gpu_reads_model_files_from_the_bucket() {
    let (bin, s3) = setup!();
    let m = model(89, |p| {
        std::fs::write(p.join("model.safetensors"), safetensors_bytes()).unwrap();
    });
    s3.upload(&m.cipher, "models", "gpu");
    let url = "s3://models/gpu";
    // Every *.safetensors by default, on the simulated device, the device copy checked.
    let out = ccm(
        &bin,
        &s3,
        &[
            &"load-gpu",
            &url,
            &"--target",
            &"cpu",
            &"--passfile",
            &m.pass,
            &"--json",
        ],
    );
    code(&out, 0);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["files"][0]["bytes"], safetensors_bytes().len(), "{r}");
    assert!(r.to_string().contains("\"w\""), "{r}");
    // A named file, pinned: accepted, receipt written.
    let pin = m.dir.path().join("pin.json");
    code(
        &ccm(
            &bin,
            &s3,
            &[
                &"manifest",
                &m.cipher,
                &"--passfile",
                &m.pass,
                &"--out",
                &pin,
            ],
        ),
        0,
    );
    let receipt = m.dir.path().join("receipt.json");
    let out = ccm(
        &bin,
        &s3,
        &[
            &"--s3-chunk-size",
            &"256KiB",
            &"load-gpu",
            &url,
            &"big.bin",
            &"--target",
            &"cpu",
            &"--passfile",
            &m.pass,
            &"--expect",
            &pin,
            &"--receipt",
            &receipt,
        ],
    );
    code(&out, 0);
    assert!(receipt.exists());
    // A flipped block: 26 naming the file and block; nothing stays loaded.
    let (big_key, _) = s3
        .keys("models", "gpu")
        .into_iter()
        .find(|(_, size)| *size > 1_000_000)
        .unwrap();
    s3.admin(
        "flip",
        &[&"models", &big_key, &(18 + 50 * 4128 + 7).to_string()],
    );
    let err = code(
        &ccm(
            &bin,
            &s3,
            &[
                &"load-gpu",
                &url,
                &"big.bin",
                &"--target",
                &"cpu",
                &"--passfile",
                &m.pass,
            ],
        ),
        26,
    );
    assert!(err.contains("big.bin") && err.contains("block 50"), "{err}");
}

#[test]
fn an_https_endpoint_with_a_private_ca_is_trusted_only_through_s3_ca_cert() {
    skip_unless!(gocryptfs::skip_reason());
    skip_unless!(e2e::s3::skip_reason());
    let Some(bin) = ccmount_bin() else { return };
    let s3 = S3Server::start_tls();
    s3.make_bucket("models");
    let m = model(81, |_| {});
    s3.upload(&m.cipher, "models", "tls/v1");
    let url = "s3://models/tls/v1";
    // With the CA: verify and decrypt over HTTPS, byte-exact.
    code(
        &ccm(&bin, &s3, &[&"verify", &url, &"--passfile", &m.pass]),
        0,
    );
    let out_dir = m.dir.path().join("out");
    code(
        &ccm(
            &bin,
            &s3,
            &[&"decrypt", &url, &out_dir, &"--passfile", &m.pass],
        ),
        0,
    );
    same_tree(&m.plain, &out_dir);
    // The same through `[source] ca_cert` of --config.
    let cfg = m.dir.path().join("ccmount.toml");
    std::fs::write(
        &cfg,
        format!(
            "[source]\nendpoint = \"{}\"\nca_cert = \"{}\"\n",
            s3.endpoint,
            s3.ca_cert.as_ref().unwrap().display()
        ),
    )
    .unwrap();
    let mut cmd = Command::new(&bin);
    s3.env(&mut cmd);
    cmd.args(["--config"]).arg(&cfg).args(["info", url]);
    code(&run_with_timeout(&mut cmd, Duration::from_secs(120)), 0);
    // Without it the server's certificate is not trusted: the request fails (60), nothing
    // is read; the error names the endpoint.
    let mut cmd = Command::new(&bin);
    s3.env(&mut cmd);
    cmd.args([
        "--s3-endpoint",
        &s3.endpoint,
        "--timeout",
        "5s",
        "info",
        url,
    ]);
    let err = code(&run_with_timeout(&mut cmd, Duration::from_secs(120)), 60);
    let errors: Vec<_> = err
        .lines()
        .filter(|l| l.contains("ccmount: error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains("--s3-ca-cert"), "{err}");
    // A file that holds no certificate: a usage error before any request.
    let junk = m.dir.path().join("junk.pem");
    std::fs::write(&junk, b"not a certificate\n").unwrap();
    let mut cmd = Command::new(&bin);
    s3.env(&mut cmd);
    cmd.args(["--s3-endpoint", &s3.endpoint, "--s3-ca-cert"])
        .arg(&junk)
        .args(["info", url]);
    let err = code(&run_with_timeout(&mut cmd, Duration::from_secs(60)), 2);
    assert!(err.contains("--s3-ca-cert"), "{err}");
}
