//! Secure-mount requests of the Confidential Containers data hub (CDH): the JSON a CoCo user
//! already holds, `{"volume_type", "options", "flags", "mount_point"}` (kbs-protocol.md §5.5;
//! guest-components `confidential-data-hub/storage/src/volume_type/`: `Storage` and the
//! `alibaba-cloud-oss` plugin's options), parsed and checked here; what the fields mean for a
//! mount is the agent's business (`ccmount secure-mount`).
//!
//! As CDH: every option value is a string, unknown option keys and top-level keys are
//! ignored, `akId`, `akSecret` and `encPasswd` are each a plain string or a sealed secret
//! (`sealed.…`, [`crate::sealed`]). Unlike CDH: only encrypted trees (`encrypted =
//! "gocryptfs"`) are accepted, an explicit `readonly = "false"` is refused (the mount is
//! always read-only), the request is bounded ([`MAX_REQUEST_LEN`]), and `otherOpts`
//! (ossfs options) is not used.
//!
//! Every input here is untrusted: parsing never panics, and no error message or `Debug`
//! output holds a secret value (plain ones are [`Secret`]s, wiped on drop; the parsed JSON's
//! copies are wiped before it is dropped).
#![warn(clippy::indexing_slicing)]

use serde_json::{Map, Value};
use zeroize::Zeroize as _;

use crate::sanitize::sanitize_detail;
use crate::sealed::{PREFIX, SealedError, SealedSecret};
use crate::secret::Secret;

/// The longest request accepted (a request with three sealed secrets is a few KiB).
pub const MAX_REQUEST_LEN: usize = 64 * 1024;

/// The volume type of an Alibaba Cloud OSS bucket (the CDH plugin's name).
pub const ALIBABA_CLOUD_OSS: &str = "alibaba-cloud-oss";

/// Every volume type ccmount mounts.
pub const VOLUME_TYPES: &[&str] = &[ALIBABA_CLOUD_OSS];

/// The only `encrypted` value accepted.
pub const GOCRYPTFS: &str = "gocryptfs";

/// Longest string option (a bucket, path, URL or plain secret) in bytes.
const MAX_FIELD_LEN: usize = 4096;

/// Why a request was refused. Names the field, never its value when it may be a secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Longer than [`MAX_REQUEST_LEN`].
    #[error("the secure-mount request is longer than {MAX_REQUEST_LEN} bytes")]
    TooLong,
    /// Not JSON (position only: a parser message could quote the input).
    #[error("the secure-mount request is not JSON (line {line}, column {column})")]
    NotJson {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
    },
    /// Valid JSON, but not an object.
    #[error(
        "the secure-mount request must be a JSON object {{\"volume_type\", \"options\", \"flags\", \"mount_point\"}}"
    )]
    NotObject,
    /// A required field is absent.
    #[error("the secure-mount request has no {0}")]
    Missing(String),
    /// A field of the wrong JSON type.
    #[error("{field} of the secure-mount request must be {want}")]
    WrongType {
        /// The field (`options.bucket`, `flags`, ...).
        field: String,
        /// What it must be.
        want: &'static str,
    },
    /// A field that is empty where a value is needed.
    #[error("{0} of the secure-mount request is empty")]
    Empty(String),
    /// A field whose value is refused.
    #[error("{field} of the secure-mount request: {why}")]
    Invalid {
        /// The field.
        field: String,
        /// Why (never the value of a secret field).
        why: String,
    },
    /// A volume type other than those in [`VOLUME_TYPES`].
    #[error("volume_type {0:?} is not supported (supported: {supported})", supported = VOLUME_TYPES.join(", "))]
    VolumeType(String),
    /// `encrypted` empty or absent: a plaintext bucket.
    #[error(
        "options.encrypted is empty: only encrypted trees are served; encrypt the tree with gocryptfs and set \"encrypted\": \"gocryptfs\""
    )]
    Unencrypted,
    /// `encrypted` other than `gocryptfs`.
    #[error(
        "options.encrypted {0:?} is not supported: only gocryptfs trees are served (\"encrypted\": \"gocryptfs\")"
    )]
    Encryption(String),
    /// `readonly = "false"`: a writable mount was asked for.
    #[error(
        "options.readonly is \"false\": the mount is read-only; set it to \"true\" or leave it empty"
    )]
    Writable,
    /// A sealed secret field that does not parse.
    #[error("{field} of the secure-mount request: {error}")]
    Sealed {
        /// The field.
        field: String,
        /// Why.
        error: SealedError,
    },
}

