//! `ccmount demo`: the whole job on an embedded default, for a newcomer's first command.
//!
//! Starts the test KBS (`tests/kbs`, Trustee-compatible) on 127.0.0.1 with a generated CA,
//! generates a small model (a valid safetensors file with random tensors, `config.json`,
//! `tokenizer.json`; about 64 MiB), encrypts it with gocryptfs default parameters, stores
//! the password in the KBS behind a policy that admits this TEE, then does what a pod does:
//! attests (with **sample** evidence, announced as such), fetches the password, mounts the
//! model read-only (or decrypts it into a temporary directory when FUSE is unavailable or
//! `--no-fuse` is given), checks every file's sha256 and prints a report with timings.
//! Everything lives in one temporary directory, removed at the end unless `--keep`, which
//! also leaves the password file and the KBS's CA and prints the next commands to try;
//! `--serve` (implies `--keep`) then keeps the KBS running until SIGINT/SIGTERM.
//!
//! Mirrors the product brief's flow 1 and the README's first command.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, bail};
use attest::ResourceUri;
use attest::evidence::{Platform, TeeChoice};
use gocryptfs_format::decrypt::{DecryptOptions, decrypt_tree};
use gocryptfs_format::writer::{InitOptions, encrypt_tree};
use gocryptfs_format::{KeySource, NoProgress};
use sha2::{Digest as _, Sha256};
use test_kbs::{KbsConfig, Policy, TestKbs};
use zeroize::Zeroizing;

use crate::cli::{DemoArgs, GlobalArgs};
use crate::exit::Exit;
use crate::kbs::{KbsSession, KbsSettings};

/// Where the demo stores the model password in its KBS.
const RESOURCE: &str = "default/demo/model-password";
/// Tensor bytes in the generated safetensors file.
const TENSOR_BYTES: usize = 64 << 20;

/// One generated file and its expected digest.
struct Expected {
    rel: PathBuf,
    size: u64,
    sha256: [u8; 32],
}

