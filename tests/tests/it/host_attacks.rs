//! The hostile-host suite: the storage host holds the cipher tree but not the key, and edits
//! it as such a host would. One named test per finding of the review (`host_NN_*`, issue
//! numbering in `docs/threat-model.md`, "Hostile host") and per hole case (`holes_*`).
//! Trees are made fresh by the real gocryptfs binary; every command runs the real `ccmount`
//! binary with a deadline, so a hang fails the test instead of stalling CI.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use e2e::gocryptfs::{self, Mount};
use e2e::skip_unless;
use gocryptfs_format::{CipherDir, KeySource};

const PASSWORD: &str = "host-attack password";
/// Cipher block size of AES-GCM trees (4096 + 16 + 16).
const CBS: u64 = 4128;
/// Every command gets this long: a hang fails the test.
const DEADLINE: Duration = Duration::from_secs(60);

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn random(len: usize, seed: u64) -> Vec<u8> {
    let mut v = vec![0u8; len];
    e2e::tree::Rng::new(seed).fill(&mut v);
    v
}

/// A model-like tree made by the real gocryptfs, and the ccmount binary to attack it with.
struct Host {
    tmp: tempfile::TempDir,
    bin: PathBuf,
    pass: PathBuf,
    cipher: PathBuf,
}

impl Host {
    /// `gocryptfs -init ARGS`, then `files` written through a gocryptfs mount. `None` (with
    /// a printed reason) where gocryptfs, FUSE or the binary are missing.
    fn new(args: &[&str], files: &[(&str, Vec<u8>)]) -> Option<Host> {
        if let Some(r) = gocryptfs::skip_reason() {
            eprintln!("SKIP host_attacks: {r}");
            return None;
        }
        let bin = e2e::ccmount_bin()?;
        let tmp = tempfile::tempdir().unwrap();
        let pass = tmp.path().join("pass");
        fs::write(&pass, format!("{PASSWORD}\n")).unwrap();
        let cipher = tmp.path().join("cipher");
        gocryptfs::init(&cipher, &pass, args);
        let mnt = tmp.path().join("gmnt");
        fs::create_dir(&mnt).unwrap();
        let m = Mount::new(&cipher, &mnt, Some(&pass), &[]);
        for (name, data) in files {
            let p = m.path().join(name);
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            fs::write(p, data).unwrap();
        }
        m.unmount();
        Some(Host {
            tmp,
            bin,
            pass,
            cipher,
        })
    }

