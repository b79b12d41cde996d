//! Logging setup: `tracing` to stderr, human text on a terminal or JSON lines for
//! Kubernetes. Secrets are never passed to a log macro anywhere in the workspace; this
//! module only chooses format and level.

use tracing_subscriber::EnvFilter;

use crate::cli::{GlobalArgs, LogFormat};

/// Installs the global subscriber. `RUST_LOG` overrides the level chosen by -v/-q.
pub(crate) fn init(g: &GlobalArgs) {
    let level = if g.quiet {
        "error"
    } else {
        match g.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(g.verbose > 0);
    // Ignore "already set": tests may initialise twice.
    let _ = match g.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .without_time()
            .try_init(),
    };
}
