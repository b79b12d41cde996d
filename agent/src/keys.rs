//! Turns the key options (`--passfile`, `--masterkey-file`, `--key kbs:///...`) into a
//! [`KeySource`]. Secrets are read from files only, kept in zeroizing buffers, and never
//! printed.
//!
//! `--passfile` follows gocryptfs `-passfile` (first line, `\n` stripped, `\r` kept);
//! `--masterkey-file` takes the 64 hex digits gocryptfs prints (dashes and line breaks
//! allowed). `--key kbs:///…` fetches the secret over the process-wide attested session
//! ([`kbs::with_shared`]) and reads it per `--key-format`.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use gocryptfs_format::{CipherDir, KeySource, MasterKey, OpenOptions};
use zeroize::Zeroizing;

use attest::ResourceUri;

use crate::cli::{GlobalArgs, KeyFormat};
use crate::exit::{Exit, coded};
use crate::kbs;
use crate::plan::KeyPlan;

/// Largest key or password file we read.
const MAX_KEY_FILE: u64 = 64 * 1024;

/// Reads a small secret file into a zeroizing buffer.
/// A secret file's content; a sealed secret (`sealed.…`) in it is unsealed (`crate::unseal`):
/// its signature checked, the resource it names fetched from the KBS.
pub(crate) fn read_secret(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let buf = read_secret_raw(path, what)?;
    if !crate::unseal::is_sealed(&buf) {
        return Ok(buf);
    }
    let secret = crate::unseal::unseal(&buf, &format!("{what} {}", path.display()))?;
    Ok(Zeroizing::new(secret.expose().to_vec()))
}

/// A secret file's bytes as they are (at most 64 KiB).
pub(crate) fn read_secret_raw(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
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

/// Opens a cipher directory with `key`, the fastest backend and the run's policy.
///
/// # Errors
/// The format core's errors (missing or refused config, wrong key, I/O).
pub(crate) fn open_dir(g: &GlobalArgs, path: &Path, key: KeySource) -> Result<CipherDir> {
    if matches!(key, KeySource::Password(_))
        && let Ok(c) = gocryptfs_format::Config::load(path)
        && c.scrypt.log_n > gocryptfs_format::configfile::scrypt::DEFAULT_LOG_N
    {
        // A long silent wait otherwise: say what it is.
        tracing::info!(
            "deriving the key: scrypt N=2^{} R={} P={} needs {} MiB and takes longer than gocryptfs' default cost",
            c.scrypt.log_n,
            c.scrypt.r,
            c.scrypt.p,
            c.scrypt.memory_bytes() >> 20
        );
    }
    let opts = OpenOptions {
        policy: crate::policy::current(g)?,
        ..OpenOptions::default()
    };
    CipherDir::open(path, key, &opts).with_context(|| format!("opening {}", path.display()))
}

/// Reads the key a plan names: a password or master key file, or a KBS resource fetched
/// over the process-wide attested session.
///
/// # Errors
/// Unreadable or malformed files, KBS failures, a resource that is not a key.
pub(crate) fn load(plan: &KeyPlan) -> Result<KeySource> {
    match plan {
        KeyPlan::Passfile(p) => password_from_file(p),
        KeyPlan::MasterkeyFile(p) => {
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
            Ok(KeySource::MasterKey(key))
        }
        KeyPlan::Kbs { uri, format } => from_kbs(uri, *format),
        KeyPlan::Supplied => Err(anyhow::anyhow!(
            "invariant: a key supplied in memory is passed to the run, never loaded from its plan"
        )),
    }
}

/// Fetches `uri` over the process-wide attested session and reads it as `format`.
fn from_kbs(uri: &ResourceUri, format: KeyFormat) -> Result<KeySource> {
    let secret = kbs::with_shared(|s| {
        let url = s.url().to_owned();
        s.get_resource(uri)
            .with_context(|| format!("fetching the key {uri} from {url}"))
    })?;
    crate::hardening::lock(secret.expose(), "KBS key");
    let key = key_from_resource(secret.expose(), format)
        .with_context(|| format!("key {uri} (--key-format {})", format_name(format)))?;
    if let KeySource::Password(pw) = &key {
        crate::hardening::lock(pw, "password");
    }
    Ok(key)
}

fn format_name(format: KeyFormat) -> &'static str {
    match format {
        KeyFormat::Password => "password",
        KeyFormat::Masterkey => "masterkey",
    }
}

/// Interprets the bytes of a KBS resource. A password follows the passfile rule (first
/// line, so a trailing newline stored with the secret does not change it); a master key is
/// 32 raw bytes or 64 hex digits (dashes and white space allowed).
pub(crate) fn key_from_resource(bytes: &[u8], format: KeyFormat) -> Result<KeySource> {
    match format {
        KeyFormat::Password => KeySource::password_from_passfile(bytes).map_err(|e| {
            coded(
                Exit::WrongKey,
                format!("the resource is not a usable password ({e}); check what the KBS stores"),
            )
        }),
        KeyFormat::Masterkey => {
            let key = if bytes.len() == 32 {
                MasterKey::from_bytes(bytes)
            } else {
                match std::str::from_utf8(bytes) {
                    Ok(text) => MasterKey::from_hex(text.trim()),
                    Err(_) => {
                        return Err(coded(
                            Exit::WrongKey,
                            format!(
                                "the resource holds {} bytes that are not hex: a master key is 32 raw bytes or 64 hex digits; use --key-format password for a password",
                                bytes.len()
                            ),
                        ));
                    }
                }
            };
            key.map(KeySource::MasterKey).map_err(|e| {
                coded(
                    Exit::WrongKey,
                    format!("the resource is not a master key ({e}): expected 32 raw bytes or 64 hex digits; use --key-format password for a password"),
                )
            })
        }
    }
}

#[cfg(test)]
mod kbs_format_tests {
    #![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
    use super::*;
    use crate::exit::classify;

    #[test]
    fn password_resources_follow_the_passfile_rule() {
        let KeySource::Password(pw) =
            key_from_resource(b"secret\nrest", KeyFormat::Password).unwrap()
        else {
            panic!("not a password")
        };
        assert_eq!(&pw[..], b"secret");
        let e = key_from_resource(b"\n", KeyFormat::Password).unwrap_err();
        assert_eq!(classify(&e), Exit::WrongKey);
    }

    #[test]
    fn masterkey_resources_are_raw_or_hex() {
        let raw = [7u8; 32];
        let hex = hex::encode(raw);
        for bytes in [
            raw.to_vec(),
            hex.clone().into_bytes(),
            format!("{hex}\n").into_bytes(),
        ] {
            let KeySource::MasterKey(k) = key_from_resource(&bytes, KeyFormat::Masterkey).unwrap()
            else {
                panic!("not a master key")
            };
            assert_eq!(k.expose_secret(), &raw);
        }
        for bad in [&b"short"[..], &[0xffu8; 40][..], &hex.as_bytes()[..62]] {
            let e = key_from_resource(bad, KeyFormat::Masterkey).unwrap_err();
            assert_eq!(classify(&e), Exit::WrongKey);
            assert!(format!("{e:#}").contains("--key-format password"));
        }
    }
}
