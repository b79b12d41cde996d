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
//! The serving itself (signals, key, pin, mount, ready file, stop) is [`crate::serve`],
//! shared with the `[model] mount_at` job of `ccmount secrets`.

use std::ffi::OsString;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};

use anyhow::{Context, Result};
use tracing::debug;

use crate::cli::{GlobalArgs, MountArgs};
use crate::exit::{self, Exit, coded};
use crate::logging;
use crate::plan::MountPlan;
use crate::serve;

/// Most bytes read from the child's status pipe.
const MAX_STATUS: u64 = 64 * 1024;

pub(crate) fn run(g: &GlobalArgs, a: &MountArgs, argv: &[OsString]) -> Result<Exit> {
    let plan = MountPlan::from_args(a)?;
    if !a.foreground && !a.daemon_child {
        return spawn_daemon(argv, None);
    }
    let status = a.daemon_child.then(StatusPipe::stdout);
    let ready = || {
        if let Some(s) = &status {
            s.ready();
        }
    };
    match serve::foreground(g, &plan, ready) {
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

/// Starts the daemon child and waits until it reports "ready" or an error. `stdin`, if any,
/// is written to the child's stdin (`secure-mount --request -`: the request read here).
pub(crate) fn spawn_daemon(argv: &[OsString], stdin: Option<&[u8]>) -> Result<Exit> {
    let exe = std::env::current_exe().context("finding the ccmount binary to start the daemon")?;
    let (rd, wr) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .context("creating the daemon status pipe")?;
    let mut child = Command::new(&exe)
        .args(argv.iter().skip(1))
        .arg("--daemon-child")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::from(wr))
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting the mount daemon {}", exe.display()))?;
    if let (Some(bytes), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // The child reads it first; if it died instead, its status (below) says why.
        let _ = pipe.write_all(bytes);
    }
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
pub(crate) struct StatusPipe;

impl StatusPipe {
    pub(crate) fn stdout() -> Self {
        StatusPipe
    }

    fn send(&self, line: &str) {
        let mut out = std::io::stdout().lock();
        // The parent may be gone (killed); nothing to do then.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }

    pub(crate) fn failed(&self, code: Exit, msg: &str) {
        let one_line = msg.replace(['\n', '\r'], " ");
        self.send(&format!("error {} {one_line}", code as u8));
    }

    /// Reports "ready" and detaches: logs to syslog, new session, stdio to /dev/null, `/`.
    pub(crate) fn ready(&self) {
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
