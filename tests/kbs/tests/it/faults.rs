//! Fault knobs behave as documented.

use std::time::{Duration, Instant};

use test_kbs::{Endpoint, FaultKind};

use crate::client::*;

#[tokio::test]
async fn drop_status_unauthorized() {
    let kbs = sample_kbs();
    let c = http(&kbs);
    let auth_url = format!("{}/kbs/v0/auth", kbs.url());
    let body = serde_json::json!({"version": "0.4.0", "tee": "sample", "extra-params": ""});

    kbs.faults().drop_next(2, Some(Endpoint::Auth));
    for _ in 0..2 {
        let e = c.post(&auth_url).json(&body).send().await.unwrap_err();
        assert!(!e.is_status(), "{e}");
    }
    assert_eq!(kbs.requests().last().unwrap().status, None);
    assert_eq!(send(c.post(&auth_url).json(&body)).await.status, 200);

    kbs.faults().fail_next(2, 503, None);
    assert_eq!(send(c.post(&auth_url).json(&body)).await.status, 503);
    assert_eq!(send(c.post(&auth_url).json(&body)).await.status, 503);
    assert_eq!(send(c.post(&auth_url).json(&body)).await.status, 200);
    assert_eq!(kbs.faults().pending(), 0);

    // 401 once on the resource, then the same cookie works (client retry semantics).
    let key = TeeKey::p256();
    let (cookie, _) = sample_session(&c, &kbs, &key).await;
    kbs.faults().unauthorized_once(Some(Endpoint::Resource));
    get_with_cookie(&c, &kbs, "default/key/k1", &cookie)
        .await
        .assert_error(401, "TokenNotFound");
    assert_eq!(
        get_with_cookie(&c, &kbs, "default/key/k1", &cookie)
            .await
            .status,
        200
    );
    // A fault for another endpoint does not fire here.
    kbs.faults()
        .inject(FaultKind::Status(500), 1, Some(Endpoint::Attest));
    assert_eq!(
        get_with_cookie(&c, &kbs, "default/key/k1", &cookie)
            .await
            .status,
        200
    );
    kbs.faults().clear();
    assert_eq!(kbs.faults().pending(), 0);
}

#[tokio::test]
async fn oversized_malformed_delay() {
    let kbs = sample_kbs();
    let c = http(&kbs);
    let auth_url = format!("{}/kbs/v0/auth", kbs.url());
    let body = serde_json::json!({"version": "0.4.0", "tee": "sample", "extra-params": ""});

    for chunked in [false, true] {
        kbs.faults()
            .oversized_next(1, 5_000_000, chunked, Some(Endpoint::Auth));
        let r = c.post(&auth_url).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.content_length().is_some(), !chunked);
        let b = r.bytes().await.unwrap();
        assert_eq!(b.len(), 5_000_000);
        assert!(b.starts_with(b"{\"token\":\"AAAA") && b.ends_with(b"\"}"));
    }
    kbs.faults().malformed_next(1, None);
    let r = send(c.post(&auth_url).json(&body)).await;
    assert_eq!(r.status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).is_err());

    kbs.faults()
        .set_delay(Duration::from_millis(300), Some(Endpoint::Auth));
    let start = Instant::now();
    assert_eq!(send(c.post(&auth_url).json(&body)).await.status, 200);
    assert!(start.elapsed() >= Duration::from_millis(300));
    assert_eq!(
        kbs.requests().last().unwrap().fault.as_deref(),
        Some("delay 300ms")
    );
    // A client timeout shorter than the delay fails, bounded.
    let quick = reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(kbs.ca_pem().unwrap().as_bytes()).unwrap()])
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert!(
        quick
            .post(&auth_url)
            .json(&body)
            .send()
            .await
            .unwrap_err()
            .is_timeout()
    );
    kbs.faults().clear();
}
