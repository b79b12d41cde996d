//! The RCAR 0.4.0 handshake, the token cache and resource fetching.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §1.3–1.6 and §5.3. One [`KbsClient`] holds one
//! TEE key pair, the `kbs-session-id` cookie and the attestation token; it attests lazily on
//! the first resource and then reuses the token until `exp` (one HTTP request per further
//! resource), sending both the cookie and `Authorization: Bearer` (Trustee accepts either).
//! Unlike guest-components it reads the error `type` before re-attesting: `PolicyDeny` and
//! `PluginInternalError` (Trustee's answer for a missing resource) are final, and only a
//! token-type 401 triggers exactly one new handshake. Connection errors, timeouts and 5xx are
//! retried with exponential backoff and jitter, bounded by one total deadline per operation.
//!
//! ```text
//!   client                                  KBS
//!     | POST /kbs/v0/auth  {version,tee}      |
//!     |-------------------------------------->|
//!     |     {nonce,extra-params} + cookie     |
//!     |<--------------------------------------|
//!     |  evidence over H(JCS{add-ev,nonce,K}) |
//!     | POST /kbs/v0/attest (cookie)          |
//!     |-------------------------------------->|
//!     |               {token}                 |
//!     |<--------------------------------------|
//!     | GET /kbs/v0/resource/r/t/g (cookie,   |
//!     |     Bearer token)                     |
//!     |-------------------------------------->|
//!     |        JWE encrypted to K             |
//!     |<--------------------------------------|
//! ```

use std::time::{Duration, Instant, SystemTime};

use kbs_types::{
    Attestation, Challenge, CompositeEvidence, ErrorInformation, Request, RuntimeData,
};
use serde::Deserialize;

use crate::binding::{self, HashAlgorithm};
use crate::error::{Error, PROTOCOL_VERSION, ProtocolError, Result, Step, sanitize_detail};
use crate::evidence::{Attester, Tee};
use crate::jwe::{self, KeyAlgorithm, TeeKeyPair};
use crate::resource_uri::ResourceUri;
use crate::secret::Secret;
use crate::token::{Token, TokenClaims};
use crate::transport::{
    HttpConfig, HttpRequest, HttpResponse, HttpTransport, Method, Transport, TransportErrorKind,
};

/// Name of Trustee's session cookie.
pub const SESSION_COOKIE: &str = "kbs-session-id";
/// Default total deadline per operation.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default timeout of one HTTP exchange.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(20);
/// Default response size limit (Trustee's own request limit is 2 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 2 * 1024 * 1024;
/// Largest nonce we accept (Trustee sends 44 characters).
const MAX_NONCE_LEN: usize = 1024;
/// Upper bound on attempts per request, on top of the deadline.
const MAX_ATTEMPTS: u32 = 10;

/// Retry pacing.
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// First backoff delay.
    pub initial_backoff: Duration,
    /// Largest backoff delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(4),
        }
    }
}

/// Builds a [`KbsClient`].
#[derive(Debug)]
pub struct KbsClientBuilder {
    url: String,
    attester: Box<dyn Attester>,
    extra_ca_pem: Option<Vec<u8>>,
    insecure_http: bool,
    timeout: Duration,
    request_timeout: Duration,
    key_algorithm: KeyAlgorithm,
    max_response_bytes: usize,
    token_skew: Duration,
    retry: RetryPolicy,
    protocol_version: String,
}

impl KbsClientBuilder {
    /// Sends another protocol version (tests of the server's version check only).
    #[doc(hidden)]
    #[must_use]
    pub fn protocol_version(mut self, v: &str) -> Self {
        v.clone_into(&mut self.protocol_version);
        self
    }

    /// Trusts this extra CA certificate (PEM) for the KBS, besides the platform roots.
    #[must_use]
    pub fn extra_ca_pem(mut self, pem: Vec<u8>) -> Self {
        self.extra_ca_pem = Some(pem);
        self
    }

    /// Allows an `http://` KBS URL (test KBSes only).
    #[must_use]
    pub fn insecure_http(mut self, allow: bool) -> Self {
        self.insecure_http = allow;
        self
    }

    /// Total deadline of one operation (handshake plus fetch, retries included).
    #[must_use]
    pub fn timeout(mut self, d: Duration) -> Self {
        self.timeout = d;
        self
    }

    /// Timeout of a single HTTP exchange (capped by what is left of the deadline).
    #[must_use]
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// Which key pair to offer (default EC P-256).
    #[must_use]
    pub fn key_algorithm(mut self, alg: KeyAlgorithm) -> Self {
        self.key_algorithm = alg;
        self
    }

