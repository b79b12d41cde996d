//! The `ccmount` binary end to end: encrypt / decrypt / verify / info, exit codes, output
//! safety, JSON outputs. Trees are the gocryptfs-made corpus or random trees.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use e2e::corpus;
use e2e::tree::{self, TreeOpts};

fn ccmount(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ccmount"));
    for a in args {
        c.arg(a.as_ref());
    }
    e2e::run_with_timeout(&mut c, Duration::from_secs(120))
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

struct Fixture {
    tmp: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            tmp: tempfile::tempdir().unwrap(),
        }
    }
    fn p(&self, s: &str) -> std::path::PathBuf {
        self.tmp.path().join(s)
    }
    fn pass(&self) -> std::path::PathBuf {
        let p = self.p("pass");
        fs::write(&p, "s3cret\n").unwrap();
        p
    }
    /// A random plaintext tree encrypted by `ccmount encrypt` with extra args.
    fn encrypted(&self, extra: &[&str]) -> (std::path::PathBuf, std::path::PathBuf) {
        let plain = self.p("plain");
        if !plain.exists() {
            fs::create_dir(&plain).unwrap();
            tree::generate(
                &plain,
                3,
                TreeOpts {
                    random_files: 4,
                    ..TreeOpts::default()
                },
            );
        }
        let cipher = self.p("cipher");
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"encrypt", &plain, &cipher];
        let pass = self.pass();
        args.push(&"--passfile");
        args.push(&pass);
        args.push(&"--scryptn");
        args.push(&"10");
        for e in extra {
            args.push(e);
        }
        let o = ccmount(&args);
        assert_eq!(code(&o), 0, "{}", stderr(&o));
        (plain, cipher)
    }
}

#[test]
fn encrypt_then_decrypt_restores_the_tree_with_modes_and_times() {
    let f = Fixture::new();
    let (plain, cipher) = f.encrypted(&[]);
    let out = f.p("out");
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"decrypt",
        &cipher,
        &out,
        &"--passfile",
        &f.pass(),
        &"--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "ccmount.decrypt-summary/v1");
    assert_eq!(v["ok"], true);
    let d = tree::diff(&tree::snapshot(&out), &tree::snapshot(&plain), true, true);
    assert!(d.is_empty(), "{d:#?}");
    let a = fs::metadata(plain.join("edge/size4097")).unwrap();
    let b = fs::metadata(out.join("edge/size4097")).unwrap();
    assert_eq!((a.mtime(), a.mtime_nsec()), (b.mtime(), b.mtime_nsec()));
    let a = fs::metadata(plain.join("deep")).unwrap();
    let b = fs::metadata(out.join("deep")).unwrap();
    assert_eq!(a.mtime(), b.mtime());
    // Sparse sources were encrypted block by block (no holes in our trees): a no-key check
    // finds no all-zero block.
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"verify",
        &cipher,
        &"--no-key",
        &"--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["holes"] == 0)
    );
}

#[test]
fn every_encrypt_option_round_trips() {
    for extra in [
        &["--xchacha"][..],
        &["--plaintextnames"],
        &["--deterministic-names"],
        &["--longnamemax", "62"],
    ] {
        let f = Fixture::new();
        let (plain, cipher) = f.encrypted(extra);
        let o = ccmount(&[&"info", &"--json", &cipher]);
        let info: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(info["scrypt"]["log2_n"], 10);
        let out = f.p("out");
        let o = ccmount(&[
            &"--allow-outside-symlinks",
            &"--allow-plaintextnames",
            &"decrypt",
            &cipher,
            &out,
            &"--passfile",
            &f.pass(),
        ]);
        assert_eq!(code(&o), 0, "{extra:?}: {}", stderr(&o));
        assert!(tree::diff(&tree::snapshot(&out), &tree::snapshot(&plain), true, true).is_empty());
    }
}