/// A secret field: a plain value, or a sealed secret to unseal through the KBS.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretValue {
    /// The value itself (wiped on drop, never printed).
    Plain(Secret),
    /// A sealed secret (`sealed.…`), checked to parse; the text to unseal.
    Sealed(String),
}

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SecretValue::Plain(_) => f.write_str("Plain(..)"),
            SecretValue::Sealed(_) => f.write_str("Sealed(..)"),
        }
    }
}

/// The options of an `alibaba-cloud-oss` volume that ccmount uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OssVolume {
    /// `bucket`: the bucket name (checked by the agent as part of an `s3://` URL).
    pub bucket: String,
    /// `path`: the tree's directory in the bucket, without leading or trailing `/` (empty:
    /// the bucket's root; absent: the root, as ossfs' `bucket:/`).
    pub path: String,
    /// `url`: the endpoint, as given (see [`OssVolume::endpoint`]).
    pub url: String,
    /// `akId` and `akSecret`; `None` when both are empty or absent (the run's own storage
    /// credentials apply).
    pub access_key: Option<(SecretValue, SecretValue)>,
    /// `encPasswd`: the gocryptfs password.
    pub password: SecretValue,
}

impl OssVolume {
    /// The endpoint URL: `url` with `https://` in front when it has no scheme (OSS
    /// endpoints are often written as a bare host, `oss-cn-hangzhou.aliyuncs.com`).
    #[must_use]
    pub fn endpoint(&self) -> String {
        if self.url.contains("://") {
            self.url.clone()
        } else {
            format!("https://{}", self.url)
        }
    }

    /// The `s3://BUCKET/PATH` URL of the tree (not yet checked: the agent parses it).
    #[must_use]
    pub fn s3_url(&self) -> String {
        if self.path.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.path)
        }
    }
}

/// What to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Volume {
    /// `alibaba-cloud-oss` with `encrypted = "gocryptfs"`.
    AlibabaCloudOss(OssVolume),
}

/// A parsed, checked secure-mount request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecureMountRequest {
    /// The volume and its options.
    pub volume: Volume,
    /// `flags` (CDH passes them to the plugin, which ignores them; kept for logging).
    pub flags: Vec<String>,
    /// `mount_point`: an absolute path.
    pub mount_point: String,
}

impl SecureMountRequest {
    /// Parses a request (JSON bytes, at most [`MAX_REQUEST_LEN`]).
    ///
    /// # Errors
    /// [`RequestError`] naming the first field that is missing, mistyped or refused.
    pub fn parse(bytes: &[u8]) -> Result<Self, RequestError> {
        if bytes.len() > MAX_REQUEST_LEN {
            return Err(RequestError::TooLong);
        }
        let mut v: Value = serde_json::from_slice(bytes).map_err(|e| RequestError::NotJson {
            line: e.line(),
            column: e.column(),
        })?;
        let res = match &v {
            Value::Object(top) => from_object(top),
            _ => Err(RequestError::NotObject),
        };
        wipe(&mut v);
        res
    }
}