    /// Largest accepted response body.
    #[must_use]
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.max_response_bytes = n;
        self
    }

    /// Margin kept before a token's `exp` (default 5 s, at most a quarter of its lifetime).
    #[must_use]
    pub fn token_skew(mut self, d: Duration) -> Self {
        self.token_skew = d;
        self
    }

    /// Retry pacing.
    #[must_use]
    pub fn retry(mut self, r: RetryPolicy) -> Self {
        self.retry = r;
        self
    }

    /// Builds the client with the reqwest/rustls transport.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`], [`Error::InsecureHttp`], [`Error::InvalidCaCert`],
    /// [`Error::KeyGeneration`].
    pub fn build(self) -> Result<KbsClient<HttpTransport>> {
        let base = self.check_url()?;
        let transport = HttpTransport::new(&HttpConfig {
            extra_ca_pem: self.extra_ca_pem.clone(),
            allow_http: base.scheme() == "http",
            max_response_bytes: self.max_response_bytes,
            connect_timeout: self.request_timeout,
        })
        .map_err(|e| match e.kind {
            TransportErrorKind::CaCertificate => Error::InvalidCaCert {
                reason: e
                    .source
                    .as_ref()
                    .map_or_else(|| e.to_string(), ToString::to_string),
            },
            _ => Error::HttpClient { source: e },
        })?;
        self.finish(base, transport)
    }

    /// Builds the client over another transport (tests, other HTTP stacks).
    ///
    /// # Errors
    /// As [`Self::build`].
    pub fn build_with_transport<T: Transport>(self, transport: T) -> Result<KbsClient<T>> {
        let base = self.check_url()?;
        self.finish(base, transport)
    }

    fn check_url(&self) -> Result<url::Url> {
        // Never echo credentials: every message shows the URL with its user info redacted.
        let shown = redact_url(&self.url);
        let bad = |reason| Error::InvalidUrl {
            url: shown.clone(),
            reason,
        };
        let mut base = url::Url::parse(&self.url).map_err(|_| bad("not a URL"))?;
        if !base.username().is_empty() || base.password().is_some() {
            return Err(bad("credentials in the URL are not allowed"));
        }
        match base.scheme() {
            "https" => {}
            "http" if self.insecure_http => {
                tracing::warn!(url = %base, "using a plain-HTTP KBS URL (explicitly allowed)");
            }
            "http" => {
                return Err(Error::InsecureHttp { url: shown });
            }
            _ => return Err(bad("the scheme must be https://")),
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(bad("no host"));
        }
        if base.query().is_some() || base.fragment().is_some() {
            return Err(bad("no query or fragment allowed"));
        }
        // Paths are appended: make sure the base ends with exactly one '/'.
        let path = base.path().trim_end_matches('/').to_owned();
        base.set_path(&format!("{path}/"));
        Ok(base)
    }

    fn finish<T: Transport>(self, base: url::Url, transport: T) -> Result<KbsClient<T>> {
        let key = TeeKeyPair::generate(self.key_algorithm)?;
        Ok(KbsClient {
            transport,
            base,
            attester: self.attester,
            key,
            cookie: None,
            token: None,
            last_evidence: None,
            cfg: Config {
                protocol_version: self.protocol_version,
                timeout: self.timeout,
                request_timeout: self.request_timeout,
                token_skew: self.token_skew,
                retry: self.retry,
            },
            stats: Stats::default(),
        })
    }
}

#[derive(Debug, Clone)]
struct Config {
    protocol_version: String,
    timeout: Duration,
    request_timeout: Duration,
    token_skew: Duration,
    retry: RetryPolicy,
}

/// Counters, for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// HTTP requests sent (retries included).
    pub requests: u64,
    /// Completed handshakes (auth + attest).
    pub handshakes: u64,
}

/// What one handshake produced (for `ccmount attest`; no secrets).
#[derive(Debug, Clone)]
pub struct AttestationInfo {
    /// The TEE whose evidence was sent.
    pub tee: Tee,
    /// Protocol version spoken.
    pub protocol_version: &'static str,
    /// Binding hash algorithm used.
    pub hash_algorithm: &'static str,
    /// JOSE algorithm of our key.
    pub key_algorithm: &'static str,
    /// Public facts about the evidence.
    pub evidence_summary: serde_json::Value,
    /// The token's claims (unverified; the KBS verifies them).
    pub claims: TokenClaims,
}

/// A Trustee KBS client (background-check model).
#[derive(Debug)]
pub struct KbsClient<T = HttpTransport> {
    transport: T,
    base: url::Url,
    attester: Box<dyn Attester>,
    key: TeeKeyPair,
    cookie: Option<String>,
    token: Option<Token>,
    last_evidence: Option<serde_json::Value>,
    cfg: Config,
    stats: Stats,
}

#[derive(Deserialize)]
struct TokenResponse {
    token: String,
}

impl KbsClient {
    /// Starts building a client for the KBS at `url` (e.g. `https://kbs.example:8080`) that
    /// presents evidence from `attester`.
    #[must_use]
    pub fn builder(url: &str, attester: Box<dyn Attester>) -> KbsClientBuilder {
        KbsClientBuilder {
            url: url.to_owned(),
            attester,
            extra_ca_pem: None,
            insecure_http: false,
            timeout: DEFAULT_TIMEOUT,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            key_algorithm: KeyAlgorithm::default(),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            token_skew: Duration::from_secs(5),
            retry: RetryPolicy::default(),
            protocol_version: PROTOCOL_VERSION.to_owned(),
        }
    }
}

