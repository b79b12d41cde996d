//! Progress for long offline work: a bar on stderr when it is a terminal; when it is not (a
//! daemon child's log, a systemd unit, an init container) one log line every
//! [`LOG_EVERY`] with bytes done, total and rate, so a long wait says what it does; nothing
//! when the user asked for quiet or JSON output.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gocryptfs_format::Progress;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a progress line is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(10);

/// A byte-count progress bar, periodic log lines, or nothing.
#[derive(Debug)]
pub(crate) struct Bar(Shown);

#[derive(Debug)]
enum Shown {
    Nothing,
    Bar(ProgressBar),
    Log(LogLines),
}

#[derive(Debug)]
struct LogLines {
    msg: &'static str,
    start: Instant,
    total: AtomicU64,
    done: AtomicU64,
    /// When the last line was logged; `try_lock` so worker threads never wait on it.
    last: Mutex<Instant>,
}

impl Bar {
    /// Progress labelled `msg` if `enabled`: a bar on a terminal, else log lines.
    pub(crate) fn new(msg: &'static str, enabled: bool) -> Self {
        if !enabled {
            return Bar(Shown::Nothing);
        }
        if !std::io::stderr().is_terminal() {
            let now = Instant::now();
            return Bar(Shown::Log(LogLines {
                msg,
                start: now,
                total: AtomicU64::new(0),
                done: AtomicU64::new(0),
                last: Mutex::new(now),
            }));
        }
        // Hidden until the total is known: no "0 B/0 B" frame before the work starts.
        let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::hidden());
        let style = ProgressStyle::with_template(
            "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        pb.set_style(style);
        pb.set_message(msg);
        Bar(Shown::Bar(pb))
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(&self) {
        if let Shown::Bar(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

impl LogLines {
    fn advance(&self, bytes: u64) {
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let Ok(mut last) = self.last.try_lock() else {
            return;
        };
        if last.elapsed() < LOG_EVERY {
            return;
        }
        *last = Instant::now();
        let total = self.total.load(Ordering::Relaxed);
        let secs = self.start.elapsed().as_secs_f64().max(1e-3);
        let pct = if total > 0 {
            format!(" ({:.0}%)", done as f64 * 100.0 / total as f64)
        } else {
            String::new()
        };
        tracing::info!(
            "{}: {} of {}{pct}, {}/s",
            self.msg,
            HumanBytes(done),
            HumanBytes(total),
            HumanBytes((done as f64 / secs) as u64)
        );
    }
}

impl Progress for Bar {
    fn set_total(&self, bytes: u64) {
        match &self.0 {
            Shown::Bar(pb) => {
                pb.set_length(bytes);
                if pb.is_hidden() {
                    pb.set_draw_target(ProgressDrawTarget::stderr());
                }
            }
            Shown::Log(l) => l.total.store(bytes, Ordering::Relaxed),
            Shown::Nothing => {}
        }
    }

    fn advance(&self, bytes: u64) {
        match &self.0 {
            Shown::Bar(pb) => pb.inc(bytes),
            Shown::Log(l) => l.advance(bytes),
            Shown::Nothing => {}
        }
    }
}

/// Whether human summaries go to stderr: on a terminal, and not `-q`.
pub(crate) fn chatty(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// `n` and the noun, singular or plural ("1 file", "3 files", "1 directory").
pub(crate) fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}
