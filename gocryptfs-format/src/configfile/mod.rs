//! `gocryptfs.conf`: parse, validate, unlock, create and write.
//!
//! Mirrors gocryptfs `internal/configfile/{config_file,validate}.go`; spec §1. Parsing is
//! "parse, don't validate": the raw JSON (exact gocryptfs field names, unknown fields
//! refused) becomes a [`Config`] only after every check passes, so a `Config` in hand is one
//! we support. Writing produces the same JSON shape as gocryptfs (`MarshalIndent` with tabs
//! and a trailing newline), mode 0400, through a temp file and a rename.

#![warn(clippy::indexing_slicing, clippy::cast_possible_truncation)]

pub mod flags;
pub mod scrypt;

use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::contentenc::ContentEnc;
use crate::cryptocore::{
    Backend, ContentAlgo, ContentCipher, HKDF_INFO_GCM, KEY_LEN, MasterKey, TAG_LEN, hkdf_sha256,
    open_gcm96,
};
use crate::error::{ConfigError, Error, KeyError};
use crate::safeio::{self, OpenFail};
pub use flags::{FeatureFlag, FlagSet};
pub use scrypt::ScryptParams;

/// File name of the config in a cipher directory's root.
pub const CONF_NAME: &str = "gocryptfs.conf";
/// Name of the reverse-mode config in a plaintext directory.
pub const REVERSE_CONF_NAME: &str = ".gocryptfs.reverse.conf";
/// The on-disk format version.
pub const VERSION: u64 = 2;
/// Largest config file we read (gocryptfs' are ~400 bytes).
/// Largest `gocryptfs.conf` accepted.
pub const MAX_CONF_LEN: u64 = 64 * 1024;
/// Default long-name threshold (`NameMax`).
pub const DEFAULT_LONG_NAME_MAX: u8 = 255;
/// Smallest `LongNameMax` gocryptfs accepts.
pub const MIN_LONG_NAME_MAX: u8 = 62;

/// How names are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NameLayout {
    /// Names and symlink targets as they are (`PlaintextNames`).
    Plaintext,
    /// EME-encrypted names.
    Encrypted {
        /// A `gocryptfs.diriv` per directory; without it every IV is zero ("deterministic").
        dir_iv: bool,
        /// Unpadded base64url (`Raw64`); otherwise padded.
        raw64: bool,
        /// Encrypted names longer than this are hashed (`LongNameMax`, default 255).
        long_name_max: u8,
    },
}

/// Everything about a tree's format that reading and writing need (no secrets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    /// Content encryption.
    pub content: ContentAlgo,
    /// Keys are HKDF-derived (every tree since gocryptfs 1.3).
    pub hkdf: bool,
    /// Name encryption.
    pub names: NameLayout,
}

impl Default for Layout {
    /// gocryptfs' defaults, also what `-masterkey`/`-zerokey` assume without a config.
    fn default() -> Self {
        Layout {
            content: ContentAlgo::AesGcm,
            hkdf: true,
            names: NameLayout::Encrypted {
                dir_iv: true,
                raw64: true,
                long_name_max: DEFAULT_LONG_NAME_MAX,
            },
        }
    }
}

impl Layout {
    /// The feature flags gocryptfs `-init` writes for this layout.
    #[must_use]
    pub fn flags(&self) -> FlagSet {
        use FeatureFlag as F;
        let mut v = Vec::new();
        if self.hkdf {
            v.push(F::Hkdf);
        }
        match self.content {
            ContentAlgo::XChaCha20Poly1305 => v.push(F::XChaCha20Poly1305),
            ContentAlgo::AesSiv => {
                v.push(F::GcmIv128);
                v.push(F::AesSiv);
            }
            ContentAlgo::AesGcm => v.push(F::GcmIv128),
        }
        match self.names {
            NameLayout::Plaintext => v.push(F::PlaintextNames),
            NameLayout::Encrypted {
                dir_iv,
                raw64,
                long_name_max,
            } => {
                if dir_iv {
                    v.push(F::DirIv);
                }
                if long_name_max < DEFAULT_LONG_NAME_MAX {
                    v.push(F::LongNameMax);
                }
                v.push(F::EmeNames);
                v.push(F::LongNames);
                if raw64 {
                    v.push(F::Raw64);
                }
            }
        }
        FlagSet::from_flags(&v)
    }

