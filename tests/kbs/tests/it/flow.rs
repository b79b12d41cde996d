//! The happy paths: auth → attest → resource with EC P-256, P-521 and RSA keys, cookie and
//! Bearer, token shape, TDX/SNP structural evidence, additional sample-device evidence.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;
use test_kbs::{Endpoint, KbsConfig, Policy, TestKbs};

use crate::client::*;

#[tokio::test]
async fn sample_flow_p256_exact_shapes() {
    let kbs = sample_kbs();
    let c = http(&kbs);
    // auth: challenge shape and cookie.
    let r = send(c.post(format!("{}/kbs/v0/auth", kbs.url())).json(&json!({
        "version": "0.4.0", "tee": "sample",
        "extra-params": {"supported-hash-algorithms": ["sha256", "sha384"]}
    })))
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.headers["content-type"], "application/json");
    let ch = r.json();
    assert_eq!(ch.as_object().unwrap().len(), 2);
    assert_eq!(ch["extra-params"], "");
    let nonce = ch["nonce"].as_str().unwrap().to_owned();
    assert_eq!(nonce.len(), 44);
    assert_eq!(STANDARD.decode(&nonce).unwrap().len(), 32);
    let set_cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    let (pair, attrs) = set_cookie.split_once("; ").unwrap();
    let id = pair.strip_prefix("kbs-session-id=").unwrap();
    assert_eq!(id.len(), 32);
    assert!(
        id.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    assert!(
        attrs.starts_with("Expires=") && attrs.ends_with(" GMT"),
        "{attrs}"
    );
    assert!(!set_cookie.contains("Path") && !set_cookie.contains("Secure"));
    let hs = Handshake {
        cookie: pair.to_owned(),
        nonce,
    };

    // attest: token and the same cookie again.
    let key = TeeKey::p256();
    let jwk = key.jwk();
    let ev = sample_evidence(&digest("", &hs.nonce, &jwk));
    let r = attest(&c, &kbs, &hs, &jwk, ev, "").await;
    assert_eq!(r.status, 200);
    assert!(
        r.headers["set-cookie"]
            .to_str()
            .unwrap()
            .starts_with(&hs.cookie)
    );
    let body = r.json();
    assert_eq!(body.as_object().unwrap().len(), 1);
    let token = body["token"].as_str().unwrap().to_owned();
    let header: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "ES256");
    assert_eq!(header["jwk"], kbs.token_public_jwk());
    let cl = claims(&token);
    assert_eq!(
        cl["exp"].as_u64().unwrap() - cl["iat"].as_u64().unwrap(),
        300
    );
    let ae = &cl["submods"]["cpu0"]["ear.veraison.annotated-evidence"];
    assert_eq!(ae["runtime_data_claims"]["tee-pubkey"], jwk);
    assert_eq!(ae["runtime_data_claims"]["nonce"], hs.nonce);
    assert_eq!(ae["sample"]["launch_digest"], "abcde");
    assert_eq!(test_kbs::tee_of_claims(&cl).as_deref(), Some("sample"));

    // resource with the cookie.
    let r = get_with_cookie(&c, &kbs, "default/key/k1", &hs.cookie).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(r.headers.get("set-cookie").is_none());
    assert_eq!(key.decrypt(&r.json()), b"model-password");

    // Re-attesting an attested session returns the stored token.
    let r = attest(&c, &kbs, &hs, &jwk, json!({}), "").await;
    assert_eq!(r.json()["token"], token);

    // The log has the exact request JSON.
    let reqs = kbs.requests();
    let attest_req = reqs
        .iter()
        .find(|r| r.endpoint == Endpoint::Attest)
        .unwrap();
    assert_eq!(attest_req.session_cookie.as_deref(), Some(id));
    assert_eq!(
        attest_req.json.as_ref().unwrap()["runtime-data"]["tee-pubkey"],
        jwk
    );
    assert_eq!(kbs.request_count(Endpoint::Auth), 1);
    assert_eq!(kbs.request_count(Endpoint::Attest), 2);
    assert_eq!(kbs.request_count(Endpoint::Resource), 1);
    assert!(reqs.iter().all(|r| r.status == Some(200)));
}

