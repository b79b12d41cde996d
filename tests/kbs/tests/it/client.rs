//! A minimal RCAR client for the tests: keys, evidence, requests, JWE decryption.

use std::time::Duration;

use aes_gcm::aead::{Aead as _, KeyInit as _, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use aes_kw::KwAes256;
use aws_lc_rs::encoding::AsDer as _;
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use p256::elliptic_curve::sec1::ToSec1Point as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256, Sha384};
use test_kbs::{KbsConfig, Policy, TestKbs};

pub const PREFIX: &str = "https://github.com/confidential-containers/kbs/errors/";

/// A TEE key pair as a client would hold it.
pub enum TeeKey {
    P256(p256::SecretKey),
    P521(aws_lc_rs::agreement::PrivateKey),
    Rsa(aws_lc_rs::rsa::KeyPair),
}

impl TeeKey {
    pub fn p256() -> Self {
        let mut b = [0u8; 32];
        loop {
            getrandom::fill(&mut b).unwrap();
            if let Ok(k) = p256::SecretKey::from_slice(&b) {
                return Self::P256(k);
            }
        }
    }

    pub fn p521() -> Self {
        Self::P521(
            aws_lc_rs::agreement::PrivateKey::generate(&aws_lc_rs::agreement::ECDH_P521).unwrap(),
        )
    }

    pub fn rsa() -> Self {
        Self::Rsa(aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap())
    }

    /// The JWK sent as `tee-pubkey` (kty first, as kbs-types serializes).
    pub fn jwk(&self) -> Value {
        match self {
            Self::P256(k) => {
                let p = k.public_key().as_affine().to_sec1_point(false);
                let b = p.as_bytes();
                json!({"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW",
                    "x": URL_SAFE_NO_PAD.encode(&b[1..33]), "y": URL_SAFE_NO_PAD.encode(&b[33..])})
            }
            Self::P521(k) => {
                let p = k.compute_public_key().unwrap();
                let b = p.as_ref();
                json!({"kty":"EC","crv":"P-521","alg":"ECDH-ES+A256KW",
                    "x": URL_SAFE_NO_PAD.encode(&b[1..67]), "y": URL_SAFE_NO_PAD.encode(&b[67..])})
            }
            Self::Rsa(k) => {
                let p = k.public_key();
                json!({"kty":"RSA","alg":"RSA-OAEP-256",
                    "n": URL_SAFE_NO_PAD.encode(p.modulus().big_endian_without_leading_zero()),
                    "e": URL_SAFE_NO_PAD.encode(p.exponent().big_endian_without_leading_zero())})
            }
        }
    }