    /// The standard model: two safetensors-like shards, a config and a tokenizer.
    fn model() -> Option<Host> {
        Host::new(
            &[],
            &[
                ("config.json", br#"{"model_type": "llama"}"#.to_vec()),
                ("tokenizer.json", random(9000, 1)),
                ("model-00001.bin", random(300_000, 2)),
                ("sub/model-00002.bin", random(70_000, 3)),
            ],
        )
    }

    fn p(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    fn cc(&self, args: &[&dyn AsRef<OsStr>]) -> Output {
        let mut c = Command::new(&self.bin);
        for a in args {
            c.arg(a.as_ref());
        }
        let t = Instant::now();
        let o = e2e::run_with_timeout(&mut c, DEADLINE);
        assert!(
            t.elapsed() < DEADLINE,
            "ccmount {:?} did not finish within {DEADLINE:?} (a hang)",
            args.iter()
                .map(|a| a.as_ref().to_owned())
                .collect::<Vec<_>>()
        );
        o
    }

    /// The library's view, with every opt-in (to find cipher paths the way a host finds
    /// them by size, but quicker).
    fn dir(&self) -> CipherDir {
        CipherDir::open(
            &self.cipher,
            KeySource::password_from_passfile(PASSWORD.as_bytes()).unwrap(),
            &e2e::corpus::gocryptfs_opts(),
        )
        .unwrap()
    }

    fn cipher_of(&self, plain: &str) -> PathBuf {
        let e = self.dir().resolve(Path::new(plain)).unwrap();
        self.cipher.join(e.cipher_path)
    }

    fn conf(&self) -> serde_json::Value {
        serde_json::from_slice(&fs::read(self.cipher.join("gocryptfs.conf")).unwrap()).unwrap()
    }

    fn write_conf(&self, v: &serde_json::Value) {
        let p = self.cipher.join("gocryptfs.conf");
        let _ = fs::set_permissions(&p, fs::Permissions::from_mode(0o600));
        fs::write(p, serde_json::to_vec_pretty(v).unwrap()).unwrap();
    }

    /// Zeroes whole cipher block `block` of `plain` (what a host can do without the key).
    fn zero_block(&self, plain: &str, block: u64) {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(self.cipher_of(plain))
            .unwrap();
        f.write_all_at(&vec![0u8; CBS as usize], 18 + block * CBS)
            .unwrap();
    }
}

/// A `ccmount mount -f` served for the test; unmounted (lazily) and reaped on drop.
struct Served {
    child: Child,
    mnt: PathBuf,
    bin: PathBuf,
    stderr: PathBuf,
}

impl Served {
    fn start(h: &Host, mnt: &Path, extra: &[&str]) -> Result<Served, String> {
        fs::create_dir_all(mnt).unwrap();
        let stderr = h.p(&format!(
            "mount-{}.log",
            mnt.file_name().unwrap().to_string_lossy()
        ));
        let mut c = Command::new(&h.bin);
        c.arg("mount")
            .arg("-f")
            .arg(&h.cipher)
            .arg(mnt)
            .arg("--passfile")
            .arg(&h.pass)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(&stderr).unwrap());
        #[allow(clippy::zombie_processes, reason = "every path kills or waits for it")]
        let mut child = c.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if mounted(mnt) {
                return Ok(Served {
                    child,
                    mnt: mnt.to_path_buf(),
                    bin: h.bin.clone(),
                    stderr,
                });
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(format!(
                    "{status}: {}",
                    fs::read_to_string(&stderr).unwrap_or_default()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        Err("the mount did not go live within 30 s".into())
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = e2e::run_with_timeout(
            Command::new(&self.bin)
                .args(["umount", "--lazy"])
                .arg(&self.mnt),
            Duration::from_secs(20),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mounted(path: &Path) -> bool {
    let want = path.as_os_str().as_bytes();
    fs::read("/proc/self/mountinfo").is_ok_and(|info| {
        info.split(|&b| b == b'\n')
            .any(|l| l.split(|&b| b == b' ').nth(4) == Some(want))
    })
}

/// The mountinfo line of `path`.
fn mountinfo_line(path: &Path) -> String {
    let want = path.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .find(|l| l.split(' ').nth(4) == Some(want.as_str()))
        .unwrap_or_default()
        .to_owned()
}

/// Reads a file with a deadline on another thread: `None` if it hangs.
fn read_bounded(p: &Path) -> Option<std::io::Result<Vec<u8>>> {
    let p = p.to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(fs::read(p));
    });
    rx.recv_timeout(Duration::from_secs(20)).ok()
}

// ------------------------------------------------------------------------------------------

/// Finding 1: the host rewrites the feature flags to PlaintextNames, drops the IVs, names
/// the cipher files itself and plants symlinks into the guest.
#[test]
fn host_01_layout_downgrade_to_plaintext_names_is_refused() {
    let Some(h) = Host::model() else { return };
    // The host's edit: flags of a plaintext-names tree, no diriv, chosen names, links out
    // (the host finds the files by their sizes; the test asks the library).
    let weights = h.cipher_of("model-00001.bin");
    let config = h.cipher_of("config.json");
    let tokenizer = h.cipher_of("tokenizer.json");
    let mut conf = h.conf();
    conf["FeatureFlags"] = serde_json::json!(["GCMIV128", "HKDF", "PlaintextNames"]);
    h.write_conf(&conf);
    fs::rename(&weights, h.cipher.join("model-00001.bin")).unwrap();
    fs::remove_file(&config).unwrap();
    fs::remove_file(&tokenizer).unwrap();
    std::os::unix::fs::symlink("/etc/shadow", h.cipher.join("config.json")).unwrap();
    std::os::unix::fs::symlink(
        "../../../run/secrets/kubernetes.io/token",
        h.cipher.join("tokenizer.json"),
    )
    .unwrap();
    for d in walkdir(&h.cipher) {
        if d.file_name() == Some(OsStr::new("gocryptfs.diriv")) {
            fs::remove_file(d).unwrap();
        }
    }
    let pass = &h.pass;
    // Every keyed path refuses the layout (exit 4), before reading anything.
    for args in [
        vec![
            &"verify" as &dyn AsRef<OsStr>,
            &h.cipher,
            &"--passfile",
            pass,
        ],
        vec![&"decrypt", &h.cipher, &h.p("out"), &"--passfile", pass],
        vec![
            &"manifest",
            &h.cipher,
            &"--passfile",
            pass,
            &"--out",
            &h.p("m.json"),
        ],
        vec![
            &"load-gpu",
            &h.cipher,
            &"model-00001.bin",
            &"--target",
            &"cpu",
            &"--passfile",
            pass,
        ],
    ] {
        let o = h.cc(&args);
        assert_eq!(code(&o), 4, "{}", text(&o));
        assert!(text(&o).contains("PlaintextNames"), "{}", text(&o));
        assert!(text(&o).contains("--allow-plaintextnames"), "{}", text(&o));
    }
    assert!(!h.p("out").join("config.json").exists());
    let o = h.cc(&[&"verify", &h.cipher, &"--no-key"]);
    assert_ne!(code(&o), 0, "{}", text(&o));
    assert!(text(&o).contains("PlaintextNames"), "{}", text(&o));
    // The mount refuses too.
    match Served::start(&h, &h.p("mnt"), &[]) {
        Ok(_) => panic!("a downgraded layout was mounted"),
        Err(e) => assert!(e.contains("PlaintextNames"), "{e}"),
    }
    // Opted in to plaintext names, the planted links still never leave the tree.
    let o = h.cc(&[
        &"--allow-plaintextnames",
        &"decrypt",
        &h.cipher,
        &h.p("out2"),
        &"--passfile",
        pass,
    ]);
    assert_eq!(code(&o), 26, "{}", text(&o));
    assert!(text(&o).contains("config.json"), "{}", text(&o));
    assert!(fs::symlink_metadata(h.p("out2/config.json")).is_err());
    assert!(fs::symlink_metadata(h.p("out2/tokenizer.json")).is_err());
    let served = Served::start(&h, &h.p("mnt2"), &["--allow-plaintextnames"]).unwrap();
    let names: Vec<_> = fs::read_dir(&served.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "config.json" || n == "tokenizer.json"),
        "{names:?}"
    );
    assert!(fs::read(served.mnt.join("config.json")).is_err());
    drop(served);
}

fn walkdir(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if fs::symlink_metadata(&p).unwrap().is_dir() {
                stack.push(p.clone());
            }
            out.push(p);
        }
    }
    out
}

/// Finding 2: N=2^28, R=32 would be a 1 TiB allocation (an abort) or hours of work.
#[test]
fn host_02_scrypt_cost_bomb_is_refused_before_allocating() {
    let Some(h) = Host::model() else { return };
    let mut conf = h.conf();
    conf["ScryptObject"]["N"] = serde_json::json!(1u64 << 28);
    conf["ScryptObject"]["R"] = serde_json::json!(32);
    h.write_conf(&conf);
    for args in [
        vec![
            &"verify" as &dyn AsRef<OsStr>,
            &h.cipher,
            &"--passfile",
            &h.pass,
        ],
        vec![
            &"manifest",
            &h.cipher,
            &"--passfile",
            &h.pass,
            &"--out",
            &h.p("m.json"),
        ],
        vec![&"info", &h.cipher],
    ] {
        let t = Instant::now();
        let o = h.cc(&args);
        if args.len() == 2 {
            // `info` runs no scrypt: it shows the parameters.
            assert_eq!(code(&o), 0, "{}", text(&o));
            continue;
        }
        assert_eq!(code(&o), 4, "{}", text(&o));
        assert_ne!(code(&o), 134, "an abort");
        assert!(t.elapsed() < Duration::from_secs(20));
        assert!(text(&o).contains("--max-scrypt-memory"), "{}", text(&o));
    }
    let o = h.cc(&[&"verify", &h.cipher, &"--no-key"]);
    assert_eq!(code(&o), 4, "{}", text(&o));
    // A smaller bomb (N=2^20, 1 GiB) is refused by default and accepted when raised: the
    // password still unlocks nothing here (the cost changed the KEK), so exit 12, not 4.
    conf["ScryptObject"]["N"] = serde_json::json!(1u64 << 20);
    conf["ScryptObject"]["R"] = serde_json::json!(8);
    h.write_conf(&conf);
    let o = h.cc(&[&"verify", &h.cipher, &"--passfile", &h.pass]);
    assert_eq!(code(&o), 4, "{}", text(&o));
    let o = h.cc(&[
        &"--max-scrypt-memory",
        &"2GiB",
        &"verify",
        &h.cipher,
        &"--passfile",
        &h.pass,
    ]);
    assert_eq!(code(&o), 12, "{}", text(&o));
}

fn mkfifo(p: &Path) {
    let _ = fs::remove_file(p);
    rustix::fs::mkfifoat(rustix::fs::CWD, p, rustix::fs::Mode::from_raw_mode(0o644)).unwrap();
}

/// Finding 3: FIFOs where control files and cipher files belong never hang anything.
#[test]
fn host_03_fifos_and_special_files_never_hang() {
    let Some(h) = Host::model() else { return };
    let sub = h.cipher_of("sub");
    let side = sub.join("gocryptfs.diriv");
    mkfifo(&side);
    // A long-name side file as a FIFO too.
    let long_entry = h
        .cipher
        .join(format!("gocryptfs.longname.{}", "A".repeat(43)));
    fs::write(&long_entry, b"x").unwrap();
    mkfifo(
        &h.cipher
            .join(format!("gocryptfs.longname.{}.name", "A".repeat(43))),
    );
    for args in [
        vec![
            &"verify" as &dyn AsRef<OsStr>,
            &h.cipher,
            &"--passfile",
            &h.pass,
        ],
        vec![&"verify", &h.cipher, &"--no-key"],
        vec![&"decrypt", &h.cipher, &h.p("out"), &"--passfile", &h.pass],
    ] {
        let o = h.cc(&args);
        assert_eq!(code(&o), 26, "{}", text(&o));
        assert!(text(&o).contains("FIFO"), "{}", text(&o));
    }
    // The config itself as a FIFO: info, verify, verify --no-key, decrypt.
    let conf = h.cipher.join("gocryptfs.conf");
    let saved = fs::read(&conf).unwrap();
    mkfifo(&conf);
    for args in [
        vec![&"info" as &dyn AsRef<OsStr>, &h.cipher],
        vec![&"verify", &h.cipher, &"--passfile", &h.pass],
        vec![&"verify", &h.cipher, &"--no-key"],
        vec![&"decrypt", &h.cipher, &h.p("out2"), &"--passfile", &h.pass],
    ] {
        let o = h.cc(&args);
        assert_ne!(code(&o), 0, "{}", text(&o));
        assert!(text(&o).contains("FIFO"), "{}", text(&o));
    }
    fs::remove_file(&conf).unwrap();
    fs::write(&conf, saved).unwrap();
    // (A write to the FIFO would block this test: remove it first.)
    fs::remove_file(&side).unwrap();
    fs::write(&side, random(16, 9)).unwrap();
    fs::remove_file(&long_entry).unwrap();
    let _ = fs::remove_file(
        h.cipher
            .join(format!("gocryptfs.longname.{}.name", "A".repeat(43))),
    );
    // Under a live mount: a cipher file swapped for a FIFO is EIO when the kernel still knows
    // it as a file, and not served at all when looked up afresh; the daemon stays
    // responsive and unmounts.
    let served = Served::start(&h, &h.p("mnt"), &[]).unwrap();
    assert!(read_bounded(&served.mnt.join("model-00001.bin")).is_some_and(|r| r.is_ok()));
    let weights = h.cipher_of("model-00001.bin");
    let tokenizer = h.cipher_of("tokenizer.json");
    mkfifo(&weights);
    mkfifo(&tokenizer);
    let r = read_bounded(&served.mnt.join("model-00001.bin"));
    assert!(
        matches!(r, Some(Err(_))),
        "a FIFO read hung or returned data"
    );
    let r = read_bounded(&served.mnt.join("tokenizer.json"));
    assert!(
        matches!(r, Some(Err(_))),
        "a FIFO read hung or returned data"
    );
    assert!(read_bounded(&served.mnt.join("config.json")).is_some_and(|r| r.is_ok()));
    let log = served.log();
    drop(served);
    assert!(!mounted(&h.p("mnt")), "{log}");
}

/// Finding 4: setuid/setgid/sticky and group/other write never reach the guest.
#[test]
fn host_04_modes_from_the_tree_are_masked() {
    let Some(h) = Host::model() else { return };
    let f = h.cipher_of("tokenizer.json");
    let d = h.cipher_of("sub");
    fs::set_permissions(&f, fs::Permissions::from_mode(0o6777)).unwrap();
    fs::set_permissions(&d, fs::Permissions::from_mode(0o3777)).unwrap();
    let o = h.cc(&[&"decrypt", &h.cipher, &h.p("out"), &"--passfile", &h.pass]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let mode = |p: &Path| fs::metadata(p).unwrap().mode() & 0o7777;
    assert_eq!(mode(&h.p("out/tokenizer.json")), 0o755);
    assert_eq!(mode(&h.p("out/sub")), 0o755);
    let served = Served::start(&h, &h.p("mnt"), &[]).unwrap();
    assert_eq!(mode(&served.mnt.join("tokenizer.json")), 0o755);
    assert_eq!(mode(&served.mnt.join("sub")), 0o755);
    drop(served);
    // The opt-in keeps them (the rare user who wants them).
    let o = h.cc(&[
        &"--preserve-modes",
        &"decrypt",
        &h.cipher,
        &h.p("out2"),
        &"--passfile",
        &h.pass,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(mode(&h.p("out2/tokenizer.json")), 0o6777);
}

/// A minimal safetensors file of `n` f32 values.
fn safetensors(n: usize, seed: u64) -> Vec<u8> {
    let header = format!(
        r#"{{"w":{{"dtype":"F32","shape":[{n}],"data_offsets":[0,{}]}}}}"#,
        n * 4
    );
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&random(n * 4, seed));
    out
}

/// Finding 5: load-gpu can be pinned, checked on the bytes it loaded; a zeroed or tampered
/// block never loads `ok`.
#[test]
fn host_05_load_gpu_is_pinned_and_never_loads_a_bad_block() {
    let Some(h) = Host::new(&[], &[("model.safetensors", safetensors(50_000, 5))]) else {
        return;
    };
    let man = h.p("manifest.json");
    let o = h.cc(&[
        &"manifest",
        &h.cipher,
        &"--passfile",
        &h.pass,
        &"--out",
        &man,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let load = |extra: &[&dyn AsRef<OsStr>]| {
        let mut args: Vec<&dyn AsRef<OsStr>> = vec![
            &"load-gpu",
            &h.cipher,
            &"--target",
            &"cpu",
            &"--passfile",
            &h.pass,
            &"--json",
        ];
        args.extend_from_slice(extra);
        h.cc(&args)
    };
    let receipt = h.p("receipt.json");
    let o = load(&[&"--expect", &man, &"--receipt", &receipt]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let r: serde_json::Value = serde_json::from_slice(&fs::read(&receipt).unwrap()).unwrap();
    assert_eq!(r["command"], "load-gpu");
    assert!(r["model_digest"].as_str().unwrap().starts_with("sha256:"));
    // A zeroed block: refused as a hole, and with holes allowed, refused by the pin.
    h.zero_block("model.safetensors", 10);
    for extra in [vec![], vec![&"--expect" as &dyn AsRef<OsStr>, &man]] {
        let o = load(&extra);
        assert_eq!(code(&o), 26, "{}", text(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(v["ok"], false, "{v}");
        assert!(text(&o).contains("block 10"), "{}", text(&o));
    }
    let o = h.cc(&[
        &"--allow-holes",
        &"load-gpu",
        &h.cipher,
        &"--target",
        &"cpu",
        &"--passfile",
        &h.pass,
        &"--expect",
        &man,
        &"--json",
    ]);
    assert_eq!(code(&o), 26, "{}", text(&o));
    assert!(text(&o).contains("pinned"), "{}", text(&o));
    // A flipped bit names the block.
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(h.cipher_of("model.safetensors"))
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 18 + 20 * CBS + 100).unwrap();
    f.write_all_at(&[b[0] ^ 1], 18 + 20 * CBS + 100).unwrap();
    let o = h.cc(&[
        &"--allow-holes",
        &"load-gpu",
        &h.cipher,
        &"--target",
        &"cpu",
        &"--passfile",
        &h.pass,
    ]);
    assert_eq!(code(&o), 26, "{}", text(&o));
}

/// Finding 6: a cipher path that carries mount options adds none; `-o` values are checked.
#[test]
fn host_06_mount_options_cannot_be_injected() {
    let Some(h) = Host::model() else { return };
    let evil = h.p("models,rw,max_read=4096,allow_other");
    fs::rename(&h.cipher, &evil).unwrap();
    let h = Host { cipher: evil, ..h };
    let served = Served::start(&h, &h.p("mnt"), &[]).unwrap();
    let line = mountinfo_line(&served.mnt);
    let (mount_opts, after) = line.split_once(" - ").unwrap();
    assert!(
        mount_opts.contains(" ro,") || mount_opts.contains(" ro "),
        "{line}"
    );
    // After " - ": type, source, super options. The source names the path (its commas made
    // harmless); no option came from it.
    let super_opts = after.split(' ').nth(2).unwrap_or_default();
    assert!(!super_opts.contains("max_read=4096"), "{line}");
    assert!(!super_opts.contains("allow_other"), "{line}");
    assert!(
        !after.split(' ').nth(1).unwrap_or_default().contains(','),
        "{line}"
    );
    drop(served);
    for bad in [
        "fsname=",
        "fsname=a\\b",
        "default_permissions=0",
        "allow_other=no",
    ] {
        fs::create_dir_all(h.p("mnt2")).unwrap();
        let o = h.cc(&[
            &"mount",
            &"-f",
            &h.cipher,
            &h.p("mnt2"),
            &"--passfile",
            &h.pass,
            &"-o",
            &bad,
        ]);
        assert_eq!(code(&o), 2, "{bad}: {}", text(&o));
    }
}

/// Finding 7: gocryptfs.conf is opened like a control file, and never echoed.
#[test]
fn host_07_config_is_not_followed_through_symlinks_nor_echoed() {
    let Some(h) = Host::model() else { return };
    let conf = h.cipher.join("gocryptfs.conf");
    let elsewhere = h.p("real.conf");
    fs::copy(&conf, &elsewhere).unwrap();
    fs::remove_file(&conf).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &conf).unwrap();
    let o = h.cc(&[&"verify", &h.cipher, &"--passfile", &h.pass]);
    assert_eq!(code(&o), 4, "{}", text(&o));
    assert!(text(&o).contains("symlink"), "{}", text(&o));
    fs::remove_file(&conf).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&elsewhere).unwrap()).unwrap();
    let planted = "\u{1b}]0;owned\u{7}PLANTED-VALUE";
    v["ScryptObject"]["Salt"] = serde_json::json!(planted);
    v["FeatureFlags"][0] = serde_json::json!(planted);
    fs::write(&conf, serde_json::to_vec(&v).unwrap()).unwrap();
    for args in [
        vec![
            &"verify" as &dyn AsRef<OsStr>,
            &h.cipher,
            &"--passfile",
            &h.pass,
        ],
        vec![&"info", &h.cipher],
        vec![&"verify", &h.cipher, &"--no-key", &"--json"],
    ] {
        let o = h.cc(&args);
        assert_eq!(code(&o), 4, "{}", text(&o));
        assert!(!text(&o).contains("PLANTED-VALUE"), "{}", text(&o));
        assert!(!text(&o).contains('\u{1b}'), "{}", text(&o));
    }
}

fn have(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Finding 8: an older manifest signed with the same key is not a valid pin for a newer
/// release, nor a manifest of another model.
#[test]
fn host_08_rollback_to_an_older_signed_manifest_is_refused() {
    skip_unless!((!have("minisign")).then(|| "minisign is not installed".to_owned()));
    let Some(h) = Host::model() else { return };
    let (pk, sk) = (h.p("owner.pub"), h.p("owner.key"));
    let made = e2e::run_with_timeout(
        Command::new("minisign")
            .args(["-G", "-W", "-p"])
            .arg(&pk)
            .arg("-s")
            .arg(&sk),
        Duration::from_secs(30),
    );
    assert!(made.status.success());
    // The owner released version 2 of "llm-a" (this tree) and signed its manifest.
    let man = h.p("manifest.json");
    let o = h.cc(&[
        &"manifest",
        &h.cipher,
        &"--passfile",
        &h.pass,
        &"--out",
        &man,
        &"--model",
        &"llm-a",
        &"--model-version",
        &"2",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let sign = e2e::run_with_timeout(
        Command::new("minisign")
            .arg("-S")
            .arg("-s")
            .arg(&sk)
            .arg("-m")
            .arg(&man),
        Duration::from_secs(30),
    );
    assert!(sign.status.success());
    let verify = |model: &str, min: &str| {
        h.cc(&[
            &"verify",
            &h.cipher,
            &"--passfile",
            &h.pass,
            &"--expect",
            &man,
            &"--expect-signed-by",
            &pk,
            &"--expect-model",
            &model,
            &"--expect-min-version",
            &min,
        ])
    };
    assert_eq!(code(&verify("llm-a", "2")), 0);
    // The host serves this (older) release where version 3 is required: refused.
    let o = verify("llm-a", "3");
    assert_eq!(code(&o), 26, "{}", text(&o));
    assert!(text(&o).contains("rollback"), "{}", text(&o));
    // Or another model signed with the same key.
    let o = verify("llm-b", "1");
    assert_eq!(code(&o), 26, "{}", text(&o));
    // A signature without a model name is not accepted on the command line at all.
    let o = h.cc(&[
        &"verify",
        &h.cipher,
        &"--passfile",
        &h.pass,
        &"--expect",
        &man,
        &"--expect-signed-by",
        &pk,
    ]);
    assert_eq!(code(&o), 2, "{}", text(&o));
}

/// Finding 9: after a forced pinned decrypt OUTDIR holds exactly the pinned tree.
#[test]
fn host_09_forced_pinned_decrypt_leaves_exactly_the_pinned_tree() {
    let Some(h) = Host::model() else { return };
    let man = h.p("manifest.json");
    let o = h.cc(&[
        &"manifest",
        &h.cipher,
        &"--passfile",
        &h.pass,
        &"--out",
        &man,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let out = h.p("out");
    fs::create_dir_all(out.join("old/deeper")).unwrap();
    fs::write(out.join("old/deeper/stale.bin"), b"previous model").unwrap();
    fs::write(out.join("planted.py"), b"import os").unwrap();
    fs::create_dir_all(out.join("sub")).unwrap();
    fs::write(out.join("sub/extra"), b"x").unwrap();
    std::os::unix::fs::symlink("/etc", out.join("link-out")).unwrap();
    let o = h.cc(&[
        &"decrypt",
        &h.cipher,
        &out,
        &"--passfile",
        &h.pass,
        &"--force",
        &"--expect",
        &man,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let mut got: Vec<String> = walkdir(&out)
        .iter()
        .map(|p| p.strip_prefix(&out).unwrap().to_string_lossy().into_owned())
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            "config.json",
            "model-00001.bin",
            "sub",
            "sub/model-00002.bin",
            "tokenizer.json"
        ]
    );
}

/// Finding 10: names holding ESC and newlines cannot forge report or log lines.
#[test]
fn host_10_control_characters_in_names_are_escaped() {
    let Some(h) = Host::model() else { return };
    // The host plants entries whose cipher names carry terminal escapes and a forged line.
    fs::write(h.cipher.join("x\u{1b}[2J\nerror: FORGED LINE"), b"junk").unwrap();
    fs::write(h.cipher.join("y\u{1b}]0;title\u{7}"), b"junk").unwrap();
    for args in [
        vec![
            &"verify" as &dyn AsRef<OsStr>,
            &h.cipher,
            &"--passfile",
            &h.pass,
        ],
        vec![&"verify", &h.cipher, &"--no-key"],
        vec![&"decrypt", &h.cipher, &h.p("out"), &"--passfile", &h.pass],
    ] {
        let o = h.cc(&args);
        assert_ne!(code(&o), 0, "{}", text(&o));
        let t = text(&o);
        assert!(!t.contains('\u{1b}') && !t.contains('\u{7}'), "{t:?}");
        assert!(
            !t.lines().any(|l| l.starts_with("error: FORGED")),
            "a forged line: {t}"
        );
        assert!(t.contains("\\e"), "{t}");
    }
}

/// Finding 11: a file the host replaces under an unpinned mount is never served as a mix
/// of old cached pages and new content.
#[test]
fn host_11_replaced_files_are_not_served_from_a_stale_cache() {
    let a = random(64 * 4096, 11);
    let b = random(64 * 4096, 12);
    let Some(h) = Host::new(&[], &[("a.bin", a.clone()), ("b.bin", b.clone())]) else {
        return;
    };
    let served = Served::start(&h, &h.p("mnt"), &[]).unwrap();
    assert_eq!(fs::read(served.mnt.join("a.bin")).unwrap(), a);
    // Same size; the host copies b's cipher file over a's, keeping a's mtime.
    let ca = h.cipher_of("a.bin");
    let mtime = fs::metadata(&ca).unwrap().modified().unwrap();
    let tmp = h.cipher.join("swap.tmp");
    fs::copy(h.cipher_of("b.bin"), &tmp).unwrap();
    fs::File::options()
        .write(true)
        .open(&tmp)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    fs::rename(&tmp, &ca).unwrap();
    let got = fs::read(served.mnt.join("a.bin")).unwrap();
    assert!(
        got == b,
        "old and new content mixed, or the old file served"
    );
    drop(served);
}

/// Finding 12: stale temporary files of the same name never block a later run.
#[test]
fn host_12_stale_temporary_files_never_block() {
    let Some(h) = Host::model() else { return };
    let dir = h.p("outputs");
    fs::create_dir(&dir).unwrap();
    for stale in [".receipt.json.ccmount-tmp", ".manifest.json.ccmount-tmp"] {
        fs::write(dir.join(stale), b"left by a crash").unwrap();
    }
    let o = h.cc(&[
        &"verify",
        &h.cipher,
        &"--passfile",
        &h.pass,
        &"--manifest",
        &dir.join("manifest.json"),
        &"--receipt",
        &dir.join("receipt.json"),
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(dir.join("manifest.json").is_file() && dir.join("receipt.json").is_file());
    // A target name as long as a file name can be.
    let long = dir.join("r".repeat(250));
    let o = h.cc(&[
        &"manifest",
        &h.cipher,
        &"--passfile",
        &h.pass,
        &"--out",
        &long,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
}

/// Finding 14: floods of junk names give one summary per directory, and a sparse
/// exabyte cipher file costs nothing.
#[test]
fn host_14_floods_of_names_and_sparse_giants_are_bounded() {
    let Some(h) = Host::model() else { return };
    let junk = h.cipher_of("sub");
    for i in 0..20_000 {
        fs::write(junk.join(format!("junk{i:06}")), b"").unwrap();
    }
    let served = Served::start(&h, &h.p("mnt"), &[]).unwrap();
    for _ in 0..3 {
        let n = fs::read_dir(served.mnt.join("sub")).unwrap().count();
        assert_eq!(n, 1);
    }
    let warns = served.log().lines().filter(|l| l.contains("WARN")).count();
    assert!(warns <= 3, "{warns} warnings:\n{}", served.log());
    drop(served);
    for i in 0..20_000 {
        fs::remove_file(junk.join(format!("junk{i:06}"))).unwrap();
    }
    // A sparse cipher file of absurd size (8 TiB: what this test's file system allows; the
    // 1 TiB bound refuses it at open, 4 EiB alike).
    let giant = h.cipher_of("tokenizer.json");
    fs::File::options()
        .write(true)
        .open(&giant)
        .unwrap()
        .set_len(8 << 40)
        .unwrap();
    for args in [
        vec![
            &"verify" as &dyn AsRef<OsStr>,
            &h.cipher,
            &"--passfile",
            &h.pass,
        ],
        vec![&"verify", &h.cipher, &"--no-key"],
        vec![&"decrypt", &h.cipher, &h.p("out"), &"--passfile", &h.pass],
    ] {
        let t = Instant::now();
        let o = h.cc(&args);
        assert_eq!(code(&o), 26, "{}", text(&o));
        assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    }
    // A merely large sparse file (100 GiB): holes found without reading them.
    fs::File::options()
        .write(true)
        .open(&giant)
        .unwrap()
        .set_len(100 << 30)
        .unwrap();
    for args in [
        vec![
            &"verify" as &dyn AsRef<OsStr>,
            &h.cipher,
            &"--passfile",
            &h.pass,
        ],
        vec![&"verify", &h.cipher, &"--no-key", &"--json"],
        vec![&"decrypt", &h.cipher, &h.p("out2"), &"--passfile", &h.pass],
    ] {
        let t = Instant::now();
        let o = h.cc(&args);
        assert_eq!(code(&o), 26, "{}", text(&o));
        assert!(t.elapsed() < Duration::from_secs(30), "{:?}", t.elapsed());
    }
}

/// Finding 15: plaintext never lands inside the cipher directory; no mount inside it.
#[test]
fn host_15_writing_into_the_cipher_directory_is_refused() {
    let Some(h) = Host::model() else { return };
    let before = walkdir(&h.cipher).len();
    for out in [
        h.cipher.join("plain"),
        h.cipher.clone(),
        h.tmp.path().to_path_buf(),
    ] {
        let o = h.cc(&[
            &"decrypt",
            &h.cipher,
            &out,
            &"--passfile",
            &h.pass,
            &"--force",
        ]);
        assert_eq!(code(&o), 2, "{}: {}", out.display(), text(&o));
    }
    assert_eq!(walkdir(&h.cipher).len(), before);
    let inside = h.cipher.join("mnt");
    fs::create_dir(&inside).unwrap();
    let o = h.cc(&[&"mount", &"-f", &h.cipher, &inside, &"--passfile", &h.pass]);
    assert_eq!(code(&o), 2, "{}", text(&o));
    assert!(!mounted(&inside));
}

/// Finding 16: the help tells what a plain-HTTP KBS allows; credentials are never echoed.
#[test]
fn host_16_kbs_url_credentials_are_never_echoed() {
    let Some(bin) = e2e::ccmount_bin() else {
        return;
    };
    let run = |args: &[&str]| e2e::run_with_timeout(Command::new(&bin).args(args), DEADLINE);
    for url in [
        "https://admin:hunter2@127.0.0.1:1",
        "http://admin:hunter2@127.0.0.1:1",
        "ftp://admin:hunter2@127.0.0.1:1",
    ] {
        let o = run(&["get-resource", "--kbs-url", url, "kbs:///a/b/c"]);
        assert_ne!(code(&o), 0);
        assert!(!text(&o).contains("hunter2"), "{}", text(&o));
    }
    let help = text(&run(&["--help"]));
    assert!(help.contains("forge"), "{help}");
}

// ------------------------------------------------------------------ holes (issue 22) ----

/// A zeroed whole block inside a non-sparse file is refused on every path.
#[test]
fn holes_zeroed_block_is_refused_on_every_path() {
    let Some(h) = Host::new(
        &[],
        &[
            ("model.safetensors", safetensors(100_000, 7)),
            ("ok.bin", random(50_000, 8)),
        ],
    ) else {
        return;
    };
    h.zero_block("model.safetensors", 33);
    let o = h.cc(&[&"verify", &h.cipher, &"--passfile", &h.pass, &"--json"]);
    assert_eq!(code(&o), 26, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["kind"] == "hole" && f["block"] == 33 && f["severity"] == "error"),
        "{v}"
    );
    let o = h.cc(&[&"decrypt", &h.cipher, &h.p("out"), &"--passfile", &h.pass]);
    assert_eq!(code(&o), 26, "{}", text(&o));
    assert!(!h.p("out/model.safetensors").exists());
    assert!(h.p("out/ok.bin").exists());
    let o = h.cc(&[&"verify", &h.cipher, &"--no-key", &"--json"]);
    assert_eq!(code(&o), 26, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = v["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["holes"] == 1)
        .unwrap_or_else(|| panic!("{v}"));
    assert_eq!(f["hole_ranges"], serde_json::json!([[33, 34]]));
    let o = h.cc(&[
        &"load-gpu",
        &h.cipher,
        &"--target",
        &"cpu",
        &"--passfile",
        &h.pass,
    ]);
    assert_eq!(code(&o), 26, "{}", text(&o));
    let served = Served::start(&h, &h.p("mnt"), &[]).unwrap();
    let file = fs::File::open(served.mnt.join("model.safetensors")).unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(file.read_exact_at(&mut buf, 0).is_ok());
    assert!(file.read_exact_at(&mut buf, 33 * 4096).is_err());
    drop(file);
    assert!(served.log().contains("block 33"), "{}", served.log());
    drop(served);
    // The opt-in keeps gocryptfs' behaviour (zeros) and counts them.
    let o = h.cc(&[
        &"--allow-holes",
        &"decrypt",
        &h.cipher,
        &h.p("out2"),
        &"--passfile",
        &h.pass,
        &"--json",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["holes_accepted"], 1, "{v}");
}

/// Holes at the start, at the end, a zeroed trailing partial block, and a size that
/// implies blocks beyond the stored data.
#[test]
fn holes_at_the_edges_and_beyond_the_data() {
    let Some(h) = Host::new(
        &[],
        &[
            ("first.bin", random(5 * 4096, 1)),
            ("last.bin", random(5 * 4096, 2)),
            ("partial.bin", random(4 * 4096 + 100, 3)),
            ("grown.bin", random(4096, 4)),
        ],
    ) else {
        return;
    };
    h.zero_block("first.bin", 0);
    h.zero_block("last.bin", 4);
    let p = h.cipher_of("partial.bin");
    let f = fs::OpenOptions::new().write(true).open(&p).unwrap();
    f.write_all_at(&[0u8; 100 + 32], 18 + 4 * CBS).unwrap();
    // The host grows a cipher file: the new blocks are file-system holes.
    fs::File::options()
        .write(true)
        .open(h.cipher_of("grown.bin"))
        .unwrap()
        .set_len(18 + 8 * CBS)
        .unwrap();
    let o = h.cc(&[&"verify", &h.cipher, &"--passfile", &h.pass, &"--json"]);
    assert_eq!(code(&o), 26, "{}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let bad: Vec<(String, u64, String)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| {
            (
                f["path"].as_str().unwrap_or_default().to_owned(),
                f["block"].as_u64().unwrap_or(u64::MAX),
                f["kind"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for want in [
        ("first.bin", 0, "hole"),
        ("last.bin", 4, "hole"),
        ("partial.bin", 4, "all_zero_nonce"),
        ("grown.bin", 1, "hole"),
    ] {
        assert!(
            bad.iter()
                .any(|(p, b, k)| p == want.0 && *b == want.1 && k == want.2),
            "{want:?} not in {bad:?}"
        );
    }
    for plain in ["first.bin", "last.bin", "partial.bin", "grown.bin"] {
        let o = h.cc(&[
            &"decrypt",
            &h.cipher,
            &h.p("out"),
            &"--passfile",
            &h.pass,
            &"--force",
        ]);
        assert_eq!(code(&o), 26, "{}", text(&o));
        assert!(!h.p("out").join(plain).exists(), "{plain} was written");
    }
}

/// A real sparse file made through gocryptfs (holes by design) reads byte-exact with the
/// opt-in, and only with it; `ccmount encrypt` never writes holes.
#[test]
fn holes_real_sparse_files_need_the_opt_in_and_we_never_write_holes() {
    let Some(h) = Host::new(&[], &[("dense.bin", random(4096, 1))]) else {
        return;
    };
    let mnt = h.p("gmnt2");
    fs::create_dir(&mnt).unwrap();
    let m = Mount::new(&h.cipher, &mnt, Some(&h.pass), &[]);
    let sparse = m.path().join("sparse.bin");
    let f = fs::File::create(&sparse).unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"tail", 10 * 4096).unwrap();
    drop(f);
    let want = fs::read(&sparse).unwrap();
    m.unmount();
    let o = h.cc(&[&"decrypt", &h.cipher, &h.p("out"), &"--passfile", &h.pass]);
    assert_eq!(code(&o), 26, "{}", text(&o));
    let o = h.cc(&[
        &"--allow-holes",
        &"decrypt",
        &h.cipher,
        &h.p("out2"),
        &"--passfile",
        &h.pass,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(fs::read(h.p("out2/sparse.bin")).unwrap(), want);
    // Our writer encrypts the sparse source block by block: no holes, no opt-in needed.
    let o = h.cc(&[
        &"encrypt",
        &h.p("out2"),
        &h.p("ours"),
        &"--passfile",
        &h.pass,
        &"--scryptn",
        &"10",
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = h.cc(&[&"verify", &h.p("ours"), &"--no-key", &"--json"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    let o = h.cc(&[
        &"decrypt",
        &h.p("ours"),
        &h.p("out3"),
        &"--passfile",
        &h.pass,
    ]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(fs::read(h.p("out3/sparse.bin")).unwrap(), want);
    let (rc, out) = gocryptfs::fsck(&h.p("ours"), &h.pass);
    assert_eq!(rc, 0, "{out}");
}