/// Overwrites every string of the parsed JSON (the plain secrets' copies) before it is freed.
fn wipe(v: &mut Value) {
    match v {
        Value::String(s) => s.zeroize(),
        Value::Array(a) => a.iter_mut().for_each(wipe),
        Value::Object(m) => m.values_mut().for_each(wipe),
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

fn from_object(top: &Map<String, Value>) -> Result<SecureMountRequest, RequestError> {
    let volume_type = match top.get("volume_type") {
        None => return Err(RequestError::Missing("volume_type".into())),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(wrong_type("volume_type", "a string")),
    };
    if volume_type != ALIBABA_CLOUD_OSS {
        return Err(RequestError::VolumeType(sanitize_detail(volume_type)));
    }
    let mount_point = match top.get("mount_point") {
        None => return Err(RequestError::Missing("mount_point".into())),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err(wrong_type("mount_point", "a string")),
    };
    check_mount_point(&mount_point)?;
    let flags = match top.get("flags") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|f| match f {
                Value::String(s) => Ok(s.clone()),
                _ => Err(wrong_type("flags", "an array of strings")),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(wrong_type("flags", "an array of strings")),
    };
    let options = match top.get("options") {
        None => return Err(RequestError::Missing("options".into())),
        Some(Value::Object(m)) => m,
        Some(_) => return Err(wrong_type("options", "an object of strings")),
    };
    // As CDH (a map of string to string): every value is a string, whatever its key.
    for (k, v) in options {
        if !v.is_string() {
            return Err(wrong_type(
                &format!("options.{}", sanitize_detail(k)),
                "a string",
            ));
        }
    }
    Ok(SecureMountRequest {
        volume: Volume::AlibabaCloudOss(oss(options)?),
        flags,
        mount_point,
    })
}

fn wrong_type(field: &str, want: &'static str) -> RequestError {
    RequestError::WrongType {
        field: field.to_owned(),
        want,
    }
}

fn invalid(field: &str, why: impl Into<String>) -> RequestError {
    RequestError::Invalid {
        field: field.to_owned(),
        why: why.into(),
    }
}

/// An option's value ("" when absent; every value is a string, checked before).
fn opt<'a>(options: &'a Map<String, Value>, key: &str) -> &'a str {
    options.get(key).and_then(Value::as_str).unwrap_or("")
}

/// A non-secret option: bounded, no control characters (it ends up in URLs and messages).
fn plain_field(options: &Map<String, Value>, key: &str) -> Result<String, RequestError> {
    let v = opt(options, key);
    let field = format!("options.{key}");
    if v.len() > MAX_FIELD_LEN {
        return Err(invalid(
            &field,
            format!("longer than {MAX_FIELD_LEN} bytes"),
        ));
    }
    if v.chars().any(char::is_control) {
        return Err(invalid(&field, "has control characters"));
    }
    Ok(v.to_owned())
}

/// A secret option, plain or sealed; `None` when empty or absent.
fn secret_field(
    options: &Map<String, Value>,
    key: &str,
) -> Result<Option<SecretValue>, RequestError> {
    let v = opt(options, key);
    let field = format!("options.{key}");
    if v.is_empty() {
        return Ok(None);
    }
    if v.starts_with(PREFIX) {
        // As CDH: a value that starts with `sealed.` is a sealed secret, never a plain one.
        SealedSecret::parse(v).map_err(|error| RequestError::Sealed {
            field: field.clone(),
            error,
        })?;
        return Ok(Some(SecretValue::Sealed(v.trim_end().to_owned())));
    }
    if v.len() > MAX_FIELD_LEN {
        return Err(invalid(
            &field,
            format!("longer than {MAX_FIELD_LEN} bytes"),
        ));
    }
    if v.contains('\0') {
        return Err(invalid(&field, "has a NUL character"));
    }
    Ok(Some(SecretValue::Plain(Secret::from_slice(v.as_bytes()))))
}

