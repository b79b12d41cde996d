//! Turns the key options (`--passfile`, `--masterkey-file`, `--key kbs:///...`) into a
//! [`KeySource`]. Secrets are read from files only, kept in zeroizing buffers, and never
//! printed.
//!
//! `--passfile` follows gocryptfs `-passfile` (first line, `\n` stripped, `\r` kept);
//! `--masterkey-file` takes the 64 hex digits gocryptfs prints (dashes and line breaks
//! allowed). The `kbs:///` arm is where the attestation client plugs in.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use fuse_decrypt::{KeySource, MasterKey};
use zeroize::Zeroizing;

use crate::cli::KeyArgs;
use crate::exit::{Exit, coded};

/// Largest key or password file we read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// Reads a small secret file into a zeroizing buffer.
fn read_secret(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let f = File::open(path).with_context(|| format!("opening {what} {}", path.display()))?;
    // Sized up front so that reading never reallocates (a reallocation would leave an
    // unwiped copy behind), and locked in RAM (best effort).
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE as usize + 1));
    crate::hardening::lock_capacity(&buf, what);
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("reading {what} {}", path.display()))?;
    if buf.len() as u64 > MAX_KEY_FILE {
        return Err(coded(
            Exit::Usage,
            format!(
                "{what} {} is larger than 64 KiB; is it the right file?",
                path.display()
            ),
        ));
    }
    Ok(buf)
}

/// A password from a `--passfile`.
pub(crate) fn password_from_file(path: &Path) -> Result<KeySource> {
    let buf = read_secret(path, "password file")?;
    let key = KeySource::password_from_passfile(&buf)
        .with_context(|| format!("password file {}", path.display()))?;
    if let KeySource::Password(pw) = &key {
        crate::hardening::lock(pw, "password");
    }
    Ok(key)
}

/// Resolves the key options. Exactly one is set (clap enforces it) unless `optional`.
pub(crate) fn load(args: &KeyArgs) -> Result<Option<KeySource>> {
    if let Some(p) = &args.passfile {
        return password_from_file(p).map(Some);
    }
    if let Some(p) = &args.masterkey_file {
        let buf = read_secret(p, "master key file")?;
        let text = std::str::from_utf8(&buf).map_err(|_| {
            coded(
                Exit::Usage,
                format!(
                    "master key file {}: not text; it must hold 64 hex digits",
                    p.display()
                ),
            )
        })?;
        let key = MasterKey::from_hex(text)
            .with_context(|| format!("master key file {}", p.display()))?;
        return Ok(Some(KeySource::MasterKey(key)));
    }
    if let Some(uri) = &args.key {
        // The attestation client (issue: KBS key release) replaces this arm.
        return Err(coded(
            Exit::Usage,
            format!(
                "--key {uri}: fetching keys from a KBS is not available in this build yet; use --passfile or --masterkey-file"
            ),
        ));
    }
    Ok(None)
}

/// Like [`load`], but a key is required.
pub(crate) fn require(args: &KeyArgs) -> Result<KeySource> {
    load(args)?.ok_or_else(|| {
        coded(
            Exit::Usage,
            "a key is required: --passfile FILE, --masterkey-file FILE or --key kbs:///REPO/TYPE/TAG",
        )
    })
}
