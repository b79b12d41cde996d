//! Trustee's error JSON and status codes (spec §1.6) for each failure a client can meet.

use std::time::Duration;

use serde_json::json;
use test_kbs::{Endpoint, KbsConfig, TestKbs};

use crate::client::*;

#[tokio::test]
async fn version_mismatch_and_bad_auth_bodies() {
    let kbs = sample_kbs();
    let c = http(&kbs);
    let url = format!("{}/kbs/v0/auth", kbs.url());
    let r = send(
        c.post(&url)
            .json(&json!({"version": "0.2.0", "tee": "sample", "extra-params": ""})),
    )
    .await;
    assert_eq!(
        r.assert_error(401, "AttestationError"),
        "Attestation error: RCAR handshake Auth failed: KBS Client Protocol Version Mismatch: expect =0.4.0 while the request is 0.2.0"
    );
    assert!(r.headers.get("set-cookie").is_none());
    let r = send(
        c.post(&url)
            .json(&json!({"version": "zero", "tee": "sample", "extra-params": ""})),
    )
    .await;
    assert_eq!(
        r.assert_error(401, "AttestationError"),
        "Attestation error: RCAR handshake Auth failed: failed to parse KBS version"
    );
    for body in [
        json!({"version": "0.4.0", "tee": "nosuchtee", "extra-params": ""}),
        json!({"version": "0.4.0", "tee": "sample"}),
    ] {
        let r = send(c.post(&url).json(&body)).await;
        assert_eq!(
            r.assert_error(401, "AttestationError"),
            "Attestation error: RCAR handshake Auth failed: deserialize Request"
        );
    }
    // GET auth is not routed to the handshake: unknown plugin.
    let r = send(c.get(&url)).await;
    assert_eq!(
        r.assert_error(404, "PluginNotFound"),
        "Plugin auth not found"
    );
}

#[tokio::test]
async fn attest_failures_are_opaque_but_logged() {
    let kbs = sample_kbs();
    let c = http(&kbs);
    let key = TeeKey::p256();
    let jwk = key.jwk();
    const DETAIL: &str = "Attestation error: RCAR handshake Attest failed";

    // No cookie.
    let r = send(
        c.post(format!("{}/kbs/v0/attest", kbs.url()))
            .json(&json!({})),
    )
    .await;
    assert_eq!(r.assert_error(401, "AttestationError"), DETAIL);
    // Unknown cookie.
    let fake = Handshake {
        cookie: format!("kbs-session-id={}", "0".repeat(32)),
        nonce: "x".into(),
    };
    let r = attest(&c, &kbs, &fake, &jwk, json!({}), "").await;
    assert_eq!(r.assert_error(401, "AttestationError"), DETAIL);
    // Nonce mismatch.
    let hs = auth(&c, &kbs, "sample").await;
    let wrong = Handshake {
        cookie: hs.cookie.clone(),
        nonce: "AAAA".into(),
    };
    let ev = sample_evidence(&digest("", &wrong.nonce, &jwk));
    let r = attest(&c, &kbs, &wrong, &jwk, ev, "").await;
    assert_eq!(r.assert_error(401, "AttestationError"), DETAIL);
    let last = kbs.requests().pop().unwrap();
    assert!(last.error.unwrap().contains("nonce"));
    // Binding mismatch: digest over a different key.
    let other = TeeKey::p256().jwk();
    let ev = sample_evidence(&digest("", &hs.nonce, &other));
    let r = attest(&c, &kbs, &hs, &jwk, ev, "").await;
    assert_eq!(r.assert_error(401, "AttestationError"), DETAIL);
    assert!(
        kbs.requests()
            .pop()
            .unwrap()
            .error
            .unwrap()
            .contains("does not match")
    );
    // Extra JWK members are dropped by the typed parse: hashing them breaks the binding.
    let mut with_kid = jwk.clone();
    with_kid["kid"] = json!("k1");
    let ev = sample_evidence(&digest("", &hs.nonce, &with_kid));
    let r = attest(&c, &kbs, &hs, &with_kid, ev, "").await;
    r.assert_error(401, "AttestationError");
    // The same session still attests correctly afterwards.
    let ev = sample_evidence(&digest("", &hs.nonce, &jwk));
    assert_eq!(attest(&c, &kbs, &hs, &jwk, ev, "").await.status, 200);
    // A session whose tee has no verifier here.
    let hs = auth(&c, &kbs, "cca").await;
    let ev = sample_evidence(&digest("", &hs.nonce, &jwk));
    attest(&c, &kbs, &hs, &jwk, ev, "")
        .await
        .assert_error(401, "AttestationError");
}

