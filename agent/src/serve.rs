//! The life of a FUSE mount in this process, shared by `ccmount mount` (foreground or the
//! daemon child) and `ccmount secrets` (a `[model] mount_at` job served beside the refresh
//! loop): cheap checks, key, pin check, mount, ready file, stop, wait.
//!
//! A stop signal unmounts (lazily when busy: the mount point is freed at once and open files
//! keep working until closed), so no stale mount is left. Core dumps are already off
//! (`hardening::disable_core_dumps` in `main`, before any key is read); the serving process
//! also locks its memory once the key is loaded (best effort). `--expect PIN` checks the
//! tree before the mount goes live, and the file system then serves only the accepted tree
//! (`fuse_decrypt::mount_pinned`); see `docs/manifests.md` for the remaining window.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use anyhow::{Context, Result};
use fuse_decrypt::{self as fuse, MountHandle, Unmounted, Unmounter};
use gocryptfs_format::manifest::{CheckMode, check};
use nix::sys::signal::{SigSet, Signal};
use tracing::{debug, error, info, warn};

use crate::cli::{ExpectMode, GlobalArgs};
use crate::exit::{Exit, coded};
use crate::keys;
use crate::pin;
use crate::plan::MountPlan;
use crate::progress::Bar;
use crate::receipt::Receipt;

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

/// Serves `plan` until the mount goes away: stop signals are handled on their own thread
/// (SIGTERM/SIGINT/SIGQUIT unmount, SIGHUP is ignored); `ready` runs once the mount is live
/// (the daemon child reports to its parent and detaches there).
pub(crate) fn foreground(g: &GlobalArgs, plan: &MountPlan, ready: impl FnOnce()) -> Result<Exit> {
    foreground_with(g, plan, None, ready)
}

fn foreground_with(
    g: &GlobalArgs,
    plan: &MountPlan,
    supplied: Option<Supplied>,
    ready: impl FnOnce(),
) -> Result<Exit> {
    let stage = Arc::new(Mutex::new(Stage::Starting));
    watch_signals(Arc::clone(&stage))?;
    let live = start(g, plan, &stage, supplied)?;
    ready();
    crate::notify::notify("READY=1");
    live.wait(|| {
        matches!(
            *stage.lock().unwrap_or_else(PoisonError::into_inner),
            Stage::Stopping
        )
    })?;
    Ok(Exit::Ok)
}

/// What a caller resolved itself and hands to [`foreground_supplied`] (`secure-mount`: the
/// password and the storage credentials are fields of the CDH request, unsealed in memory).
pub(crate) struct Supplied {
    /// The model key (the plan's key is [`crate::plan::KeyPlan::Supplied`]).
    pub(crate) key: gocryptfs_format::KeySource,
    /// The storage options, credentials included, of the plan's `s3://` cipher tree.
    pub(crate) s3: s3_source::S3Options,
}

impl std::fmt::Debug for Supplied {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supplied").finish_non_exhaustive()
    }
}