/// Removes the work directory unless asked to keep it.
struct WorkDir {
    path: PathBuf,
    keep: bool,
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Timings of each step, in order.
#[derive(Default)]
struct Steps(Vec<(&'static str, Duration)>);

impl Steps {
    fn time<T>(&mut self, name: &'static str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        tracing::info!("demo: {name}");
        let r = f()?;
        self.0.push((name, t.elapsed()));
        Ok(r)
    }
}

pub(crate) fn run(g: &GlobalArgs, args: &DemoArgs) -> Result<Exit> {
    let total = Instant::now();
    let work = make_workdir(args.keep || args.serve)?;
    let mut steps = Steps::default();

    let kbs = steps.time("start the embedded KBS on 127.0.0.1 (generated CA)", || {
        let kbs = TestKbs::start(KbsConfig::default().with_policy(Policy::trustee_default()))
            .context("starting the embedded test KBS")?;
        // The Trustee default policy refuses sample evidence; admit it for this TEE.
        kbs.allow_tee("sample")
            .context("setting the demo KBS policy")?;
        Ok(kbs)
    })?;

    let plain = work.path.join("model");
    let cipher = work.path.join("model.enc");
    let expected = steps.time("generate a ~64 MiB model (safetensors + JSON)", || {
        generate_model(&plain)
    })?;

    let pw = {
        let mut raw = Zeroizing::new([0u8; 24]);
        getrandom::fill(&mut raw[..]).map_err(|e| anyhow::anyhow!("random password: {e}"))?;
        Zeroizing::new(hex_string(&raw[..]))
    };
    steps.time("encrypt it (gocryptfs format, default parameters)", || {
        encrypt_tree(
            &plain,
            &cipher,
            pw.as_bytes(),
            &InitOptions::default(),
            &NoProgress,
        )
        .context("encrypting the demo model")?;
        kbs.set_resource(RESOURCE, pw.as_bytes().to_vec())
            .context("storing the password in the demo KBS")?;
        Ok(())
    })?;

    let settings = KbsSettings {
        url: kbs.url(),
        url_source: "the embedded demo KBS",
        ca_pem: kbs.ca_pem().map(|p| p.as_bytes().to_vec()),
        ca_source: "the embedded demo KBS".into(),
        tee: TeeChoice::Sample,
        timeout: g.timeout.unwrap_or(Duration::from_secs(30)),
        insecure_http: false,
    };
    let mut session = KbsSession::new(settings, &Platform::default())?;
    let info = steps.time("attest to the KBS (RCAR handshake)", || session.attest())?;
    let uri = ResourceUri::parse(&format!("kbs:///{RESOURCE}"))?;
    let secret = steps.time("fetch the model password (JWE, cached token)", || {
        session.get_resource(&uri)
    })?;
    let key = KeySource::password_from_passfile(secret.expose())?;
    drop(secret);
    let dir = steps.time("derive the key (scrypt) and open the model", || {
        crate::keys::open_dir(g, &cipher, key).map(std::sync::Arc::new)
    })?;

    // Mount when FUSE works (as a pod's sidecar would), else decrypt (as an init container).
    let mut how = "decrypted into a temporary directory";
    let mut checked = None;
    #[cfg(feature = "fuse")]
    if !args.no_fuse && Path::new("/dev/fuse").exists() {
        let mnt = work.path.join("mnt");
        std::fs::create_dir(&mnt).with_context(|| format!("creating {}", mnt.display()))?;
        let mounted = steps.time("mount the model read-only (FUSE)", || {
            Ok(fuse_decrypt::mount(
                std::sync::Arc::clone(&dir),
                &mnt,
                &fuse_decrypt::MountConfig::default(),
            ))
        })?;
        match mounted {
            Ok(handle) => {
                let r = steps.time("check every file's sha256 through the mount", || {
                    check(&mnt, &expected)
                });
                let u = handle.unmount();
                checked = Some(r?);
                u.context("unmounting the demo mount")?;
                how = "mounted read-only with FUSE";
            }
            Err(e) => tracing::warn!("demo: FUSE mount failed ({e}); decrypting instead"),
        }
    }
    let checked = match checked {
        Some(c) => c,
        None => {
            let out = work.path.join("plaintext");
            steps.time("decrypt into a temporary directory", || {
                let s = decrypt_tree(&dir, &out, &DecryptOptions::default(), &NoProgress)?;
                s.into_result().map_err(anyhow::Error::from)
            })?;
            steps.time("check every file's sha256", || check(&out, &expected))?
        }
    };
    let mut report = String::new();
    let _ = writeln!(report, "ccmount demo: OK");
    let _ = writeln!(
        report,
        "  KBS       {} (embedded test KBS, policy admits tee=sample)",
        kbs.url()
    );
    let _ = writeln!(
        report,
        "  TEE       {} (sample evidence: a demo, not a proof)",
        info.tee
    );
    let _ = writeln!(report, "  resource  kbs:///{RESOURCE}");
    let _ = writeln!(report, "  served    {how}");
    let _ = writeln!(
        report,
        "  model     {} files, {} bytes, all sha256 match",
        checked.0, checked.1
    );
    for (name, d) in &steps.0 {
        let _ = writeln!(report, "  {:>8.1} ms  {name}", d.as_secs_f64() * 1e3);
    }
    let _ = writeln!(
        report,
        "  {:>8.1} ms  total",
        total.elapsed().as_secs_f64() * 1e3
    );
    if args.keep || args.serve {
        let kept = keep_files(&work.path, &kbs, &pw)?;
        let _ = writeln!(report, "  kept in   {}", work.path.display());
        report.push_str(&kept.commands(args.serve));
    }
    drop(pw);
    std::io::stdout().lock().write_all(report.as_bytes())?;
    std::io::stdout().lock().flush()?;
    if args.serve {
        let stop = crate::interrupt::install();
        tracing::info!(
            "demo: the KBS at {} keeps serving until Ctrl-C (SIGINT) or SIGTERM",
            kbs.url()
        );
        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(200));
        }
        tracing::info!(
            "demo: stopping the KBS; the files stay in {}",
            work.path.display()
        );
    }
    Ok(Exit::Ok)
}

/// What `--keep` leaves beside the model for the README's next commands.
struct Kept {
    dir: PathBuf,
    url: String,
    ca: Option<PathBuf>,
    pass: PathBuf,
}

/// Writes the KBS CA and the model password (mode 0600) into the work directory.
fn keep_files(dir: &Path, kbs: &TestKbs, pw: &str) -> Result<Kept> {
    let ca = match kbs.ca_pem() {
        Some(pem) => {
            let p = dir.join("kbs-ca.pem");
            write_new(&p, pem.as_bytes(), 0o644)?;
            Some(p)
        }
        None => None,
    };
    let mnt = dir.join("mnt");
    if !mnt.exists() {
        std::fs::create_dir(&mnt).with_context(|| format!("creating {}", mnt.display()))?;
    }
    let pass = dir.join("model.pass");
    let mut line = Zeroizing::new(pw.as_bytes().to_vec());
    line.push(b'\n');
    write_new(&pass, &line, 0o600)?;
    Ok(Kept {
        dir: dir.to_path_buf(),
        url: kbs.url(),
        ca,
        pass,
    })
}

fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

impl Kept {
    /// The commands a newcomer can run next on the kept files.
    fn commands(&self, serving: bool) -> String {
        let d = self.dir.display();
        let cipher = format!("{d}/model.enc");
        let pass = self.pass.display();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "  files     model/ (plaintext), model.enc/ (cipher tree), model.pass (its password){}",
            if self.ca.is_some() {
                ", kbs-ca.pem (the KBS's CA)"
            } else {
                ""
            }
        );
        let _ = writeln!(s, "next, with the password file:");
        let _ = writeln!(s, "  ccmount verify --passfile {pass} {cipher}");
        let _ = writeln!(s, "  ccmount decrypt --passfile {pass} {cipher} {d}/out");
        let _ = writeln!(
            s,
            "  ccmount mount --passfile {pass} {cipher} {d}/mnt   # then: ccmount umount {d}/mnt"
        );
        if serving {
            let cert = self
                .ca
                .as_ref()
                .map(|c| format!(" --kbs-cert {}", c.display()))
                .unwrap_or_default();
            let kbs = format!("ccmount --kbs-url {}{cert} --tee sample", self.url);
            let _ = writeln!(
                s,
                "next, with the key from the KBS (while this demo serves; Ctrl-C stops it):"
            );
            let _ = writeln!(s, "  {kbs} attest");
            let _ = writeln!(s, "  {kbs} verify --key kbs:///{RESOURCE} {cipher}");
            let _ = writeln!(s, "  {kbs} mount --key kbs:///{RESOURCE} {cipher} {d}/mnt");
        } else {
            let _ = writeln!(
                s,
                "(ccmount demo --serve also keeps the KBS running for the --key commands)"
            );
        }
        s
    }
}

