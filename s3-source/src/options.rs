//! How to reach the bucket: endpoint, region, addressing style, credentials, concurrency.
//! The standard AWS variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`,
//! `AWS_SESSION_TOKEN`, `AWS_REGION`, `AWS_ENDPOINT_URL`, and web identity through
//! `AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`) are read by `object_store`; options given
//! here override them. Credentials fetched from a KBS arrive as JSON (`Credentials::from_json`).

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use crate::error::S3Error;

/// Default number of ranged GETs in flight.
pub const DEFAULT_CONCURRENCY: usize = 8;
/// Default bytes of ciphertext per ranged GET (8 MiB, within the 8–16 MB ranges AWS advises;
/// fewer, larger requests also cost a server less); memory in flight is bounded by
/// concurrency × 2 × chunk (the ciphertext and its plaintext).
pub const DEFAULT_CHUNK: u64 = 8 << 20;
/// Largest credentials document accepted.
const MAX_CREDENTIALS_LEN: usize = 16 * 1024;

/// Path-style (`http://host/bucket/key`) or virtual-hosted (`http://bucket.host/key`)
/// requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Addressing {
    /// Path style for an IP or `localhost` endpoint (MinIO, test servers), virtual-hosted
    /// for a named endpoint (OSS, GCS, AWS).
    #[default]
    Auto,
    /// Always path style.
    Path,
    /// Always virtual-hosted.
    VirtualHosted,
}

/// Static credentials (from flags, a file or the KBS). The secret parts are zeroized and
/// never printed.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    /// The access key ID.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: Zeroizing<String>,
    /// The session token of temporary credentials.
    #[serde(default)]
    pub session_token: Option<Zeroizing<String>>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &"<redacted>")
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Parses `{"access_key_id", "secret_access_key", "session_token"?}` (a KBS resource or
    /// a file; untrusted bytes: bounded, strict, never echoed).
    ///
    /// # Errors
    /// [`S3Error::Usage`] saying which field is wrong, never its value.
    pub fn from_json(bytes: &[u8]) -> Result<Self, S3Error> {
        if bytes.len() > MAX_CREDENTIALS_LEN {
            return Err(S3Error::Usage(
                "object storage credentials: larger than 16 KiB".into(),
            ));
        }
        let c: Credentials = serde_json::from_slice(bytes).map_err(|e| {
            // serde's message may quote a value: keep only its category and position.
            S3Error::Usage(format!(
                "object storage credentials: not the expected JSON {{\"access_key_id\", \"secret_access_key\", \"session_token\"?}} (line {}, column {}, {:?})",
                e.line(),
                e.column(),
                e.classify()
            ))
        })?;
        let ok = |s: &str| !s.is_empty() && s.len() <= 4096 && !s.chars().any(char::is_control);
        if !ok(&c.access_key_id) {
            return Err(S3Error::Usage(
                "object storage credentials: access_key_id is empty, too long or has control characters".into(),
            ));
        }
        if !ok(&c.secret_access_key) {
            return Err(S3Error::Usage(
                "object storage credentials: secret_access_key is empty, too long or has control characters".into(),
            ));
        }
        if c.session_token.as_deref().is_some_and(|t| !ok(t)) {
            return Err(S3Error::Usage(
                "object storage credentials: session_token is empty, too long or has control characters".into(),
            ));
        }
        Ok(c)
    }
}

/// How to reach the bucket and how hard to push it.
#[derive(Debug, Clone)]
pub struct S3Options {
    /// Endpoint URL (`--s3-endpoint`); `None`: `AWS_ENDPOINT_URL` or AWS itself.
    pub endpoint: Option<String>,
    /// Region (`--s3-region`); `None`: `AWS_REGION` or `us-east-1`.
    pub region: Option<String>,
    /// Addressing style.
    pub addressing: Addressing,
    /// Accept a plain-HTTP endpoint (`--s3-allow-http`).
    pub allow_http: bool,
    /// Ranged GETs in flight (`--s3-concurrency`).
    pub concurrency: usize,
    /// Ciphertext bytes per ranged GET.
    pub chunk: u64,
    /// Static credentials; `None`: the environment (variables, web identity).
    pub credentials: Option<Credentials>,
    /// Extra trusted root certificates, PEM (`--s3-ca-cert`): a private endpoint's CA, in
    /// addition to the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    /// How long one request may keep retrying before it fails.
    pub deadline: Duration,
}

