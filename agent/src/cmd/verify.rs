//! `ccmount verify CIPHERDIR (KEY | --no-key) [--json] [--manifest OUT.json]`: authenticate
//! every block and name offline (or check structure without a key), report every finding,
//! exit 26 on corruption (as `gocryptfs -fsck`).

use std::io::Write;

use anyhow::Result;
use fuse_decrypt::verify::{FindingKind, Report, Severity, VerifyOptions, verify, verify_no_key};

use crate::cli::{GlobalArgs, VerifyArgs};
use crate::exit::{Exit, coded};
use crate::keys;
use crate::progress::{Bar, chatty};

pub(crate) fn run(g: &GlobalArgs, a: VerifyArgs) -> Result<Exit> {
    super::refuse_unavailable(g, Some(&a.expect))?;
    let bar = Bar::new("verify", !g.quiet && !a.json);
    let report = if a.no_key {
        if a.manifest.is_some() {
            return Err(coded(
                Exit::Usage,
                "--manifest needs the key (it holds plaintext hashes); drop --no-key",
            ));
        }
        verify_no_key(&a.cipherdir, &bar)?
    } else {
        let key = keys::require(&a.key)?;
        let dir = super::open_dir(&a.cipherdir, key)?;
        let opts = VerifyOptions {
            hash: a.json || a.manifest.is_some(),
            ..VerifyOptions::default()
        };
        verify(&dir, &opts, &bar)
    };
    bar.finish();
    if a.json {
        let mut out = std::io::stdout().lock();
        out.write_all(&super::json_bytes(&report.to_json()))?;
        out.flush()?;
    } else {
        print_human(&report, g.quiet)?;
    }
    if let Some(m) = &a.manifest {
        super::write_atomic(m, &super::json_bytes(&report.manifest_json()))?;
    }
    Ok(exit_for(&report))
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
        writeln!(out, "{sev}: {}", f.message)?;
    }
    let s = &r.stats;
    let line = format!(
        "{}: {} files, {} directories, {} symlinks, {} plaintext bytes checked{}; {} errors, {} warnings",
        r.cipherdir.display(),
        s.files,
        s.dirs,
        s.symlinks,
        s.bytes,
        if matches!(r.mode, fuse_decrypt::verify::Mode::NoKey) {
            " (structure only, no key)"
        } else {
            ""
        },
        s.errors,
        s.warnings
    );
    if !r.is_ok() || chatty(quiet) {
        writeln!(out, "{line}")?;
    }
    Ok(())
}