#[tokio::test]
async fn session_expiry_and_token_expiry() {
    let kbs = TestKbs::start(
        KbsConfig::default()
            .with_resource("default/key/k1", b"v".to_vec())
            .with_policy(test_kbs::Policy::allow_all())
            .with_session_timeout(Duration::ZERO),
    )
    .unwrap();
    let c = http(&kbs);
    let key = TeeKey::p256();
    let jwk = key.jwk();
    // A zero session timeout: the session is gone before /attest.
    let hs = auth(&c, &kbs, "sample").await;
    let ev = sample_evidence(&digest("", &hs.nonce, &jwk));
    attest(&c, &kbs, &hs, &jwk, ev, "")
        .await
        .assert_error(401, "AttestationError");

    kbs.set_session_timeout(Duration::from_secs(300));
    let (cookie, token) = sample_session(&c, &kbs, &key).await;
    assert_eq!(
        get_with_cookie(&c, &kbs, "default/key/k1", &cookie)
            .await
            .status,
        200
    );
    // Stale session: cookie no longer works, the token (Bearer) still does.
    kbs.expire_sessions();
    get_with_cookie(&c, &kbs, "default/key/k1", &cookie)
        .await
        .assert_error(401, "TokenNotFound");
    assert_eq!(
        get_with_bearer(&c, &kbs, "default/key/k1", &token)
            .await
            .status,
        200
    );

    // TTL zero: the token is expired when issued; cookie and Bearer both fail verification.
    kbs.set_token_ttl(Duration::ZERO);
    let (cookie, token) = sample_session(&c, &kbs, &key).await;
    let cl = claims(&token);
    assert_eq!(cl["exp"], cl["iat"]);
    let d = get_with_cookie(&c, &kbs, "default/key/k1", &cookie)
        .await
        .assert_error(401, "TokenVerifierError");
    assert_eq!(d, "Token Verifier error");
    get_with_bearer(&c, &kbs, "default/key/k1", &token)
        .await
        .assert_error(401, "TokenVerifierError");
    assert!(
        kbs.requests()
            .pop()
            .unwrap()
            .error
            .unwrap()
            .contains("expired")
    );
}

#[tokio::test]
async fn bearer_rules() {
    let kbs = sample_kbs();
    let other = sample_kbs();
    let c = http(&kbs);
    let key = TeeKey::p256();
    // No credentials at all.
    let r = send(c.get(format!("{}/kbs/v0/resource/default/key/k1", kbs.url()))).await;
    assert_eq!(
        r.assert_error(401, "TokenNotFound"),
        "Attestation Token not found"
    );
    // A token signed by another KBS.
    let foreign = other
        .issue_token("sample", &key.jwk(), Duration::from_secs(60))
        .unwrap();
    get_with_bearer(&c, &kbs, "default/key/k1", &foreign)
        .await
        .assert_error(401, "TokenVerifierError");
    // Garbage, and a tampered payload.
    get_with_bearer(&c, &kbs, "default/key/k1", "abc")
        .await
        .assert_error(401, "TokenVerifierError");
    let good = kbs
        .issue_token("sample", &key.jwk(), Duration::from_secs(60))
        .unwrap();
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1].replace_range(0..4, "eyJ6");
    get_with_bearer(&c, &kbs, "default/key/k1", &parts.join("."))
        .await
        .assert_error(401, "TokenVerifierError");
    // An unusable key in a valid token: JweError.
    let bad_key = json!({"kty":"EC","crv":"P-384","alg":"ECDH-ES+A256KW","x":"AA","y":"AA"});
    let t = kbs
        .issue_token("sample", &bad_key, Duration::from_secs(60))
        .unwrap();
    let r = get_with_bearer(&c, &kbs, "default/key/k1", &t).await;
    assert_eq!(r.assert_error(401, "JweError"), "JWE failed");
    assert_eq!(
        get_with_bearer(&c, &kbs, "default/key/k1", &good)
            .await
            .status,
        200
    );
}

#[tokio::test]
async fn paths_plugins_policy() {
    let kbs = TestKbs::start(KbsConfig::default().with_resource("default/key/k1", b"v".to_vec()))
        .unwrap();
    let c = http(&kbs);
    let key = TeeKey::p256();
    // Default policy denies sample.
    let (cookie, _) = sample_session(&c, &kbs, &key).await;
    let r = get_with_cookie(&c, &kbs, "default/key/k1", &cookie).await;
    assert_eq!(r.assert_error(401, "PolicyDeny"), "Access denied by policy");
    kbs.allow_tee("sample").unwrap();
    assert_eq!(
        get_with_cookie(&c, &kbs, "default/key/k1", &cookie)
            .await
            .status,
        200
    );
    // Missing resource and invalid paths: PluginInternalError, after the policy.
    for path in [
        "default/key/missing",
        "default/key",
        "a/b/c/d",
        ".x/b/c",
        "a/b/c%20",
    ] {
        let r = get_with_cookie(&c, &kbs, path, &cookie).await;
        assert_eq!(
            r.assert_error(401, "PluginInternalError"),
            "Plugin internal error",
            "{path}"
        );
    }
    // Unknown plugin.
    let r = send(
        c.get(format!("{}/kbs/v0/nebula/x", kbs.url()))
            .header("cookie", &cookie),
    )
    .await;
    assert_eq!(
        r.assert_error(404, "PluginNotFound"),
        "Plugin nebula not found"
    );
    // Outside the prefix: bare 404.
    let r = send(c.get(format!("{}/kbs/v1/auth", kbs.url()))).await;
    assert_eq!(r.status, 404);
    assert!(r.body.is_empty());
    // Per-resource rule narrower than the default.
    kbs.set_resource_rule(
        "default/key/k1",
        test_kbs::TeeRule::Allow(vec!["tdx".into()]),
    )
    .unwrap();
    get_with_cookie(&c, &kbs, "default/key/k1", &cookie)
        .await
        .assert_error(401, "PolicyDeny");
    assert!(kbs.allow_tee("nosuch").is_err());
    assert!(kbs.request_count(Endpoint::Resource) >= 7);
}

#[tokio::test]
async fn request_body_cap() {
    let kbs = sample_kbs();
    let c = http(&kbs);
    // The server answers 413 without reading the rest; the client may see the answer or a
    // reset while still sending, so check what the server recorded.
    if let Ok(r) = c
        .post(format!("{}/kbs/v0/auth", kbs.url()))
        .body(vec![b' '; 3 * 1024 * 1024])
        .send()
        .await
    {
        assert_eq!(r.status(), 413);
    }
    let last = kbs.requests().pop().unwrap();
    assert_eq!(last.status, Some(413));
    assert!(last.error.unwrap().contains("2097152"));
}
