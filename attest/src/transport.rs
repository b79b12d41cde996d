//! The HTTP boundary: a small [`Transport`] trait and its reqwest/rustls implementation.
//!
//! Mirrors `../shared/design/style-anchors.md` §7.3 ("close to sans-IO": the protocol core in
//! [`crate::kbs::client`] talks only to this trait, so tests can plug an in-process fake) and
//! `../shared/specs/kbs-protocol.md` §5.3 (what the reference client's HTTP layer does). The
//! reqwest transport: rustls with the platform roots plus an optional extra CA (`--kbs-cert`),
//! no redirects (a redirect could carry the bearer token elsewhere), one timeout per request
//! covering the whole exchange, and a hard limit on the response body, enforced while reading.
//! Retries and the total deadline belong to the client, not here.

use std::fmt;
use std::future::Future;
use std::time::Duration;

/// HTTP method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST (JSON body).
    Post,
}

/// One request. `Debug` never shows the `Authorization` value.
#[derive(Clone)]
pub struct HttpRequest {
    /// Method.
    pub method: Method,
    /// Absolute URL.
    pub url: url::Url,
    /// Extra headers (`Cookie`, `Authorization`, `Content-Type`).
    pub headers: Vec<(&'static str, String)>,
    /// Body, for POST.
    pub body: Option<Vec<u8>>,
    /// Timeout for this whole exchange.
    pub timeout: Duration,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(k, v)| {
                (
                    *k,
                    if k.eq_ignore_ascii_case("authorization") {
                        "<redacted>"
                    } else {
                        v.as_str()
                    },
                )
            })
            .collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("url", &self.url.as_str())
            .field("headers", &headers)
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// One response.
#[derive(Debug, Clone, Default)]
pub struct HttpResponse {
    /// Status code.
    pub status: u16,
    /// Every `Set-Cookie` header value.
    pub set_cookies: Vec<String>,
    /// The body (at most the transport's limit).
    pub body: Vec<u8>,
}

/// What kind of transport failure happened; decides retries and exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TransportErrorKind {
    /// No connection (refused, reset, DNS, dropped before a response). Retried.
    Connect,
    /// The request did not finish within its timeout. Retried within the deadline.
    Timeout,
    /// TLS failed (certificate, handshake). Not retried.
    Tls(TlsProblem),
    /// The extra CA certificate given to the client cannot be used (the source says why).
    CaCertificate,
    /// The response body exceeded the limit.
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// Anything else (a bad header value, a client bug).
    Other,
}

/// What went wrong in a TLS handshake, in terms a person can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsProblem {
    /// The server's certificate chains to no trusted CA.
    UnknownIssuer,
    /// The server presents a CA certificate (`CA:TRUE`, e.g. what a plain
    /// `openssl req -x509` makes) as its own.
    CaAsServerCertificate,
    /// The certificate is not valid for the host name of the URL.
    WrongName,
    /// The certificate has expired or is not valid yet.
    Expired,
    /// The server does not speak TLS (a plain-HTTP server behind an `https://` URL).
    NotTls,
    /// Another handshake failure.
    Other,
}

impl TlsProblem {
    /// One line describing the problem.
    #[must_use]
    pub fn text(self) -> &'static str {
        match self {
            TlsProblem::UnknownIssuer => {
                "the server's certificate is signed by a CA that is not trusted"
            }
            TlsProblem::CaAsServerCertificate => {
                "the server presents a CA certificate (CA:TRUE) as its own certificate; a server needs an end-entity certificate issued by that CA"
            }
            TlsProblem::WrongName => {
                "the server's certificate is not valid for the host name in the URL"
            }
            TlsProblem::Expired => "the server's certificate has expired or is not valid yet",
            TlsProblem::NotTls => {
                "the server does not speak TLS (a plain-HTTP server behind an https:// URL?)"
            }
            TlsProblem::Other => "the handshake failed",
        }
    }

    /// Sorts a handshake failure by the text of its cause chain (rustls and webpki error
    /// names are stable; their types are not ours to depend on).
    fn of(e: &(dyn std::error::Error + 'static)) -> Self {
        let mut text = String::new();
        let mut cur = Some(e);
        while let Some(err) = cur {
            text.push_str(&format!("{err} {err:?} "));
            cur = err.source();
        }
        if text.contains("CaUsedAsEndEntity") {
            TlsProblem::CaAsServerCertificate
        } else if text.contains("UnknownIssuer") || text.contains("unknown issuer") {
            TlsProblem::UnknownIssuer
        } else if text.contains("NotValidForName") || text.contains("not valid for name") {
            TlsProblem::WrongName
        } else if text.contains("Expired") || text.contains("NotValidYet") {
            TlsProblem::Expired
        } else if text.contains("InvalidContentType")
            || text.contains("corrupt message")
            || text.contains("InvalidMessage")
        {
            TlsProblem::NotTls
        } else {
            TlsProblem::Other
        }
    }
}

/// A transport failure, with its cause.
#[derive(Debug, thiserror::Error)]
#[error("{}", kind_text(.kind))]
pub struct TransportError {
    /// The kind.
    pub kind: TransportErrorKind,
    /// The underlying error.
    #[source]
    pub source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

fn kind_text(k: &TransportErrorKind) -> String {
    match k {
        TransportErrorKind::Connect => "connection failed".into(),
        TransportErrorKind::Timeout => "request timed out".into(),
        TransportErrorKind::Tls(p) => format!("TLS handshake failed: {}", p.text()),
        TransportErrorKind::CaCertificate => "unusable CA certificate".into(),
        TransportErrorKind::TooLarge { limit } => format!("response larger than {limit} bytes"),
        TransportErrorKind::Other => "request failed".into(),
    }
}

impl TransportError {
    /// A new error of `kind` caused by `source`.
    pub fn new(
        kind: TransportErrorKind,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self {
            kind,
            source: Some(source.into()),
        }
    }