    fn from_flags(flags: &FlagSet, long_name_max: Option<u8>) -> Self {
        use FeatureFlag as F;
        let content = if flags.has(F::XChaCha20Poly1305) {
            ContentAlgo::XChaCha20Poly1305
        } else if flags.has(F::AesSiv) {
            ContentAlgo::AesSiv
        } else {
            ContentAlgo::AesGcm
        };
        let names = if flags.has(F::PlaintextNames) {
            NameLayout::Plaintext
        } else {
            NameLayout::Encrypted {
                dir_iv: flags.has(F::DirIv),
                raw64: flags.has(F::Raw64),
                long_name_max: long_name_max.unwrap_or(DEFAULT_LONG_NAME_MAX),
            }
        };
        Layout {
            content,
            hkdf: flags.has(F::Hkdf),
            names,
        }
    }
}

/// What is wrong with config JSON, without any value taken from it: the position, and for a
/// shape error what was expected (from our types) or which known field is missing.
fn json_problem(e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    let at = format!("line {}, column {}", e.line(), e.column());
    match e.classify() {
        Category::Io => "it could not be read".into(),
        Category::Syntax | Category::Eof => format!("not JSON (syntax error at {at})"),
        Category::Data => {
            let full = e.to_string();
            let msg = full
                .rsplit_once(" at line ")
                .map_or(full.as_str(), |(m, _)| m);
            if let Some(field) = msg.strip_prefix("missing field ") {
                format!("the field {field} is missing")
            } else if msg.starts_with("unknown field ") {
                format!("an unknown field at {at}")
            } else if let Some((_, expected)) = msg.rsplit_once(", expected ") {
                format!("a value of the wrong type or range at {at} (expected {expected})")
            } else {
                format!("unexpected content at {at}")
            }
        }
    }
}

/// The JSON exactly as gocryptfs writes it (field names and order).
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConf {
    #[serde(rename = "Creator", default)]
    creator: String,
    #[serde(rename = "EncryptedKey")]
    encrypted_key: String,
    #[serde(rename = "ScryptObject")]
    scrypt: RawScrypt,
    #[serde(rename = "Version")]
    version: u64,
    #[serde(rename = "FeatureFlags")]
    feature_flags: Option<Vec<String>>,
    #[serde(rename = "FIDO2", default, skip_serializing_if = "Option::is_none")]
    fido2: Option<serde_json::Value>,
    #[serde(
        rename = "LongNameMax",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    long_name_max: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScrypt {
    #[serde(rename = "Salt")]
    salt: String,
    #[serde(rename = "N")]
    n: u64,
    #[serde(rename = "R")]
    r: u64,
    #[serde(rename = "P")]
    p: u64,
    #[serde(rename = "KeyLen")]
    key_len: u64,
}

/// A parsed and validated `gocryptfs.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Who made it (for humans; never interpreted).
    pub creator: String,
    /// The feature flags, validated.
    pub flags: FlagSet,
    /// scrypt parameters, validated.
    pub scrypt: ScryptParams,
    /// `LongNameMax` when set.
    pub long_name_max: Option<u8>,
    encrypted_key: Vec<u8>,
}

