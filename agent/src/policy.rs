//! The run's [`Policy`] (what the storage host may not choose): the flags
//! `--allow-plaintextnames`, `--allow-outside-symlinks`, `--preserve-modes`, `--allow-holes`,
//! `--max-scrypt-memory`, or the keys of the same names in the `[policy]` table of
//! `--config`. A flag turns an opt-in on; the file can turn it on too; nothing turns the
//! defaults off silently. Resolved once per process, on first use.

use std::path::Path;
use std::sync::OnceLock;

use anyhow::{Context as _, Result};
use gocryptfs_format::Policy;
use serde::Deserialize;

use crate::cli::GlobalArgs;
use crate::exit::{Exit, coded};

#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    policy: Option<PolicyTable>,
}

/// `[policy]` in the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyTable {
    allow_plaintextnames: Option<bool>,
    allow_outside_symlinks: Option<bool>,
    preserve_modes: Option<bool>,
    allow_holes: Option<bool>,
    max_scrypt_memory: Option<toml::Value>,
}

static POLICY: OnceLock<Policy> = OnceLock::new();

/// The policy of this run (flags, then `[policy]` of `--config`, then the defaults).
///
/// # Errors
/// An unreadable config file or a bad value (exit 2).
pub(crate) fn current(global: &GlobalArgs) -> Result<Policy> {
    if let Some(p) = POLICY.get() {
        return Ok(*p);
    }
    let p = resolve(global)?;
    Ok(*POLICY.get_or_init(|| p))
}

fn resolve(global: &GlobalArgs) -> Result<Policy> {
    let table = match &global.config {
        Some(path) => read_table(path)?,
        None => PolicyTable::default(),
    };
    let max_scrypt_memory = match (&global.max_scrypt_memory, &table.max_scrypt_memory) {
        (Some(s), _) => parse_size(s)
            .map_err(|e| coded(Exit::Usage, format!("--max-scrypt-memory {s:?}: {e}")))?,
        (None, Some(toml::Value::Integer(n))) => u64::try_from(*n)
            .map_err(|_| coded(Exit::Usage, "[policy] max_scrypt_memory must be positive"))?,
        (None, Some(toml::Value::String(s))) => parse_size(s).map_err(|e| {
            coded(
                Exit::Usage,
                format!("[policy] max_scrypt_memory {s:?}: {e}"),
            )
        })?,
        (None, Some(_)) => {
            return Err(coded(
                Exit::Usage,
                "[policy] max_scrypt_memory must be a size such as \"2GiB\" or a number of bytes",
            ));
        }
        (None, None) => Policy::default().max_scrypt_memory,
    };
    Ok(Policy {
        allow_plaintext_names: global.allow_plaintextnames
            || table.allow_plaintextnames.unwrap_or(false),
        allow_outside_symlinks: global.allow_outside_symlinks
            || table.allow_outside_symlinks.unwrap_or(false),
        preserve_modes: global.preserve_modes || table.preserve_modes.unwrap_or(false),
        allow_holes: global.allow_holes || table.allow_holes.unwrap_or(false),
        max_scrypt_memory,
    })
}

fn read_table(path: &Path) -> Result<PolicyTable> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let cfg: ConfigFile = toml::from_str(&text).map_err(|e| {
        coded(
            Exit::Usage,
            format!(
                "invalid config file {}: {}",
                path.display(),
                e.message().replace('\n', " ")
            ),
        )
    })?;
    Ok(cfg.policy.unwrap_or_default())
}

/// Parses `512MiB`, `2GiB`, `1G`, `65536K` or a plain number of bytes.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| "use a size such as 512MiB, 2GiB or a number of bytes".to_owned())?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" | "kb" => 1 << 10,
        "m" | "mib" | "mb" => 1 << 20,
        "g" | "gib" | "gb" => 1 << 30,
        "t" | "tib" | "tb" => 1 << 40,
        _ => return Err("unknown unit: use B, KiB, MiB, GiB or TiB".into()),
    };
    n.checked_mul(mult).ok_or_else(|| "too large".to_owned())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512MiB").unwrap(), 512 << 20);
        assert_eq!(parse_size("2GiB").unwrap(), 2 << 30);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("x").is_err());
        assert!(parse_size("1PB").is_err());
        assert!(parse_size("99999999999999999999").is_err());
    }
}