    /// Decrypt a flattened JWE independently of the server code.
    pub fn decrypt(&self, jwe: &Value) -> Vec<u8> {
        let members: Vec<&str> = {
            let mut m: Vec<&str> = jwe
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            m.sort_unstable();
            m
        };
        assert_eq!(
            members,
            ["ciphertext", "encrypted_key", "iv", "protected", "tag"]
        );
        let field = |n: &str| URL_SAFE_NO_PAD.decode(jwe[n].as_str().unwrap()).unwrap();
        let protected_b64 = jwe["protected"].as_str().unwrap();
        let header: Value = serde_json::from_slice(&field("protected")).unwrap();
        assert_eq!(header["enc"], "A256GCM");
        let cek: Vec<u8> = match self {
            Self::P256(k) => {
                assert_eq!(header["alg"], "ECDH-ES+A256KW");
                assert_eq!(header["epk"]["crv"], "P-256");
                let mut sec1 = vec![4u8];
                sec1.extend(
                    URL_SAFE_NO_PAD
                        .decode(header["epk"]["x"].as_str().unwrap())
                        .unwrap(),
                );
                sec1.extend(
                    URL_SAFE_NO_PAD
                        .decode(header["epk"]["y"].as_str().unwrap())
                        .unwrap(),
                );
                let epk = p256::PublicKey::from_sec1_bytes(&sec1).unwrap();
                let z = k.diffie_hellman(&epk);
                unwrap_cek(
                    &kdf(z.raw_secret_bytes().as_slice()),
                    &field("encrypted_key"),
                )
            }
            Self::P521(k) => {
                assert_eq!(header["alg"], "ECDH-ES+A256KW");
                assert_eq!(header["epk"]["crv"], "P-521");
                let mut sec1 = vec![4u8];
                sec1.extend(
                    URL_SAFE_NO_PAD
                        .decode(header["epk"]["x"].as_str().unwrap())
                        .unwrap(),
                );
                sec1.extend(
                    URL_SAFE_NO_PAD
                        .decode(header["epk"]["y"].as_str().unwrap())
                        .unwrap(),
                );
                let peer = aws_lc_rs::agreement::UnparsedPublicKey::new(
                    &aws_lc_rs::agreement::ECDH_P521,
                    sec1,
                );
                let kek = aws_lc_rs::agreement::agree(k, peer, (), |z| Ok(kdf(z))).unwrap();
                unwrap_cek(&kek, &field("encrypted_key"))
            }
            Self::Rsa(k) => {
                assert_eq!(header["alg"], "RSA-OAEP-256");
                let pkcs8 = k.as_der().unwrap();
                let dk = aws_lc_rs::rsa::PrivateDecryptingKey::from_pkcs8(pkcs8.as_ref()).unwrap();
                let oaep = aws_lc_rs::rsa::OaepPrivateDecryptingKey::new(dk).unwrap();
                let mut out = vec![0u8; oaep.min_output_size()];
                let pt = oaep
                    .decrypt(
                        &aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256,
                        &field("encrypted_key"),
                        &mut out,
                        None,
                    )
                    .unwrap();
                pt.to_vec()
            }
        };
        assert_eq!(cek.len(), 32);
        let iv = field("iv");
        assert_eq!(iv.len(), 12);
        let tag = field("tag");
        assert_eq!(tag.len(), 16);
        let mut ct = field("ciphertext");
        ct.extend(tag);
        let gcm = Aes256Gcm::new_from_slice(&cek).unwrap();
        gcm.decrypt(
            &Nonce::try_from(iv.as_slice()).unwrap(),
            Payload {
                msg: &ct,
                aad: protected_b64.as_bytes(),
            },
        )
        .expect("A256GCM with AAD = protected string")
    }
}

/// Concat KDF for ECDH-ES+A256KW (RFC 7518 §4.6.2), written out again on purpose.
fn kdf(z: &[u8]) -> [u8; 32] {
    let mut input = vec![0, 0, 0, 1];
    input.extend_from_slice(z);
    input.extend_from_slice(&14u32.to_be_bytes());
    input.extend_from_slice(b"ECDH-ES+A256KW");
    input.extend_from_slice(&[0; 8]);
    input.extend_from_slice(&256u32.to_be_bytes());
    Sha256::digest(&input).into()
}

fn unwrap_cek(kek: &[u8; 32], wrapped: &[u8]) -> Vec<u8> {
    assert_eq!(wrapped.len(), 40);
    let kw = KwAes256::new_from_slice(kek).unwrap();
    let mut out = [0u8; 32];
    kw.unwrap_key(wrapped, &mut out).unwrap().to_vec()
}

/// A reqwest client trusting only the KBS's CA (no cookie store: cookies are sent by hand).
pub fn http(kbs: &TestKbs) -> reqwest::Client {
    let mut b = reqwest::Client::builder().timeout(Duration::from_secs(20));
    if let Some(pem) = kbs.ca_pem() {
        b = b.tls_certs_only([reqwest::Certificate::from_pem(pem.as_bytes()).unwrap()]);
    }
    b.build().unwrap()
}

