//! `ccmount verify CIPHERDIR (KEY | --no-key) [--json] [--manifest OUT.json] [--expect PIN]`:
//! authenticate every block and name offline (or check structure without a key), report
//! every finding, exit 26 on corruption (as `gocryptfs -fsck`) or when the tree is not the
//! pinned model (one `mismatch:` line per difference on stderr).

use std::io::Write;

use anyhow::{Context as _, Result};
use gocryptfs_format::escape::{escape_text, escaped};
use gocryptfs_format::manifest::{CheckError, Manifest, ModelDigest, check_report};
use gocryptfs_format::verify::{
    FindingKind, Report, Severity, VerifyOptions, verify, verify_no_key,
};
use serde_json::json;

use crate::cli::{GlobalArgs, VerifyArgs};
use crate::exit::{Exit, coded};
use crate::keys;
use crate::pin;
use crate::plan::KeyPlan;
use crate::progress::{Bar, chatty, count};
use crate::receipt::Receipt;

pub(crate) fn run(g: &GlobalArgs, a: VerifyArgs) -> Result<Exit> {
    if a.no_key {
        if a.manifest.is_some() || a.expect.expect.is_some() || a.receipt.receipt.is_some() {
            return Err(coded(
                Exit::Usage,
                "--manifest, --expect and --receipt need the key (they pin plaintext hashes); drop --no-key",
            ));
        }
        // Structure only: no byte count to show progress against.
        let bar = Bar::new("verify", false);
        let policy = crate::policy::current(g)?;
        let report = if crate::remote::is_s3(&a.cipherdir) {
            crate::remote::bucket(g, &a.cipherdir)?
                .verify_no_key(&policy)
                .with_context(|| format!("checking {}", a.cipherdir.display()))?
        } else {
            verify_no_key(&a.cipherdir, &policy, &bar)?
        };
        bar.finish();
        output(&report, &a, g, None)?;
        return Ok(exit_for(&report));
    }
    let pin = pin::resolve(&a.expect)?;
    let key = keys::load(&KeyPlan::require(&a.key)?)?;
    let wants_manifest = a.manifest.is_some() || pin.is_some() || a.receipt.receipt.is_some();
    let opts = VerifyOptions {
        hash: a.json || wants_manifest,
        ..VerifyOptions::default()
    };
    let (remote, local);
    let (dir, report) = if crate::remote::is_s3(&a.cipherdir) {
        let b = crate::remote::bucket(g, &a.cipherdir)?;
        remote = crate::remote::open_tree(g, b, key)?;
        let bar = Bar::new("verify", !g.quiet && !a.json);
        let report = remote.verify(opts.hash, &bar);
        bar.finish();
        (remote.cipher_dir(), report?)
    } else {
        local = keys::open_dir(g, &a.cipherdir, key)?;
        let bar = Bar::new("verify", !g.quiet && !a.json);
        let report = verify(&local, &opts, &bar);
        bar.finish();
        (&local, report)
    };
    // The pin decides acceptance; without one, the tree's own manifest (when clean).
    let checked: Option<Result<Manifest, CheckError>> = match &pin {
        Some(p) => Some(check_report(dir, &report, &p.expected)),
        None if wants_manifest => Manifest::from_report(dir, &report).ok().map(Ok),
        None => None,
    };
    let pin_json = match (&pin, &checked) {
        (Some(p), Some(r)) => Some(json!({
            "expected": p.expected.digest().to_string(),
            "ok": r.is_ok(),
            "differences": match r {
                Err(CheckError::Mismatch(m)) => m.differences.iter().map(ToString::to_string).collect(),
                _ => Vec::new(),
            },
        })),
        _ => None,
    };
    output(&report, &a, g, pin_json)?;
    let accepted: Option<ModelDigest> = match checked {
        Some(Ok(m)) => {
            if let Some(path) = &a.manifest {
                crate::fsutil::write_atomic(path, &m.to_canonical(), 0o644)
                    .with_context(|| format!("writing the manifest {}", path.display()))?;
            }
            Some(m.digest())
        }
        Some(Err(e)) => return Err(pin::mismatch_error(e)),
        None => None,
    };
    if a.manifest.is_some() && accepted.is_none() {
        tracing::error!("no manifest written: the tree has errors");
    }
    let exit = exit_for(&report);
    if let (Some(digest), Some(path), Exit::Ok) = (accepted, &a.receipt.receipt, exit) {
        Receipt {
            command: "verify",
            cipherdir: &a.cipherdir,
            digest,
            pin: pin.as_ref(),
            key_resource: a.key.key.as_deref(),
        }
        .write(path)?;
    }
    Ok(exit)
}

fn output(
    report: &Report,
    a: &VerifyArgs,
    g: &GlobalArgs,
    pin: Option<serde_json::Value>,
) -> Result<()> {
    if a.json {
        let mut v = report.to_json();
        if let (Some(p), Some(o)) = (pin, v.as_object_mut()) {
            o.insert("pin".into(), p);
        }
        crate::fsutil::print_json(&v)?;
    } else {
        print_human(report, g.quiet)?;
    }
    Ok(())
}

/// 0 when clean; 4 when the config itself is refused; 26 for any other error finding.
fn exit_for(r: &Report) -> Exit {
    let errors = r.findings.iter().filter(|f| f.severity == Severity::Error);
    let mut exit = Exit::Ok;
    for f in errors {
        if f.kind == FindingKind::Config {
            return Exit::BadCipherDir;
        }
        exit = Exit::Corrupt;
    }
    exit
}

fn print_human(r: &Report, quiet: bool) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for f in &r.findings {
        if quiet && f.severity == Severity::Warning {
            continue;
        }
        let sev = match f.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        writeln!(out, "{sev}: {}", escape_text(&f.message))?;
    }
    let s = &r.stats;
    let line = format!(
        "{}: {}, {}, {}, {} checked{}; {}, {}",
        escaped(&r.cipherdir),
        count(s.files, "file", "files"),
        count(s.dirs, "directory", "directories"),
        count(s.symlinks, "symlink", "symlinks"),
        count(s.bytes, "plaintext byte", "plaintext bytes"),
        if matches!(r.mode, gocryptfs_format::verify::Mode::NoKey) {
            " (structure only, no key)"
        } else {
            ""
        },
        count(s.errors, "error", "errors"),
        count(s.warnings, "warning", "warnings")
    );
    if !r.is_ok() || chatty(quiet) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}
