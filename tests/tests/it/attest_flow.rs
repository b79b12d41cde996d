//! The `attest` client against the separately written test KBS over real HTTPS on
//! 127.0.0.1 (`tests/kbs`): the whole flow, request shapes, binding, token cache, faults.
//! Spec: `../shared/specs/kbs-protocol.md` §1–§2; see issue 4.

use std::time::{Duration, Instant};

use attest::evidence::sample::SampleAttester;
use attest::{Error, KbsClient, KeyAlgorithm, ProtocolError, ResourceUri};
use base64::Engine as _;
use sha2::Digest as _;
use test_kbs::{Endpoint, FaultKind, KbsConfig, Policy, TestKbs};

fn kbs(policy: Policy) -> TestKbs {
    TestKbs::start(
        KbsConfig::default()
            .with_resource("default/key/model", b"model password".to_vec())
            .with_resource("default/tls/cert", b"-----BEGIN CERT".to_vec())
            .with_policy(policy),
    )
    .unwrap()
}

fn client(kbs: &TestKbs) -> attest::KbsClientBuilder {
    KbsClient::builder(&kbs.url(), Box::new(SampleAttester::new()))
        .extra_ca_pem(kbs.ca_pem().unwrap().as_bytes().to_vec())
        .timeout(Duration::from_secs(10))
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

/// RFC 8785 canonical form of the flat JSON objects we hash, built by hand (sorted keys, no
/// whitespace; the values here need no escaping), independent of the JCS crate.
fn canonical(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("\"{k}\":{}", canonical(&m[*k])))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

#[test]
fn full_flow_ec_and_rsa_with_exact_request_shapes_and_binding() {
    let kbs = kbs(Policy::allow_all());
    for alg in [KeyAlgorithm::EcP256, KeyAlgorithm::Rsa2048] {
        kbs.clear_requests();
        let mut c = client(&kbs).key_algorithm(alg).build().unwrap();
        let s = rt()
            .block_on(c.get_resource(&uri("kbs:///default/key/model")))
            .unwrap();
        assert_eq!(s.expose(), b"model password", "{alg:?}");

        let reqs = kbs.requests();
        assert_eq!(reqs.len(), 3, "auth, attest, resource");
        let auth = reqs[0].json.clone().unwrap();
        assert_eq!(
            auth,
            serde_json::json!({"version": "0.4.0", "tee": "sample",
                "extra-params": {"supported-hash-algorithms": ["sha256", "sha384", "sha512"]}})
        );
        assert_eq!(reqs[0].method, "POST");
        assert_eq!(reqs[0].path, "/kbs/v0/auth");

        let att = reqs[1].json.clone().unwrap();
        assert_eq!(reqs[1].path, "/kbs/v0/attest");
        assert!(
            reqs[1].session_cookie.is_some(),
            "attest carries the session cookie"
        );
        let keys: Vec<&String> = att.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["init-data", "runtime-data", "tee-evidence"]);
        let rd = &att["runtime-data"];
        let jwk = &rd["tee-pubkey"];
        match alg {
            KeyAlgorithm::EcP256 => {
                assert_eq!(jwk["kty"], "EC");
                assert_eq!(jwk["crv"], "P-256");
                assert_eq!(jwk["alg"], "ECDH-ES+A256KW");
            }
            _ => {
                assert_eq!(jwk["kty"], "RSA");
                assert_eq!(jwk["alg"], "RSA-OAEP-256");
            }
        }
        assert_eq!(att["tee-evidence"]["additional_evidence"], "");
        // Binding: SHA-384 over the canonical {additional-evidence, nonce, tee-pubkey},
        // recomputed here from what went over the wire.
        let bound = serde_json::json!({
            "additional-evidence": "", "nonce": rd["nonce"], "tee-pubkey": jwk,
        });
        let digest = sha2::Sha384::digest(canonical(&bound).as_bytes());
        let sent = base64::engine::general_purpose::STANDARD
            .decode(
                att["tee-evidence"]["primary_evidence"]["report_data"]
                    .as_str()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(sent, digest.as_slice());
        assert_eq!(att["tee-evidence"]["primary_evidence"]["svn"], "1");

        assert_eq!(reqs[2].method, "GET");
        assert_eq!(reqs[2].path, "/kbs/v0/resource/default/key/model");
        assert!(reqs[2].bearer.is_some() || reqs[2].session_cookie.is_some());
    }
}

#[test]
fn cached_token_serves_further_resources_with_one_request_each() {
    let kbs = kbs(Policy::allow_all());
    let mut c = client(&kbs).build().unwrap();
    let rt = rt();
    rt.block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap();
    for _ in 0..3 {
        let s = rt
            .block_on(c.get_resource(&uri("kbs:///default/tls/cert")))
            .unwrap();
        assert_eq!(s.expose(), b"-----BEGIN CERT");
    }
    assert_eq!(kbs.request_count(Endpoint::Auth), 1);
    assert_eq!(kbs.request_count(Endpoint::Attest), 1);
    assert_eq!(kbs.request_count(Endpoint::Resource), 4);
    assert_eq!(c.stats().requests, 6);
}

#[test]
fn stale_session_401_re_handshakes_once() {
    let kbs = kbs(Policy::allow_all());
    let mut c = client(&kbs).build().unwrap();
    let rt = rt();
    rt.block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap();
    kbs.faults().unauthorized_once(Some(Endpoint::Resource));
    let s = rt
        .block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap();
    assert_eq!(s.expose(), b"model password");
    assert_eq!(kbs.request_count(Endpoint::Auth), 2);
    assert_eq!(kbs.request_count(Endpoint::Resource), 3);
}

#[test]
fn expired_token_re_attests_and_expired_session_uses_the_bearer_token() {
    let kbs = kbs(Policy::allow_all());
    let rt = rt();
    // The session cookie expires but the token is still good: Bearer carries on.
    let mut c = client(&kbs).build().unwrap();
    rt.block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap();
    kbs.expire_sessions();
    rt.block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap();
    assert_eq!(kbs.request_count(Endpoint::Auth), 1);

    kbs.set_token_ttl(Duration::from_secs(2));
    let mut c = client(&kbs).build().unwrap();
    rt.block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap();
    std::thread::sleep(Duration::from_millis(2300));
    rt.block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap();
    assert_eq!(
        kbs.request_count(Endpoint::Auth),
        3,
        "expired token: a new handshake"
    );
    assert_eq!(c.stats().handshakes, 2);
}

#[test]
fn server_errors_and_dropped_connections_are_retried() {
    let kbs = kbs(Policy::allow_all());
    kbs.faults().fail_next(2, 503, Some(Endpoint::Resource));
    kbs.faults().drop_next(1, Some(Endpoint::Auth));
    let mut c = client(&kbs).build().unwrap();
    let s = rt()
        .block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap();
    assert_eq!(s.expose(), b"model password");
    assert_eq!(kbs.request_count(Endpoint::Auth), 2);
    assert_eq!(kbs.request_count(Endpoint::Resource), 3);
}

#[test]
fn slow_kbs_fails_clearly_within_the_deadline() {
    let kbs = kbs(Policy::allow_all());
    kbs.faults()
        .set_delay(Duration::from_secs(5), Some(Endpoint::Auth));
    let mut c = client(&kbs)
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let t = Instant::now();
    let e = rt()
        .block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap_err();
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert!(matches!(e, Error::Timeout { .. }), "{e}");
    assert!(e.to_string().contains("allow more time"), "{e}");
}

#[test]
fn policy_deny_and_missing_resource_do_not_re_attest() {
    let kbs = kbs(Policy::trustee_default());
    let mut c = client(&kbs).build().unwrap();
    let rt = rt();
    let e = rt
        .block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap_err();
    assert!(matches!(e, Error::PolicyDenied { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("refused kbs:///default/key/model") && msg.contains("resource policy"),
        "{msg}"
    );
    kbs.allow_tee("sample").unwrap();
    let e = rt
        .block_on(c.get_resource(&uri("kbs:///default/key/nope")))
        .unwrap_err();
    assert!(matches!(e, Error::ResourceMissing { .. }), "{e}");
    assert_eq!(
        kbs.request_count(Endpoint::Auth),
        1,
        "no re-attestation for final errors"
    );
}

#[test]
fn wrong_protocol_version_names_both_versions() {
    let kbs = kbs(Policy::allow_all());
    let mut c = client(&kbs).protocol_version("0.2.0").build().unwrap();
    let e = rt()
        .block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap_err();
    match &e {
        Error::ProtocolVersion { ours, theirs } => {
            assert_eq!(ours, "0.2.0");
            assert!(theirs.contains("0.4.0"), "{theirs}");
        }
        other => panic!("expected a version mismatch, got {other}"),
    }
}

#[test]
fn malformed_and_oversized_bodies_are_refused() {
    let kbs = kbs(Policy::allow_all());
    kbs.faults().malformed_next(1, Some(Endpoint::Auth));
    let e = rt()
        .block_on(
            client(&kbs)
                .build()
                .unwrap()
                .get_resource(&uri("kbs:///default/key/model")),
        )
        .unwrap_err();
    assert!(
        matches!(e, Error::Protocol(ProtocolError::MalformedJson { .. })),
        "{e}"
    );
    for chunked in [false, true] {
        kbs.faults()
            .oversized_next(1, 3 * 1024 * 1024, chunked, Some(Endpoint::Resource));
        let e = rt()
            .block_on(
                client(&kbs)
                    .build()
                    .unwrap()
                    .get_resource(&uri("kbs:///default/key/model")),
            )
            .unwrap_err();
        assert!(
            matches!(e, Error::Protocol(ProtocolError::TooLarge { .. })),
            "{e}"
        );
    }
    let _ = FaultKind::Malformed;
}

#[test]
fn unknown_ca_is_a_tls_error_and_http_needs_opt_in() {
    let kbs = kbs(Policy::allow_all());
    let mut c = KbsClient::builder(&kbs.url(), Box::new(SampleAttester::new()))
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let e = rt()
        .block_on(c.get_resource(&uri("kbs:///default/key/model")))
        .unwrap_err();
    assert!(matches!(e, Error::Tls { .. }), "{e}");
    assert_eq!(kbs.request_count(Endpoint::Auth), 0);

    let plain = TestKbs::start(
        KbsConfig::default()
            .http()
            .with_resource("a/b/c", b"x".to_vec())
            .with_policy(Policy::allow_all()),
    )
    .unwrap();
    let e = KbsClient::builder(&plain.url(), Box::new(SampleAttester::new()))
        .build()
        .unwrap_err();
    assert!(matches!(e, Error::InsecureHttp { .. }), "{e}");
    let mut c = KbsClient::builder(&plain.url(), Box::new(SampleAttester::new()))
        .insecure_http(true)
        .build()
        .unwrap();
    assert_eq!(
        rt().block_on(c.get_resource(&uri("kbs:///a/b/c")))
            .unwrap()
            .expose(),
        b"x"
    );
}
