//! `ccmount mount CIPHERDIR MOUNTPOINT KEY [-f] [--ready-file FILE] [-o OPTS] [--threads N]
//! [--direct-io]`: the read-only FUSE mount, in the foreground or as a background daemon.
//!
//! Background mode works like gocryptfs (`daemonize.go`: the parent re-executes itself and
//! waits for the child to report) but never forks a process that has threads: the parent
//! starts a fresh `ccmount` with the same arguments plus the hidden `--daemon-child`, whose
//! stdout is a pipe. The child loads the key itself (from the same files, or later the KBS;
//! nothing secret crosses argv, the environment or the pipe), mounts, then writes `ready`
//! (or `error CODE MESSAGE`) on the pipe and detaches (new session, `/`, stdio to
//! `/dev/null`, logs to syslog). The parent exits 0 only once the mount is live.
//!
//! The serving process blocks SIGTERM/SIGINT/SIGQUIT/SIGHUP in every thread and waits for
//! them on one thread: a stop signal unmounts (lazily when busy: the mount point is freed at
//! once and open files keep working until closed), so no stale mount is left. Core dumps are
//! already off (`hardening::disable_core_dumps` in `main`, before any key is read); the
//! serving process also locks its memory once the key is loaded (best effort).
//!
//! `--expect PIN` checks the whole tree (or, with `--expect-mode structure`, names, types,
//! sizes and file IDs) before the mount goes live, and the file system then serves only the
//! accepted tree (`fuse::mount_pinned`); see `docs/manifests.md` for the remaining window.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context, Result};
use fuse_decrypt::{self as fuse, MountHandle, Unmounted, Unmounter};
use gocryptfs_format::manifest::{CheckMode, check};
use nix::sys::signal::{SigSet, Signal};
use tracing::{debug, error, info, warn};

use crate::cli::{ExpectMode, GlobalArgs, MountArgs};
use crate::exit::{self, Exit, coded};
use crate::pin;
use crate::progress::Bar;
use crate::receipt::Receipt;
use crate::{keys, logging, mountopts};

/// Most bytes read from the child's status pipe.
const MAX_STATUS: u64 = 64 * 1024;

pub(crate) fn run(g: &GlobalArgs, a: MountArgs, argv: &[OsString]) -> Result<Exit> {
    let cfg = mountopts::config(&a).map_err(|m| coded(Exit::Usage, m))?;
    if !a.foreground && !a.daemon_child {
        return spawn_daemon(argv);
    }
    let status = a.daemon_child.then(StatusPipe::stdout);
    match serve(g, &a, &cfg, status.as_ref()) {
        Ok(code) => Ok(code),
        Err(err) => match status {
            Some(s) => {
                // The parent prints it; this process exits with the same code quietly.
                let code = exit::classify(&err);
                s.failed(code, &exit::message(&err));
                Ok(code)
            }
            None => Err(err),
        },
    }
}

// ---------------------------------------------------------------- parent (background) ----

/// Starts the daemon child and waits until it reports "ready" or an error.
fn spawn_daemon(argv: &[OsString]) -> Result<Exit> {
    let exe = std::env::current_exe().context("finding the ccmount binary to start the daemon")?;
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .context("creating the daemon status pipe")?;
    let mut child = Command::new(&exe)
        .args(argv.iter().skip(1))
        .arg("--daemon-child")
        .stdin(Stdio::null())
        .stdout(Stdio::from(wr))
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the mount daemon {}", exe.display()))?;
    // The Command (and with it our copy of the write end) is gone: EOF means the child died.
    let mut line = String::new();
    let read = BufReader::new(File::from(rd).take(MAX_STATUS)).read_line(&mut line);
    let line = line.trim_end();
    if line == "ready" {
        return Ok(Exit::Ok);
    }
    if let Some(rest) = line.strip_prefix("error ") {
        let (num, msg) = rest
            .split_once(' ')
            .unwrap_or((rest, "the mount daemon failed"));
        let code = num
            .parse::<u8>()
            .ok()
            .and_then(Exit::from_code)
            .unwrap_or(Exit::MountFailed);
        // Reap it so it does not linger as a zombie of a long-lived caller.
        let _ = child.wait();
        return Err(coded(code, msg.to_owned()));
    }
    let status = child
        .wait()
        .map_or_else(|e| format!("unknown status ({e})"), |s| s.to_string());
    let why = read.err().map(|e| format!(" ({e})")).unwrap_or_default();
    Err(coded(
        Exit::MountFailed,
        format!("the mount daemon exited before the mount was live{why}: {status}"),
    ))
}

/// The child's end of the status pipe (its stdout).
#[derive(Debug)]
struct StatusPipe;

impl StatusPipe {
    fn stdout() -> Self {
        StatusPipe
    }