impl<T: Transport> KbsClient<T> {
    /// The TEE this client attests as.
    #[must_use]
    pub fn tee(&self) -> Tee {
        self.attester.tee()
    }

    /// The KBS base URL.
    #[must_use]
    pub fn url(&self) -> &str {
        self.base.as_str()
    }

    /// Request and handshake counters.
    #[must_use]
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Claims of the cached token, if any.
    #[must_use]
    pub fn token_claims(&self) -> Option<&TokenClaims> {
        self.token.as_ref().map(Token::claims)
    }

    /// Runs a fresh handshake (auth + attest), replacing any cached token.
    ///
    /// # Errors
    /// Any [`Error`] of the handshake.
    pub async fn attest(&mut self) -> Result<AttestationInfo> {
        let deadline = Instant::now() + self.cfg.timeout;
        let hash = self.handshake(deadline).await?;
        let claims =
            self.token
                .as_ref()
                .map(|t| t.claims().clone())
                .ok_or(ProtocolError::BadChallenge {
                    reason: "no token after the handshake",
                })?;
        Ok(AttestationInfo {
            tee: self.attester.tee(),
            protocol_version: PROTOCOL_VERSION,
            hash_algorithm: hash.name(),
            key_algorithm: self.key.algorithm().jose_alg(),
            evidence_summary: self.last_evidence.clone().unwrap_or_default(),
            claims,
        })
    }

    /// Fetches and decrypts one resource, attesting first if there is no usable token.
    ///
    /// # Errors
    /// [`Error::PolicyDenied`], [`Error::ResourceMissing`], [`Error::AttestationRejected`],
    /// transport errors, [`Error::Jwe`], …
    pub async fn get_resource(&mut self, uri: &ResourceUri) -> Result<Secret> {
        let deadline = Instant::now() + self.cfg.timeout;
        let mut fresh = false;
        if !self.token_usable() {
            self.handshake(deadline).await?;
            fresh = true;
        }
        loop {
            let resp = self.fetch(uri, deadline).await?;
            match resp.status {
                200 => return Ok(jwe::decrypt(&self.key, &resp.body)?),
                401 | 403 => {
                    let (kind, detail) = error_info(&resp);
                    match kind.as_deref() {
                        Some("PolicyDeny") => {
                            return Err(Error::PolicyDenied {
                                resource: uri.clone(),
                                detail,
                            });
                        }
                        Some("PluginInternalError" | "PluginNotFound" | "InvalidRequestPath") => {
                            return Err(Error::ResourceMissing {
                                resource: uri.clone(),
                                detail,
                            });
                        }
                        _ if fresh => {
                            return Err(ProtocolError::FreshTokenRejected { detail }.into());
                        }
                        _ => {
                            tracing::debug!(detail = %detail, "token or session refused; attesting again");
                            self.token = None;
                            self.cookie = None;
                            self.handshake(deadline).await?;
                            fresh = true;
                        }
                    }
                }
                404 => {
                    let (_, detail) = error_info(&resp);
                    return Err(Error::ResourceMissing {
                        resource: uri.clone(),
                        detail,
                    });
                }
                status => {
                    return Err(ProtocolError::UnexpectedStatus {
                        step: Step::Resource,
                        status,
                        detail: error_info(&resp).1.into(),
                    }
                    .into());
                }
            }
        }
    }

    fn token_usable(&self) -> bool {
        self.token
            .as_ref()
            .is_some_and(|t| t.usable_at(SystemTime::now(), self.cfg.token_skew))
    }

    async fn fetch(&mut self, uri: &ResourceUri, deadline: Instant) -> Result<HttpResponse> {
        let url = self.endpoint(&format!("kbs/v0/resource/{}", uri.path()))?;
        let mut headers = Vec::new();
        if let Some(c) = &self.cookie {
            headers.push(("cookie", format!("{SESSION_COOKIE}={c}")));
        }
        if let Some(t) = &self.token {
            headers.push(("authorization", format!("Bearer {}", t.as_str())));
        }
        self.send(Step::Resource, Method::Get, url, headers, None, deadline)
            .await
    }

