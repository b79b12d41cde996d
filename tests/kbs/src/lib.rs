//! A Trustee-compatible Key Broker Service for tests and `ccmount demo`: real HTTP(S) on
//! 127.0.0.1, protocol 0.4.0 (RCAR), written independently of the `attest` client so each
//! checks the other.
//!
//! Spec: `../shared/specs/kbs-protocol.md` — §1 (endpoints, versions, auth/attest/resource,
//! JWE, errors and status codes), §2 (binding), §3 (evidence), §6.5–§6.7 (default policy,
//! what a mock KBS must reproduce). What is and is not reproduced: `tests/kbs/README.md`.
//!
//! **Not an attestation service.** The `sample` verifier is Trustee's (no signature exists);
//! the `tdx` and `snp` verifiers are *structural only* (REPORTDATA offsets, no signature, no
//! certificate chain, no TCB) so client code can be tested against fake configfs trees.
//!
//! # Library API
//!
//! ```no_run
//! use std::time::Duration;
//! use test_kbs::{Endpoint, KbsConfig, Policy, TestKbs};
//!
//! # fn main() -> Result<(), test_kbs::Error> {
//! let kbs = TestKbs::start(
//!     KbsConfig::default()
//!         .with_resource("default/key/model", b"secret".to_vec())
//!         .with_policy(Policy::allow_all()),
//! )?;
//! let url = kbs.url(); // "https://127.0.0.1:<port>"
//! let ca = kbs.ca_pem(); // Some(PEM) with TLS, None with plain HTTP
//! kbs.allow_tee("sample")?;
//! kbs.set_token_ttl(Duration::from_secs(60));
//! kbs.faults().fail_next(1, 503, Some(Endpoint::Resource));
//! // ... run the client against `url` ...
//! assert!(kbs.request_count(Endpoint::Auth) <= 1);
//! let requests = kbs.requests(); // method, path, headers, parsed JSON, status, fault
//! # let _ = (url, ca, requests);
//! # Ok(()) }
//! // Dropping `kbs` stops the server and joins its thread.
//! ```
//!
//! | call | what |
//! |---|---|
//! | [`TestKbs::start`]`(KbsConfig) -> Result<TestKbs, Error>` | bind, generate CA + cert, serve on a thread with its own tokio runtime |
//! | [`TestKbs::url`], [`TestKbs::addr`], [`TestKbs::ca_pem`], [`TestKbs::write_ca`] | where and how to connect |
//! | [`TestKbs::set_resource`], [`TestKbs::remove_resource`] | the resource store (`repo/type/tag`) |
//! | [`TestKbs::set_policy`], [`TestKbs::allow_tee`], [`TestKbs::set_resource_rule`] | resource policy (default denies `sample`, like Trustee) |
//! | [`TestKbs::set_token_ttl`], [`TestKbs::set_session_timeout`], [`TestKbs::expire_sessions`] | lifetimes |
//! | [`TestKbs::faults`] | [`Faults`]: delay, drop, 5xx, 401 once, oversized, malformed |
//! | [`TestKbs::requests`], [`TestKbs::request_count`], [`TestKbs::clear_requests`] | observation |
//! | [`TestKbs::issue_token`], [`TestKbs::token_public_jwk`] | tokens without a handshake (Bearer tests) |

mod api;
mod error;
mod faults;
mod jwe;
mod observe;
mod policy;
mod resource;
mod server;
mod session;
mod tls;
mod token;
mod verifier;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;
use tokio::sync::watch;

pub use api::{AdminMode, PROTOCOL_VERSION};
pub use error::{ERROR_TYPE_PREFIX, Error};
pub use faults::{FaultKind, Faults};
pub use observe::{Endpoint, RecordedRequest};
pub use policy::{Policy, TeeRule, tee_of_claims};
pub use resource::valid_resource_path;

use api::{Settings, Shared, lock};

/// Trustee's default session timeout and token lifetime: 5 minutes.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
/// Trustee's default request body cap: 2 MiB.
pub const DEFAULT_MAX_BODY: usize = 2 * 1024 * 1024;

/// How to start a [`TestKbs`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct KbsConfig {
    /// Listen address; default `127.0.0.1:0` (a free port).
    pub listen: SocketAddr,
    /// Serve HTTPS with a generated CA (default) or plain HTTP (`false`).
    pub tls: bool,
    /// Token lifetime (`exp - iat`, whole seconds); default 5 min.
    pub token_ttl: Duration,
    /// Session (cookie) lifetime from `/auth`; default 5 min.
    pub session_timeout: Duration,
    /// Resource policy; default [`Policy::trustee_default`] (denies `sample`).
    pub policy: Policy,
    /// Resources to preload, `("repo/type/tag", bytes)`.
    pub resources: Vec<(String, Vec<u8>)>,
    /// Admin endpoint access; default [`AdminMode::InsecureAllowAll`].
    pub admin: AdminMode,
    /// Request body cap in bytes; default 2 MiB.
    pub max_body: usize,
}