#[tokio::test]
async fn rsa_and_p521_and_bearer() {
    let kbs = sample_kbs();
    let c = http(&kbs);
    for key in [TeeKey::rsa(), TeeKey::p521(), TeeKey::p256()] {
        let (_cookie, token) = sample_session(&c, &kbs, &key).await;
        // Bearer only, no cookie: one request per further resource.
        let r = get_with_bearer(&c, &kbs, "default/key/k1", &token).await;
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(key.decrypt(&r.json()), b"model-password");
    }
    // A 1 MiB resource round-trips.
    let big: Vec<u8> = (0..1_048_576u32).map(|i| (i % 251) as u8).collect();
    kbs.set_resource("default/blob/big", big.clone()).unwrap();
    let key = TeeKey::p256();
    let (cookie, _) = sample_session(&c, &kbs, &key).await;
    let r = get_with_cookie(&c, &kbs, "default/blob/big", &cookie).await;
    assert_eq!(key.decrypt(&r.json()), big);
}

#[tokio::test]
async fn issued_token_and_plain_http() {
    let kbs = TestKbs::start(
        KbsConfig::default()
            .http()
            .with_resource("a/b/c", b"v".to_vec()),
    )
    .unwrap();
    assert!(kbs.url().starts_with("http://127.0.0.1:"));
    assert!(kbs.ca_pem().is_none());
    let c = http(&kbs);
    let key = TeeKey::p256();
    let token = kbs
        .issue_token("tdx", &key.jwk(), std::time::Duration::from_secs(60))
        .unwrap();
    let r = get_with_bearer(&c, &kbs, "a/b/c", &token).await;
    assert_eq!(key.decrypt(&r.json()), b"v");
    // Default policy: a sample token is denied.
    let token = kbs
        .issue_token("sample", &key.jwk(), std::time::Duration::from_secs(60))
        .unwrap();
    get_with_bearer(&c, &kbs, "a/b/c", &token)
        .await
        .assert_error(401, "PolicyDeny");
}

fn td_quote_v4(report_data: &[u8]) -> Vec<u8> {
    let mut q = vec![0u8; 48 + 584 + 64];
    q[0] = 4;
    q[4] = 0x81;
    q[48 + 520..48 + 520 + report_data.len()].copy_from_slice(report_data);
    q
}