#[test]
fn encrypt_refuses_bad_options() {
    let f = Fixture::new();
    fs::create_dir(f.p("plain")).unwrap();
    for extra in [
        &["--plaintextnames", "--deterministic-names"][..],
        &["--longnamemax", "10"],
        &["--scryptn", "5"],
    ] {
        let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> =
            vec![&"encrypt", &"x", &"y", &"--passfile", &"p"];
        let plain = f.p("plain");
        let cipher = f.p("c");
        let pass = f.pass();
        args[1] = &plain;
        args[2] = &cipher;
        args[4] = &pass;
        for e in extra {
            args.push(e);
        }
        let o = ccmount(&args);
        assert_eq!(code(&o), 2, "{extra:?}: {}", stderr(&o));
    }
    // A non-empty CIPHERDIR is refused (exit 5).
    fs::create_dir(f.p("full")).unwrap();
    fs::write(f.p("full/x"), "x").unwrap();
    let o = ccmount(&[
        &"encrypt",
        &f.p("plain"),
        &f.p("full"),
        &"--passfile",
        &f.pass(),
    ]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
}

#[test]
fn decrypt_refuses_a_non_empty_outdir_without_force() {
    let f = Fixture::new();
    let (_, cipher) = f.encrypted(&[]);
    let out = f.p("out");
    fs::create_dir(&out).unwrap();
    fs::write(out.join("big.bin"), "old").unwrap();
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"decrypt",
        &cipher,
        &out,
        &"--passfile",
        &f.pass(),
    ]);
    assert_eq!(code(&o), 5, "{}", stderr(&o));
    assert!(stderr(&o).contains("--force"));
    assert_eq!(fs::read(out.join("big.bin")).unwrap(), b"old");
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"decrypt",
        &cipher,
        &out,
        &"--passfile",
        &f.pass(),
        &"--force",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_ne!(fs::read(out.join("big.bin")).unwrap(), b"old");
}

#[test]
fn decrypt_never_writes_through_a_symlink() {
    let f = Fixture::new();
    let (_, cipher) = f.encrypted(&[]);
    let out = f.p("out");
    let elsewhere = f.p("elsewhere");
    fs::create_dir(&out).unwrap();
    fs::create_dir(&elsewhere).unwrap();
    // A symlink where a directory of the tree goes, and a symlink as OUTDIR itself.
    std::os::unix::fs::symlink(&elsewhere, out.join("edge")).unwrap();
    let o = ccmount(&[
        &"decrypt",
        &cipher,
        &out,
        &"--passfile",
        &f.pass(),
        &"--force",
    ]);
    assert_ne!(code(&o), 0);
    assert!(stderr(&o).contains("symlink"), "{}", stderr(&o));
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
    let link = f.p("outlink");
    std::os::unix::fs::symlink(&elsewhere, &link).unwrap();
    let o = ccmount(&[&"decrypt", &cipher, &link, &"--passfile", &f.pass()]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    assert_eq!(fs::read_dir(&elsewhere).unwrap().count(), 0);
}

#[test]
fn wrong_password_and_wrong_master_key_exit_12() {
    let tmp = tempfile::tempdir().unwrap();
    let root = corpus::materialize("default", tmp.path());
    fs::write(tmp.path().join("bad"), "nope\n").unwrap();
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"--allow-holes",
        &"verify",
        &root,
        &"--passfile",
        &tmp.path().join("bad"),
    ]);
    assert_eq!(code(&o), 12, "{}", stderr(&o));
    assert!(!stderr(&o).contains("nope"));
    fs::write(
        tmp.path().join("mk"),
        "00000000-11111111-22222222-33333333-\n44444444-55555555-66666666-77777777\n",
    )
    .unwrap();
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"--allow-holes",
        &"verify",
        &root,
        &"--masterkey-file",
        &tmp.path().join("mk"),
    ]);
    assert_eq!(code(&o), 12, "{}", stderr(&o));
    // The right master key in the printed form works.
    let hex = &corpus::manifest().variants["default"].masterkey_hex;
    let printed: Vec<&str> = (0..8).map(|i| &hex[i * 8..i * 8 + 8]).collect();
    fs::write(
        tmp.path().join("mk"),
        format!("{}-\n{}\n", printed[..4].join("-"), printed[4..].join("-")),
    )
    .unwrap();
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"--allow-holes",
        &"verify",
        &root,
        &"--masterkey-file",
        &tmp.path().join("mk"),
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
}