impl Config {
    /// Parses and validates config JSON.
    ///
    /// # Errors
    /// [`ConfigError`] naming the first problem: malformed JSON, version, unknown or FIDO2
    /// flag, flag matrix, scrypt parameters, base64 fields, key length, `LongNameMax`.
    pub fn parse(json: &[u8]) -> Result<Self, ConfigError> {
        let raw: RawConf =
            serde_json::from_slice(json).map_err(|e| ConfigError::Json(json_problem(&e)))?;
        if raw.version != VERSION {
            return Err(ConfigError::Version);
        }
        let flags = FlagSet::parse(raw.feature_flags.as_deref().unwrap_or_default())?;
        if raw.fido2.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(ConfigError::Fido2);
        }
        flags.validate()?;
        let long_name_max = match (raw.long_name_max, flags.has(FeatureFlag::LongNameMax)) {
            (None | Some(0), false) => None,
            (None | Some(0), true) => {
                return Err(ConfigError::LongNameMax(
                    "flag set but the field is missing",
                ));
            }
            (Some(n), true) => {
                let n = u8::try_from(n)
                    .ok()
                    .filter(|n| *n >= MIN_LONG_NAME_MAX)
                    .ok_or(ConfigError::LongNameMax("value must be 62..=255"))?;
                Some(n)
            }
            (Some(_), false) => {
                return Err(ConfigError::LongNameMax(
                    "field set without the LongNameMax flag",
                ));
            }
        };
        let salt = STANDARD
            .decode(&raw.scrypt.salt)
            .map_err(|_| ConfigError::Base64("ScryptObject.Salt"))?;
        let scrypt = ScryptParams::new(
            salt,
            raw.scrypt.n,
            raw.scrypt.r,
            raw.scrypt.p,
            raw.scrypt.key_len,
        )?;
        let encrypted_key = STANDARD
            .decode(&raw.encrypted_key)
            .map_err(|_| ConfigError::Base64("EncryptedKey"))?;
        let expected = Self::wrapped_len(flags.has(FeatureFlag::Hkdf));
        if encrypted_key.len() != expected {
            return Err(ConfigError::EncryptedKeyLength {
                got: encrypted_key.len(),
                expected,
            });
        }
        Ok(Config {
            creator: raw.creator,
            flags,
            scrypt,
            long_name_max,
            encrypted_key,
        })
    }

    /// Reads and parses `dir/gocryptfs.conf`.
    ///
    /// # Errors
    /// [`Error::Config`] (with [`ConfigError::Missing`] when absent), [`Error::Io`].
    pub fn load(dir: &Path) -> Result<Self, Error> {
        let path = dir.join(CONF_NAME);
        let config_error = |path, source| Error::Config { path, source };
        // Like every control file: no symlink, regular file only (a FIFO would hang us),
        // bounded size.
        let buf = match safeio::read_small(&path, MAX_CONF_LEN) {
            Ok(Some(buf)) => buf,
            Ok(None) => {
                return Err(config_error(
                    path,
                    ConfigError::Unsupported("gocryptfs.conf is larger than 64 KiB"),
                ));
            }
            Err(OpenFail::NotRegular(kind)) => {
                return Err(config_error(path, ConfigError::NotRegular(kind)));
            }
            Err(OpenFail::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(config_error(path, ConfigError::Missing));
            }
            Err(OpenFail::Io(e)) => return Err(Error::io("reading", path, e)),
        };
        Self::parse(&buf).map_err(|source| Error::Config { path, source })
    }

    fn wrapped_len(hkdf: bool) -> usize {
        if hkdf {
            16 + KEY_LEN + TAG_LEN
        } else {
            12 + KEY_LEN + TAG_LEN
        }
    }

    /// The tree's layout.
    #[must_use]
    pub fn layout(&self) -> Layout {
        Layout::from_flags(&self.flags, self.long_name_max)
    }

    /// Length of the decoded `EncryptedKey` (for `info`).
    #[must_use]
    pub fn encrypted_key_len(&self) -> usize {
        self.encrypted_key.len()
    }

    /// Derives the key-encryption key from `password` and unwraps the master key.
    ///
    /// # Errors
    /// `Err(())` when the tag does not verify: a wrong password (or an altered config).
    #[allow(
        clippy::result_unit_err,
        reason = "the only failure is 'wrong password'"
    )]
    pub fn unlock(&self, password: &[u8]) -> Result<MasterKey, ()> {
        let kek = self.scrypt.derive(password);
        self.unwrap_with_kek(&kek)
    }

    fn unwrap_with_kek(&self, kek: &[u8; KEY_LEN]) -> Result<MasterKey, ()> {
        let hkdf = self.flags.has(FeatureFlag::Hkdf);
        let mut master = Zeroizing::new([0u8; KEY_LEN]);
        if hkdf {
            let wrap = wrap_cipher(kek).map_err(|_| ())?;
            let pt = Zeroizing::new(wrap.open_blob(&self.encrypted_key).map_err(|_| ())?);
            master.copy_from_slice(pt.get(..KEY_LEN).ok_or(())?);
        } else {
            let (nonce, rest) = self
                .encrypted_key
                .split_at(12.min(self.encrypted_key.len()));
            let (ct, tag) = rest.split_at(rest.len().saturating_sub(TAG_LEN));
            open_gcm96(kek, nonce, ct, tag, &[0u8; 8], &mut *master).map_err(|_| ())?;
        }
        MasterKey::from_bytes(&*master).map_err(|_| ())
    }

    /// Creates a config for a new tree: wraps `master` under `password` with fresh scrypt
    /// parameters (N = 2^`log_n`), HKDF and a 128-bit nonce.
    ///
    /// # Errors
    /// [`ConfigError`] for scrypt parameters out of range; [`KeyError`] for randomness.
    pub fn create(
        layout: &Layout,
        master: &MasterKey,
        password: &[u8],
        log_n: u8,
        creator: &str,
    ) -> Result<Self, Error> {
        let conf_path = PathBuf::from(CONF_NAME);
        let cerr = |source| Error::Config {
            path: conf_path.clone(),
            source,
        };
        if !layout.hkdf {
            return Err(cerr(ConfigError::Unsupported(
                "writing a tree without HKDF (a pre-1.3 layout) is not supported",
            )));
        }
        if log_n < scrypt::MIN_LOG_N {
            return Err(cerr(ConfigError::WeakScrypt(
                "ScryptObject.N is below 2^10",
            )));
        }
        let scrypt = ScryptParams::generate(log_n).map_err(cerr)?;
        let kek = scrypt.derive(password);
        let wrap = wrap_cipher(&kek).map_err(|_| KeyError::Random("aes-gcm setup".into()))?;
        let encrypted_key = wrap.seal_blob(master.expose_secret())?;
        let flags = layout.flags();
        flags.validate().map_err(cerr)?;
        let long_name_max = match layout.names {
            NameLayout::Encrypted { long_name_max, .. }
                if long_name_max < DEFAULT_LONG_NAME_MAX =>
            {
                if long_name_max < MIN_LONG_NAME_MAX {
                    return Err(cerr(ConfigError::LongNameMax("value must be 62..=255")));
                }
                Some(long_name_max)
            }
            _ => None,
        };
        Ok(Config {
            creator: creator.to_owned(),
            flags,
            scrypt,
            long_name_max,
            encrypted_key,
        })
    }

    /// The config as gocryptfs formats it: tab-indented JSON and a trailing newline.
    #[must_use]
    pub fn to_json(&self) -> String {
        let raw = RawConf {
            creator: self.creator.clone(),
            encrypted_key: STANDARD.encode(&self.encrypted_key),
            scrypt: RawScrypt {
                salt: STANDARD.encode(&self.scrypt.salt),
                n: self.scrypt.n(),
                r: u64::from(self.scrypt.r),
                p: u64::from(self.scrypt.p),
                key_len: KEY_LEN as u64,
            },
            version: VERSION,
            feature_flags: Some(self.flags.canonical_names()),
            fido2: None,
            long_name_max: self.long_name_max.map(u64::from),
        };
        let mut out = Vec::new();
        let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
        let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
        // Serialising plain strings and numbers into a Vec cannot fail.
        if raw.serialize(&mut ser).is_err() {
            return String::new();
        }
        out.push(b'\n');
        String::from_utf8(out).unwrap_or_default()
    }

    /// Writes `dir/gocryptfs.conf` with mode 0400: temp file (`O_EXCL`), fsync, rename.
    ///
    /// # Errors
    /// [`Error::Io`].
    pub fn write(&self, dir: &Path) -> Result<(), Error> {
        let tmp = dir.join(format!("{CONF_NAME}.tmp"));
        let path = dir.join(CONF_NAME);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o400)
            .open(&tmp)
            .map_err(|e| Error::io("creating", &tmp, e))?;
        f.write_all(self.to_json().as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io("writing", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| Error::io("renaming", &path, e))
    }
}