    fn send(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        // The parent may be gone (killed); nothing to do then.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }

    fn failed(&self, code: Exit, msg: &str) {
        let one_line = msg.replace(['\n', '\r'], " ");
        self.send(&format!("error {} {one_line}", code as u8));
    }

    /// Reports "ready" and detaches: logs to syslog, new session, stdio to /dev/null, `/`.
    fn ready(&self) {
        if !logging::to_syslog() {
            debug!("no /dev/log: the background daemon's log lines are dropped");
        }
        match File::options().read(true).write(true).open("/dev/null") {
            Ok(null) => {
                // stderr first: the parent's caller may wait for EOF on it.
                let _ = rustix::stdio::dup2_stderr(&null);
                let _ = rustix::stdio::dup2_stdin(&null);
                self.send("ready");
                let _ = rustix::stdio::dup2_stdout(&null);
            }
            Err(_) => self.send("ready"),
        }
        let _ = rustix::process::setsid();
        let _ = std::env::set_current_dir("/");
    }
}

// ------------------------------------------------------------------- serving process ----

/// Where the mount is in its life, for the signal thread.
#[derive(Debug)]
enum Stage {
    Starting,
    Mounted {
        unmounter: Unmounter,
        ready: Option<PathBuf>,
    },
    Stopping,
}

fn serve(
    g: &GlobalArgs,
    a: &MountArgs,
    cfg: &fuse::MountConfig,
    status: Option<&StatusPipe>,
) -> Result<Exit> {
    let stage = Arc::new(Mutex::new(Stage::Starting));
    watch_signals(Arc::clone(&stage))?;
    let live = start(g, a, cfg, &stage)?;
    if let Some(s) = status {
        s.ready();
    }
    live.wait(|| {
        matches!(
            *stage.lock().unwrap_or_else(PoisonError::into_inner),
            Stage::Stopping
        )
    })?;
    Ok(Exit::Ok)
}

/// A live mount made by [`start`]; its owner stops it with [`stop`] and waits with
/// [`Live::wait`].
#[derive(Debug)]
pub(crate) struct Live {
    handle: MountHandle,
    ready: Option<PathBuf>,
}

impl Live {
    /// Stops this mount from any thread.
    pub(crate) fn unmounter(&self) -> Unmounter {
        self.handle.unmounter()
    }

    /// The ready file, if any (to remove before unmounting).
    pub(crate) fn ready_file(&self) -> Option<PathBuf> {
        self.ready.clone()
    }

    /// Waits until the mount goes away (our stop, `ccmount umount`, `umount`), then removes
    /// the ready file. `stopping` says whether the owner itself asked for the unmount.
    pub(crate) fn wait(self, stopping: impl Fn() -> bool) -> Result<()> {
        let mountpoint = self.handle.mountpoint().to_path_buf();
        let mut res = self.handle.wait();
        if let Some(r) = &self.ready {
            let _ = std::fs::remove_file(r);
        }
        // Torn down on our own stop signal: a loop thread that saw the connection go away
        // with an error other than ENODEV (e.g. a reply to a request the detach aborted) is
        // not a failure of the mount the user asked to stop.
        if let Err(e) = &res
            && stopping()
        {
            warn!("while stopping: {e}");
            res = Ok(());
        }
        res.with_context(|| format!("serving {}", mountpoint.display()))?;
        info!("unmounted {}", mountpoint.display());
        Ok(())
    }
}

/// Runs a mount in a process that goes on with other work (`ccmount secrets` with a
/// `[model] mount_at` job): the same checks, key, pin and mount as `ccmount mount -f`; the
/// caller owns the signals and stops the mount with [`stop`].
pub(crate) fn start_beside(g: &GlobalArgs, a: &MountArgs) -> Result<Live> {
    let cfg = mountopts::config(a).map_err(|m| coded(Exit::Usage, m))?;
    start(g, a, &cfg, &Mutex::new(Stage::Starting))
}

/// Everything from the cheap checks to the live mount and its ready file. `stage` is held
/// while the mount is made, so a stop signal handled on another thread sees it `Mounted`.
fn start(
    g: &GlobalArgs,
    a: &MountArgs,
    cfg: &fuse::MountConfig,
    stage: &Mutex<Stage>,
) -> Result<Live> {
    let ready = a
        .ready_file
        .as_deref()
        .map(absolute)
        .transpose()
        .context("resolving --ready-file")?;
    if let Some(r) = &ready {
        // A leftover from a crash must not announce a mount that is not there.
        let _ = std::fs::remove_file(r);
    }
    // Cheap checks first: no point in running scrypt or attesting for a mount that cannot be.
    let mountpoint = fuse::preflight(&a.mountpoint, cfg.nonempty)?;
    let cipherdir = std::fs::canonicalize(&a.cipherdir).unwrap_or_else(|_| a.cipherdir.clone());
    // The pin (a kbs:/// one on the same attested session as the key) is resolved first.
    let pin = pin::resolve(&a.expect)?;
    let key = keys::require(&a.key)?;
    let dir = Arc::new(super::open_dir(&cipherdir, key)?);
    lock_memory();

    // `--expect`: the whole tree is checked before the mount goes live; afterwards only
    // what was accepted is served (fuse::mount_pinned).
    let verified = match &pin {
        Some(p) => {
            let mode = match a.expect_mode {
                ExpectMode::Full => CheckMode::Full,
                ExpectMode::Structure => CheckMode::Structure,
            };
            let t = Instant::now();
            let bar = Bar::new("check", !g.quiet && a.foreground);
            let v = check(&dir, &p.expected, mode, &bar).map_err(pin::mismatch_error);
            bar.finish();
            let v = v?;
            info!(
                digest = %v.digest,
                mode = ?a.expect_mode,
                seconds = t.elapsed().as_secs_f64(),
                "model accepted before going live"
            );
            Some(Arc::new(v))
        }
        None => None,
    };
    if let Some(path) = &g.receipt {
        let Some(v) = &verified else {
            return Err(coded(
                Exit::Usage,
                "mount --receipt needs --expect (the receipt records the accepted model digest)",
            ));
        };
        Receipt {
            command: "mount",
            cipherdir: &cipherdir,
            digest: v.digest,
            pin: pin.as_ref(),
            key_resource: a.key.key.as_deref(),
        }
        .write(path)?;
    }

    let handle: MountHandle = {
        let mut st = stage.lock().unwrap_or_else(PoisonError::into_inner);
        let h = fuse::mount_pinned(dir, &mountpoint, cfg, verified)?;
        *st = Stage::Mounted {
            unmounter: h.unmounter(),
            ready: ready.clone(),
        };
        h
    };
    if let Some(r) = &ready
        && let Err(e) = write_ready(r, &mountpoint)
    {
        let _ = handle.unmount();
        return Err(e);
    }
    info!(
        "mounted {} on {} (read-only{})",
        cipherdir.display(),
        mountpoint.display(),
        if cfg.direct_io { ", direct I/O" } else { "" }
    );
    Ok(Live { handle, ready })
}

/// Blocks the stop signals in this thread (and so in every thread started later) and
/// handles them on a dedicated thread.
fn watch_signals(stage: Arc<Mutex<Stage>>) -> Result<()> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGQUIT,
        Signal::SIGHUP,
    ] {
        set.add(s);
    }
    set.thread_block().context("blocking signals")?;
    std::thread::Builder::new()
        .name("ccmount-signals".into())
        .spawn(move || {
            while let Ok(sig) = set.wait() {
                if sig == Signal::SIGHUP {
                    debug!("SIGHUP ignored (stop with SIGTERM or ccmount umount)");
                    continue;
                }
                on_stop_signal(sig, &stage);
            }
        })
        .context("starting the signal thread")?;
    Ok(())
}