    /// A new error of `kind` without a cause.
    #[must_use]
    pub fn bare(kind: TransportErrorKind) -> Self {
        Self { kind, source: None }
    }
}

/// Sends HTTP requests. Implementations enforce `timeout` and their own body limit.
pub trait Transport: Send + Sync {
    /// Sends one request and reads the whole response.
    fn send(
        &self,
        request: HttpRequest,
    ) -> impl Future<Output = Result<HttpResponse, TransportError>> + Send;
}

/// Settings for [`HttpTransport`].
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Extra trusted CA certificates (PEM), added to the platform roots.
    pub extra_ca_pem: Option<Vec<u8>>,
    /// Allow `http://` URLs.
    pub allow_http: bool,
    /// Largest accepted response body.
    pub max_response_bytes: usize,
    /// Connect timeout (also bounded by each request's timeout).
    pub connect_timeout: Duration,
}

/// reqwest + rustls (aws-lc-rs provider, platform verifier).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    max_response_bytes: usize,
}

impl HttpTransport {
    /// Builds the client.
    ///
    /// # Errors
    /// A [`TransportError`] if the CA certificate is not PEM or the TLS setup fails.
    pub fn new(cfg: &HttpConfig) -> Result<Self, TransportError> {
        let mut b = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.connect_timeout)
            .https_only(!cfg.allow_http)
            .user_agent(concat!("ccmount/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = &cfg.extra_ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
                TransportError::new(
                    TransportErrorKind::CaCertificate,
                    format!("its PEM does not decode ({e})"),
                )
            })?;
            if certs.is_empty() {
                return Err(TransportError::new(
                    TransportErrorKind::CaCertificate,
                    "it holds no PEM certificate (no -----BEGIN CERTIFICATE----- block)",
                ));
            }
            b = b.tls_certs_merge(certs);
        }
        let client = b.build().map_err(|e| {
            if cfg.extra_ca_pem.is_some() {
                // The one input of the build that can be wrong: the extra CA (rustls parses
                // each certificate when it is added to the root store).
                TransportError::new(
                    TransportErrorKind::CaCertificate,
                    format!(
                        "a certificate in it is not valid X.509 ({})",
                        chain_text(&e)
                    ),
                )
            } else {
                TransportError::new(TransportErrorKind::Tls(TlsProblem::Other), e)
            }
        })?;
        Ok(Self {
            client,
            max_response_bytes: cfg.max_response_bytes,
        })
    }

    async fn exchange(&self, req: HttpRequest) -> Result<HttpResponse, TransportError> {
        let mut rb = match req.method {
            Method::Get => self.client.get(req.url),
            Method::Post => self.client.post(req.url),
        };
        for (k, v) in req.headers {
            rb = rb.header(k, v);
        }
        if let Some(body) = req.body {
            rb = rb.body(body);
        }
        let mut resp = rb.send().await.map_err(classify)?;
        let status = resp.status().as_u16();
        let set_cookies = resp
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect();
        let limit = self.max_response_bytes;
        let too_large = || TransportError::bare(TransportErrorKind::TooLarge { limit });
        if resp
            .content_length()
            .is_some_and(|n| n > u64::try_from(limit).unwrap_or(u64::MAX))
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(classify)? {
            if body.len() + chunk.len() > limit {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpResponse {
            status,
            set_cookies,
            body,
        })
    }
}

impl Transport for HttpTransport {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, TransportError> {
        let timeout = request.timeout;
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::bare(TransportErrorKind::Timeout)),
        }
    }
}

/// Sorts a reqwest error into a [`TransportErrorKind`]. TLS failures surface as I/O errors of
/// kind `InvalidData` (tokio-rustls) somewhere in the chain of a connect error.
fn classify(e: reqwest::Error) -> TransportError {
    let kind = if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if is_tls(&e) {
        TransportErrorKind::Tls(TlsProblem::of(&e))
    } else if e.is_connect() || e.is_request() || e.is_body() {
        TransportErrorKind::Connect
    } else {
        TransportErrorKind::Other
    };
    TransportError::new(kind, e)
}

/// The innermost cause's text: reqwest's outer layers only say "builder error".
fn chain_text(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn is_tls(e: &reqwest::Error) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::InvalidData
        {
            return true;
        }
        let text = err.to_string().to_ascii_lowercase();
        // rustls reports a non-TLS peer as a corrupt message, wrapped in an io::Error whose
        // kind depends on the hyper/tokio-rustls layer: match the text too.
        if text.contains("certificate")
            || text.contains("tls handshake")
            || text.contains("corrupt message")
            || text.contains("invalidcontenttype")
        {
            return true;
        }
        cur = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_problems_from_error_texts() {
        let of = |t: &str| TlsProblem::of(&std::io::Error::other(t.to_owned()));
        assert_eq!(
            of("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))"),
            TlsProblem::CaAsServerCertificate
        );
        assert_eq!(
            of("invalid peer certificate: UnknownIssuer"),
            TlsProblem::UnknownIssuer
        );
        assert_eq!(
            of("invalid peer certificate: NotValidForName"),
            TlsProblem::WrongName
        );
        assert_eq!(of("invalid peer certificate: Expired"), TlsProblem::Expired);
        assert_eq!(
            of("received corrupt message of type InvalidContentType"),
            TlsProblem::NotTls
        );
        assert_eq!(of("something else"), TlsProblem::Other);
    }
}