    /// auth → evidence → attest; stores cookie and token.
    async fn handshake(&mut self, deadline: Instant) -> Result<HashAlgorithm> {
        self.token = None;
        self.cookie = None;
        let tee = self.attester.tee();

        let request = Request {
            version: self.cfg.protocol_version.clone(),
            tee,
            extra_params: serde_json::json!({
                "supported-hash-algorithms": HashAlgorithm::SUPPORTED,
            }),
        };
        let body = serde_json::to_vec(&request).map_err(|source| ProtocolError::MalformedJson {
            step: Step::Auth,
            source,
        })?;
        let url = self.endpoint("kbs/v0/auth")?;
        let resp = self
            .send(
                Step::Auth,
                Method::Post,
                url,
                json_headers(),
                Some(body),
                deadline,
            )
            .await?;
        match resp.status {
            200 => {}
            401 | 403 => {
                let (_, detail) = error_info(&resp);
                if let Some(theirs) = version_mismatch(&detail) {
                    return Err(Error::ProtocolVersion {
                        ours: self.cfg.protocol_version.clone(),
                        theirs,
                    });
                }
                return Err(Error::AttestationRejected {
                    tee: tee.to_string(),
                    detail,
                });
            }
            status => return Err(unexpected(Step::Auth, &resp, status)),
        }
        let challenge: Challenge = parse(Step::Auth, &resp.body)?;
        let cookie = session_cookie(&resp.set_cookies)
            .ok_or(ProtocolError::MissingSessionCookie { step: Step::Auth })?;
        if challenge.nonce.is_empty() || challenge.nonce.len() > MAX_NONCE_LEN {
            return Err(ProtocolError::BadChallenge {
                reason: "the nonce is empty or longer than 1024 characters",
            }
            .into());
        }
        let hash =
            HashAlgorithm::from_challenge(&challenge.extra_params).map_err(ProtocolError::from)?;

        // Build the additional-evidence string once, hash it and send exactly it (§2.3).
        let additional_evidence = String::new();
        let tee_pubkey = self.key.public_jwk().clone();
        let report_data =
            binding::report_data(hash, &challenge.nonce, &tee_pubkey, &additional_evidence)
                .map_err(|source| ProtocolError::MalformedJson {
                    step: Step::Attest,
                    source,
                })?;
        let evidence = self.attester.evidence(&report_data)?;
        self.last_evidence = Some(evidence.summary);
        let attestation = Attestation {
            init_data: None,
            runtime_data: RuntimeData {
                nonce: challenge.nonce,
                tee_pubkey,
            },
            tee_evidence: CompositeEvidence {
                primary_evidence: evidence.json,
                additional_evidence,
            },
        };
        let body =
            serde_json::to_vec(&attestation).map_err(|source| ProtocolError::MalformedJson {
                step: Step::Attest,
                source,
            })?;
        let mut headers = json_headers();
        headers.push(("cookie", format!("{SESSION_COOKIE}={cookie}")));
        let url = self.endpoint("kbs/v0/attest")?;
        let resp = self
            .send(
                Step::Attest,
                Method::Post,
                url,
                headers,
                Some(body),
                deadline,
            )
            .await?;
        match resp.status {
            200 => {}
            401 | 403 => {
                return Err(Error::AttestationRejected {
                    tee: tee.to_string(),
                    detail: error_info(&resp).1,
                });
            }
            status => return Err(unexpected(Step::Attest, &resp, status)),
        }
        let tr: TokenResponse = parse(Step::Attest, &resp.body)?;
        let token = Token::parse(&tr.token).map_err(ProtocolError::Token)?;
        self.cookie = Some(session_cookie(&resp.set_cookies).unwrap_or(cookie));
        self.token = Some(token);
        self.stats.handshakes += 1;
        Ok(hash)
    }

    fn endpoint(&self, path: &str) -> Result<url::Url> {
        self.base.join(path).map_err(|_| Error::InvalidUrl {
            url: self.base.to_string(),
            reason: "cannot append the KBS API path",
        })
    }

    /// Sends with retries for connection errors, timeouts and 5xx, within `deadline`.
    async fn send(
        &mut self,
        step: Step,
        method: Method,
        url: url::Url,
        headers: Vec<(&'static str, String)>,
        body: Option<Vec<u8>>,
        deadline: Instant,
    ) -> Result<HttpResponse> {
        let mut backoff = self.cfg.retry.initial_backoff;
        let mut attempts = 0u32;
        loop {
            let now = Instant::now();
            let Some(left) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                return Err(self.timeout_error(step));
            };
            attempts += 1;
            self.stats.requests += 1;
            let req = HttpRequest {
                method,
                url: url.clone(),
                headers: headers.clone(),
                body: body.clone(),
                timeout: left.min(self.cfg.request_timeout),
            };
            let outcome = self.transport.send(req).await;
            let retryable_failure: Error = match outcome {
                Ok(resp) if resp.status >= 500 => ProtocolError::ServerError {
                    step,
                    status: resp.status,
                    attempts,
                    detail: error_info(&resp).1.into(),
                }
                .into(),
                Ok(resp) => return Ok(resp),
                Err(e) => match e.kind {
                    TransportErrorKind::Connect => Error::Unreachable {
                        url: self.base.to_string(),
                        attempts,
                        source: e,
                    },
                    TransportErrorKind::Timeout => self.timeout_error(step),
                    TransportErrorKind::Tls(problem) => {
                        return Err(Error::Tls {
                            url: self.base.to_string(),
                            problem,
                            transport: e,
                        });
                    }
                    TransportErrorKind::TooLarge { limit } => {
                        return Err(ProtocolError::TooLarge { step, limit }.into());
                    }
                    TransportErrorKind::Other | TransportErrorKind::CaCertificate => {
                        return Err(ProtocolError::Transport { step, source: e }.into());
                    }
                },
            };
            let sleep = jitter(backoff);
            let wake = Instant::now() + sleep;
            if attempts >= MAX_ATTEMPTS || wake >= deadline {
                // The last failure says best what went wrong.
                return Err(retryable_failure);
            }
            // A person waiting sees each retry: what failed, which attempt, time left.
            tracing::info!(
                %step,
                attempt = attempts,
                max_attempts = MAX_ATTEMPTS,
                retry_in_ms = sleep.as_millis() as u64,
                deadline_left_ms = deadline.saturating_duration_since(Instant::now()).as_millis() as u64,
                "KBS request failed ({retryable_failure}); retrying"
            );
            tokio::time::sleep(sleep).await;
            backoff = (backoff * 2).min(self.cfg.retry.max_backoff);
        }
    }

