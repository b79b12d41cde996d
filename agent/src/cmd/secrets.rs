//! `ccmount secrets --config FILE [--once] [--interval DURATION]`: secret delivery.
//!
//! Reads `[[secrets]]` (and an optional `[model]` job) from the TOML config, attests once,
//! fetches every resource over the shared session (one token for the key and all secrets),
//! and writes each file atomically with its mode. Then, unless `--once`, it stays up and
//! re-fetches on SIGHUP and every `interval`; SIGTERM/SIGINT end it with exit 0. A failed
//! refresh keeps the files already delivered and is retried at the next trigger.
//!
//! The `[model]` job either decrypts the model (`decrypt_to`, done before the secrets) or
//! mounts it (`mount_at`): the mount is served by this same process for as long as it runs,
//! and a stop signal unmounts it (lazily when busy) before the exit.
//!
//! Mirrors the product brief's flow 4 (secrets for the inference server) and the CoCo
//! "confidential data hub" habit of sealed secrets written to a tmpfs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result};
use attest::{ResourceUri, Secret};
use clap::ValueEnum as _;
use serde::Deserialize;

#[cfg(feature = "fuse")]
use crate::cli::ExpectMode;
use crate::cli::{ExpectArgs, GlobalArgs, KeyFormat, SecretsArgs, parse_duration};
use crate::exit::{Exit, coded};
use crate::fsutil::Staged;
use crate::kbs;
#[cfg(feature = "fuse")]
use crate::plan::MountPlan;
use crate::plan::{DecryptPlan, KeyPlan, under};

/// Default permission bits of a delivered secret.
const DEFAULT_MODE: u32 = 0o400;

#[derive(Debug, Deserialize)]
struct FileConfig {
    #[serde(default)]
    secrets: Vec<SecretEntry>,
    #[serde(default)]
    delivery: Option<Delivery>,
    #[serde(default)]
    model: Option<ModelJob>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretEntry {
    /// The KBS resource to deliver; or
    resource: Option<String>,
    /// a file holding a sealed secret (CDH format) that names it.
    sealed_file: Option<PathBuf>,
    path: PathBuf,
    #[serde(default)]
    mode: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Delivery {
    /// Re-fetch period, e.g. "15m".
    interval: Option<String>,
}

/// The model job run before the secrets are delivered, in the same process and session.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelJob {
    cipherdir: PathBuf,
    key: String,
    #[serde(default)]
    key_format: Option<String>,
    #[serde(default)]
    decrypt_to: Option<PathBuf>,
    #[serde(default)]
    mount_at: Option<PathBuf>,
    #[serde(default)]
    expect: Option<String>,
    #[serde(default)]
    expect_model: Option<String>,
    #[serde(default)]
    expect_min_version: Option<u64>,
    // Mount-only settings, as `ccmount mount`'s flags of the same name.
    #[serde(default)]
    expect_mode: Option<String>,
    #[serde(default)]
    options: Option<String>,
    #[serde(default)]
    ready_file: Option<PathBuf>,
    #[serde(default)]
    threads: Option<usize>,
    #[serde(default)]
    direct_io: Option<bool>,
}

/// One validated secret to deliver.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) uri: ResourceUri,
    pub(crate) path: PathBuf,
    pub(crate) mode: u32,
    /// When the resource came from a sealed secret: it, and its file for messages. Its
    /// signature is checked before every delivery.
    pub(crate) sealed: Option<(attest::sealed::SealedSecret, String)>,
}

/// The validated `secrets` plan.
#[derive(Debug)]
struct Plan {
    targets: Vec<Target>,
    interval: Option<Duration>,
    model: Option<ModelPlan>,
}

/// The `[model]` job, planned exactly as the command it stands for.
#[derive(Debug)]
enum ModelPlan {
    /// `decrypt_to`: `ccmount decrypt CIPHERDIR DIR --force`.
    Decrypt(DecryptPlan),
    /// `mount_at`: `ccmount mount CIPHERDIR DIR --foreground`, served by this process.
    #[cfg(feature = "fuse")]
    Mount(MountPlan),
}

