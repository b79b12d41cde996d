//! The KBS API under `/kbs/v0`: one dispatcher, as Trustee's `api_server.rs` has.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §1 (and Trustee `kbs/src/api_server.rs`,
//! `kbs/src/attestation/backend.rs`, `kbs/src/plugins/implementations/resource/`): the path
//! after `/kbs/v0/` splits at the first `/` into a plugin name and the rest; `auth`, `attest`
//! (POST), `resource-policy`, `attestation-policy` are built in; `resource` is the only plugin;
//! anything else is 404 `PluginNotFound`. Resource reads check, in Trustee's order: token
//! present (attested session cookie, else Bearer) → token verified → resource policy →
//! plugin read (invalid path or missing resource: 401 `PluginInternalError`) → JWE.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hyper::HeaderMap;
use serde_json::{Value, json};

use crate::error::KbsError;
use crate::faults::Faults;
use crate::observe::RequestLog;
use crate::policy::Policy;
use crate::resource::{ResourceStore, valid_resource_path};
use crate::session::{self, Session, SessionMap};
use crate::token::{self, Appraisal, TokenSigner};
use crate::verifier;

/// Protocol version this server speaks (exact match required, §1.2).
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// Who may call the admin endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AdminMode {
    /// No authentication at all (Trustee's `InsecureAllowAll`). Test use only.
    #[default]
    InsecureAllowAll,
    /// Every admin call is refused (Trustee's `DenyAll`).
    DenyAll,
}

/// Settings a test may change while the server runs.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) token_ttl: Duration,
    pub(crate) session_timeout: Duration,
    pub(crate) admin: AdminMode,
    /// The protocol version `/auth` requires: [`PROTOCOL_VERSION`] unless a test makes this
    /// server act as another KBS release.
    pub(crate) protocol_version: String,
}

/// Everything the handlers share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) resources: Mutex<ResourceStore>,
    pub(crate) policy: Mutex<Policy>,
    pub(crate) sessions: Mutex<SessionMap>,
    pub(crate) settings: Mutex<Settings>,
    pub(crate) log: Mutex<RequestLog>,
    pub(crate) faults: Faults,
    pub(crate) signer: TokenSigner,
    /// Request body limit in bytes (Trustee `payload_request_size`, default 2 MiB).
    pub(crate) max_body: usize,
}

/// Lock ignoring poisoning: a panicking test thread must not wedge the server.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A parsed request.
#[derive(Debug)]
pub(crate) struct Req<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) headers: &'a HeaderMap,
    pub(crate) body: &'a [u8],
}

/// A reply before it becomes an HTTP response.
#[derive(Debug, Default)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) content_type: Option<&'static str>,
    pub(crate) set_cookie: Option<String>,
    pub(crate) body: Vec<u8>,
    /// Inner reason of an error reply, for the request log.
    pub(crate) error: Option<String>,
}

impl Reply {
    fn json(value: &Value) -> Self {
        Self {
            status: 200,
            content_type: Some("application/json"),
            body: value.to_string().into_bytes(),
            ..Self::default()
        }
    }

    fn empty_ok() -> Self {
        Self {
            status: 200,
            ..Self::default()
        }
    }

    /// Trustee's error reply: JSON body, no `Content-Type` header.
    pub(crate) fn error(e: &KbsError) -> Self {
        Self {
            status: e.status(),
            body: e.body().into_bytes(),
            error: Some(e.reason()),
            ..Self::default()
        }
    }
}