/// Checks a report against the published schema's required fields and enums (a light
/// check; a later issue validates with a full JSON Schema validator).
fn check_against_schema(v: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_slice(
        &fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/schemas/verify-report.schema.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let req = |s: &serde_json::Value, o: &serde_json::Value| {
        for k in s["required"].as_array().unwrap() {
            assert!(o.get(k.as_str().unwrap()).is_some(), "missing {k}");
        }
        for k in o.as_object().unwrap().keys() {
            assert!(s["properties"].get(k).is_some(), "undocumented field {k}");
        }
    };
    req(&schema, v);
    let props = &schema["properties"];
    req(&props["stats"], &v["stats"]);
    for f in v["files"].as_array().unwrap() {
        req(&props["files"]["items"], f);
    }
    let kinds = props["findings"]["items"]["properties"]["kind"]["enum"]
        .as_array()
        .unwrap();
    for f in v["findings"].as_array().unwrap() {
        req(&props["findings"]["items"], f);
        assert!(
            kinds.contains(&f["kind"]),
            "undocumented kind {}",
            f["kind"]
        );
    }
}

#[test]
fn verify_reports_corruption_as_json_and_exits_26() {
    let tmp = tempfile::tempdir().unwrap();
    let root = corpus::materialize("default", tmp.path());
    let m = corpus::manifest();
    let e = m.variants["default"]
        .entries
        .iter()
        .find(|e| e.plain.as_deref() == Some("size1M"))
        .unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(root.join(&e.cipher))
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 18 + 7 * 4128 + 50).unwrap();
    f.write_all_at(&[b[0] ^ 4], 18 + 7 * 4128 + 50).unwrap();
    let o = ccmount(&[
        &"verify",
        &root,
        &"--passfile",
        &corpus::password_file(),
        &"--json",
    ]);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    check_against_schema(&v);
    assert_eq!(v["schema"], "ccmount.verify-report/v1");
    assert_eq!(v["ok"], false);
    let finding = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["severity"] == "error")
        .unwrap();
    assert_eq!(finding["kind"], "authentication");
    assert_eq!(finding["path"], "size1M");
    assert_eq!(finding["block"], 7);
    let files = v["files"].as_array().unwrap();
    let clean = files.iter().find(|f| f["path"] == "size4096").unwrap();
    assert_eq!(
        clean["sha256"],
        "5064cb39e159487b94dac4b9a3505c1826496e42e55a8312db00fd394b21c3dc"
    );
    assert!(files.iter().find(|f| f["path"] == "size1M").unwrap()["sha256"].is_null());
    // Human output names the file and the block.
    let o = ccmount(&[&"verify", &root, &"--passfile", &corpus::password_file()]);
    assert_eq!(code(&o), 26);
    assert!(String::from_utf8_lossy(&o.stdout).contains("size1M: block 7"));
}

#[test]
fn verify_manifest_and_no_key() {
    let tmp = tempfile::tempdir().unwrap();
    let root = corpus::materialize("default", tmp.path());
    let man = tmp.path().join("manifest.json");
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"--allow-holes",
        &"verify",
        &root,
        &"--passfile",
        &corpus::password_file(),
        &"--manifest",
        &man,
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&fs::read(&man).unwrap()).unwrap();
    assert_eq!(v["schema"], "ccmount.manifest/v2");
    let m = corpus::manifest();
    let files: Vec<&serde_json::Value> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "file")
        .collect();
    assert_eq!(
        files.len(),
        m.variants["default"]
            .entries
            .iter()
            .filter(|e| e.kind == "file")
            .count()
    );
    // The non-UTF-8 name survives as base64.
    assert!(
        files
            .iter()
            .any(|f| f["path_b64"] == "bm9udXRmOC3//i5iaW4=")
    );
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"--allow-holes",
        &"verify",
        &root,
        &"--no-key",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"--allow-holes",
        &"verify",
        &root,
        &"--no-key",
        &"--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    check_against_schema(&v);
    assert_eq!(v["mode"], "no-key");
    let o = ccmount(&[
        &"--allow-outside-symlinks",
        &"--allow-holes",
        &"verify",
        &root,
        &"--no-key",
        &"--manifest",
        &man,
    ]);
    assert_eq!(code(&o), 2);
}

