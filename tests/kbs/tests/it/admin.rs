//! Admin endpoints: raw resource bodies, base64url-no-pad policy bodies, InsecureAllowAll
//! and DenyAll (spec §6.4).

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::json;
use test_kbs::{AdminMode, Endpoint, KbsConfig, TestKbs};

use crate::client::*;

#[tokio::test]
async fn admin_resource_and_policy() {
    let kbs = TestKbs::start(KbsConfig::default()).unwrap();
    let c = http(&kbs);
    let base = format!("{}/kbs/v0", kbs.url());
    let r = send(
        c.post(format!("{base}/resource/default/key/new"))
            .header("content-type", "application/octet-stream")
            .body(b"fresh".to_vec()),
    )
    .await;
    assert_eq!(r.status, 200);
    assert!(r.body.is_empty());
    // The upload body is not kept in the request log.
    assert!(kbs.requests().last().unwrap().json.is_none());
    send(
        c.post(format!("{base}/resource/bad..//x"))
            .body(b"x".to_vec()),
    )
    .await
    .assert_error(401, "PluginInternalError");
    let r = send(c.get(format!("{base}/resource"))).await;
    assert_eq!(r.json(), json!(["default/key/new"]));

    // Sample is denied until the policy is relaxed through the admin API.
    let key = TeeKey::p256();
    let (cookie, _) = sample_session(&c, &kbs, &key).await;
    get_with_cookie(&c, &kbs, "default/key/new", &cookie)
        .await
        .assert_error(401, "PolicyDeny");
    let policy = r#"{"default":"allow-all"}"#;
    // Standard base64 with padding is refused, as Trustee's URL_SAFE_NO_PAD decode does.
    let padded = STANDARD.encode(policy);
    assert!(padded.ends_with('='));
    send(
        c.post(format!("{base}/resource-policy"))
            .json(&json!({"policy": padded})),
    )
    .await
    .assert_error(401, "ParsePolicyError");
    // Rego is not understood.
    let rego = URL_SAFE_NO_PAD.encode("package policy\ndefault allow = true\n");
    send(
        c.post(format!("{base}/resource-policy"))
            .json(&json!({"policy": rego})),
    )
    .await
    .assert_error(401, "ParsePolicyError");
    let r = send(
        c.post(format!("{base}/resource-policy"))
            .json(&json!({"policy": URL_SAFE_NO_PAD.encode(policy)})),
    )
    .await;
    assert_eq!(r.status, 200);
    assert_eq!(kbs.policy(), test_kbs::Policy::allow_all());
    let r = get_with_cookie(&c, &kbs, "default/key/new", &cookie).await;
    assert_eq!(key.decrypt(&r.json()), b"fresh");
    assert_eq!(
        send(c.get(format!("{base}/resource-policy"))).await.json()["default"],
        "allow-all"
    );
    assert_eq!(
        send(c.delete(format!("{base}/resource/default/key/new")))
            .await
            .status,
        200
    );
    get_with_cookie(&c, &kbs, "default/key/new", &cookie)
        .await
        .assert_error(401, "PluginInternalError");
    assert_eq!(kbs.request_count(Endpoint::ResourcePolicy), 4);

    kbs.set_admin_mode(AdminMode::DenyAll);
    let d = send(
        c.post(format!("{base}/resource/default/key/new"))
            .body(b"x".to_vec()),
    )
    .await
    .assert_error(401, "AdminAuthAccess");
    assert!(d.starts_with("admin access denied for endpoint /kbs/v0/resource/default/key/new"));
}
