//! `ccmount unseal FILE --out OUT [--mode 0400] [--force]`: a Confidential Containers sealed
//! secret unsealed for another program (`crate::unseal`; docs/cli.md). The output is written
//! atomically and never over an existing file without `--force`; checks come before any
//! network call.

use anyhow::{Context as _, Result};

use crate::cli::UnsealArgs;
use crate::exit::{Exit, coded};

/// Runs the command.
pub(crate) fn run(a: &UnsealArgs) -> Result<Exit> {
    let mode = super::get_resource::parse_mode(&a.mode)?;
    super::get_resource::refuse_existing(&a.out, a.force)?;
    let what = format!("sealed secret {}", a.file.display());
    let bytes = crate::keys::read_secret_raw(&a.file, "sealed secret")?;
    if !crate::unseal::is_sealed(&bytes) {
        return Err(coded(
            Exit::Usage,
            format!("{what}: it does not start with `sealed.`"),
        ));
    }
    let secret = crate::unseal::unseal(&bytes, &what)?;
    crate::hardening::lock(secret.expose(), "unsealed secret");
    crate::fsutil::write_atomic(&a.out, secret.expose(), mode)
        .with_context(|| format!("writing {}", a.out.display()))?;
    tracing::info!(out = %a.out.display(), bytes = secret.len(), "unsealed");
    Ok(Exit::Ok)
}