/// Runs the command.
pub(crate) fn run(global: &GlobalArgs, args: &SecretsArgs) -> Result<Exit> {
    let Some(config) = &global.config else {
        return Err(coded(
            Exit::Usage,
            "ccmount secrets needs --config FILE listing [[secrets]] (see docs/deploy/config-example.toml)",
        ));
    };
    let plan = load_plan(config, args.interval, args.once)?;
    // Handlers go in before the first delivery: a SIGHUP sent as soon as the files appear
    // must refresh them, not kill the process (SIGHUP's default action).
    let signals = if args.once {
        None
    } else {
        Some(Signals::install()?)
    };
    let mount = match &plan.model {
        Some(job) => run_model_job(global, job)?,
        None => None,
    };
    if let Err(e) = deliver(&plan.targets) {
        // Not left serving a model beside secrets that never came.
        return Err(match mount {
            Some(m) => m.stop_after(e),
            None => e,
        });
    }
    match signals {
        None => Ok(Exit::Ok),
        Some(signals) => {
            crate::notify::notify("READY=1");
            wait_and_refresh(&plan, signals, mount)
        }
    }
}

/// The signals the refresh loop waits for, on their own current-thread runtime.
struct Signals {
    rt: tokio::runtime::Runtime,
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the signal runtime")?;
        let (hup, term, int) = rt
            .block_on(async {
                Ok::<_, std::io::Error>((
                    signal(SignalKind::hangup())?,
                    signal(SignalKind::terminate())?,
                    signal(SignalKind::interrupt())?,
                ))
            })
            .context("installing signal handlers")?;
        Ok(Self { rt, hup, term, int })
    }
}