#[tokio::test]
async fn tdx_and_snp_structural_and_default_policy_allows_them() {
    let kbs = TestKbs::start(KbsConfig::default().with_resource("r/t/x", b"s".to_vec())).unwrap();
    let c = http(&kbs);
    let key = TeeKey::p256();
    let jwk = key.jwk();

    let hs = auth(&c, &kbs, "tdx").await;
    let d = digest("", &hs.nonce, &jwk);
    let ev = json!({"cc_eventlog": null, "quote": STANDARD.encode(td_quote_v4(&d))});
    let r = attest(&c, &kbs, &hs, &jwk, ev, "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let cl = claims(r.json()["token"].as_str().unwrap());
    assert_eq!(
        cl["submods"]["cpu0"]["ear.veraison.annotated-evidence"]["tdx"]["test-kbs.structural-only"],
        true
    );
    let r = get_with_cookie(&c, &kbs, "r/t/x", &hs.cookie).await;
    assert_eq!(key.decrypt(&r.json()), b"s");

    // A quote with the digest not zero-padded but shifted fails.
    let hs = auth(&c, &kbs, "tdx").await;
    let d = digest("", &hs.nonce, &jwk);
    let mut shifted = vec![0u8; 16];
    shifted.extend(&d);
    let ev = json!({"cc_eventlog": null, "quote": STANDARD.encode(td_quote_v4(&shifted))});
    attest(&c, &kbs, &hs, &jwk, ev, "")
        .await
        .assert_error(401, "AttestationError");

    // SNP in the sev crate's serde form (byte arrays as arrays of numbers).
    let hs = auth(&c, &kbs, "snp").await;
    let mut rd = digest("", &hs.nonce, &jwk);
    rd.resize(64, 0);
    let ev = json!({"attestation_report": {
        "version": 3, "report_data": rd, "measurement": vec![0u8; 48], "host_data": vec![0u8; 32]
    }, "cert_chain": null});
    let r = attest(&c, &kbs, &hs, &jwk, ev, "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

#[tokio::test]
async fn additional_sample_device_evidence() {
    let kbs = sample_kbs();
    let c = http(&kbs);
    let key = TeeKey::p256();
    let jwk = key.jwk();
    let hs = auth(&c, &kbs, "sample").await;
    let device_rd = json!({"nonce": hs.nonce, "tee-pubkey": jwk});
    let device_digest = {
        use sha2::Digest as _;
        sha2::Sha384::digest(serde_json_canonicalizer::to_vec(&device_rd).unwrap()).to_vec()
    };
    let additional =
        json!({"sampledevice": {"svn": "2", "report_data": STANDARD.encode(&device_digest)}})
            .to_string();
    let ev = sample_evidence(&digest(&additional, &hs.nonce, &jwk));
    let r = attest(&c, &kbs, &hs, &jwk, ev.clone(), &additional).await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let cl = claims(r.json()["token"].as_str().unwrap());
    assert!(cl["submods"]["gpu0"]["ear.veraison.annotated-evidence"]["sampledevice"].is_object());

    // Primary digest computed without the additional-evidence string: binding fails.
    let hs = auth(&c, &kbs, "sample").await;
    let ev = sample_evidence(&digest("", &hs.nonce, &jwk));
    attest(&c, &kbs, &hs, &jwk, ev, &additional)
        .await
        .assert_error(401, "AttestationError");
}

#[tokio::test]
async fn init_data_claims_for_sample() {
    let kbs = TestKbs::start(KbsConfig::default().with_policy(Policy::allow_all())).unwrap();
    let c = http(&kbs);
    let key = TeeKey::p256();
    let jwk = key.jwk();
    let hs = auth(&c, &kbs, "sample").await;
    let ev = sample_evidence(&digest("", &hs.nonce, &jwk));
    let body = "algorithm = \"sha384\"\nversion = \"0.1.0\"\n[data]\n\"aa.toml\" = \"x\"\n";
    let r = send(
        c.post(format!("{}/kbs/v0/attest", kbs.url()))
            .header("cookie", &hs.cookie)
            .json(&json!({
                "init-data": {"format": "toml", "body": body},
                "runtime-data": {"nonce": hs.nonce, "tee-pubkey": jwk},
                "tee-evidence": {"primary_evidence": ev, "additional_evidence": ""},
            })),
    )
    .await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let cl = claims(r.json()["token"].as_str().unwrap());
    let ae = &cl["submods"]["cpu0"]["ear.veraison.annotated-evidence"];
    assert_eq!(ae["init_data_claims"]["aa.toml"], "x");
    assert_eq!(ae["init_data"].as_str().unwrap().len(), 96);
}

#[tokio::test]
async fn a_cookie_jar_client_works() {
    // A client with an RFC 6265 cookie store (no Path attribute: scoped to /kbs/v0).
    let kbs = sample_kbs();
    let c = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(kbs.ca_pem().unwrap().as_bytes()).unwrap()])
        .cookie_store(true)
        .build()
        .unwrap();
    let key = TeeKey::p256();
    let jwk = key.jwk();
    let ch: serde_json::Value = c
        .post(format!("{}/kbs/v0/auth", kbs.url()))
        .json(&json!({"version": "0.4.0", "tee": "sample", "extra-params": ""}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let nonce = ch["nonce"].as_str().unwrap();
    let ev = sample_evidence(&digest("", nonce, &jwk));
    let r = c
        .post(format!("{}/kbs/v0/attest", kbs.url()))
        .json(&json!({
            "runtime-data": {"nonce": nonce, "tee-pubkey": jwk},
            "tee-evidence": {"primary_evidence": ev, "additional_evidence": ""},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = c
        .get(format!("{}/kbs/v0/resource/default/key/k1", kbs.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(key.decrypt(&r.json().await.unwrap()), b"model-password");
    assert!(
        kbs.requests()
            .iter()
            .skip(1)
            .all(|r| r.session_cookie.is_some())
    );
}