impl Default for KbsConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: true,
            token_ttl: DEFAULT_LIFETIME,
            session_timeout: DEFAULT_LIFETIME,
            policy: Policy::trustee_default(),
            resources: Vec::new(),
            admin: AdminMode::InsecureAllowAll,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

impl KbsConfig {
    /// Plain HTTP instead of HTTPS (for `--insecure-http` tests).
    #[must_use]
    pub fn http(mut self) -> Self {
        self.tls = false;
        self
    }

    /// Listen on `addr`.
    #[must_use]
    pub fn with_listen(mut self, addr: SocketAddr) -> Self {
        self.listen = addr;
        self
    }

    /// Preload a resource.
    #[must_use]
    pub fn with_resource(mut self, path: &str, value: Vec<u8>) -> Self {
        self.resources.push((path.to_owned(), value));
        self
    }

    /// Use `policy`.
    #[must_use]
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Token lifetime.
    #[must_use]
    pub fn with_token_ttl(mut self, ttl: Duration) -> Self {
        self.token_ttl = ttl;
        self
    }

    /// Session lifetime.
    #[must_use]
    pub fn with_session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// Admin access mode.
    #[must_use]
    pub fn with_admin(mut self, admin: AdminMode) -> Self {
        self.admin = admin;
        self
    }
}

/// A running test KBS. Dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct TestKbs {
    addr: SocketAddr,
    tls: bool,
    ca_pem: Option<String>,
    shared: Arc<Shared>,
    shutdown: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
}