/// A started server with `default/key/k1` and sample allowed.
pub fn sample_kbs() -> TestKbs {
    TestKbs::start(
        KbsConfig::default()
            .with_resource("default/key/k1", b"model-password".to_vec())
            .with_policy(Policy::allow_all()),
    )
    .unwrap()
}

/// Runtime-data digest as a client computes it (JCS, SHA-384).
pub fn digest(additional: &str, nonce: &str, jwk: &Value) -> Vec<u8> {
    let rd = json!({"additional-evidence": additional, "nonce": nonce, "tee-pubkey": jwk});
    Sha384::digest(serde_json_canonicalizer::to_vec(&rd).unwrap()).to_vec()
}

pub fn sample_evidence(digest: &[u8]) -> Value {
    json!({"svn": "1", "report_data": STANDARD.encode(digest)})
}

pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Assert a Trustee error reply.
    pub fn assert_error(&self, status: u16, variant: &str) -> String {
        assert_eq!(
            self.status,
            status,
            "body: {}",
            String::from_utf8_lossy(&self.body)
        );
        let v = self.json();
        assert_eq!(v["type"], format!("{PREFIX}{variant}"));
        assert_eq!(v.as_object().unwrap().len(), 2);
        assert!(self.headers.get("content-type").is_none());
        v["detail"].as_str().unwrap().to_owned()
    }
}

pub async fn send(rb: reqwest::RequestBuilder) -> Reply {
    let r = rb.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let body = r.bytes().await.unwrap().to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// One handshake in progress.
pub struct Handshake {
    pub cookie: String,
    pub nonce: String,
}

pub async fn auth(c: &reqwest::Client, kbs: &TestKbs, tee: &str) -> Handshake {
    let r = send(
        c.post(format!("{}/kbs/v0/auth", kbs.url()))
            .json(&json!({"version": "0.4.0", "tee": tee, "extra-params": ""})),
    )
    .await;
    assert_eq!(r.status, 200);
    let set_cookie = r.headers["set-cookie"].to_str().unwrap().to_owned();
    let cookie = set_cookie.split(';').next().unwrap().to_owned();
    Handshake {
        cookie,
        nonce: r.json()["nonce"].as_str().unwrap().to_owned(),
    }
}

pub async fn attest(
    c: &reqwest::Client,
    kbs: &TestKbs,
    hs: &Handshake,
    jwk: &Value,
    evidence: Value,
    additional: &str,
) -> Reply {
    send(
        c.post(format!("{}/kbs/v0/attest", kbs.url()))
            .header("cookie", &hs.cookie)
            .json(&json!({
                "runtime-data": {"nonce": hs.nonce, "tee-pubkey": jwk},
                "tee-evidence": {"primary_evidence": evidence, "additional_evidence": additional},
            })),
    )
    .await
}

/// auth + attest with sample evidence; returns the cookie and token.
pub async fn sample_session(c: &reqwest::Client, kbs: &TestKbs, key: &TeeKey) -> (String, String) {
    let hs = auth(c, kbs, "sample").await;
    let jwk = key.jwk();
    let ev = sample_evidence(&digest("", &hs.nonce, &jwk));
    let r = attest(c, kbs, &hs, &jwk, ev, "").await;
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    (hs.cookie, r.json()["token"].as_str().unwrap().to_owned())
}

pub async fn get_with_cookie(
    c: &reqwest::Client,
    kbs: &TestKbs,
    path: &str,
    cookie: &str,
) -> Reply {
    send(
        c.get(format!("{}/kbs/v0/resource/{path}", kbs.url()))
            .header("cookie", cookie),
    )
    .await
}

pub async fn get_with_bearer(c: &reqwest::Client, kbs: &TestKbs, path: &str, token: &str) -> Reply {
    send(
        c.get(format!("{}/kbs/v0/resource/{path}", kbs.url()))
            .bearer_auth(token),
    )
    .await
}

/// Decode a JWT payload without verifying.
pub fn claims(token: &str) -> Value {
    let p = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
}
