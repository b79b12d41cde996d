//! `ccmount decrypt CIPHERDIR OUTDIR KEY [--force] [--json] [--expect PIN]`: the whole tree
//! into OUTDIR (e.g. a RAM emptyDir), atomically per file, never through a symlink, on every
//! core.
//!
//! With `--expect` (or `--receipt`) the whole tree is first checked against the pin (every
//! block authenticated and hashed); on any difference nothing is written and the exit code
//! is 26. The decrypt pass then holds every entry to the accepted manifest again
//! (`decrypt_tree_pinned`: file ID, size, and the SHA-256 of what was written, before the
//! rename), so storage changed between the two passes cannot slip into OUTDIR.

use anyhow::{Context, Result};
use gocryptfs_format::decrypt::{
    DecryptOptions, decrypt_tree, decrypt_tree_pinned, refuse_overlap, sweep_temp_files_in,
};
use gocryptfs_format::manifest::{CheckMode, Manifest, check};
use serde_json::json;

use crate::cli::GlobalArgs;
use crate::exit::{Exit, coded};
use crate::keys;
use crate::pin;
use crate::plan::DecryptPlan;
use crate::progress::{Bar, chatty, count};
use crate::receipt::Receipt;

/// Problems printed one per line before the summary error.
const MAX_PRINTED: usize = 50;

pub(crate) fn run(g: &GlobalArgs, a: &DecryptPlan) -> Result<Exit> {
    if crate::remote::is_s3(&a.cipherdir) {
        return run_s3(g, a);
    }
    // Cheap refusals first: no attestation or scrypt for an OUTDIR that cannot be.
    refuse_overlap(&a.cipherdir, &a.outdir)?;
    let pin = pin::resolve(&a.expect)?;
    let key = keys::load(&a.key)?;
    let dir = keys::open_dir(g, &a.cipherdir, key)?;
    // Check before writing anything: a refused model leaves OUTDIR untouched.
    let accepted: Option<Manifest> = if pin.is_some() || a.receipt.is_some() {
        let bar = Bar::new("check", !g.quiet && !a.json);
        let r = match &pin {
            Some(p) => check(&dir, &p.expected, CheckMode::Full, &bar)
                .map(|v| v.manifest)
                .map_err(pin::mismatch_error),
            None => Manifest::of_tree(&dir, &bar)
                .map(|(m, _)| m)
                .map_err(|diffs| {
                    for d in &diffs {
                        eprintln!("error: {d}");
                    }
                    coded(
                        Exit::Corrupt,
                        format!(
                            "{}: {} problems; nothing decrypted",
                            a.cipherdir.display(),
                            diffs.len()
                        ),
                    )
                }),
        };
        bar.finish();
        Some(r?)
    } else {
        None
    };
    let bar = Bar::new("decrypt", !g.quiet && !a.json);
    // With a pin, every entry is held to it again while written (storage may change after
    // the check): nothing unpinned is renamed into place.
    let opts = DecryptOptions {
        force: a.force,
        cancel: Some(crate::interrupt::install()),
    };
    let summary = match &accepted {
        Some(m) => decrypt_tree_pinned(&dir, &a.outdir, &opts, m, &bar),
        None => decrypt_tree(&dir, &a.outdir, &opts, &bar),
    }
    .with_context(|| format!("decrypting into {}", a.outdir.display()));
    bar.finish();
    if let Some(e) = interrupted(&a.outdir) {
        return Err(e);
    }
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
            "holes_accepted": summary.holes,
            "removed_unpinned": summary.removed,
            "problems": summary.problems.iter().map(|p| json!({
                "path": p.path.to_string_lossy(),
                "severity": if p.warning { "warning" } else { "error" },
                "message": p.error.to_string(),
            })).collect::<Vec<_>>(),
        });
        crate::fsutil::print_json(&v)?;
    } else if chatty(g.quiet) && summary.is_ok() {
        eprintln!(
            "decrypted {} ({}), {}, {} into {}",
            count(summary.files, "file", "files"),
            count(summary.bytes, "byte", "bytes"),
            count(summary.dirs, "directory", "directories"),
            count(summary.symlinks, "symlink", "symlinks"),
            a.outdir.display()
        );
    }
    summary
        .into_result()
        .with_context(|| format!("decrypting {}", a.cipherdir.display()))?;
    write_receipt(a, accepted.as_ref(), pin.as_ref())?;
    Ok(Exit::Ok)
}