impl Default for S3Options {
    fn default() -> Self {
        S3Options {
            endpoint: None,
            region: None,
            addressing: Addressing::Auto,
            allow_http: false,
            concurrency: DEFAULT_CONCURRENCY,
            chunk: DEFAULT_CHUNK,
            credentials: None,
            ca_pem: None,
            deadline: Duration::from_secs(60),
        }
    }
}

impl S3Options {
    /// The endpoint in effect: the option, else `AWS_ENDPOINT_URL`/`AWS_ENDPOINT`.
    #[must_use]
    pub fn effective_endpoint(&self) -> Option<String> {
        self.endpoint.clone().or_else(|| {
            ["AWS_ENDPOINT_URL", "AWS_ENDPOINT"]
                .iter()
                .find_map(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
        })
    }

    /// Checks the endpoint URL and the HTTP rule; returns whether requests use path style.
    ///
    /// # Errors
    /// [`S3Error::Usage`]: a malformed endpoint, credentials in it, or plain HTTP without
    /// `allow_http`.
    pub fn check(&self) -> Result<bool, S3Error> {
        if !(1..=256).contains(&self.concurrency) {
            return Err(S3Error::Usage(
                "the number of requests in flight must be between 1 and 256".into(),
            ));
        }
        let Some(ep) = self.effective_endpoint() else {
            return Ok(self.addressing == Addressing::Path);
        };
        let u = url::Url::parse(&ep).map_err(|e| {
            S3Error::Usage(format!("object storage endpoint is not a URL ({e}); give e.g. https://oss-cn-hangzhou.aliyuncs.com"))
        })?;
        if !u.username().is_empty() || u.password().is_some() {
            return Err(S3Error::CredentialsInUrl);
        }
        match u.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            "http" => {
                return Err(S3Error::PlainHttp {
                    endpoint: format!("{}://{}", u.scheme(), u.host_str().unwrap_or("")),
                });
            }
            s => {
                return Err(S3Error::Usage(format!(
                    "object storage endpoint scheme {s:?} is not http(s)"
                )));
            }
        }
        Ok(match self.addressing {
            Addressing::Path => true,
            Addressing::VirtualHosted => false,
            Addressing::Auto => match u.host() {
                Some(url::Host::Ipv4(_) | url::Host::Ipv6(_)) | None => true,
                Some(url::Host::Domain(d)) => d == "localhost" || d.ends_with(".localhost"),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn credentials_parse_and_never_echo() {
        let c = Credentials::from_json(
            br#"{"access_key_id":"AK","secret_access_key":"SECRETVALUE","session_token":"T"}"#,
        )
        .unwrap();
        assert_eq!(c.access_key_id, "AK");
        assert!(!format!("{c:?}").contains("SECRETVALUE"));
        for bad in [
            &br#"{"access_key_id":"AK"}"#[..],
            br#"{"access_key_id":"","secret_access_key":"S"}"#,
            br#"{"access_key_id":"A","secret_access_key":"S\n"}"#,
            br#"{"access_key_id":"A","secret_access_key":"SECRETVALUE","x":1}"#,
            br#"["SECRETVALUE"]"#,
            b"SECRETVALUE",
        ] {
            let e = Credentials::from_json(bad).unwrap_err().to_string();
            assert!(!e.contains("SECRETVALUE"), "{e}");
        }
    }

    #[test]
    fn plain_http_needs_the_flag_and_ip_endpoints_use_path_style() {
        let mut o = S3Options {
            endpoint: Some("http://127.0.0.1:9000".into()),
            ..S3Options::default()
        };
        assert!(matches!(o.check(), Err(S3Error::PlainHttp { .. })));
        o.allow_http = true;
        assert!(o.check().unwrap());
        o.endpoint = Some("https://oss-cn-hangzhou.aliyuncs.com".into());
        assert!(!o.check().unwrap());
        o.addressing = Addressing::Path;
        assert!(o.check().unwrap());
        o.endpoint = Some("https://user:pw@example.com".into());
        assert!(matches!(o.check(), Err(S3Error::CredentialsInUrl)));
    }

    proptest! {
        #[test]
        fn credentials_parser_never_panics(b in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Credentials::from_json(&b);
        }
    }
}
