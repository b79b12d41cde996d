//! `ccmount decrypt CIPHERDIR OUTDIR KEY [--force] [--json]`: the whole tree into OUTDIR
//! (e.g. a RAM emptyDir), atomically per file, never through a symlink, on every core.

use anyhow::{Context, Result};
use fuse_decrypt::decrypt::{DecryptOptions, decrypt_tree};
use serde_json::json;

use crate::cli::{DecryptArgs, GlobalArgs};
use crate::exit::Exit;
use crate::keys;
use crate::progress::{Bar, chatty};

/// Problems printed one per line before the summary error.
const MAX_PRINTED: usize = 50;

pub(crate) fn run(g: &GlobalArgs, a: DecryptArgs) -> Result<Exit> {
    super::refuse_unavailable(g, Some(&a.expect))?;
    let key = keys::require(&a.key)?;
    let dir = super::open_dir(&a.cipherdir, key)?;
    let bar = Bar::new("decrypt", !g.quiet && !a.json);
    let summary = decrypt_tree(&dir, &a.outdir, &DecryptOptions { force: a.force }, &bar)
        .with_context(|| format!("decrypting into {}", a.outdir.display()));
    bar.finish();
    let summary = summary?;
    for p in summary.problems.iter().take(MAX_PRINTED) {
        if p.warning {
            tracing::warn!("{}", p.error);
        } else {
            tracing::error!("{}", p.error);
        }
    }
    if a.json {
        let v = json!({
            "schema": "ccmount.decrypt-summary/v1",
            "ok": summary.is_ok(),
            "files": summary.files,
            "dirs": summary.dirs,
            "symlinks": summary.symlinks,
            "plaintext_bytes": summary.bytes,
            "problems": summary.problems.iter().map(|p| json!({
                "path": p.path.to_string_lossy(),
                "severity": if p.warning { "warning" } else { "error" },
                "message": p.error.to_string(),
            })).collect::<Vec<_>>(),
        });
        print!("{}", String::from_utf8_lossy(&super::json_bytes(&v)));
    } else if chatty(g.quiet) && summary.is_ok() {
        eprintln!(
            "decrypted {} files ({} bytes), {} directories, {} symlinks into {}",
            summary.files,
            summary.bytes,
            summary.dirs,
            summary.symlinks,
            a.outdir.display()
        );
    }
    summary
        .into_result()
        .with_context(|| format!("decrypting {}", a.cipherdir.display()))?;
    Ok(Exit::Ok)
}