/// Parses and checks the config before any network traffic.
fn load_plan(path: &Path, interval_flag: Option<Duration>, once: bool) -> Result<Plan> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let cfg: FileConfig = toml::from_str(&text).map_err(|e| {
        coded(
            Exit::Usage,
            format!(
                "invalid config file {}: {}",
                path.display(),
                e.message().trim()
            ),
        )
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut seen = BTreeSet::new();
    let mut targets = Vec::with_capacity(cfg.secrets.len());
    for (i, s) in cfg.secrets.iter().enumerate() {
        let what = format!("[[secrets]] #{} in {}", i + 1, path.display());
        let (uri, sealed) = match (&s.resource, &s.sealed_file) {
            (Some(r), None) => (ResourceUri::parse(r).with_context(|| what.clone())?, None),
            (None, Some(f)) => {
                let f = if f.is_absolute() {
                    f.clone()
                } else {
                    base.join(f)
                };
                let file_what = format!("{what}: sealed_file {}", f.display());
                let bytes = crate::keys::read_secret_raw(&f, "sealed secret")?;
                let sealed = crate::unseal::parse(&bytes, &file_what)?;
                (sealed.name().clone(), Some((sealed, file_what)))
            }
            _ => {
                return Err(coded(
                    Exit::Usage,
                    format!("{what}: give exactly one of resource and sealed_file"),
                ));
            }
        };
        let mode = match &s.mode {
            Some(m) => super::get_resource::parse_mode(m).with_context(|| what.clone())?,
            None => DEFAULT_MODE,
        };
        let p = if s.path.is_absolute() {
            s.path.clone()
        } else {
            base.join(&s.path)
        };
        if p.file_name().is_none() {
            return Err(coded(
                Exit::Usage,
                format!("{what}: path {} must name a file", s.path.display()),
            ));
        }
        if !seen.insert(p.clone()) {
            return Err(coded(
                Exit::Usage,
                format!("{what}: path {} is listed twice", p.display()),
            ));
        }
        targets.push(Target {
            uri,
            path: p,
            mode,
            sealed,
        });
    }
    let interval = match (interval_flag, cfg.delivery.and_then(|d| d.interval)) {
        (Some(d), _) => Some(d),
        (None, Some(s)) => Some(parse_duration(&s).map_err(|e| {
            coded(
                Exit::Usage,
                format!("[delivery] interval in {}: {e}", path.display()),
            )
        })?),
        (None, None) => None,
    };
    if interval.is_some_and(|d| d < Duration::from_secs(1)) {
        return Err(coded(
            Exit::Usage,
            "the refresh interval must be at least 1s",
        ));
    }
    let model = cfg.model.map(|m| model_plan(&m, base)).transpose()?;
    if once && model.as_ref().is_some_and(ModelPlan::stays_up) {
        return Err(coded(
            Exit::Usage,
            format!(
                "[model] mount_at in {} needs the process to stay up: drop --once, or use decrypt_to",
                path.display()
            ),
        ));
    }
    if targets.is_empty() && model.is_none() {
        return Err(coded(
            Exit::Usage,
            format!(
                "{} lists no [[secrets]] and no [model]: nothing to do",
                path.display()
            ),
        ));
    }
    Ok(Plan {
        targets,
        interval,
        model,
    })
}

/// Plans the `[model]` job: the same plan `ccmount decrypt` or `ccmount mount` builds from
/// its flags, with the same checks. It holds no secret: only paths and resource URIs.
fn model_plan(m: &ModelJob, base: &Path) -> Result<ModelPlan> {
    let bad = |msg: String| coded(Exit::Usage, format!("[model] in the config file: {msg}"));
    let uri = ResourceUri::parse(&m.key).with_context(|| format!("[model] key {}", m.key))?;
    let format = match &m.key_format {
        Some(f) => KeyFormat::from_str(f, false)
            .map_err(|_| bad(format!("key_format {f:?}: use password or masterkey")))?,
        None => KeyFormat::Password,
    };
    let key = KeyPlan::Kbs { uri, format };
    let expect = ExpectArgs {
        expect: m.expect.clone(),
        expect_signed_by: None,
        expect_model: m.expect_model.clone(),
        expect_min_version: m.expect_min_version,
    };
    if expect.expect.is_none()
        && (expect.expect_model.is_some() || expect.expect_min_version.is_some())
    {
        return Err(bad("expect_model and expect_min_version need expect".into()));
    }
    // An s3:// location is not a path below the config's directory.
    let cipherdir = if s3_source::S3Location::is_s3(m.cipherdir.as_os_str()) {
        m.cipherdir.clone()
    } else {
        under(base, &m.cipherdir)
    };
    // The mount-only settings, by config key, as given.
    let mount_only = [
        ("options", m.options.is_some()),
        ("ready_file", m.ready_file.is_some()),
        ("threads", m.threads.is_some()),
        ("direct_io", m.direct_io.is_some()),
        ("expect_mode", m.expect_mode.is_some()),
    ];
    match (&m.decrypt_to, &m.mount_at) {
        (Some(out), None) => {
            if let Some((k, _)) = mount_only.iter().find(|(_, given)| *given) {
                return Err(bad(format!(
                    "{k} applies to mount_at only, not to decrypt_to"
                )));
            }
            Ok(ModelPlan::Decrypt(DecryptPlan {
                cipherdir,
                outdir: under(base, out),
                key,
                force: true,
                json: false,
                expect,
                receipt: None,
            }))
        }
        (None, Some(mnt)) => mount_plan(m, base, cipherdir, mnt, key, expect),
        _ => Err(bad(
            "needs exactly one of decrypt_to = \"DIR\" (write the plaintext model there) and mount_at = \"DIR\" (serve it there read-only)".into(),
        )),
    }
}

#[cfg(feature = "fuse")]
fn mount_plan(
    m: &ModelJob,
    base: &Path,
    cipherdir: PathBuf,
    mnt: &Path,
    key: KeyPlan,
    expect: ExpectArgs,
) -> Result<ModelPlan> {
    let bad = |msg: String| coded(Exit::Usage, format!("[model] in the config file: {msg}"));
    let options: Vec<String> = m.options.iter().cloned().collect();
    let config = crate::mountopts::config(&options, m.threads, m.direct_io.unwrap_or(false))
        .map_err(&bad)?;
    let expect_mode = match &m.expect_mode {
        Some(_) if expect.expect.is_none() => {
            return Err(bad("expect_mode needs expect".into()));
        }
        Some(x) => ExpectMode::from_str(x, false)
            .map_err(|_| bad(format!("expect_mode {x:?}: use full or structure")))?,
        None => ExpectMode::Full,
    };
    crate::plan::check_s3(&cipherdir)?;
    Ok(ModelPlan::Mount(MountPlan {
        cipherdir,
        mountpoint: under(base, mnt),
        key,
        config,
        ready_file: m.ready_file.as_deref().map(|r| under(base, r)),
        expect,
        expect_mode,
        receipt: None,
        foreground: true,
        cache_size: None,
    }))
}

#[cfg(not(feature = "fuse"))]
fn mount_plan(
    _: &ModelJob,
    _: &Path,
    _: PathBuf,
    _: &Path,
    _: KeyPlan,
    _: ExpectArgs,
) -> Result<ModelPlan> {
    Err(coded(
        Exit::Usage,
        "[model] mount_at needs a build with FUSE support (cargo feature `fuse`); use decrypt_to",
    ))
}

impl ModelPlan {
    /// A mount needs the process to stay up.
    fn stays_up(&self) -> bool {
        match self {
            ModelPlan::Decrypt(_) => false,
            #[cfg(feature = "fuse")]
            ModelPlan::Mount(_) => true,
        }
    }
}

/// A live `[model] mount_at` mount (only in builds with FUSE).
#[cfg(feature = "fuse")]
type ModelMount = crate::serve::Watched;
#[cfg(not(feature = "fuse"))]
type ModelMount = NoMount;

/// Without FUSE no mount is ever made; the type only keeps the refresh loop one shape.
#[cfg(not(feature = "fuse"))]
#[derive(Debug)]
struct NoMount {
    ended: tokio::sync::oneshot::Receiver<Result<()>>,
}

#[cfg(not(feature = "fuse"))]
impl NoMount {
    fn stop(self) -> Result<()> {
        Ok(())
    }

    fn stop_after(self, err: anyhow::Error) -> anyhow::Error {
        err
    }
}

/// Runs the `[model]` job: a decrypt runs to its end; a mount is returned live and watched.
fn run_model_job(global: &GlobalArgs, job: &ModelPlan) -> Result<Option<ModelMount>> {
    match job {
        ModelPlan::Decrypt(p) => {
            tracing::info!(job = %format!("decrypt {} {}", p.cipherdir.display(), p.outdir.display()), "running the [model] job");
            match super::decrypt::run(global, p)? {
                Exit::Ok => Ok(None),
                other => Err(coded(other, "the [model] job failed")),
            }
        }
        #[cfg(feature = "fuse")]
        ModelPlan::Mount(p) => {
            tracing::info!(job = %format!("mount {} {}", p.cipherdir.display(), p.mountpoint.display()), "running the [model] job");
            let live = crate::serve::start_beside(global, p)?;
            crate::serve::Watched::watch(live).map(Some)
        }
    }
}

/// Fetches every secret, stages every file (written and synced under a temporary name),
/// and only then switches them into place: a failed fetch or write leaves the previous set
/// whole, and the switch is a run of renames in the same directories.
pub(crate) fn deliver(targets: &[Target]) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
    }
    // Sealed secrets: who sealed them is checked (over the same session) before any fetch.
    for t in targets {
        if let Some((sealed, what)) = &t.sealed {
            crate::unseal::checked_name(sealed, what)?;
        }
    }
    let fetched: Vec<Secret> = kbs::with_shared(|s| {
        let url = s.url().to_owned();
        targets
            .iter()
            .map(|t| {
                s.get_resource(&t.uri)
                    .with_context(|| format!("fetching {} from {url}", t.uri))
            })
            .collect()
    })?;
    let staged = targets
        .iter()
        .zip(&fetched)
        .map(|(t, secret)| {
            Staged::write(&t.path, secret.expose(), t.mode)
                .with_context(|| format!("writing {} (for {})", t.path.display(), t.uri))
        })
        .collect::<Result<Vec<_>>>()?;
    for ((t, secret), file) in targets.iter().zip(&fetched).zip(staged) {
        file.commit()
            .with_context(|| format!("replacing {} (for {})", t.path.display(), t.uri))?;
        tracing::info!(resource = %t.uri, path = %t.path.display(), mode = %format_args!("{:04o}", t.mode), bytes = secret.len(), "delivered secret");
    }
    Ok(())
}