/// Route one request.
pub(crate) fn dispatch(shared: &Shared, req: &Req<'_>) -> Reply {
    let Some(rest) = req.path.strip_prefix("/kbs/v0/") else {
        // Outside the one route Trustee registers: the framework's bare 404.
        return Reply {
            status: 404,
            error: Some("path outside /kbs/v0/".to_owned()),
            ..Reply::default()
        };
    };
    if !matches!(req.method, "GET" | "POST" | "DELETE") {
        return Reply {
            status: 405,
            error: Some(format!("method {} not routed", req.method)),
            ..Reply::default()
        };
    }
    let (plugin, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let result = match (plugin, req.method) {
        ("auth", "POST") => auth(shared, req.body),
        ("attest", "POST") => attest(shared, req),
        ("resource-policy", "POST") => {
            admin_check(shared, req.path).and_then(|()| set_policy(shared, req.body))
        }
        ("resource-policy", "GET") => admin_check(shared, req.path).map(|()| {
            let policy = lock(&shared.policy).clone();
            Reply::json(&serde_json::to_value(policy).unwrap_or(Value::Null))
        }),
        ("attestation-policy", "POST") => {
            // Accepted and ignored: there is no attestation-service policy engine here.
            admin_check(shared, req.path).map(|()| Reply::empty_ok())
        }
        ("resource", "POST" | "DELETE") => admin_check(shared, req.path)
            .and_then(|()| admin_resource(shared, req.method, tail, req.body)),
        ("resource", "GET") if tail.is_empty() => admin_check(shared, req.path).map(|()| {
            let paths = lock(&shared.resources).paths();
            Reply::json(&json!(paths))
        }),
        ("resource", "GET") => get_resource(shared, req, tail),
        (other, _) => Err(KbsError::PluginNotFound(other.to_owned())),
    };
    result.unwrap_or_else(|e| Reply::error(&e))
}

/// Exact `=REQUIRED` semver match (`=0.4.0` by default), as Trustee's `VersionReq` (build
/// metadata ignored, pre-releases never match).
fn check_version(version: &str, required: &str) -> Result<(), KbsError> {
    let (core, _build) = version.split_once('+').unwrap_or((version, ""));
    let (numbers, pre) = match core.split_once('-') {
        Some((n, p)) => (n, Some(p)),
        None => (core, None),
    };
    let parts: Vec<&str> = numbers.split('.').collect();
    let numeric_ok = |p: &&str| {
        !p.is_empty()
            && p.chars().all(|c| c.is_ascii_digit())
            && (p.len() == 1 || !p.starts_with('0'))
    };
    let ident_ok = |s: &str| {
        !s.is_empty()
            && s.split('.')
                .all(|i| !i.is_empty() && i.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    };
    let build_ok = version.split_once('+').is_none_or(|(_, b)| ident_ok(b));
    if parts.len() != 3 || !parts.iter().all(numeric_ok) || !pre.is_none_or(ident_ok) || !build_ok {
        return Err(KbsError::AuthFailed(
            "failed to parse KBS version".to_owned(),
        ));
    }
    if numbers != required || pre.is_some() {
        return Err(KbsError::AuthFailed(format!(
            "KBS Client Protocol Version Mismatch: expect ={required} while the request is {version}"
        )));
    }
    Ok(())
}

/// `POST /kbs/v0/auth` (§1.3).
fn auth(shared: &Shared, body: &[u8]) -> Result<Reply, KbsError> {
    let request: kbs_types::Request = serde_json::from_slice(body)
        .map_err(|_| KbsError::AuthFailed("deserialize Request".to_owned()))?;
    let required = lock(&shared.settings).protocol_version.clone();
    check_version(&request.version, &required)?;
    let nonce = session::new_nonce().map_err(KbsError::AuthFailed)?;
    let id = session::new_session_id().map_err(KbsError::AuthFailed)?;
    let now = SystemTime::now();
    let timeout = lock(&shared.settings).session_timeout;
    let expires = session::expiry(now, timeout);
    lock(&shared.sessions).insert(
        id.clone(),
        Session {
            tee: verifier::tee_name(request.tee),
            nonce: nonce.clone(),
            expires,
            token: None,
        },
        now,
    );
    let challenge = kbs_types::Challenge {
        nonce,
        extra_params: Value::String(String::new()),
    };
    let mut reply = Reply::json(&serde_json::to_value(&challenge).unwrap_or(Value::Null));
    reply.set_cookie = Some(session::set_cookie(&id, expires));
    Ok(reply)
}

/// `POST /kbs/v0/attest` (§1.4, §2).
fn attest(shared: &Shared, req: &Req<'_>) -> Result<Reply, KbsError> {
    let fail = KbsError::AttestFailed;
    let id = session::cookie_from(req.headers).ok_or_else(|| fail("cookie not found".into()))?;
    let attestation: kbs_types::Attestation = serde_json::from_slice(req.body)
        .map_err(|e| fail(format!("deserialize Attestation: {e}")))?;
    let now = SystemTime::now();
    let (tee, nonce, expires) = {
        let mut sessions = lock(&shared.sessions);
        let s = sessions
            .live(&id, now)
            .ok_or_else(|| fail("no live session for this cookie (unknown or expired)".into()))?;
        if let Some(token) = &s.token {
            // Already attested: Trustee returns the stored token without re-verifying.
            let mut reply = Reply::json(&json!({"token": token}));
            reply.set_cookie = Some(session::set_cookie(&id, s.expires));
            return Ok(reply);
        }
        (s.tee.clone(), s.nonce.clone(), s.expires)
    };
    if attestation.runtime_data.nonce != nonce {
        return Err(fail(
            "the nonce in the handshake session is different from the one in the Attestation"
                .into(),
        ));
    }
    // Rebuild the runtime data from the typed parse (extra JWK members are dropped).
    let tee_pubkey = serde_json::to_value(&attestation.runtime_data.tee_pubkey)
        .map_err(|e| fail(format!("tee-pubkey: {e}")))?;
    let additional = attestation.tee_evidence.additional_evidence.clone();
    let primary_rd = json!({
        "additional-evidence": additional,
        "nonce": nonce,
        "tee-pubkey": tee_pubkey,
    });
    let device_rd = json!({"nonce": nonce, "tee-pubkey": tee_pubkey});
    let primary_digest = verifier::runtime_digest(&primary_rd).map_err(fail)?;
    let init = match &attestation.init_data {
        Some(init) => Some(verifier::init_data_digest(init).map_err(fail)?),
        None => None,
    };
    let verified = verifier::verify_primary(
        &tee,
        &attestation.tee_evidence.primary_evidence,
        &primary_digest,
        init.as_ref(),
    )
    .map_err(|e| fail(format!("verify TEE evidence failed: {e}")))?;
    let primary = Appraisal {
        tee: tee.clone(),
        tee_claims: verified.claims,
        report_data: verified.report_data,
        runtime_data: primary_rd,
        init_data: init.map(|i| (i.digest, i.claims)),
        structural_only: verified.structural_only,
    };
    let mut devices = Vec::new();
    if !additional.is_empty() {
        let map: std::collections::BTreeMap<String, Value> = serde_json::from_str(&additional)
            .map_err(|e| fail(format!("additional_evidence is not a JSON map: {e}")))?;
        let device_digest = verifier::runtime_digest(&device_rd).map_err(fail)?;
        for (name, evidence) in map {
            verifier::parse_tee(&name).map_err(fail)?;
            let v = verifier::verify_device(&name, &evidence, &device_digest)
                .map_err(|e| fail(format!("verify additional evidence failed: {e}")))?;
            devices.push(Appraisal {
                tee: name,
                tee_claims: v.claims,
                report_data: v.report_data,
                runtime_data: device_rd.clone(),
                init_data: None,
                structural_only: v.structural_only,
            });
        }
    }
    let ttl = lock(&shared.settings).token_ttl.as_secs();
    let claims = token::ear_claims(&primary, &devices, token::now_secs(), ttl);
    let token = shared.signer.sign(&claims).map_err(fail)?;
    {
        let mut sessions = lock(&shared.sessions);
        let s = sessions
            .live(&id, now)
            .ok_or_else(|| fail("session not found".into()))?;
        s.token = Some(token.clone());
    }
    let mut reply = Reply::json(&json!({"token": token}));
    reply.set_cookie = Some(session::set_cookie(&id, expires));
    Ok(reply)
}

/// The token of this request: attested live session first, then `Authorization: Bearer`.
fn request_token(shared: &Shared, headers: &HeaderMap) -> Option<String> {
    if let Some(id) = session::cookie_from(headers) {
        let mut sessions = lock(&shared.sessions);
        if let Some(token) = sessions
            .live(&id, SystemTime::now())
            .and_then(|s| s.token.clone())
        {
            return Some(token);
        }
    }
    let value = headers.get(hyper::header::AUTHORIZATION)?.to_str().ok()?;
    let token = value.strip_prefix("Bearer ")?.trim();
    (!token.is_empty()).then(|| token.to_owned())
}

/// `GET /kbs/v0/resource/<repo>/<type>/<tag>` (§1.5).
fn get_resource(shared: &Shared, req: &Req<'_>, path: &str) -> Result<Reply, KbsError> {
    let token = request_token(shared, req.headers).ok_or(KbsError::TokenNotFound)?;
    let claims = shared
        .signer
        .verify(&token, token::now_secs())
        .map_err(KbsError::TokenVerifier)?;
    if !lock(&shared.policy).evaluate(path, &claims) {
        return Err(KbsError::PolicyDeny);
    }
    if !valid_resource_path(path) {
        return Err(KbsError::PluginInternal(format!(
            "illegal resource path {path:?}"
        )));
    }
    let value = lock(&shared.resources)
        .get(path)
        .ok_or_else(|| KbsError::PluginInternal(format!("resource {path} not found")))?;
    let key = token::tee_pubkey_from_claims(&claims).map_err(KbsError::TokenVerifier)?;
    let jwe = crate::jwe::encrypt(&key, &value).map_err(KbsError::Jwe)?;
    let body = serde_json::to_value(&jwe).map_err(|e| KbsError::Serde(e.to_string()))?;
    Ok(Reply::json(&body))
}

fn admin_check(shared: &Shared, endpoint: &str) -> Result<(), KbsError> {
    match lock(&shared.settings).admin {
        AdminMode::InsecureAllowAll => Ok(()),
        AdminMode::DenyAll => Err(KbsError::AdminAuthAccess {
            endpoint: endpoint.to_owned(),
            reason: "the admin API is disabled (DenyAll)".to_owned(),
        }),
    }
}

/// Admin `POST`/`DELETE /kbs/v0/resource/<path>`: raw bytes in, empty 200 out.
fn admin_resource(
    shared: &Shared,
    method: &str,
    path: &str,
    body: &[u8],
) -> Result<Reply, KbsError> {
    if !valid_resource_path(path) {
        return Err(KbsError::PluginInternal(format!(
            "illegal resource path {path:?}"
        )));
    }
    let mut store = lock(&shared.resources);
    if method == "DELETE" {
        if !store.remove(path) {
            return Err(KbsError::PluginInternal(format!(
                "resource {path} not found"
            )));
        }
    } else {
        store.set(path, body.to_vec());
    }
    Ok(Reply::empty_ok())
}

/// Admin `POST /kbs/v0/resource-policy`: `{"policy": base64url-nopad(policy JSON)}`.
fn set_policy(shared: &Shared, body: &[u8]) -> Result<Reply, KbsError> {
    #[derive(serde::Deserialize)]
    struct Input {
        policy: String,
    }
    let input: Input = serde_json::from_slice(body).map_err(|e| KbsError::Serde(e.to_string()))?;
    let text = URL_SAFE_NO_PAD
        .decode(input.policy.as_bytes())
        .map_err(|e| {
            KbsError::ParsePolicy(format!("policy is not base64url without padding: {e}"))
        })?;
    let text = String::from_utf8(text)
        .map_err(|_| KbsError::ParsePolicy("policy is not UTF-8".to_owned()))?;
    let policy = Policy::from_json(&text).map_err(|e| KbsError::ParsePolicy(e.to_string()))?;
    *lock(&shared.policy) = policy;
    Ok(Reply::empty_ok())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::{PROTOCOL_VERSION, check_version};

    #[test]
    fn version_rule() {
        assert!(check_version("0.4.0", PROTOCOL_VERSION).is_ok());
        assert!(check_version("0.4.0+build.5", PROTOCOL_VERSION).is_ok());
        for v in [
            "0.4.0-rc1",
            "0.3.0",
            "0.4.1",
            "1.0.0",
            "0.4",
            "v0.4.0",
            "00.4.0",
            "",
            "0.4.0+",
        ] {
            assert!(check_version(v, PROTOCOL_VERSION).is_err(), "{v}");
        }
        let e = check_version("0.2.0", PROTOCOL_VERSION).unwrap_err();
        assert_eq!(
            e.detail(),
            "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.2.0"
        );
        // A server acting as another release requires its own version.
        assert!(check_version("0.5.0", "0.5.0").is_ok());
        assert!(check_version("0.4.0", "0.5.0").is_err());
    }
}

/// Hostile input never panics a handler: random bodies, cookies and tokens on every route.
#[cfg(test)]
mod hostile {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    fn shared() -> Shared {
        let mut store = ResourceStore::default();
        store.set("default/key/k", b"v".to_vec());
        Shared {
            resources: Mutex::new(store),
            policy: Mutex::new(Policy::allow_all()),
            sessions: Mutex::default(),
            settings: Mutex::new(Settings {
                token_ttl: Duration::from_secs(60),
                session_timeout: Duration::from_secs(60),
                admin: AdminMode::InsecureAllowAll,
                protocol_version: PROTOCOL_VERSION.to_owned(),
            }),
            log: Mutex::default(),
            faults: Faults::default(),
            signer: TokenSigner::generate().unwrap(),
            max_body: 1 << 20,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn no_panic_on_random_requests(
            route in prop::sample::select(vec![
                ("POST", "/kbs/v0/auth"), ("POST", "/kbs/v0/attest"),
                ("GET", "/kbs/v0/resource/default/key/k"), ("POST", "/kbs/v0/resource-policy"),
                ("POST", "/kbs/v0/resource/a/b/c"), ("GET", "/kbs/v0/x/y"), ("PUT", "/kbs/v0/auth"),
            ]),
            body in prop::collection::vec(any::<u8>(), 0..512),
            json_body in "\\{\"(version|runtime-data|tee-evidence|policy)\":.{0,60}\\}",
            cookie in "[ -~]{0,60}",
            bearer in "[A-Za-z0-9_.=-]{0,80}",
            use_json in any::<bool>(),
        ) {
            let s = shared();
            let mut headers = HeaderMap::new();
            if let Ok(v) = format!("kbs-session-id={cookie}").parse() {
                headers.insert(hyper::header::COOKIE, v);
            }
            if let Ok(v) = format!("Bearer {bearer}").parse() {
                headers.insert(hyper::header::AUTHORIZATION, v);
            }
            let body = if use_json { json_body.into_bytes() } else { body };
            let reply = dispatch(&s, &Req { method: route.0, path: route.1, headers: &headers, body: &body });
            prop_assert!(matches!(reply.status, 200 | 401 | 404 | 405));
        }

        #[test]
        fn no_panic_on_random_quotes(
            mut quote in prop::collection::vec(any::<u8>(), 0..1400),
            version in 3u8..=6,
            raw_snp in any::<bool>(),
        ) {
            use base64::engine::general_purpose::STANDARD;
            if quote.len() > 8 {
                quote[0] = version;
                quote[1] = 0;
                quote[4] = 0x81;
            }
            let ev = json!({"quote": STANDARD.encode(&quote), "cc_eventlog": null});
            let _ = verifier::verify_primary("tdx", &ev, &[0u8; 48], None);
            let ev = if raw_snp {
                json!({"attestation_report": STANDARD.encode(&quote)})
            } else {
                json!({"attestation_report": {"version": version, "report_data": quote}})
            };
            let _ = verifier::verify_primary("snp", &ev, &[0u8; 48], None);
        }
    }
}