/// The master-key wrap cipher: AES-256-GCM-IV128 under HKDF(KEK, "AES-GCM file content
/// encryption") (spec §1.2).
fn wrap_cipher(kek: &[u8; KEY_LEN]) -> Result<ContentEnc, crate::cryptocore::AeadFailed> {
    let mut wrap_key = Zeroizing::new([0u8; KEY_LEN]);
    hkdf_sha256(kek, HKDF_INFO_GCM, &mut *wrap_key);
    Ok(ContentEnc::new(ContentCipher::new(
        ContentAlgo::AesGcm,
        Backend::RustCrypto,
        &*wrap_key,
    )?))
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::cast_possible_truncation,
        reason = "tests"
    )]
    use super::*;

    const DEFAULT_CONF: &str =
        include_str!("../../../tests/fixtures/gocryptfs-2.3/default/gocryptfs.conf");

    #[test]
    fn parses_the_corpus_config_and_round_trips_its_json() {
        let c = Config::parse(DEFAULT_CONF.as_bytes()).unwrap();
        assert_eq!(c.creator, "gocryptfs 2.3");
        assert_eq!(c.scrypt.log_n, 16);
        assert_eq!(c.layout(), Layout::default());
        // Byte-identical re-serialisation: same shape as gocryptfs writes.
        assert_eq!(c.to_json(), DEFAULT_CONF);
    }

    #[test]
    fn every_corpus_config_round_trips() {
        for v in [
            "xchacha",
            "aessiv",
            "plaintextnames",
            "deterministic",
            "longnamemax62",
        ] {
            let p = format!(
                "{}/../tests/fixtures/gocryptfs-2.3/{v}/gocryptfs.conf",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = fs::read_to_string(p).unwrap();
            let c = Config::parse(text.as_bytes()).unwrap();
            assert_eq!(c.to_json(), text, "{v}");
            assert_eq!(
                c.layout().flags().canonical_names(),
                c.flags.canonical_names(),
                "{v}"
            );
        }
    }

    #[test]
    fn create_then_unlock() {
        let m = MasterKey::from_bytes(&[5u8; 32]).unwrap();
        let c = Config::create(&Layout::default(), &m, b"pw", 10, "test").unwrap();
        let back = Config::parse(c.to_json().as_bytes()).unwrap();
        assert_eq!(back, c);
        assert_eq!(back.unlock(b"pw").unwrap().expose_secret(), &[5u8; 32]);
        assert!(back.unlock(b"pX").is_err());
    }

    /// A pre-1.3 (no HKDF) config: a 60-byte `EncryptedKey` wrapped with the scrypt KEK itself
    /// and a 96-bit nonce. gocryptfs 2.3 can no longer create one, so the wrap is built here
    /// with RustCrypto's standard `Aes256Gcm` (content and names of such trees are checked
    /// against the real gocryptfs in `tests/tests/it/interop.rs`).
    #[test]
    fn legacy_nohkdf_config_unlocks() {
        use aes_gcm::KeyInit;
        use aes_gcm::aead::Aead;
        let scrypt = ScryptParams::new(vec![3u8; 32], 1024, 8, 1, 32).unwrap();
        let kek = scrypt.derive(b"old password");
        let nonce = [9u8; 12];
        let master = [0x42u8; 32];
        let c = aes_gcm::Aes256Gcm::new_from_slice(&*kek).unwrap();
        let ct = c
            .encrypt(
                (&nonce).into(),
                aes_gcm::aead::Payload {
                    msg: &master,
                    aad: &[0u8; 8],
                },
            )
            .unwrap();
        let mut wrapped = nonce.to_vec();
        wrapped.extend_from_slice(&ct);
        assert_eq!(wrapped.len(), 60);
        let json = serde_json::json!({
            "Creator": "gocryptfs v1.2",
            "EncryptedKey": STANDARD.encode(&wrapped),
            "ScryptObject": {"Salt": STANDARD.encode([3u8; 32]), "N": 1024, "R": 8, "P": 1, "KeyLen": 32},
            "Version": 2,
            "FeatureFlags": ["GCMIV128", "DirIV", "EMENames", "LongNames"],
        });
        let conf = Config::parse(json.to_string().as_bytes()).unwrap();
        let l = conf.layout();
        assert!(!l.hkdf);
        assert_eq!(
            l.names,
            NameLayout::Encrypted {
                dir_iv: true,
                raw64: false,
                long_name_max: 255
            }
        );
        assert_eq!(
            conf.unlock(b"old password").unwrap().expose_secret(),
            &master
        );
        assert!(conf.unlock(b"wrong").is_err());
    }

    #[test]
    fn hostile_fields() {
        let base: serde_json::Value = serde_json::from_str(DEFAULT_CONF).unwrap();
        let with = |f: &dyn Fn(&mut serde_json::Value)| {
            let mut v = base.clone();
            f(&mut v);
            Config::parse(v.to_string().as_bytes())
        };
        assert!(matches!(
            with(&|v| v["Version"] = 3.into()),
            Err(ConfigError::Version)
        ));
        assert!(matches!(
            with(&|v| v["Extra"] = 1.into()),
            Err(ConfigError::Json(_))
        ));
        assert!(matches!(
            with(&|v| v["FIDO2"] = serde_json::json!({"CredentialID": "AA=="})),
            Err(ConfigError::Fido2)
        ));
        assert!(matches!(
            with(&|v| v["EncryptedKey"] = "AAAA".into()),
            Err(ConfigError::EncryptedKeyLength { .. })
        ));
        assert!(matches!(
            with(&|v| v["EncryptedKey"] = "!!".into()),
            Err(ConfigError::Base64(_))
        ));
        assert!(matches!(
            with(&|v| v["LongNameMax"] = 100.into()),
            Err(ConfigError::LongNameMax(_))
        ));
        assert!(with(&|v| v["ScryptObject"]["N"] = 1024.into()).is_ok());
        assert!(matches!(
            with(&|v| v["ScryptObject"]["N"] = 512.into()),
            Err(ConfigError::WeakScrypt(_))
        ));
        assert!(matches!(Config::parse(b"{"), Err(ConfigError::Json(_))));
        assert!(matches!(Config::parse(b""), Err(ConfigError::Json(_))));
    }

    #[test]
    fn errors_name_fields_never_values() {
        let base: serde_json::Value = serde_json::from_str(DEFAULT_CONF).unwrap();
        type Edit = fn(&mut serde_json::Value);
        let edits: [Edit; 5] = [
            |v| v["ScryptObject"]["N"] = "\u{1b}]0;pwned\u{7}SECRETVALUE".into(),
            |v| v["SECRETVALUE"] = 1.into(),
            |v| v["FeatureFlags"][0] = "\u{1b}[2JSECRETVALUE".into(),
            |v| v["Version"] = 987_654_321.into(),
            |v| v["Creator"] = serde_json::json!(["SECRETVALUE"]),
        ];
        for edit in edits {
            let mut v = base.clone();
            edit(&mut v);
            let e = Config::parse(v.to_string().as_bytes())
                .unwrap_err()
                .to_string();
            assert!(
                !e.contains("SECRETVALUE") && !e.contains("987654321"),
                "{e}"
            );
            assert!(!e.contains('\u{1b}'), "{e}");
        }
        let e = Config::parse(b"{\"Version\": 2}").unwrap_err().to_string();
        assert!(e.contains("missing"), "{e}");
    }
}