fn oss(options: &Map<String, Value>) -> Result<OssVolume, RequestError> {
    match opt(options, "encrypted") {
        "" => return Err(RequestError::Unencrypted),
        GOCRYPTFS => {}
        other => return Err(RequestError::Encryption(sanitize_detail(other))),
    }
    match opt(options, "readonly").to_ascii_lowercase().as_str() {
        "" | "true" => {}
        "false" => return Err(RequestError::Writable),
        _ => {
            return Err(invalid(
                "options.readonly",
                "must be \"true\", \"false\" or empty",
            ));
        }
    }
    let bucket = plain_field(options, "bucket")?;
    if bucket.is_empty() {
        return Err(if options.contains_key("bucket") {
            RequestError::Empty("options.bucket".into())
        } else {
            RequestError::Missing("options.bucket".into())
        });
    }
    if bucket.contains('/') {
        return Err(invalid(
            "options.bucket",
            "a bucket name has no '/'; put the directory in options.path",
        ));
    }
    let path = plain_field(options, "path")?.trim_matches('/').to_owned();
    let url = plain_field(options, "url")?;
    if url.is_empty() {
        return Err(if options.contains_key("url") {
            RequestError::Empty("options.url".into())
        } else {
            RequestError::Missing("options.url".into())
        });
    }
    if url.contains(char::is_whitespace) {
        return Err(invalid("options.url", "has white space"));
    }
    let access_key = match (
        secret_field(options, "akId")?,
        secret_field(options, "akSecret")?,
    ) {
        (Some(id), Some(secret)) => Some((id, secret)),
        (None, None) => None,
        (Some(_), None) => return Err(RequestError::Empty("options.akSecret".into())),
        (None, Some(_)) => return Err(RequestError::Empty("options.akId".into())),
    };
    let password = secret_field(options, "encPasswd")?.ok_or_else(|| {
        if options.contains_key("encPasswd") {
            RequestError::Empty("options.encPasswd".into())
        } else {
            RequestError::Missing("options.encPasswd".into())
        }
    })?;
    Ok(OssVolume {
        bucket,
        path,
        url,
        access_key,
        password,
    })
}