fn make_workdir(keep: bool) -> Result<WorkDir> {
    use std::os::unix::fs::DirBuilderExt as _;
    let mut rnd = [0u8; 6];
    getrandom::fill(&mut rnd).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let path = std::env::temp_dir().join(format!("ccmount-demo-{}", hex_string(&rnd)));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    Ok(WorkDir { path, keep })
}

fn hex_string(b: &[u8]) -> String {
    b.iter()
        .fold(String::with_capacity(b.len() * 2), |mut s, x| {
            let _ = write!(s, "{x:02x}");
            s
        })
}

/// xorshift64*: fast filler for tensor bytes (content only needs to look random).
struct Filler(u64);
impl Filler {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let v = self.0.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// Writes the model and returns each file's digest.
fn generate_model(root: &Path) -> Result<Vec<Expected>> {
    std::fs::create_dir(root).with_context(|| format!("creating {}", root.display()))?;
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("random: {e}"))?;
    let mut filler = Filler(u64::from_le_bytes(seed) | 1);

    // Four F32 tensors [rows, 1024] that add up to TENSOR_BYTES.
    let names = [
        "model.embed.weight",
        "layers.0.attn.weight",
        "layers.0.mlp.weight",
        "lm_head.weight",
    ];
    let per = TENSOR_BYTES / names.len();
    let rows = per / (1024 * 4);
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::json!({"format": "pt", "generator": "ccmount demo"}),
    );
    for (i, n) in names.iter().enumerate() {
        header.insert(
            (*n).into(),
            serde_json::json!({
                "dtype": "F32",
                "shape": [rows, 1024],
                "data_offsets": [i * per, (i + 1) * per],
            }),
        );
    }
    let mut hjson = serde_json::to_vec(&serde_json::Value::Object(header))?;
    // The data section starts 8-aligned, padded with spaces as the format allows.
    while (8 + hjson.len()) % 8 != 0 {
        hjson.push(b' ');
    }
    let mut st = Vec::with_capacity(8 + hjson.len() + TENSOR_BYTES);
    st.extend_from_slice(&(hjson.len() as u64).to_le_bytes());
    st.extend_from_slice(&hjson);
    let start = st.len();
    st.resize(start + TENSOR_BYTES, 0);
    filler.fill(&mut st[start..]);

    let config = serde_json::to_vec_pretty(&serde_json::json!({
        "architectures": ["DemoForCausalLM"],
        "hidden_size": 1024,
        "num_hidden_layers": 1,
        "vocab_size": rows,
        "torch_dtype": "float32",
    }))?;
    let vocab: serde_json::Map<String, serde_json::Value> = (0..2000)
        .map(|i| (format!("tok{i}"), serde_json::Value::from(i)))
        .collect();
    let tokenizer = serde_json::to_vec(&serde_json::json!({
        "version": "1.0",
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "tok0"},
    }))?;

    let mut out = Vec::new();
    for (rel, bytes) in [
        ("model.safetensors", &st),
        ("config.json", &config),
        ("tokenizer.json", &tokenizer),
    ] {
        let p = root.join(rel);
        std::fs::write(&p, bytes).with_context(|| format!("writing {}", p.display()))?;
        out.push(Expected {
            rel: rel.into(),
            size: bytes.len() as u64,
            sha256: Sha256::digest(bytes).into(),
        });
    }
    Ok(out)
}

/// Hashes each expected file under `root`; returns (files, bytes).
fn check(root: &Path, expected: &[Expected]) -> Result<(usize, u64)> {
    let mut bytes = 0;
    for e in expected {
        let p = root.join(&e.rel);
        let data = std::fs::read(&p).with_context(|| format!("reading {}", p.display()))?;
        let got: [u8; 32] = Sha256::digest(&data).into();
        if got != e.sha256 || data.len() as u64 != e.size {
            bail!(
                "{}: sha256 differs from the generated model; please report this bug",
                e.rel.display()
            );
        }
        bytes += e.size;
    }
    Ok((expected.len(), bytes))
}