    fn timeout_error(&self, step: Step) -> Error {
        Error::Timeout {
            url: self.base.to_string(),
            step,
            deadline: self.cfg.timeout,
        }
    }
}

fn json_headers() -> Vec<(&'static str, String)> {
    vec![("content-type", "application/json".to_owned())]
}

fn parse<D: serde::de::DeserializeOwned>(step: Step, body: &[u8]) -> Result<D> {
    serde_json::from_slice(body)
        .map_err(|source| ProtocolError::MalformedJson { step, source }.into())
}

fn unexpected(step: Step, resp: &HttpResponse, status: u16) -> Error {
    ProtocolError::UnexpectedStatus {
        step,
        status,
        detail: Some(error_info(resp).1).filter(|d| !d.is_empty()),
    }
    .into()
}

/// `(type suffix, sanitized detail)` of a Trustee error body; `(None, "")` if not one.
fn error_info(resp: &HttpResponse) -> (Option<String>, String) {
    match serde_json::from_slice::<ErrorInformation>(&resp.body) {
        Ok(info) => {
            let kind = info
                .error_type
                .rsplit('/')
                .next()
                .map(sanitize_detail)
                .filter(|k| !k.is_empty());
            (kind, sanitize_detail(&info.detail))
        }
        Err(_) => (None, String::new()),
    }
}

/// Recognises Trustee's version-mismatch detail and extracts the version it expects.
fn version_mismatch(detail: &str) -> Option<String> {
    let lower = detail.to_ascii_lowercase();
    if !lower.contains("version mismatch") {
        return None;
    }
    let theirs = detail
        .split_once("expect ")
        .map(|(_, rest)| {
            rest.split_whitespace()
                .next()
                .unwrap_or("")
                .trim_end_matches(',')
        })
        .filter(|v| !v.is_empty())
        .unwrap_or("unknown");
    Some(theirs.to_owned())
}

/// The `kbs-session-id` value from `Set-Cookie` headers, if well-formed.
fn session_cookie(set_cookies: &[String]) -> Option<String> {
    set_cookies.iter().find_map(|c| {
        let first = c.split(';').next()?.trim();
        let value = first.strip_prefix(SESSION_COOKIE)?.strip_prefix('=')?;
        let ok = !value.is_empty()
            && value.len() <= 128
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| value.to_owned())
    })
}

/// `d` scaled by a random factor in [0.5, 1.5).
fn jitter(d: Duration) -> Duration {
    let mut b = [0u8; 2];
    let r = if getrandom::fill(&mut b).is_ok() {
        u16::from_le_bytes(b)
    } else {
        u16::MAX / 2
    };
    let factor = 0.5 + f64::from(r) / f64::from(u16::MAX);
    d.mul_f64(factor)
}

/// Parsers of KBS responses, exposed for the fuzzing harness.
pub(crate) mod parsers {
    use super::*;

    pub(crate) fn challenge(body: &[u8]) -> Result<Challenge> {
        parse(Step::Auth, body)
    }
    pub(crate) fn token_response(body: &[u8]) -> Result<Token> {
        let tr: TokenResponse = parse(Step::Attest, body)?;
        Ok(Token::parse(&tr.token).map_err(ProtocolError::Token)?)
    }
    pub(crate) fn error(body: &[u8]) -> (Option<String>, String) {
        error_info(&HttpResponse {
            status: 401,
            set_cookies: Vec::new(),
            body: body.to_vec(),
        })
    }
    pub(crate) fn cookie(headers: &[String]) -> Option<String> {
        session_cookie(headers)
    }
}

/// `raw` as it may be shown: the user-info part (`user:password@`) replaced by `***@`,
/// then reduced to printable ASCII. Works on text that does not parse as a URL too.
fn redact_url(raw: &str) -> String {
    let redacted = match raw.find("://") {
        Some(i) => {
            let (scheme, rest) = raw.split_at(i + 3);
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            match rest[..authority_end].rfind('@') {
                Some(at) => format!("{scheme}***{}", &rest[at..]),
                None => raw.to_owned(),
            }
        }
        None => match raw.rfind('@') {
            Some(at) => format!("***{}", &raw[at..]),
            None => raw.to_owned(),
        },
    };
    sanitize_detail(&redacted)
}

