//! Progress bars for long offline work: drawn on stderr only when it is a terminal and the
//! user did not ask for quiet or JSON output; otherwise a no-op.

use std::io::IsTerminal;

use gocryptfs_format::Progress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A byte-count progress bar, or nothing.
#[derive(Debug)]
pub(crate) struct Bar(Option<ProgressBar>);

impl Bar {
    /// A bar labelled `msg` if stderr is a terminal and `enabled`.
    pub(crate) fn new(msg: &'static str, enabled: bool) -> Self {
        if !enabled || !std::io::stderr().is_terminal() {
            return Bar(None);
        }
        let pb = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template(
            "{msg:>9} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        pb.set_style(style);
        pb.set_message(msg);
        Bar(Some(pb))
    }

    /// Removes the bar from the terminal.
    pub(crate) fn finish(&self) {
        if let Some(pb) = &self.0 {
            pb.finish_and_clear();
        }
    }
}

impl Progress for Bar {
    fn set_total(&self, bytes: u64) {
        if let Some(pb) = &self.0 {
            pb.set_length(bytes);
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(pb) = &self.0 {
            pb.inc(bytes);
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
