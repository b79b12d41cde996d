//! `ccmount attest [--json]`: run the handshake and show what the KBS saw. Never secrets.
//!
//! Mirrors `../shared/design/cli.md` (attest) and `../shared/specs/kbs-protocol.md` §1.4 (the
//! token's claims). Prints the TEE type, a summary of the evidence, and the token's claims
//! (read without verification: they are what the KBS put there). The token itself is a
//! credential for this process's key and is not printed.

use std::io::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};

use crate::cli::{AttestArgs, GlobalArgs};
use crate::exit::Exit;
use crate::kbs::kbs_client;

/// Runs the command.
pub(crate) fn run(global: &GlobalArgs, args: &AttestArgs) -> Result<Exit> {
    let mut session = kbs_client(global)?;
    let info = session
        .attest()
        .with_context(|| format!("attesting to {}", session.url()))?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let expires_in = info.claims.exp.map(|e| e.saturating_sub(now));
    let report = serde_json::json!({
        "tee": info.tee.to_string(),
        "kbs_url": session.url(),
        "kbs_url_source": session.settings().url_source,
        "protocol_version": info.protocol_version,
        "hash_algorithm": info.hash_algorithm,
        "key_algorithm": info.key_algorithm,
        "evidence": info.evidence_summary,
        "token": {
            "exp": info.claims.exp,
            "iat": info.claims.iat,
            "nbf": info.claims.nbf,
            "expires_in_s": expires_in,
            "claims": info.claims.all,
        },
    });
    let mut out = std::io::stdout().lock();
    if args.json {
        drop(out);
        crate::fsutil::print_json(&report)?;
        return Ok(Exit::Ok);
    } else {
        writeln!(out, "tee:       {}", report["tee"].as_str().unwrap_or("?"))?;
        writeln!(
            out,
            "kbs:       {} (from {})",
            session.url(),
            session.settings().url_source
        )?;
        writeln!(
            out,
            "protocol:  {} (binding {}, key {})",
            info.protocol_version, info.hash_algorithm, info.key_algorithm
        )?;
        writeln!(out, "evidence:  {}", report["evidence"])?;
        match expires_in {
            Some(s) => writeln!(out, "token:     accepted, expires in {s} s")?,
            None => writeln!(out, "token:     accepted, no expiry claim")?,
        }
        writeln!(out, "claims:")?;
        let pretty = serde_json::to_string_pretty(&report["token"]["claims"])?;
        for line in pretty.lines() {
            writeln!(out, "  {line}")?;
        }
    }
    Ok(Exit::Ok)
}