#[cfg(test)]
mod tests {
    //! The protocol core against an in-process fake KBS transport (no network). The real
    //! HTTPS flow against the separately written test KBS is in `tests/`.
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        reason = "tests"
    )]
    use std::collections::VecDeque;
    use std::sync::Mutex;

    use base64::Engine as _;

    use super::*;
    use crate::evidence::sample::SampleAttester;
    use crate::jwe::testing::{Knobs, encrypt};
    use crate::token::test_jwt;
    use crate::transport::TransportError;

    /// (path, JSON body, headers) of one request.
    type Logged = (String, Option<serde_json::Value>, Vec<(String, String)>);

    /// Scripted faults, consumed in order per endpoint suffix.
    #[derive(Default)]
    struct Fake {
        log: Mutex<Vec<Logged>>,
        state: Mutex<FakeState>,
    }

    #[derive(Default)]
    struct FakeState {
        nonce: String,
        jwk: Option<kbs_types::TeePubKey>,
        token_ttl: i64,
        faults: VecDeque<(&'static str, Fault)>,
        policy_deny: bool,
        jwe_alg: Option<String>,
    }

    #[derive(Clone)]
    enum Fault {
        Status(u16, &'static str),
        Body(Vec<u8>),
        Transport(TransportErrorKind),
    }

    fn err(kind: &str, detail: &str) -> Vec<u8> {
        serde_json::json!({
            "type": format!("https://github.com/confidential-containers/kbs/errors/{kind}"),
            "detail": detail,
        })
        .to_string()
        .into_bytes()
    }

    impl Transport for &Fake {
        async fn send(
            &self,
            req: HttpRequest,
        ) -> std::result::Result<HttpResponse, TransportError> {
            let path = req.url.path().to_owned();
            let body: Option<serde_json::Value> = req
                .body
                .as_ref()
                .map(|b| serde_json::from_slice(b).unwrap());
            let headers = req
                .headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect();
            self.log
                .lock()
                .unwrap()
                .push((path.clone(), body.clone(), headers));
            let mut st = self.state.lock().unwrap();
            let fault = st
                .faults
                .front()
                .filter(|(p, _)| path.ends_with(p))
                .map(|(_, f)| f.clone());
            if let Some(f) = fault {
                st.faults.pop_front();
                let status_body = |s: u16, b: Vec<u8>| HttpResponse {
                    status: s,
                    set_cookies: vec![],
                    body: b,
                };
                return match f {
                    Fault::Status(s, kind) => Ok(status_body(s, err(kind, "scripted"))),
                    Fault::Body(b) => Ok(status_body(200, b)),
                    Fault::Transport(kind) => Err(TransportError::bare(kind)),
                };
            }
            let ok = |b: String, cookie: bool| HttpResponse {
                status: 200,
                set_cookies: if cookie {
                    vec!["kbs-session-id=0123abcd; Expires=Wed, 21 Oct 2099 07:28:00 GMT".into()]
                } else {
                    vec![]
                },
                body: b.into_bytes(),
            };
            if path.ends_with("/auth") {
                st.nonce = base64::engine::general_purpose::STANDARD.encode([3u8; 32]);
                return Ok(ok(
                    serde_json::json!({"nonce": st.nonce, "extra-params": ""}).to_string(),
                    true,
                ));
            }
            if path.ends_with("/attest") {
                let b = body.unwrap();
                let jwk: kbs_types::TeePubKey =
                    serde_json::from_value(b["runtime-data"]["tee-pubkey"].clone()).unwrap();
                assert_eq!(b["runtime-data"]["nonce"], st.nonce);
                let rd = binding::report_data(HashAlgorithm::Sha384, &st.nonce, &jwk, "").unwrap();
                let got = base64::engine::general_purpose::STANDARD
                    .decode(
                        b["tee-evidence"]["primary_evidence"]["report_data"]
                            .as_str()
                            .unwrap(),
                    )
                    .unwrap();
                if got != rd.as_bytes() {
                    return Ok(HttpResponse {
                        status: 401,
                        set_cookies: vec![],
                        body: err("AttestationError", "binding"),
                    });
                }
                st.jwk = Some(jwk);
                let now = SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_secs() as i64;
                let ttl = if st.token_ttl == 0 { 300 } else { st.token_ttl };
                let jwt = test_jwt(&serde_json::json!({"iat": now, "exp": now + ttl}));
                return Ok(ok(serde_json::json!({"token": jwt}).to_string(), true));
            }
            if st.policy_deny {
                return Ok(HttpResponse {
                    status: 401,
                    set_cookies: vec![],
                    body: err("PolicyDeny", "Access denied by policy"),
                });
            }
            let jwk = st.jwk.clone().unwrap();
            let knobs = Knobs {
                alg: st.jwe_alg.clone(),
                ..Knobs::default()
            };
            Ok(ok(encrypt(&jwk, path.as_bytes(), &knobs), false))
        }
    }

    fn client(fake: &Fake) -> KbsClient<&Fake> {
        KbsClient::builder("https://kbs.test:8080", Box::new(SampleAttester::new()))
            .timeout(Duration::from_secs(5))
            .retry(RetryPolicy {
                initial_backoff: Duration::from_millis(1),
                max_backoff: Duration::from_millis(5),
            })
            .build_with_transport(fake)
            .unwrap()
    }

    fn uri(s: &str) -> ResourceUri {
        ResourceUri::parse(s).unwrap()
    }

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn full_flow_exact_json_and_token_reuse() {
        let fake = Fake::default();
        let mut c = client(&fake);
        rt().block_on(async {
            let s = c.get_resource(&uri("kbs:///default/key/a")).await.unwrap();
            assert_eq!(s.expose(), b"/kbs/v0/resource/default/key/a");
            let s = c.get_resource(&uri("kbs:///default/key/b")).await.unwrap();
            assert_eq!(s.expose(), b"/kbs/v0/resource/default/key/b");
        });
        assert_eq!(
            c.stats(),
            Stats {
                requests: 4,
                handshakes: 1
            },
            "one request per further resource"
        );
        let log = fake.log.lock().unwrap();
        let (p, auth, h) = &log[0];
        assert_eq!(p, "/kbs/v0/auth");
        assert_eq!(
            auth.as_ref().unwrap(),
            &serde_json::json!({"version": "0.4.0", "tee": "sample",
                "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512"]}})
        );
        assert!(h.contains(&("content-type".into(), "application/json".into())));
        let (p, att, h) = &log[1];
        assert_eq!(p, "/kbs/v0/attest");
        let att = att.as_ref().unwrap();
        let keys: Vec<&String> = att.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["init-data", "runtime-data", "tee-evidence"]);
        assert!(att["init-data"].is_null());
        assert_eq!(att["tee-evidence"]["additional_evidence"], "");
        assert_eq!(att["runtime-data"]["tee-pubkey"]["kty"], "EC");
        assert!(h.contains(&("cookie".into(), "kbs-session-id=0123abcd".into())));
        let (_, _, h) = &log[3];
        assert!(
            h.iter()
                .any(|(k, v)| k == "authorization" && v.starts_with("Bearer "))
        );
    }

    #[test]
    fn rsa_key_flow() {
        let fake = Fake::default();
        let mut c = KbsClient::builder("https://kbs.test", Box::new(SampleAttester::new()))
            .key_algorithm(KeyAlgorithm::Rsa2048)
            .build_with_transport(&fake)
            .unwrap();
        let s = rt().block_on(c.get_resource(&uri("kbs:///r/t/g"))).unwrap();
        assert_eq!(s.expose(), b"/kbs/v0/resource/r/t/g");
        assert_eq!(
            fake.log.lock().unwrap()[1].1.as_ref().unwrap()["runtime-data"]["tee-pubkey"]["kty"],
            "RSA"
        );
    }

    #[test]
    fn stale_token_401_re_attests_once() {
        let fake = Fake::default();
        let mut c = client(&fake);
        rt().block_on(async {
            c.get_resource(&uri("kbs:///a/b/c")).await.unwrap();
            fake.state
                .lock()
                .unwrap()
                .faults
                .push_back(("/c", Fault::Status(401, "TokenVerifierError")));
            c.get_resource(&uri("kbs:///a/b/c")).await.unwrap();
        });
        assert_eq!(c.stats().handshakes, 2);
        assert_eq!(c.stats().requests, 2 + 1 + 1 + 2 + 1);
    }

    #[test]
    fn policy_deny_and_missing_do_not_re_attest() {
        let fake = Fake::default();
        let mut c = client(&fake);
        rt().block_on(async {
            fake.state.lock().unwrap().policy_deny = true;
            let e = c.get_resource(&uri("kbs:///a/b/c")).await.unwrap_err();
            assert!(matches!(e, Error::PolicyDenied { .. }), "{e}");
            assert!(e.to_string().contains("resource policy"));
            fake.state.lock().unwrap().policy_deny = false;
            fake.state
                .lock()
                .unwrap()
                .faults
                .push_back(("/c", Fault::Status(401, "PluginInternalError")));
            let e = c.get_resource(&uri("kbs:///a/b/c")).await.unwrap_err();
            assert!(matches!(e, Error::ResourceMissing { .. }), "{e}");
        });
        assert_eq!(c.stats().handshakes, 1);
    }

    #[test]
    fn expired_token_re_attests() {
        let fake = Fake::default();
        fake.state.lock().unwrap().token_ttl = -10;
        let mut c = client(&fake);
        rt().block_on(async {
            c.get_resource(&uri("kbs:///a/b/c")).await.unwrap();
            c.get_resource(&uri("kbs:///a/b/c")).await.unwrap();
        });
        assert_eq!(c.stats().handshakes, 2);
    }

    #[test]
    fn retries_5xx_and_connect_errors_then_succeeds() {
        let fake = Fake::default();
        {
            let mut st = fake.state.lock().unwrap();
            st.faults
                .push_back(("/auth", Fault::Status(503, "HTTPFailed")));
            st.faults
                .push_back(("/auth", Fault::Transport(TransportErrorKind::Connect)));
        }
        let mut c = client(&fake);
        rt().block_on(c.get_resource(&uri("kbs:///a/b/c"))).unwrap();
        assert_eq!(c.stats().requests, 5);
    }

    #[test]
    fn persistent_failures_end_within_the_deadline() {
        let fake = Fake::default();
        for _ in 0..100 {
            fake.state
                .lock()
                .unwrap()
                .faults
                .push_back(("/auth", Fault::Transport(TransportErrorKind::Connect)));
        }
        let mut c = KbsClient::builder("https://kbs.test", Box::new(SampleAttester::new()))
            .timeout(Duration::from_millis(300))
            .build_with_transport(&fake)
            .unwrap();
        let t = Instant::now();
        let e = rt()
            .block_on(c.get_resource(&uri("kbs:///a/b/c")))
            .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(matches!(e, Error::Unreachable { .. }), "{e}");
        assert!(e.to_string().contains("https://kbs.test/"), "{e}");
        let fake = Fake::default();
        fake.state.lock().unwrap().faults.push_back((
            "/auth",
            Fault::Transport(TransportErrorKind::Tls(
                crate::transport::TlsProblem::UnknownIssuer,
            )),
        ));
        let e = rt()
            .block_on(client(&fake).get_resource(&uri("kbs:///a/b/c")))
            .unwrap_err();
        assert!(matches!(e, Error::Tls { .. }), "TLS is not retried: {e}");
    }

    #[test]
    fn version_mismatch_names_both_versions() {
        let fake = Fake::default();
        fake.state
            .lock()
            .unwrap()
            .faults
            .push_back(("/auth", Fault::Body(vec![])));
        let e = rt()
            .block_on(client(&fake).get_resource(&uri("kbs:///a/b/c")))
            .unwrap_err();
        assert!(
            matches!(
                e,
                Error::Protocol(ProtocolError::MalformedJson {
                    step: Step::Auth,
                    ..
                })
            ),
            "{e}"
        );
        assert_eq!(
            version_mismatch(
                "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.5.0 while the request is 0.4.0"
            ),
            Some("=0.5.0".into())
        );
        assert_eq!(version_mismatch("Version Mismatch"), Some("unknown".into()));
        assert_eq!(version_mismatch("other"), None);
    }

    #[test]
    fn jwe_with_another_alg_is_refused() {
        let fake = Fake::default();
        fake.state.lock().unwrap().jwe_alg = Some("RSA1_5".into());
        let e = rt()
            .block_on(client(&fake).get_resource(&uri("kbs:///a/b/c")))
            .unwrap_err();
        assert!(
            matches!(e, Error::Jwe(jwe::JweError::UnexpectedAlg { .. })),
            "{e}"
        );
    }

    #[test]
    fn urls_are_checked() {
        let b = |u: &str, insecure| {
            KbsClient::builder(u, Box::new(SampleAttester::new()))
                .insecure_http(insecure)
                .build_with_transport(&Fake::default())
                .map(|c| c.url().to_owned())
        };
        assert!(matches!(
            b("http://127.0.0.1:1", false),
            Err(Error::InsecureHttp { .. })
        ));
        assert_eq!(
            b("http://127.0.0.1:1", true).unwrap(),
            "http://127.0.0.1:1/"
        );
        assert_eq!(b("https://k/prefix", false).unwrap(), "https://k/prefix/");
        assert!(matches!(b("ftp://k", false), Err(Error::InvalidUrl { .. })));
        assert!(matches!(
            b("https://u:p@k", false),
            Err(Error::InvalidUrl { .. })
        ));
        // The password is never echoed, whatever else is wrong with the URL.
        for u in [
            "https://user:hunter2@kbs.example:8080",
            "http://user:hunter2@kbs.example",
            "ftp://user:hunter2@kbs.example",
            "https://user:hunter2@",
            "user:hunter2@kbs",
        ] {
            let e = b(u, false).unwrap_err().to_string();
            assert!(!e.contains("hunter2") && !e.contains("user"), "{e}");
        }
        assert!(matches!(
            b("not a url", false),
            Err(Error::InvalidUrl { .. })
        ));
    }

    #[test]
    fn cookie_parsing() {
        assert_eq!(
            session_cookie(&["kbs-session-id=abc123; Expires=x".into()]),
            Some("abc123".into())
        );
        assert_eq!(
            session_cookie(&["other=1".into(), "kbs-session-id=z".into()]),
            Some("z".into())
        );
        assert_eq!(session_cookie(&["kbs-session-id=a\r\nX: y".into()]), None);
        assert_eq!(session_cookie(&["kbs-session-id=".into()]), None);
    }
}
