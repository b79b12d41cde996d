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
use clap::Parser as _;
use serde::Deserialize;

use crate::cli::{Cli, GlobalArgs, SecretsArgs, parse_duration};
use crate::exit::{Exit, coded};
use crate::kbs;

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
    resource: String,
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
}

/// The validated `secrets` plan.
#[derive(Debug)]
struct Plan {
    targets: Vec<Target>,
    interval: Option<Duration>,
    model: Option<Vec<String>>,
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
        Some(argv) => run_model_job(global, argv)?,
        None => None,
    };
    let mount = ModelMount::watch(mount)?;
    if let Err(e) = deliver(&plan.targets) {
        // Not left serving a model beside secrets that never came.
        return Err(match mount {
            Some(m) => m.stop_after(e),
            None => e,
        });
    }
    match signals {
        None => Ok(Exit::Ok),
        Some(signals) => wait_and_refresh(&plan, signals, mount),
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
        let uri = ResourceUri::parse(&s.resource).with_context(|| what.clone())?;
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
        targets.push(Target { uri, path: p, mode });
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
    let model = cfg.model.map(|m| model_argv(&m, base)).transpose()?;
    if once && model.as_ref().is_some_and(|argv| argv[1] == "mount") {
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

/// The `[model]` job as the equivalent command line (parsed by the same clap definitions,
/// so it gets exactly the checks a typed command gets). It holds no secret: only paths
/// and resource URIs.
fn model_argv(m: &ModelJob, base: &Path) -> Result<Vec<String>> {
    let abs = |p: &Path| {
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            base.join(p)
        }
    };
    let s = |p: &Path| abs(p).to_string_lossy().into_owned();
    // The mount-only settings, each as (config key, the `mount` flags it sets when given).
    let mount_only: Vec<(&str, Vec<String>)> = [
        (
            "options",
            m.options.as_ref().map(|o| vec!["-o".into(), o.clone()]),
        ),
        (
            "ready_file",
            m.ready_file
                .as_deref()
                .map(|r| vec!["--ready-file".into(), s(r)]),
        ),
        (
            "threads",
            m.threads.map(|n| vec!["--threads".into(), n.to_string()]),
        ),
        (
            "direct_io",
            m.direct_io.map(|on| {
                if on {
                    vec!["--direct-io".into()]
                } else {
                    Vec::new()
                }
            }),
        ),
        (
            "expect_mode",
            m.expect_mode
                .as_ref()
                .map(|x| vec!["--expect-mode".into(), x.clone()]),
        ),
    ]
    .into_iter()
    .filter_map(|(key, flags)| Some((key, flags?)))
    .collect();
    let mut argv: Vec<String> = match (&m.decrypt_to, &m.mount_at) {
        (Some(out), None) => {
            if let Some((key, _)) = mount_only.first() {
                return Err(coded(
                    Exit::Usage,
                    format!("[model] {key} applies to mount_at only, not to decrypt_to"),
                ));
            }
            ["decrypt", &s(&m.cipherdir), &s(out), "--force"]
                .map(str::to_owned)
                .to_vec()
        }
        (None, Some(mnt)) => {
            let mut v = ["mount", &s(&m.cipherdir), &s(mnt), "--foreground"]
                .map(str::to_owned)
                .to_vec();
            v.extend(mount_only.into_iter().flat_map(|(_, flags)| flags));
            v
        }
        _ => {
            return Err(coded(
                Exit::Usage,
                "[model] needs exactly one of decrypt_to = \"DIR\" (write the plaintext model there) and mount_at = \"DIR\" (serve it there read-only)",
            ));
        }
    };
    argv.insert(0, "ccmount".to_owned());
    argv.extend(["--key".to_owned(), m.key.clone()]);
    if let Some(f) = &m.key_format {
        argv.extend(["--key-format".to_owned(), f.clone()]);
    }
    if let Some(e) = &m.expect {
        argv.extend(["--expect".to_owned(), e.clone()]);
    }
    Ok(argv)
}

/// A live `[model] mount_at` mount (only in builds with FUSE).
#[cfg(feature = "fuse")]
type Live = super::mount::Live;
#[cfg(not(feature = "fuse"))]
type Live = std::convert::Infallible;

/// Runs the `[model]` job: a decrypt runs to its end; a mount is returned live.
fn run_model_job(global: &GlobalArgs, argv: &[String]) -> Result<Option<Live>> {
    let cli = Cli::try_parse_from(argv)
        .map_err(|e| coded(Exit::Usage, format!("[model] in the config file: {e}")))?;
    tracing::info!(job = %argv[1..3].join(" "), "running the [model] job");
    #[cfg(feature = "fuse")]
    if let crate::cli::Command::Mount(a) = &cli.command {
        return super::mount::start_beside(global, a).map(Some);
    }
    let os_argv: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
    match super::dispatch(global, cli.command, &os_argv)? {
        Exit::Ok => Ok(None),
        other => Err(coded(other, "the [model] job failed")),
    }
}

/// The model mount served beside the refresh loop: a thread waits for it to go away and
/// reports on a channel the loop selects on.
struct ModelMount {
    #[cfg(feature = "fuse")]
    unmounter: fuse_decrypt::Unmounter,
    #[cfg(feature = "fuse")]
    ready: Option<PathBuf>,
    stopping: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ended: tokio::sync::oneshot::Receiver<Result<()>>,
}

impl ModelMount {
    #[cfg(feature = "fuse")]
    fn watch(live: Option<Live>) -> Result<Option<Self>> {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let Some(live) = live else { return Ok(None) };
        let stopping = Arc::new(AtomicBool::new(false));
        let (tx, ended) = tokio::sync::oneshot::channel();
        let unmounter = live.unmounter();
        let ready = live.ready_file();
        let flag = Arc::clone(&stopping);
        let spawned = std::thread::Builder::new()
            .name("ccmount-model-mount".into())
            .spawn(move || {
                let _ = tx.send(live.wait(|| flag.load(Ordering::SeqCst)));
            });
        if let Err(e) = spawned {
            super::mount::stop(&unmounter, ready.as_deref());
            return Err(e).context("starting the thread that watches the model mount");
        }
        Ok(Some(Self {
            unmounter,
            ready,
            stopping,
            ended,
        }))
    }

    #[cfg(not(feature = "fuse"))]
    fn watch(live: Option<Live>) -> Result<Option<Self>> {
        Ok(live.map(|never| match never {}))
    }

    /// Unmounts (lazily when busy) and waits for the serving loop to end. Called outside
    /// the signal runtime, so it may block.
    fn stop(self) -> Result<()> {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        #[cfg(feature = "fuse")]
        super::mount::stop(&self.unmounter, self.ready.as_deref());
        self.ended
            .blocking_recv()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the model mount's thread ended early")))
    }

    /// Stops the mount after `err` ended the run, returning `err` (a stop failure is logged).
    fn stop_after(self, err: anyhow::Error) -> anyhow::Error {
        if let Err(e) = self.stop() {
            tracing::error!("unmounting the model: {e:#}");
        }
        err
    }
}

/// Fetches every secret (all before writing any, so a failure leaves the previous set
/// intact), then writes each atomically.
pub(crate) fn deliver(targets: &[Target]) -> Result<()> {
    if targets.is_empty() {
        return Ok(());
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
    for (t, secret) in targets.iter().zip(&fetched) {
        let bytes = secret.expose();
        super::get_resource::write_atomic(&t.path, bytes, t.mode)
            .with_context(|| format!("writing {} (for {})", t.path.display(), t.uri))?;
        tracing::info!(resource = %t.uri, path = %t.path.display(), mode = format!("{:o}", t.mode), bytes = bytes.len(), "delivered secret");
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

fn wait_and_refresh(plan: &Plan, signals: Signals, mut mount: Option<ModelMount>) -> Result<Exit> {
    let Signals {
        rt,
        mut hup,
        mut term,
        mut int,
    } = signals;
    tracing::info!(
        interval = ?plan.interval,
        "secrets delivered; refreshing on SIGHUP{}",
        if plan.interval.is_some() { " and on the interval" } else { "" }
    );
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
        let argv = p.model.unwrap();
        assert_eq!(argv[1], "decrypt");
        assert!(Cli::try_parse_from(&argv).is_ok());
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
            "not toml",
        ] {
            let e = plan(bad).unwrap_err();
            assert!(
                matches!(classify(&e), Exit::Usage | Exit::Internal),
                "{bad}: {e:#}"
            );
        }
    }

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
        let argv = plan(text).unwrap().model.unwrap();
        assert_eq!(argv[1], "mount");
        let cli = Cli::try_parse_from(&argv).unwrap();
        let crate::cli::Command::Mount(a) = cli.command else {
            panic!("not a mount: {argv:?}")
        };
        assert!(a.foreground && a.direct_io && !a.daemon_child);
        assert_eq!(a.threads, Some(4));
        assert_eq!(a.options, ["allow_other"]);
        assert!(a.ready_file.unwrap().is_absolute());
        assert_eq!(a.expect_mode, crate::cli::ExpectMode::Structure);

        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        let e = load_plan(&p, None, true).unwrap_err();
        assert_eq!(classify(&e), Exit::Usage);
        assert!(format!("{e}").contains("--once"), "{e}");
    }
}
