//! `--receipt FILE`: a JSON record of what a command accepted (`ccmount.receipt/v1`): the
//! model digest, the pin, the key resource, the KBS URL, the TEE, the token expiry, the
//! ccmount version and the time (RFC 3339, UTC). Public facts only: never a key, password,
//! token or resource content. Schema: `docs/manifests.md` (Receipt).

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use gocryptfs_format::manifest::ModelDigest;
use serde_json::{Value, json};

use crate::kbs;
use crate::pin::Pin;

/// Schema identifier.
pub(crate) const SCHEMA: &str = "ccmount.receipt/v1";

/// What went into a receipt.
#[derive(Debug)]
pub(crate) struct Receipt<'a> {
    /// The subcommand (`verify`, `decrypt`, `manifest`).
    pub(crate) command: &'static str,
    /// The cipher directory.
    pub(crate) cipherdir: &'a Path,
    /// The digest of the accepted model.
    pub(crate) digest: ModelDigest,
    /// The pin it was checked against, if any.
    pub(crate) pin: Option<&'a Pin>,
    /// `--key kbs:///...`, if the key came from the KBS.
    pub(crate) key_resource: Option<&'a str>,
}

impl Receipt<'_> {
    /// The receipt as JSON; KBS facts come from the session when one was used.
    pub(crate) fn to_json(&self, now: SystemTime) -> Value {
        let kbs = kbs::with_existing(|s| {
            (
                s.url().to_owned(),
                serde_json::to_value(s.tee()).unwrap_or(Value::Null),
                s.token_expiry(),
            )
        });
        json!({
            "schema": SCHEMA,
            "command": self.command,
            // Absolute, symlinks resolved: a receipt is read later, from elsewhere.
            "cipherdir": if crate::remote::is_s3(self.cipherdir) {
                self.cipherdir.to_path_buf()
            } else {
                std::fs::canonicalize(self.cipherdir)
                    .or_else(|_| std::path::absolute(self.cipherdir))
                    .unwrap_or_else(|_| self.cipherdir.to_path_buf())
            }
            .to_string_lossy(),
            "model_digest": self.digest.to_string(),
            "pin": self.pin.map(|p| json!({
                "kind": p.source.kind(),
                "source": p.source.location(),
                "signed": p.signed.is_some(),
                "trusted_comment": p.signed,
            })),
            "key_resource": self.key_resource,
            "kbs_url": kbs.as_ref().map(|k| k.0.clone()),
            "tee": kbs.as_ref().map(|k| k.1.clone()),
            "token_expiry": kbs.as_ref().and_then(|k| k.2).map(rfc3339),
            "ccmount_version": crate::version::string(),
            "time": rfc3339(now.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)),
        })
    }

    /// Writes the receipt atomically to `path`.
    pub(crate) fn write(&self, path: &Path) -> Result<()> {
        let v = self.to_json(SystemTime::now());
        crate::fsutil::write_atomic(path, &crate::fsutil::json_bytes(&v), 0o644)
            .with_context(|| format!("writing the receipt {}", path.display()))
    }
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (proleptic Gregorian, UTC).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil-from-days (H. Hinnant), shifted so that years start on 1 March.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_known_values() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }
}
