//! `ccmount`: the command-line agent. Glue only: parsing, plans, exit codes, logging.
//! The work happens in the `attest` and `fuse-decrypt` libraries.

// Doc comments in `cli.rs` are clap's help text, written for a terminal (bare URLs,
// `sha256:<digest>`), not rustdoc markup.
#![allow(rustdoc::bare_urls, rustdoc::invalid_html_tags)]

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser as _;

mod cli;
mod cmd;
mod exit;
mod fsutil;
mod hardening;
mod interrupt;
mod kbs;
mod keys;
mod logging;
#[cfg(feature = "fuse")]
mod mountopts;
mod notify;
mod pin;
mod plan;
mod policy;
mod progress;
mod receipt;
mod remote;
#[cfg(feature = "fuse")]
mod serve;
mod unseal;
mod version;

fn main() -> ExitCode {
    // Before anything reads a secret: no core file may ever hold one.
    let hardened = hardening::disable_core_dumps();
    hardening::fixed_mmap_threshold();
    let argv: Vec<OsString> = std::env::args_os().collect();
    // `mount -t fuse.ccmount SRC MNT -o OPTS` runs `ccmount SRC MNT -o OPTS` (mount.fuse3).
    #[cfg(feature = "fuse")]
    let argv = match mountopts::helper_argv(&argv) {
        Ok(Some(rewritten)) => rewritten,
        Ok(None) => argv,
        Err(msg) => {
            return report(&exit::coded(exit::Exit::Usage, msg), cli::LogFormat::Text);
        }
    };
    let mut cli = cli::Cli::parse_from(&argv);
    if let Err(e) = plan::place_receipt(cli.receipt.take(), &mut cli.command) {
        return report(&e, cli.global.log_format);
    }
    let daemon = matches!(&cli.command, cli::Command::Mount(m) if m.daemon_child)
        || matches!(&cli.command, cli::Command::SecureMount(m) if m.daemon_child);
    logging::init(&cli.global, daemon);
    hardened.log();
    kbs::install(&cli.global);
    unseal::install(&cli.global);
    let json = cli.command.wants_json();
    match cmd::dispatch(&cli.global, cli.command, &argv) {
        Ok(code) => code.code(),
        Err(err) => {
            let code = report(&err, cli.global.log_format);
            if json && !fsutil::json_printed() {
                // `--json` promises a document on stdout, failures included.
                let _ = fsutil::print_json(&serde_json::json!({
                    "ok": false,
                    "error": exit::message(&err),
                    "exit_code": exit::classify(&err) as i32,
                }));
            }
            code
        }
    }
}

/// Prints the error once, on one line, and maps it to its documented exit code.
/// With `--log-format json` the error is one JSON object too, so that log collectors that
/// parse every stderr line (Kubernetes) see it.
fn report(err: &anyhow::Error, format: cli::LogFormat) -> ExitCode {
    // A closed stdout (e.g. `| head`) is not a failure.
    if err
        .chain()
        .filter_map(|c| c.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    {
        return ExitCode::SUCCESS;
    }
    let code = exit::classify(err);
    let mut stderr = std::io::stderr().lock();
    // The context chain joined with ": " on one line, then the fix; names from the cipher
    // tree cannot break the line or drive the terminal.
    let message = exit::message(err);
    let message = match format {
        cli::LogFormat::Text => gocryptfs_format::escape::escape_text(&message),
        cli::LogFormat::Json => message,
    };
    let _ = match format {
        cli::LogFormat::Text => writeln!(stderr, "ccmount: error: {message}"),
        cli::LogFormat::Json => writeln!(
            stderr,
            "{}",
            serde_json::json!({
                "timestamp": logging::now_rfc3339(),
                "level": "ERROR",
                "message": message,
                "exit_code": code as i32,
                "target": "ccmount",
            })
        ),
    };
    code.code()
}