/// `decrypt s3://BUCKET/PREFIX OUTDIR`: streamed from the bucket (ranged GETs in parallel,
/// decrypted as they arrive). With a pin, a first pass checks the whole tree and nothing is
/// written on a difference; the writing pass then holds every file to the accepted manifest
/// again before renaming it into place (the bucket may change between the passes).
fn run_s3(g: &GlobalArgs, a: &DecryptPlan) -> Result<Exit> {
    let pin = pin::resolve(&a.expect)?;
    let key = keys::load(&a.key)?;
    let b = crate::remote::bucket(g, &a.cipherdir)?;
    let tree = crate::remote::open_tree(g, b, key)?;
    let accepted: Option<Manifest> = if pin.is_some() || a.receipt.is_some() {
        let bar = Bar::new("check", !g.quiet && !a.json);
        let report = tree.verify(true, &bar);
        bar.finish();
        let report = report?;
        Some(match &pin {
            Some(p) => {
                gocryptfs_format::manifest::check_report(tree.cipher_dir(), &report, &p.expected)
                    .map_err(pin::mismatch_error)?
            }
            None => Manifest::from_report(tree.cipher_dir(), &report).map_err(|diffs| {
                for d in &diffs {
                    eprintln!("error: {d}");
                }
                coded(
                    Exit::Corrupt,
                    format!(
                        "{}: {} problems; nothing decrypted",
                        a.cipherdir.display(),
                        diffs.len()
                    ),
                )
            })?,
        })
    } else {
        None
    };
    let bar = Bar::new("decrypt", !g.quiet && !a.json);
    let cancel = crate::interrupt::install();
    let summary = tree.decrypt_into(&a.outdir, a.force, accepted.as_ref(), &bar, Some(cancel));
    bar.finish();
    if let Some(e) = interrupted(&a.outdir) {
        return Err(e);
    }
    let summary = summary.with_context(|| {
        format!(
            "decrypting {} into {}",
            a.cipherdir.display(),
            a.outdir.display()
        )
    })?;
    for (_, e) in summary.problems.iter().take(MAX_PRINTED) {
        tracing::error!("{e}");
    }
    if a.json {
        let v = json!({
            "schema": "ccmount.decrypt-summary/v1",
            "ok": summary.problems.is_empty(),
            "files": summary.files,
            "dirs": summary.dirs,
            "symlinks": 0,
            "plaintext_bytes": summary.bytes,
            "holes_accepted": 0,
            "removed_unpinned": 0,
            "problems": summary.problems.iter().map(|(p, e)| json!({
                "path": p.to_string_lossy(),
                "severity": "error",
                "message": e.to_string(),
            })).collect::<Vec<_>>(),
        });
        crate::fsutil::print_json(&v)?;
    } else if chatty(g.quiet) && summary.problems.is_empty() {
        eprintln!(
            "decrypted {} ({}), {} from {} into {}",
            count(summary.files, "file", "files"),
            count(summary.bytes, "byte", "bytes"),
            count(summary.dirs, "directory", "directories"),
            a.cipherdir.display(),
            a.outdir.display()
        );
    }
    if let Some((_, first)) = summary.problems.into_iter().next() {
        return Err(anyhow::Error::new(first).context(format!(
            "decrypting {}: files not written",
            a.cipherdir.display()
        )));
    }
    write_receipt(a, accepted.as_ref(), pin.as_ref())?;
    Ok(Exit::Ok)
}

/// After a SIGINT or SIGTERM: the error that reports it (files in progress removed their own
/// temporary files; swept again in case).
fn interrupted(outdir: &std::path::Path) -> Option<anyhow::Error> {
    let sig = crate::interrupt::received()?;
    let _ = sweep_temp_files_in(outdir);
    let code = if sig == 2 {
        Exit::Interrupted
    } else {
        Exit::Terminated
    };
    Some(coded(
        code,
        format!(
            "interrupted by signal {sig}: {} holds only whole files, no temporary ones; run again (with --force) to finish",
            outdir.display()
        ),
    ))
}

/// The receipt of an accepted (pinned or manifested) decrypt, when `--receipt` asks for one.
fn write_receipt(
    a: &DecryptPlan,
    accepted: Option<&Manifest>,
    pin: Option<&pin::Pin>,
) -> Result<()> {
    if let (Some(m), Some(path)) = (accepted, &a.receipt) {
        Receipt {
            command: "decrypt",
            cipherdir: &a.cipherdir,
            digest: m.digest(),
            pin,
            key_resource: a.key.resource().as_deref(),
        }
        .write(path)?;
    }
    Ok(())
}
