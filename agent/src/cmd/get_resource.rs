//! `ccmount get-resource kbs:///REPO/TYPE/TAG [--out FILE] [--mode 0400] [--force]`.
//!
//! Mirrors `../shared/design/cli.md` (get-resource) and `product.md` security rules: the
//! secret goes to stdout only when stdout is not a terminal, or to `--out`, written
//! atomically (temporary file in the same directory, created 0600, mode set, fsync, rename)
//! and never over an existing file without `--force`. Checks happen before any network call.

use std::io::{IsTerminal as _, Write as _};

use anyhow::{Context as _, Result};
use attest::ResourceUri;

use crate::cli::{GetResourceArgs, GlobalArgs};
use crate::exit::{Exit, coded};
use crate::kbs::kbs_client;

/// Runs the command.
pub(crate) fn run(global: &GlobalArgs, args: GetResourceArgs) -> Result<Exit> {
    let uri = ResourceUri::parse(&args.uri)?;
    let mode = parse_mode(&args.mode)?;
    match &args.out {
        Some(out) => refuse_existing(out, args.force)?,
        None if std::io::stdout().is_terminal() => {
            return Err(coded(
                Exit::Usage,
                "refusing to print a secret to a terminal: use --out FILE or redirect stdout",
            ));
        }
        None => {}
    }
    let mut session = kbs_client(global)?;
    let secret = session
        .get_resource(&uri)
        .with_context(|| format!("fetching {uri} from {}", session.url()))?;
    crate::hardening::lock(secret.expose(), "KBS resource");
    match &args.out {
        Some(out) => {
            crate::fsutil::write_atomic(out, secret.expose(), mode)
                .with_context(|| format!("writing {}", out.display()))?;
            tracing::info!(resource = %uri, out = %out.display(), bytes = secret.len(), "wrote KBS resource");
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(secret.expose())?;
            stdout.flush()?;
        }
    }
    Ok(Exit::Ok)
}

/// An existing `out` (file, link, anything) is replaced only with `--force` (else exit 5).
pub(crate) fn refuse_existing(out: &std::path::Path, force: bool) -> Result<()> {
    if !force && out.symlink_metadata().is_ok() {
        return Err(coded(
            Exit::OutputExists,
            format!("{} exists: pass --force to replace it", out.display()),
        ));
    }
    Ok(())
}

/// Parses an octal mode such as `0400` or `600` (also `[[secrets]] mode`).
pub(crate) fn parse_mode(s: &str) -> Result<u32> {
    u32::from_str_radix(s.trim_start_matches("0o"), 8)
        .ok()
        .filter(|m| *m <= 0o777)
        .ok_or_else(|| {
            coded(
                Exit::Usage,
                format!("invalid mode {s:?}: use octal permissions such as 0400 or 0600"),
            )
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn modes() {
        assert_eq!(parse_mode("0400").unwrap(), 0o400);
        assert_eq!(parse_mode("600").unwrap(), 0o600);
        assert!(parse_mode("0800").is_err());
        assert!(parse_mode("1777").is_err());
        assert!(parse_mode("rw").is_err());
    }
}