/// What woke the refresh loop.
enum Wake {
    Hangup,
    Tick,
    Stop,
    /// The model mount went away without our stop (`umount`, `ccmount umount`).
    MountGone(Option<Result<()>>),
}

/// `300s` as "5m", `90s` as "90s": how a person wrote the interval.
fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0 => format!("{}ms", d.as_millis()),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

fn wait_and_refresh(plan: &Plan, signals: Signals, mut mount: Option<ModelMount>) -> Result<Exit> {
    let Signals {
        rt,
        mut hup,
        mut term,
        mut int,
    } = signals;
    match plan.interval {
        Some(every) => tracing::info!(
            "secrets delivered; refreshing on SIGHUP and every {}",
            humanize(every)
        ),
        None => tracing::info!("secrets delivered; refreshing on SIGHUP"),
    }
    loop {
        let wake = rt.block_on(async {
            let tick = async {
                match plan.interval {
                    Some(d) => tokio::time::sleep(d).await,
                    None => std::future::pending().await,
                }
            };
            let gone = async {
                match mount.as_mut() {
                    Some(m) => (&mut m.ended).await.ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = hup.recv() => Wake::Hangup,
                _ = term.recv() => Wake::Stop,
                _ = int.recv() => Wake::Stop,
                () = tick => Wake::Tick,
                r = gone => Wake::MountGone(r),
            }
        });
        let why = match wake {
            Wake::Stop => {
                tracing::info!("stopping on signal");
                crate::notify::notify("STOPPING=1");
                if let Some(m) = mount.take() {
                    m.stop()?;
                }
                return Ok(Exit::Ok);
            }
            Wake::MountGone(res) => {
                // Like `ccmount mount -f`: an unmount from outside ends the process (exit 0),
                // so an orchestrator sees the model is gone instead of a half-working pod.
                res.unwrap_or_else(|| {
                    Err(anyhow::anyhow!("the model mount's thread ended early"))
                })?;
                tracing::warn!("the model mount was unmounted from outside: stopping");
                return Ok(Exit::Ok);
            }
            Wake::Hangup => "SIGHUP",
            Wake::Tick => "interval",
        };
        match deliver(&plan.targets) {
            Ok(()) => tracing::info!(trigger = why, "secrets refreshed"),
            // Keep serving the files already there; the next trigger retries.
            Err(e) => tracing::error!(
                trigger = why,
                "refresh failed, previous secrets kept: {e:#}"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
    use super::*;
    use crate::exit::classify;

    fn plan(text: &str) -> Result<Plan> {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        load_plan(&p, None, false)
    }

    #[test]
    fn a_valid_config_is_planned() {
        let p = plan(
            r#"
[kbs]
url = "https://127.0.0.1:1"
[delivery]
interval = "2m"
[[secrets]]
resource = "kbs:///default/a/b"
path = "/run/x/tls.key"
[[secrets]]
resource = "kbs:///default/a/c"
path = "rel/api"
mode = "0440"
[model]
cipherdir = "enc"
key = "kbs:///default/aliyun/model-decryption-key"
decrypt_to = "/dev/shm/m"
"#,
        )
        .unwrap();
        assert_eq!(p.targets.len(), 2);
        assert_eq!(p.targets[0].mode, 0o400);
        assert_eq!(p.targets[1].mode, 0o440);
        assert!(p.targets[1].path.is_absolute());
        assert_eq!(p.interval, Some(Duration::from_secs(120)));
        let Some(ModelPlan::Decrypt(d)) = p.model else {
            panic!("not a decrypt job")
        };
        assert_eq!(d.outdir, Path::new("/dev/shm/m"));
        assert!(d.cipherdir.is_absolute() || d.cipherdir.ends_with("enc"));
        assert!(d.force);
        assert_eq!(
            d.key.resource().as_deref(),
            Some("kbs:///default/aliyun/model-decryption-key")
        );
    }

    #[test]
    fn bad_configs_are_usage_errors() {
        for bad in [
            "",
            "[[secrets]]\nresource = \"http://x/a/b/c\"\npath = \"/a\"",
            "[[secrets]]\nresource = \"kbs:///a/b/c\"\npath = \"/a\"\nmode = \"999\"",
            "[[secrets]]\nresource = \"kbs:///a/b/c\"\npath = \"/a\"\n[[secrets]]\nresource = \"kbs:///a/b/d\"\npath = \"/a\"",
            "[[secrets]]\nresource = \"kbs:///a/b/c\"\npath = \"/a\"\nextra = 1",
            "[[secrets]]\nresource = \"kbs:///a/b/c\"\npath = \"/a\"\n[delivery]\ninterval = \"0s\"",
            "[model]\ncipherdir = \"x\"\nkey = \"kbs:///a/b/c\"",
            "[model]\ncipherdir = \"x\"\nkey = \"kbs:///a/b/c\"\ndecrypt_to = \"d\"\nmount_at = \"m\"",
            "[model]\ncipherdir = \"x\"\nkey = \"kbs:///a/b/c\"\ndecrypt_to = \"d\"\nready_file = \"r\"",
            "[model]\ncipherdir = \"x\"\nkey = \"kbs:///a/b/c\"\nkey_format = \"pem\"\ndecrypt_to = \"d\"",
            "[model]\ncipherdir = \"x\"\nkey = \"https://a/b/c\"\ndecrypt_to = \"d\"",
            "[model]\ncipherdir = \"x\"\nkey = \"kbs:///a/b/c\"\nmount_at = \"m\"\nexpect_mode = \"structure\"",
            "[model]\ncipherdir = \"x\"\nkey = \"kbs:///a/b/c\"\nmount_at = \"m\"\noptions = \"bogus\"",
            "not toml",
        ] {
            let e = plan(bad).unwrap_err();
            assert!(
                matches!(classify(&e), Exit::Usage | Exit::Internal),
                "{bad}: {e:#}"
            );
        }
    }

    #[cfg(feature = "fuse")]
    #[test]
    fn a_mount_job_is_the_mount_command_and_needs_the_process_to_stay() {
        let text = r#"
[model]
cipherdir = "enc"
key = "kbs:///default/m/k"
key_format = "masterkey"
mount_at = "/models/m"
ready_file = "ready"
options = "allow_other"
threads = 4
direct_io = true
expect = "sha256:0000000000000000000000000000000000000000000000000000000000000000"
expect_mode = "structure"
"#;
        let Some(ModelPlan::Mount(a)) = plan(text).unwrap().model else {
            panic!("not a mount job")
        };
        assert!(a.foreground && a.config.direct_io && a.config.allow_other);
        assert_eq!(a.config.threads, 4);
        assert!(a.ready_file.unwrap().is_absolute());
        assert_eq!(a.expect_mode, ExpectMode::Structure);
        assert!(matches!(
            a.key,
            KeyPlan::Kbs {
                format: KeyFormat::Masterkey,
                ..
            }
        ));

        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        let e = load_plan(&p, None, true).unwrap_err();
        assert_eq!(classify(&e), Exit::Usage);
        assert!(format!("{e}").contains("--once"), "{e}");
    }
}