fn on_stop_signal(sig: Signal, stage: &Mutex<Stage>) {
    let mut st = stage.lock().unwrap_or_else(PoisonError::into_inner);
    match &*st {
        Stage::Starting => {
            info!("{sig} before the mount was live: stopping");
            std::process::exit(128 + sig as i32);
        }
        Stage::Mounted { unmounter, ready } => {
            info!("{sig}: unmounting {}", unmounter.path().display());
            stop(unmounter, ready.as_deref());
            *st = Stage::Stopping;
        }
        Stage::Stopping => {
            warn!("{sig} again: exiting now");
            std::process::exit(128 + sig as i32);
        }
    }
}

/// Unmounts (lazily when busy), removing the ready file first so a probe never sees a
/// stale "ready". Errors are logged: this runs on a stop path that must not fail.
pub(crate) fn stop(unmounter: &Unmounter, ready: Option<&Path>) {
    if let Some(r) = ready {
        let _ = std::fs::remove_file(r);
    }
    match unmounter.unmount() {
        Ok(Unmounted::Detached) => warn!(
            "{} was busy: detached; open files keep working until they are closed",
            unmounter.path().display()
        ),
        Ok(_) => {}
        Err(e) => error!("{e}"),
    }
}

/// `path` made absolute against the current directory (the daemon later moves to `/`).
fn absolute(path: &Path) -> Result<PathBuf> {
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// The ready file: written atomically once the mount is live, removed when it goes.
fn write_ready(path: &Path, mountpoint: &Path) -> Result<()> {
    let body = format!(
        "pid={}\nmountpoint={}\n",
        std::process::id(),
        mountpoint.display()
    );
    super::write_atomic(path, body.as_bytes())
        .with_context(|| format!("writing the ready file {}", path.display()))
}

/// Locks the pages mapped now (the key schedules among them) so they are never swapped out.
/// `ONFAULT`: only pages already touched count, so the RSS does not grow.
fn lock_memory() {
    use rustix::mm::{MlockAllFlags, mlockall};
    if let Err(e) = mlockall(MlockAllFlags::CURRENT | MlockAllFlags::ONFAULT) {
        warn!(
            "could not lock the key in memory (mlockall: {e}); it could be swapped out: give the daemon CAP_IPC_LOCK or a larger RLIMIT_MEMLOCK"
        );
    }
}