#[test]
fn info_and_bad_cipherdirs() {
    let tmp = tempfile::tempdir().unwrap();
    let o = ccmount(&[&"info", &corpus::dir().join("default")]);
    assert_eq!(code(&o), 0);
    assert!(String::from_utf8_lossy(&o.stdout).contains("AES-GCM-256"));
    let o = ccmount(&[&"info", &corpus::dir().join("zerokey")]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    let root = corpus::materialize("default", tmp.path());
    let conf = root.join("gocryptfs.conf");
    let text = fs::read_to_string(&conf)
        .unwrap()
        .replace("\"Raw64\"", "\"Raw64\",\"FIDO2\"");
    fs::remove_file(&conf).unwrap();
    fs::write(&conf, text).unwrap();
    let o = ccmount(&[&"verify", &root, &"--passfile", &corpus::password_file()]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
    assert!(stderr(&o).contains("no token in a TEE"));
    let o = ccmount(&[&"verify", &root, &"--no-key"]);
    assert_eq!(code(&o), 4, "{}", stderr(&o));
}

#[test]
fn unavailable_options_are_refused_clearly() {
    let c = corpus::dir().join("default");
    // `--key kbs:///` with no KBS configured anywhere: a usage error naming the fix.
    let o = ccmount(&[&"verify", &c, &"--key", &"kbs:///default/llm/key"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--kbs-url"), "{}", stderr(&o));
    let o = ccmount(&[&"verify", &c, &"--no-key", &"--expect", &"sha256:00"]);
    assert_eq!(code(&o), 2);
    assert!(stderr(&o).contains("--expect"));
    let o = ccmount(&[&"verify", &c, &"--no-key", &"--receipt", &"r.json"]);
    assert_eq!(code(&o), 2);
}

/// A tiny valid safetensors file: an F32 [2, 3] tensor and a U8 [5] tensor.
fn tiny_safetensors() -> Vec<u8> {
    let mut json = String::from(
        r#"{"b":{"dtype":"U8","shape":[5],"data_offsets":[24,29]},"a":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}}"#,
    );
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut v = (json.len() as u64).to_le_bytes().to_vec();
    v.extend_from_slice(json.as_bytes());
    v.extend((0u8..29).map(|i| i.wrapping_mul(37)));
    v
}

/// A cipher tree holding `model.safetensors` (tiny), `big.safetensors` (several chunks of
/// random data behind a one-tensor header) and `notes.txt`.
fn gpu_tree(f: &Fixture) -> (std::path::PathBuf, std::path::PathBuf) {
    let plain = f.p("plain");
    fs::create_dir_all(plain.join("sub")).unwrap();
    fs::write(plain.join("model.safetensors"), tiny_safetensors()).unwrap();
    let n: usize = 3 * 1024 * 1024 + 4096 * 3 + 10;
    let mut json = format!(r#"{{"w":{{"dtype":"U8","shape":[{n}],"data_offsets":[0,{n}]}}}}"#);
    while json.len() % 8 != 0 {
        json.push(' ');
    }
    let mut big = (json.len() as u64).to_le_bytes().to_vec();
    big.extend_from_slice(json.as_bytes());
    let mut data = vec![0u8; n];
    tree::Rng::new(77).fill(&mut data);
    big.extend_from_slice(&data);
    fs::write(plain.join("sub/big.safetensors"), big).unwrap();
    fs::write(plain.join("notes.txt"), "not a model\n").unwrap();
    let cipher = f.p("cipher");
    let pass = f.pass();
    let o = ccmount(&[
        &"encrypt",
        &plain,
        &cipher,
        &"--passfile",
        &pass,
        &"--scryptn",
        &"10",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    (plain, cipher)
}

#[test]
fn load_gpu_on_the_cpu_target_loads_every_safetensors_and_reports_tensors() {
    let f = Fixture::new();
    let (_plain, cipher) = gpu_tree(&f);
    let pass = f.pass();
    let o = ccmount(&[
        &"load-gpu",
        &cipher,
        &"--passfile",
        &pass,
        &"--target",
        &"cpu",
        &"--chunk-mib",
        &"1",
        &"--json",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["schema"], "ccmount.load-gpu/v1");
    assert_eq!(v["ok"], true);
    assert_eq!(v["target"]["kind"], "cpu");
    let files = v["files"].as_array().unwrap();
    let mut paths: Vec<&str> = files.iter().map(|f| f["path"].as_str().unwrap()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["model.safetensors", "sub/big.safetensors"]);
    for file in files {
        assert_eq!(file["verified"], true, "{file}");
    }
    let tiny = files
        .iter()
        .find(|f| f["path"] == "model.safetensors")
        .unwrap();
    let t = tiny["tensors"].as_array().unwrap();
    // Sorted by offset; offsets are in the device buffer (header included).
    assert_eq!(t[0]["name"], "a");
    assert_eq!(t[0]["dtype"], "F32");
    assert_eq!(t[0]["shape"], serde_json::json!([2, 3]));
    let hdr = tiny_safetensors().len() as u64 - 29;
    assert_eq!(t[0]["offset"], hdr);
    assert_eq!(t[0]["bytes"], 24);
    assert_eq!(t[1]["name"], "b");
    assert_eq!(t[1]["offset"], hdr + 24);
    assert_eq!(v["tensors"], 3);

    // Named files, human output, --no-verify.
    let o = ccmount(&[
        &"load-gpu",
        &cipher,
        &"notes.txt",
        &"--passfile",
        &pass,
        &"--target",
        &"cpu",
        &"--no-verify",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("loaded 1 file (12 bytes"), "{out}");
    assert!(out.contains("not verified"), "{out}");
    // One line per file on stdout, also when it is a pipe (as here), then the summary.
    assert!(out.starts_with("notes.txt: 12 bytes in "), "{out}");
    assert_eq!(out.lines().count(), 2, "{out}");
}

#[test]
fn load_gpu_refuses_a_tampered_block_with_exit_26_naming_file_and_block() {
    let f = Fixture::new();
    let (_plain, cipher) = gpu_tree(&f);
    let pass = f.pass();
    // Find the big file's cipher file: the largest regular file of the tree.
    let mut biggest = (0u64, std::path::PathBuf::new());
    let mut stack = vec![cipher.clone()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            } else if m.len() > biggest.0 {
                biggest = (m.len(), e.path());
            }
        }
    }
    // Flip a byte of block 300 (gocryptfs AES-GCM: 18-byte header, 4128-byte blocks).
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&biggest.1)
        .unwrap();
    let at = 18 + 300 * 4128 + 77;
    let mut b = [0u8; 1];
    file.read_exact_at(&mut b, at).unwrap();
    file.write_all_at(&[b[0] ^ 1], at).unwrap();
    drop(file);
    let o = ccmount(&[
        &"load-gpu",
        &cipher,
        &"--passfile",
        &pass,
        &"--target",
        &"cpu",
        &"--chunk-mib",
        &"1",
        &"--json",
    ]);
    assert_eq!(code(&o), 26, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("sub/big.safetensors") && err.contains("block 300"),
        "{err}"
    );
    assert!(!err.contains("s3cret"));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ok"], false);
    assert!(v["error"].as_str().unwrap().contains("block 300"), "{v}");
}

#[test]
fn load_gpu_without_a_cuda_driver_exits_50_before_asking_for_the_key() {
    let f = Fixture::new();
    let (_plain, cipher) = gpu_tree(&f);
    // The passfile does not exist: the GPU check comes first, so the error is about the GPU.
    let o = ccmount(&[&"load-gpu", &cipher, &"--passfile", &f.p("missing-pass")]);
    if code(&o) != 50 && Path::new("/dev/nvidiactl").exists() {
        eprintln!(
            "SKIP load_gpu_without_a_cuda_driver: this machine has a GPU (exit {})",
            code(&o)
        );
        return;
    }
    assert_eq!(code(&o), 50, "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("no CUDA driver")
            || err.contains("not usable")
            || err.contains("without GPU support"),
        "{err}"
    );
    assert!(
        err.contains("--target cpu") || err.contains("nvidia-smi"),
        "{err}"
    );
    assert_eq!(err.trim_end().lines().count(), 1, "one-line message: {err}");
}

/// The `ccmount: error:` line of a run.
/// An argument list, printable.
fn shown(args: &[&dyn AsRef<std::ffi::OsStr>]) -> String {
    args.iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

fn error_line(o: &Output) -> String {
    stderr(o)
        .lines()
        .find_map(|l| l.strip_prefix("ccmount: error: "))
        .unwrap_or_default()
        .to_owned()
}

#[test]
fn errors_say_their_cause_once_on_every_path() {
    let f = Fixture::new();
    let pass = f.pass();
    let empty = f.p("empty-pass");
    fs::write(&empty, "\n").unwrap();
    let badkey = f.p("bad.key");
    fs::write(&badkey, "zz").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let root = corpus::materialize("default", tmp.path());
    let broken = f.p("broken");
    fs::create_dir(&broken).unwrap();
    fs::write(broken.join("gocryptfs.conf"), "{not json").unwrap();
    let missing = f.p("missing");
    let (o1, m, here) = (f.p("o1"), f.p("m"), f.p(""));
    let cases: Vec<Vec<&dyn AsRef<std::ffi::OsStr>>> = vec![
        vec![&"verify", &missing, &"--passfile", &pass],
        vec![&"info", &missing],
        vec![&"decrypt", &missing, &o1, &"--passfile", &pass],
        vec![&"manifest", &missing, &"--passfile", &pass, &"--out", &m],
        vec![&"verify", &root, &"--passfile", &pass],
        vec![&"verify", &root, &"--passfile", &empty],
        vec![&"verify", &root, &"--masterkey-file", &badkey],
        vec![&"verify", &broken, &"--passfile", &pass],
        vec![&"info", &broken],
        vec![&"umount", &here],
        vec![&"mount", &root, &missing, &"--passfile", &pass, &"-f"],
        vec![&"get-resource", &"kbs:///a/../b"],
    ];
    for args in cases {
        let o = ccmount(&args);
        assert_ne!(code(&o), 0);
        let line = error_line(&o);
        assert!(!line.is_empty(), "{}: {}", shown(&args), stderr(&o));
        let parts: Vec<&str> = line.split(": ").collect();
        for (i, p) in parts.iter().enumerate() {
            assert!(
                !parts[i + 1..]
                    .iter()
                    .any(|q| q == p || (p.len() > 12 && q.contains(p))),
                "{}: a cause said twice: {line}",
                shown(&args)
            );
        }
        assert_ne!(code(&o), 1, "{} exits 1 (a bug): {line}", shown(&args));
    }
}

#[test]
fn exit_codes_are_the_documented_ones() {
    let f = Fixture::new();
    let pass = f.pass();
    let missing = f.p("missing");
    // A missing cipher directory is one code everywhere.
    for args in [
        vec![
            &"verify" as &dyn AsRef<std::ffi::OsStr>,
            &missing,
            &"--passfile",
            &pass,
        ],
        vec![&"info", &missing],
        vec![&"verify", &missing, &"--no-key"],
        vec![&"decrypt", &missing, &f.p("o"), &"--passfile", &pass],
        vec![
            &"manifest",
            &missing,
            &"--passfile",
            &pass,
            &"--out",
            &f.p("m"),
        ],
        vec![
            &"load-gpu",
            &missing,
            &"--target",
            &"cpu",
            &"--passfile",
            &pass,
        ],
    ] {
        let o = ccmount(&args);
        assert_eq!(code(&o), 4, "{}: {}", shown(&args), stderr(&o));
    }
    // Bad key inputs are usage errors, not bugs.
    let tmp = tempfile::tempdir().unwrap();
    let root = corpus::materialize("default", tmp.path());
    let empty = f.p("empty");
    fs::write(&empty, "\n").unwrap();
    let o = ccmount(&[&"verify", &root, &"--passfile", &empty]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    let bad = f.p("mk");
    fs::write(&bad, "not hex").unwrap();
    let o = ccmount(&[&"verify", &root, &"--masterkey-file", &bad]);
    assert_eq!(code(&o), 2, "{}", stderr(&o));
    // The documented table lists every code the binary knows.
    let doc = fs::read_to_string(e2e::tests_dir().join("../docs/cli.md")).unwrap();
    for code in [
        0, 1, 2, 3, 4, 5, 12, 26, 30, 31, 32, 33, 34, 35, 36, 37, 40, 41, 42, 50, 51, 130, 143,
    ] {
        assert!(
            doc.contains(&format!("\n| {code} |")),
            "docs/cli.md lacks exit code {code}"
        );
    }
}

#[test]
fn json_is_printed_on_failure_too() {
    let f = Fixture::new();
    let pass = f.pass();
    let missing = f.p("missing");
    for args in [
        vec![
            &"verify" as &dyn AsRef<std::ffi::OsStr>,
            &missing,
            &"--passfile",
            &pass,
            &"--json",
        ],
        vec![&"info", &missing, &"--json"],
        vec![
            &"decrypt",
            &missing,
            &f.p("o"),
            &"--passfile",
            &pass,
            &"--json",
        ],
        vec![
            &"load-gpu",
            &missing,
            &"--target",
            &"cpu",
            &"--passfile",
            &pass,
            &"--json",
        ],
    ] {
        let o = ccmount(&args);
        assert_eq!(code(&o), 4, "{}: {}", shown(&args), stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout)
            .unwrap_or_else(|e| panic!("{}: stdout is not one JSON document ({e})", shown(&args)));
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["exit_code"], 4, "{v}");
        assert!(v["error"].as_str().unwrap().contains("missing"), "{v}");
    }
}

#[test]
fn typos_are_reported_by_clap_not_taken_for_mounts() {
    for args in [["verfy", "x"], ["unmount", "m"], ["completion", "bash"]] {
        let o = ccmount(&[&args[0], &args[1]]);
        assert_eq!(code(&o), 2, "{args:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("unrecognized subcommand"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
}

#[test]
fn completions_and_man_page() {
    for (shell, marker) in [
        ("bash", "complete"),
        ("zsh", "#compdef"),
        ("fish", "complete -c ccmount"),
        ("elvish", "edit:completion"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        // Not through `ccmount()`: a script larger than a pipe buffer needs reading while
        // the child runs.
        let o = Command::new(env!("CARGO_BIN_EXE_ccmount"))
            .args(["completions", shell])
            .output()
            .unwrap();
        assert_eq!(code(&o), 0, "{shell}: {}", stderr(&o));
        assert!(
            String::from_utf8_lossy(&o.stdout).contains(marker),
            "{shell}"
        );
    }
    let o = Command::new(env!("CARGO_BIN_EXE_ccmount"))
        .arg("man")
        .output()
        .unwrap();
    assert_eq!(code(&o), 0);
    let page = String::from_utf8_lossy(&o.stdout);
    assert!(page.contains(".TH ccmount"), "{page}");
    assert!(page.contains("verify"), "{page}");
}

#[test]
fn decrypt_stopped_by_sigterm_leaves_no_temporary_files() {
    let f = Fixture::new();
    let plain = f.p("plain");
    fs::create_dir(&plain).unwrap();
    let mut big = vec![0u8; 384 << 20];
    tree::Rng::new(7).fill(&mut big);
    for i in 0..4 {
        fs::write(
            plain.join(format!("shard{i}.bin")),
            &big[i * (96 << 20)..(i + 1) * (96 << 20)],
        )
        .unwrap();
    }
    drop(big);
    let cipher = f.p("cipher");
    let pass = f.pass();
    let o = ccmount(&[
        &"-q",
        &"encrypt",
        &plain,
        &cipher,
        &"--passfile",
        &pass,
        &"--scryptn",
        &"10",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    let out = f.p("out");
    let temps = |dir: &Path| {
        fs::read_dir(dir)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with(".ccmount-"))
                    .count()
            })
            .unwrap_or(0)
    };
    for (sig, want) in [("-TERM", 143), ("-INT", 130)] {
        let _ = fs::remove_dir_all(&out);
        let mut child = Command::new(env!("CARGO_BIN_EXE_ccmount"))
            .args(["-q", "decrypt"])
            .arg(&cipher)
            .arg(&out)
            .arg("--passfile")
            .arg(&pass)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Once the first temporary file exists, the work is under way.
        let t = std::time::Instant::now();
        while temps(&out) == 0 && t.elapsed() < Duration::from_secs(20) {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status();
        let o = child.wait_with_output().unwrap();
        let c = code(&o);
        if c == 0 {
            eprintln!("decrypt finished before the signal: nothing to clean up this time");
        } else {
            assert_eq!(c, want, "{}", stderr(&o));
            assert!(stderr(&o).contains("interrupted"), "{}", stderr(&o));
        }
        assert_eq!(temps(&out), 0, "temporary files left after {sig}");
    }
    // A planted leftover (as an older killed run would leave) is swept by --force.
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join(".ccmount-0123456789abcdef.tmp"), b"partial").unwrap();
    let o = ccmount(&[
        &"-q",
        &"decrypt",
        &cipher,
        &out,
        &"--passfile",
        &pass,
        &"--force",
    ]);
    assert_eq!(code(&o), 0, "{}", stderr(&o));
    assert_eq!(temps(&out), 0);
    assert_eq!(fs::read_dir(&out).unwrap().count(), 4);
}