fn check_mount_point(p: &str) -> Result<(), RequestError> {
    if p.is_empty() {
        return Err(RequestError::Empty("mount_point".into()));
    }
    if !p.starts_with('/') {
        return Err(invalid("mount_point", "must be an absolute path"));
    }
    if p.len() > MAX_FIELD_LEN {
        return Err(invalid(
            "mount_point",
            format!("longer than {MAX_FIELD_LEN} bytes"),
        ));
    }
    if p.contains('\0') {
        return Err(invalid("mount_point", "has a NUL character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests"
    )]
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use proptest::prelude::*;

    /// A sealed secret that parses (its signature is not checked here).
    fn sealed(name: &str) -> String {
        let e = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());
        format!(
            "sealed.{}.{}.{}",
            e(serde_json::json!({"alg": "ES256", "kid": "kbs:///default/keys/sealing"})),
            e(
                serde_json::json!({"version": "0.1.0", "type": "vault", "name": name, "provider": "kbs", "provider_settings": {}, "annotations": {}})
            ),
            URL_SAFE_NO_PAD.encode([7u8; 64])
        )
    }

    const AK_SECRET: &str = "AK-SECRET-v4lu3-0123456789";
    const PASSWORD: &str = "gocryptfs-passw0rd-value";

    /// The request of the CDH guide, every option given.
    fn request(edit: impl FnOnce(&mut Map<String, Value>)) -> Vec<u8> {
        let mut options = serde_json::json!({
            "akId": "LTAI-ACCESS-KEY-ID",
            "akSecret": AK_SECRET,
            "annotations": "",
            "bucket": "models",
            "encrypted": "gocryptfs",
            "encPasswd": PASSWORD,
            "kmsKeyId": "",
            "otherOpts": "-o max_stat_cache_size=0,allow_other",
            "path": "/qwen/v1/",
            "readonly": "true",
            "targetPath": "/mnt/model",
            "url": "https://oss-cn-hangzhou.aliyuncs.com",
            "volumeId": "model-volume",
        });
        edit(options.as_object_mut().unwrap());
        serde_json::json!({
            "volume_type": "alibaba-cloud-oss",
            "options": options,
            "flags": [],
            "mount_point": "/mnt/model",
        })
        .to_string()
        .into_bytes()
    }

    fn oss_of(r: &SecureMountRequest) -> &OssVolume {
        let Volume::AlibabaCloudOss(o) = &r.volume;
        o
    }

    fn plain(v: &SecretValue) -> &[u8] {
        match v {
            SecretValue::Plain(s) => s.expose(),
            SecretValue::Sealed(_) => panic!("sealed"),
        }
    }

    #[test]
    fn every_field_of_a_plain_request() {
        let r = SecureMountRequest::parse(&request(|_| {})).unwrap();
        assert_eq!(r.mount_point, "/mnt/model");
        assert!(r.flags.is_empty());
        let o = oss_of(&r);
        assert_eq!(o.bucket, "models");
        assert_eq!(o.path, "qwen/v1");
        assert_eq!(o.s3_url(), "s3://models/qwen/v1");
        assert_eq!(o.endpoint(), "https://oss-cn-hangzhou.aliyuncs.com");
        let (id, secret) = o.access_key.as_ref().unwrap();
        assert_eq!(plain(id), b"LTAI-ACCESS-KEY-ID");
        assert_eq!(plain(secret), AK_SECRET.as_bytes());
        assert_eq!(plain(&o.password), PASSWORD.as_bytes());
        // Debug never shows a secret.
        let dbg = format!("{r:?}");
        assert!(!dbg.contains(AK_SECRET) && !dbg.contains(PASSWORD), "{dbg}");
        assert!(!dbg.contains("LTAI-ACCESS-KEY-ID"), "{dbg}");
    }

    #[test]
    fn sealed_fields_are_kept_sealed() {
        let s = sealed("kbs:///default/aliyun/oss-ak-secret");
        let r = SecureMountRequest::parse(&request(|o| {
            o.insert(
                "akId".into(),
                sealed("kbs:///default/aliyun/oss-ak-id").into(),
            );
            o.insert("akSecret".into(), format!("{s}\n").into());
            o.insert(
                "encPasswd".into(),
                sealed("kbs:///default/aliyun/pw").into(),
            );
        }))
        .unwrap();
        let o = oss_of(&r);
        let (id, secret) = o.access_key.as_ref().unwrap();
        assert!(matches!(id, SecretValue::Sealed(t) if t.starts_with("sealed.")));
        assert_eq!(secret, &SecretValue::Sealed(s));
        assert!(matches!(&o.password, SecretValue::Sealed(_)));
        assert_eq!(format!("{:?}", o.password), "Sealed(..)");
    }

    #[test]
    fn optional_fields_default() {
        let r = SecureMountRequest::parse(
            br#"{"volume_type":"alibaba-cloud-oss","mount_point":"/m","options":{"bucket":"b","url":"oss-cn-beijing.aliyuncs.com","encrypted":"gocryptfs","encPasswd":"pw","unknownKey":"x"},"extra":1}"#,
        )
        .unwrap();
        let o = oss_of(&r);
        assert_eq!(o.path, "");
        assert_eq!(o.s3_url(), "s3://b");
        assert_eq!(o.endpoint(), "https://oss-cn-beijing.aliyuncs.com");
        assert!(o.access_key.is_none());
        // http:// stays as given (the agent refuses it without --s3-allow-http).
        let r = SecureMountRequest::parse(&request(|o| {
            o.insert("url".into(), "http://127.0.0.1:9000".into());
            o.insert("readonly".into(), "".into());
        }))
        .unwrap();
        assert_eq!(oss_of(&r).endpoint(), "http://127.0.0.1:9000");
    }

    fn refused(bytes: &[u8]) -> RequestError {
        SecureMountRequest::parse(bytes).unwrap_err()
    }

    fn refused_edit(edit: impl FnOnce(&mut Map<String, Value>)) -> String {
        refused(&request(edit)).to_string()
    }

    #[test]
    fn refusals_name_the_field() {
        assert_eq!(refused(b"[]"), RequestError::NotObject);
        assert!(matches!(refused(b"{\"a\":"), RequestError::NotJson { .. }));
        assert_eq!(
            refused(&vec![b' '; MAX_REQUEST_LEN + 1]),
            RequestError::TooLong
        );
        let e = refused(br#"{"volume_type":"block-device","options":{},"mount_point":"/m"}"#);
        assert!(e.to_string().contains("alibaba-cloud-oss"), "{e}");
        assert!(e.to_string().contains("block-device"), "{e}");
        assert_eq!(
            refused(br#"{"options":{},"mount_point":"/m"}"#),
            RequestError::Missing("volume_type".into())
        );
        assert_eq!(
            refused(br#"{"volume_type":"alibaba-cloud-oss","options":{}}"#),
            RequestError::Missing("mount_point".into())
        );
        assert!(
            refused(br#"{"volume_type":"alibaba-cloud-oss","mount_point":"rel","options":{}}"#)
                .to_string()
                .contains("absolute")
        );
        assert!(
            refused(br#"{"volume_type":"alibaba-cloud-oss","mount_point":"/m","options":[]}"#)
                .to_string()
                .contains("options of the secure-mount request must be an object")
        );
        assert!(
            refused(
                br#"{"volume_type":"alibaba-cloud-oss","mount_point":"/m","options":{},"flags":[1]}"#
            )
            .to_string()
            .contains("flags")
        );

        assert_eq!(
            refused(&request(|o| {
                o.insert("encrypted".into(), "".into());
            })),
            RequestError::Unencrypted
        );
        assert_eq!(
            refused(&request(|o| {
                o.remove("encrypted");
            })),
            RequestError::Unencrypted
        );
        assert!(
            refused_edit(|o| {
                o.insert("encrypted".into(), "luks2".into());
            })
            .contains("\"luks2\" is not supported")
        );
        assert_eq!(
            refused(&request(|o| {
                o.insert("readonly".into(), "false".into());
            })),
            RequestError::Writable
        );
        assert!(
            refused_edit(|o| {
                o.insert("readonly".into(), "maybe".into());
            })
            .contains("options.readonly")
        );
        assert!(
            refused_edit(|o| {
                o.insert("readonly".into(), true.into());
            })
            .contains("options.readonly of the secure-mount request must be a string")
        );
        assert!(
            refused_edit(|o| {
                o.remove("bucket");
            })
            .contains("no options.bucket")
        );
        assert!(
            refused_edit(|o| {
                o.insert("bucket".into(), "".into());
            })
            .contains("options.bucket of the secure-mount request is empty")
        );
        assert!(
            refused_edit(|o| {
                o.insert("bucket".into(), "a/b".into());
            })
            .contains("options.path")
        );
        assert!(
            refused_edit(|o| {
                o.insert("path".into(), "a\nb".into());
            })
            .contains("options.path")
        );
        assert!(
            refused_edit(|o| {
                o.remove("url");
            })
            .contains("no options.url")
        );
        assert!(
            refused_edit(|o| {
                o.insert("url".into(), "https://a b".into());
            })
            .contains("options.url")
        );
        assert!(
            refused_edit(|o| {
                o.remove("encPasswd");
            })
            .contains("no options.encPasswd")
        );
        assert!(
            refused_edit(|o| {
                o.insert("encPasswd".into(), "".into());
            })
            .contains("options.encPasswd of the secure-mount request is empty")
        );
        let e = refused_edit(|o| {
            o.remove("akId");
        });
        assert!(e.contains("options.akId"), "{e}");
        let e = refused_edit(|o| {
            o.insert("akSecret".into(), "".into());
        });
        assert!(e.contains("options.akSecret"), "{e}");
        let e = refused_edit(|o| {
            o.insert("akSecret".into(), "sealed.not-a-jws".into());
        });
        assert!(
            e.contains("options.akSecret") && e.contains("malformed"),
            "{e}"
        );
        let e = refused_edit(|o| {
            o.insert("encPasswd".into(), format!("{PASSWORD}\0x").into());
        });
        assert!(
            e.contains("options.encPasswd") && !e.contains(PASSWORD),
            "{e}"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

        /// Any bytes: no panic, and an error never holds a secret value of the request.
        #[test]
        fn never_panics_never_echoes_secrets(
            data in proptest::collection::vec(any::<u8>(), 0..2000),
            key in "[a-zA-Z]{1,10}",
            junk in proptest::collection::vec(any::<u8>(), 0..200),
            cut in 0usize..2000,
        ) {
            let _ = SecureMountRequest::parse(&data);
            // A request whose secret fields hold the markers, one field broken or removed.
            let full = request(|o| {
                o.insert(key.clone(), String::from_utf8_lossy(&junk).into_owned().into());
            });
            let truncated = &full[..cut.min(full.len())];
            for input in [&full[..], truncated] {
                if let Err(e) = SecureMountRequest::parse(input) {
                    let msg = e.to_string();
                    prop_assert!(!msg.contains(AK_SECRET) && !msg.contains(PASSWORD), "{}", msg);
                    prop_assert!(!msg.contains('\n'), "{}", msg);
                }
            }
        }
    }
}