impl TestKbs {
    /// Bind, generate TLS material (when `config.tls`), and serve on a background thread.
    ///
    /// # Errors
    /// [`Error::Bind`], [`Error::Tls`], [`Error::Runtime`], or [`Error::InvalidResourcePath`]
    /// for a preloaded resource Trustee would refuse.
    pub fn start(config: KbsConfig) -> Result<Self, Error> {
        let mut store = resource::ResourceStore::default();
        for (path, value) in config.resources {
            if !valid_resource_path(&path) {
                return Err(Error::InvalidResourcePath { path });
            }
            store.set(&path, value);
        }
        let signer = token::TokenSigner::generate().map_err(Error::Token)?;
        let tls = if config.tls {
            Some(tls::generate()?)
        } else {
            None
        };
        let listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| Error::Bind {
                addr: config.listen.to_string(),
                source,
            })?;
        listener.set_nonblocking(true).map_err(Error::Runtime)?;
        let addr = listener.local_addr().map_err(Error::Runtime)?;
        let shared = Arc::new(Shared {
            resources: Mutex::new(store),
            policy: Mutex::new(config.policy),
            sessions: Mutex::default(),
            settings: Mutex::new(Settings {
                token_ttl: config.token_ttl,
                session_timeout: config.session_timeout,
                admin: config.admin,
                protocol_version: PROTOCOL_VERSION.to_owned(),
            }),
            log: Mutex::default(),
            faults: Faults::default(),
            signer,
            max_body: config.max_body,
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let (tx, rx) = watch::channel(false);
        let server_config = tls.as_ref().map(|t| Arc::clone(&t.server_config));
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("test-kbs-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(server::run(listener, server_config, thread_shared, rx));
                // Dropping the runtime cancels open connections.
            })
            .map_err(Error::Runtime)?;
        Ok(Self {
            addr,
            tls: config.tls,
            ca_pem: tls.map(|t| t.ca_pem),
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// Base URL, e.g. `https://127.0.0.1:43211` (no trailing slash).
    #[must_use]
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The bound socket address.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// PEM of the CA that signed the server certificate; None for plain HTTP.
    #[must_use]
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// Write the CA PEM to `path` (for `--kbs-cert`).
    ///
    /// # Errors
    /// [`Error::Io`] on write failure, [`Error::Tls`] when serving plain HTTP.
    pub fn write_ca(&self, path: &Path) -> Result<(), Error> {
        let pem = self
            .ca_pem
            .as_deref()
            .ok_or_else(|| Error::Tls("plain HTTP server has no CA".to_owned()))?;
        std::fs::write(path, pem).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })
    }

    /// Store `value` at `repo/type/tag` (replacing any previous value).
    ///
    /// # Errors
    /// [`Error::InvalidResourcePath`] for a path Trustee would refuse.
    pub fn set_resource(&self, path: &str, value: impl Into<Vec<u8>>) -> Result<(), Error> {
        if !valid_resource_path(path) {
            return Err(Error::InvalidResourcePath {
                path: path.to_owned(),
            });
        }
        lock(&self.shared.resources).set(path, value.into());
        Ok(())
    }

    /// Remove a resource; true when it existed.
    pub fn remove_resource(&self, path: &str) -> bool {
        lock(&self.shared.resources).remove(path)
    }

    /// Replace the whole resource policy.
    pub fn set_policy(&self, policy: Policy) {
        *lock(&self.shared.policy) = policy;
    }

    /// The current resource policy.
    #[must_use]
    pub fn policy(&self) -> Policy {
        lock(&self.shared.policy).clone()
    }

    /// Widen the default rule so that `tee` is allowed (`"sample"` turns Trustee's default
    /// into allow-all, as installing `allow_all.rego` does).
    ///
    /// # Errors
    /// [`Error::UnknownTee`] for a name kbs-types does not know.
    pub fn allow_tee(&self, tee: &str) -> Result<(), Error> {
        verifier::parse_tee(tee).map_err(|_| Error::UnknownTee {
            tee: tee.to_owned(),
        })?;
        let mut policy = lock(&self.shared.policy);
        let default = std::mem::replace(&mut policy.default, TeeRule::DenyAll);
        policy.default = default.with_tee(tee);
        Ok(())
    }

    /// Set the rule for one resource.
    ///
    /// # Errors
    /// [`Error::InvalidResourcePath`].
    pub fn set_resource_rule(&self, path: &str, rule: TeeRule) -> Result<(), Error> {
        if !valid_resource_path(path) {
            return Err(Error::InvalidResourcePath {
                path: path.to_owned(),
            });
        }
        lock(&self.shared.policy)
            .resources
            .insert(path.to_owned(), rule);
        Ok(())
    }

    /// Lifetime of tokens issued from now on (zero: already expired when issued).
    pub fn set_token_ttl(&self, ttl: Duration) {
        lock(&self.shared.settings).token_ttl = ttl;
    }

    /// Lifetime of sessions created from now on.
    pub fn set_session_timeout(&self, timeout: Duration) {
        lock(&self.shared.settings).session_timeout = timeout;
    }

    /// Act as a KBS release that requires protocol `version` (`X.Y.Z`) at `/auth` from now on,
    /// to test a client/server version mismatch end to end.
    pub fn set_protocol_version(&self, version: &str) {
        lock(&self.shared.settings).protocol_version = version.to_owned();
    }

    /// Admin access mode from now on.
    pub fn set_admin_mode(&self, admin: AdminMode) {
        lock(&self.shared.settings).admin = admin;
    }

    /// Forget every session, as if they had all expired (the next cookie use fails).
    pub fn expire_sessions(&self) {
        lock(&self.shared.sessions).expire_all();
    }

    /// The fault knobs.
    #[must_use]
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Every request seen so far (oldest first).
    #[must_use]
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.log).entries.clone()
    }

    /// How many requests hit `endpoint`.
    #[must_use]
    pub fn request_count(&self, endpoint: Endpoint) -> usize {
        lock(&self.shared.log)
            .entries
            .iter()
            .filter(|r| r.endpoint == endpoint)
            .count()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        lock(&self.shared.log).entries.clear();
    }

    /// Issue a token as `/attest` would, for `tee` and the JWK `tee_pubkey`, without a
    /// handshake (for Bearer / passport-mode tests).
    ///
    /// # Errors
    /// [`Error::UnknownTee`], or [`Error::Token`] when `tee_pubkey` is not a kbs-types JWK.
    pub fn issue_token(
        &self,
        tee: &str,
        tee_pubkey: &Value,
        ttl: Duration,
    ) -> Result<String, Error> {
        verifier::parse_tee(tee).map_err(|_| Error::UnknownTee {
            tee: tee.to_owned(),
        })?;
        let _: kbs_types::TeePubKey = serde_json::from_value(tee_pubkey.clone())
            .map_err(|e| Error::Token(format!("tee_pubkey is not a JWK kbs-types accepts: {e}")))?;
        let appraisal = token::Appraisal {
            tee: tee.to_owned(),
            tee_claims: serde_json::json!({"issued-without-evidence": true}),
            report_data: Vec::new(),
            runtime_data: serde_json::json!({"nonce": "", "tee-pubkey": tee_pubkey}),
            init_data: None,
            structural_only: true,
        };
        let claims = token::ear_claims(&appraisal, &[], token::now_secs(), ttl.as_secs());
        self.shared.signer.sign(&claims).map_err(Error::Token)
    }

    /// The public JWK that verifies this server's tokens.
    #[must_use]
    pub fn token_public_jwk(&self) -> Value {
        self.shared.signer.public_jwk()
    }

    /// Stop now (same as dropping).
    pub fn stop(self) {}
}

impl Drop for TestKbs {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