/// [`foreground`] with the key and storage options `supplied` instead of those the plan and
/// the global flags name.
pub(crate) fn foreground_supplied(
    g: &GlobalArgs,
    plan: &MountPlan,
    supplied: Supplied,
    ready: impl FnOnce(),
) -> Result<Exit> {
    foreground_with(g, plan, Some(supplied), ready)
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
pub(crate) fn start_beside(g: &GlobalArgs, plan: &MountPlan) -> Result<Live> {
    start(g, plan, &Mutex::new(Stage::Starting), None)
}

/// Everything from the cheap checks to the live mount and its ready file. `stage` is held
/// while the mount is made, so a stop signal handled on another thread sees it `Mounted`.
fn start(
    g: &GlobalArgs,
    a: &MountPlan,
    stage: &Mutex<Stage>,
    supplied: Option<Supplied>,
) -> Result<Live> {
    let cfg = &a.config;
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
    if crate::remote::is_s3(&a.cipherdir) {
        return start_s3(g, a, stage, supplied, &mountpoint, ready);
    }
    if supplied.is_some() {
        return Err(anyhow::anyhow!(
            "invariant: a supplied key and storage options serve s3:// trees only"
        ));
    }
    let cipherdir = std::fs::canonicalize(&a.cipherdir).unwrap_or_else(|_| a.cipherdir.clone());
    fuse::refuse_overlap(&cipherdir, &mountpoint)?;
    // The pin (a kbs:/// one on the same attested session as the key) is resolved first.
    let pin = pin::resolve(&a.expect)?;
    let key = keys::load(&a.key)?;
    let dir = Arc::new(keys::open_dir(g, &cipherdir, key)?);
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
    if let Some(path) = &a.receipt {
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
            key_resource: a.key.resource().as_deref(),
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

/// [`start`] for an `s3://` tree: the bucket is listed and every name decrypted before the
/// mount goes live (a tree with structural errors is refused, as `decrypt` refuses it); with
/// `--expect` every block is checked first and only the accepted files are served, each read
/// held to its checked object version and file ID. Contents are read on demand in segments
/// ([`s3_source::RemoteReader`]: ranged GETs, a bounded cache, read-ahead).
fn start_s3(
    g: &GlobalArgs,
    a: &MountPlan,
    stage: &Mutex<Stage>,
    supplied: Option<Supplied>,
    mountpoint: &Path,
    ready: Option<PathBuf>,
) -> Result<Live> {
    let cfg = &a.config;
    let pin = pin::resolve(&a.expect)?;
    let (key, bucket) = match supplied {
        Some(s) => {
            let loc = crate::remote::location(&a.cipherdir)?;
            (s.key, s3_source::Bucket::connect(loc, s.s3)?)
        }
        None => {
            let key = keys::load(&a.key)?;
            (key, crate::remote::bucket(g, &a.cipherdir)?)
        }
    };
    let location = bucket.location().to_string();
    let tree = crate::remote::open_tree(g, bucket, key)?;
    lock_memory();
    if let Some(first) = tree.first_error() {
        for p in tree.problems.iter().filter(|p| !p.warning).take(20) {
            error!("{}", p.error);
        }
        return Err(anyhow::Error::new(s3_source::S3Error::Problems {
            count: tree.problems.iter().filter(|p| !p.warning).count(),
            first: first.to_string(),
            kind: first.kind(),
        })
        .context(format!("{location}: not mounted")));
    }
    let accepted = match &pin {
        Some(p) => {
            if a.expect_mode == ExpectMode::Structure {
                info!(
                    "--expect-mode structure over s3://: every block is checked (the headers alone cost a request per file anyway)"
                );
            }
            let t = Instant::now();
            let bar = Bar::new("check", !g.quiet && a.foreground);
            let report = tree.verify(true, &bar);
            bar.finish();
            let v =
                gocryptfs_format::manifest::check_report(tree.cipher_dir(), &report?, &p.expected)
                    .map_err(pin::mismatch_error)?;
            info!(
                digest = %v.digest(),
                seconds = t.elapsed().as_secs_f64(),
                "model accepted before going live"
            );
            Some(v)
        }
        None => None,
    };
    if let Some(path) = &a.receipt {
        let Some(v) = &accepted else {
            return Err(coded(
                Exit::Usage,
                "mount --receipt needs --expect (the receipt records the accepted model digest)",
            ));
        };
        Receipt {
            command: "mount",
            cipherdir: &a.cipherdir,
            digest: v.digest(),
            pin: pin.as_ref(),
            key_resource: a.key.resource().as_deref(),
        }
        .write(path)?;
    }
    // The served tree: everything listed, or only what the pin accepted.
    let mut snap = fuse::Snapshot::new();
    let mut ids = Vec::with_capacity(tree.files.len());
    for d in &tree.dirs {
        if accepted.as_ref().is_none_or(|m| m.get(d).is_some()) {
            snap.add_dir(d)
                .with_context(|| format!("serving {location}"))?;
        }
    }
    for (i, f) in tree.files.iter().enumerate() {
        let want = match &accepted {
            None => None,
            Some(m) => match m.get(&f.plain).map(|e| &e.kind) {
                Some(gocryptfs_format::manifest::EntryKind::File(pin))
                    if pin.size == f.plain_size =>
                {
                    pin.file_id
                }
                _ => {
                    ids.push(None);
                    continue;
                }
            },
        };
        ids.push(want);
        snap.add_file(&f.plain, f.plain_size, i)
            .with_context(|| format!("serving {location}"))?;
    }
    let opts = s3_source::ReaderOptions {
        cache_bytes: a.cache_size.unwrap_or(s3_source::DEFAULT_CACHE),
        ..s3_source::ReaderOptions::default()
    };
    let reader = s3_source::RemoteReader::with_expected_ids(Arc::new(tree), opts, ids);
    let source: Arc<dyn fuse::ContentSource> = Arc::new(S3Content(reader));
    let handle: MountHandle = {
        let mut st = stage.lock().unwrap_or_else(PoisonError::into_inner);
        let h = fuse::mount_snapshot(
            snap,
            source,
            std::ffi::OsStr::new(&location),
            mountpoint,
            cfg,
        )?;
        *st = Stage::Mounted {
            unmounter: h.unmounter(),
            ready: ready.clone(),
        };
        h
    };
    if let Some(r) = &ready
        && let Err(e) = write_ready(r, mountpoint)
    {
        let _ = handle.unmount();
        return Err(e);
    }
    info!(
        "mounted {location} on {} (read-only{})",
        mountpoint.display(),
        if cfg.direct_io { ", direct I/O" } else { "" }
    );
    Ok(Live { handle, ready })
}

/// The FUSE view's contents: plaintext segments of the bucket's objects.
struct S3Content(Arc<s3_source::RemoteReader>);

impl fuse::ContentSource for S3Content {
    fn read_at(&self, file: usize, offset: u64, buf: &mut [u8]) -> Result<usize, String> {
        self.0.read_at(file, offset, buf).map_err(|e| e.to_string())
    }
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
            crate::notify::notify("STOPPING=1");
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
    crate::fsutil::write_atomic(path, body.as_bytes(), 0o644)
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

/// A live mount served beside other work (`secrets`): a thread waits for it to go away and
/// reports on a channel the owner's loop selects on.
#[derive(Debug)]
pub(crate) struct Watched {
    unmounter: Unmounter,
    ready: Option<PathBuf>,
    stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Fires when the mount is gone (our stop, or an unmount from outside).
    pub(crate) ended: tokio::sync::oneshot::Receiver<Result<()>>,
}

impl Watched {
    /// Starts the watcher thread of `live`.
    ///
    /// # Errors
    /// The thread cannot be started (the mount is then stopped).
    pub(crate) fn watch(live: Live) -> Result<Self> {
        use std::sync::atomic::{AtomicBool, Ordering};
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
            stop(&unmounter, ready.as_deref());
            return Err(e).context("starting the thread that watches the model mount");
        }
        Ok(Self {
            unmounter,
            ready,
            stopping,
            ended,
        })
    }

    /// Unmounts (lazily when busy) and waits for the serving loop to end. Blocks: call it
    /// outside any async runtime.
    ///
    /// # Errors
    /// The serving loop failed.
    pub(crate) fn stop(self) -> Result<()> {
        self.stopping
            .store(true, std::sync::atomic::Ordering::SeqCst);
        stop(&self.unmounter, self.ready.as_deref());
        self.ended
            .blocking_recv()
            .unwrap_or_else(|_| Err(anyhow::anyhow!("the model mount's thread ended early")))
    }

    /// Stops the mount after `err` ended the run, returning `err` (a stop failure is logged).
    pub(crate) fn stop_after(self, err: anyhow::Error) -> anyhow::Error {
        if let Err(e) = self.stop() {
            error!("unmounting the model: {e:#}");
        }
        err
    }
}
