//! Logging setup: `tracing` to stderr, human text on a terminal or JSON lines for
//! Kubernetes. Secrets are never passed to a log macro anywhere in the workspace; this
//! module only chooses format, level and destination.
//!
//! A mount daemon that went to the background (`ccmount mount` without `--foreground`) has no
//! terminal any more: like gocryptfs, it then logs to syslog (`/dev/log`), where the
//! warnings about tampered blocks (file and block number) end up.

use std::io::{self, Write};
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

use gocryptfs_format::escape::escape_text;
use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format;

use crate::cli::{GlobalArgs, LogFormat};

/// Set once the daemon logs to syslog instead of stderr.
static SYSLOG: OnceLock<UnixDatagram> = OnceLock::new();

/// Installs the global subscriber. `RUST_LOG` overrides the level chosen by -v/-q.
/// `daemon`: this process will become a background daemon (no colours).
pub(crate) fn init(g: &GlobalArgs, daemon: bool) {
    let level = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    // rustls' platform verifier logs each failed verification as an ERROR of its own; the
    // failure is ours to report, once, with its fix (exit.rs).
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("{level},rustls_platform_verifier=off")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Sink)
        .with_target(g.verbose > 0);
    // Ignore "already set": tests may initialise twice.
    let _ = match g.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(!daemon && io::IsTerminal::is_terminal(&io::stderr()))
            .without_time()
            // Messages and fields may carry names from the cipher tree (the host's): one
            // event is one line, with control characters escaped, never a forged line.
            .fmt_fields(
                format::debug_fn(|w, field, value| {
                    let text = escape_text(&format!("{value:?}"));
                    if field.name() == "message" {
                        w.write_str(&text)
                    } else {
                        write!(w, "{}={text}", field.name())
                    }
                })
                .delimited(" "),
            )
            .try_init(),
    };
}

/// From now on, log lines go to syslog (`/dev/log`). Returns false when there is no syslog
/// socket (a container): lines are then dropped with stderr.
#[cfg_attr(
    not(feature = "fuse"),
    allow(dead_code, reason = "used by the mount daemon")
)]
pub(crate) fn to_syslog() -> bool {
    let Ok(sock) = UnixDatagram::unbound() else {
        return false;
    };
    if sock.connect("/dev/log").is_err() {
        return false;
    }
    SYSLOG.set(sock).is_ok()
}

/// Writes to stderr, or to syslog once [`to_syslog`] succeeded.
#[derive(Debug, Clone, Copy)]
struct Sink;

/// One log line on its way out; knows its level for the syslog priority.
#[derive(Debug)]
struct SinkWriter {
    level: Level,
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = SinkWriter;

    fn make_writer(&'a self) -> SinkWriter {
        SinkWriter { level: Level::INFO }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SinkWriter {
        SinkWriter {
            level: *meta.level(),
        }
    }
}

impl Write for SinkWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let Some(sock) = SYSLOG.get() else {
            return io::stderr().write(buf);
        };
        // RFC 3164 priority: facility daemon (3) * 8 + severity.
        let severity = match self.level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        let line = buf.strip_suffix(b"\n").unwrap_or(buf);
        let mut msg =
            format!("<{}>ccmount[{}]: ", 3 * 8 + severity, std::process::id()).into_bytes();
        msg.extend_from_slice(line);
        // A full or vanished syslog must never stop the file system.
        let _ = sock.send(&msg);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        if SYSLOG.get().is_some() {
            Ok(())
        } else {
            io::stderr().flush()
        }
    }
}

/// The current time as the JSON log lines write it (RFC 3339, UTC), for lines written
/// outside tracing (the final error line).
pub(crate) fn now_rfc3339() -> String {
    use tracing_subscriber::fmt::time::FormatTime as _;
    let mut out = String::new();
    let _ =
        tracing_subscriber::fmt::time::SystemTime.format_time(&mut format::Writer::new(&mut out));
    out
}
