//! Decrypting the KBS resource response: an RFC 7516 JWE in flattened JSON serialization.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §1.5 and Appendix A: members `protected`,
//! `encrypted_key`, `iv`, `ciphertext`, `tag` (base64url, no padding; no `aad`); `enc` is
//! always `A256GCM` with AAD = the ASCII bytes of `protected` exactly as received (we never
//! re-serialize the header). Key management is `ECDH-ES+A256KW` (Concat KDF with SHA-256,
//! RFC 7518 §4.6, then AES key unwrap, RFC 3394) or `RSA-OAEP-256`. We accept only the `alg`
//! of the key we offered and only `A256GCM`; `zip`, `crit` and an `aad` member are refused.
//! The CEK, the KEK, the shared secret and the plaintext live in zeroizing buffers.

#![warn(clippy::indexing_slicing)]

mod keypair;

use aes_gcm::aead::{AeadInOut as _, KeyInit as _};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use aws_lc_rs::rsa::OAEP_SHA256_MGF1SHA256;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use sha2::Digest as _;
use zeroize::Zeroizing;

use keypair::Inner;
pub use keypair::{ALG_ECDH_ES_A256KW, ALG_RSA_OAEP_256, KeyAlgorithm, KeyGenError, TeeKeyPair};

use crate::secret::Secret;

/// The only content encryption we accept.
pub const ENC_A256GCM: &str = "A256GCM";

/// Why a JWE was refused. Authentication failures are deliberately opaque.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JweError {
    /// Not a flattened-JSON JWE object.
    #[error("not a flattened JSON JWE: {reason}")]
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// A member is not strict base64url without padding.
    #[error("JWE member {member} is not base64url")]
    Base64 {
        /// The member.
        member: &'static str,
    },
    /// The protected header is not the JSON object we expect.
    #[error("JWE protected header is malformed: {reason}")]
    Header {
        /// What is wrong.
        reason: &'static str,
    },
    /// The KBS used a key-management algorithm we did not offer.
    #[error("the KBS used JWE alg {found:?} but we offered {offered}; refusing")]
    UnexpectedAlg {
        /// What the header says (sanitized).
        found: String,
        /// What our key offered.
        offered: &'static str,
    },
    /// The KBS used a content encryption other than `A256GCM`.
    #[error("the KBS used JWE enc {found:?}; only A256GCM is accepted")]
    UnexpectedEnc {
        /// What the header says (sanitized).
        found: String,
    },
    /// A header member we do not implement (`zip`, `crit`) or an `aad` member.
    #[error("JWE uses {feature}, which this client does not accept")]
    Unsupported {
        /// What was found.
        feature: &'static str,
    },
    /// The ephemeral public key is not a valid P-256 point.
    #[error("the JWE ephemeral key is not a valid P-256 point")]
    InvalidEphemeralKey,
    /// IV or tag of the wrong length.
    #[error("JWE {member} has the wrong length")]
    Length {
        /// The member.
        member: &'static str,
    },
    /// Unwrapping or decrypting failed: tampering, or a JWE for another key.
    #[error("JWE authentication failed (tampered, or encrypted to another key)")]
    Authentication,
}

/// The flattened JSON JWE as it is on the wire; strings kept as received.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireJwe {
    protected: String,
    encrypted_key: String,
    iv: String,
    ciphertext: String,
    tag: String,
    #[serde(default)]
    aad: Option<serde_json::Value>,
    #[serde(default)]
    header: Option<serde_json::Value>,
}

/// The protected header members we read.
#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    enc: String,
    #[serde(default)]
    epk: Option<Epk>,
    #[serde(default)]
    apu: Option<String>,
    #[serde(default)]
    apv: Option<String>,
    #[serde(default)]
    zip: Option<serde_json::Value>,
    #[serde(default)]
    crit: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
struct Epk {
    kty: String,
    crv: String,
    x: String,
    y: String,
}

/// Decrypts a KBS resource response (`body` is the raw HTTP body) with `key`.
///
/// # Errors
/// A [`JweError`]; never returns unauthenticated plaintext.
pub fn decrypt(key: &TeeKeyPair, body: &[u8]) -> Result<Secret, JweError> {
    let jwe: WireJwe = serde_json::from_slice(body).map_err(|_| JweError::Malformed {
        reason: "expected an object with protected, encrypted_key, iv, ciphertext, tag",
    })?;
    if jwe.aad.is_some() {
        return Err(JweError::Unsupported {
            feature: "an aad member",
        });
    }
    if jwe.header.is_some() {
        return Err(JweError::Unsupported {
            feature: "an unprotected header",
        });
    }
    let header_bytes = b64(&jwe.protected, "protected")?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| JweError::Header {
        reason: "expected a JSON object with string alg and enc",
    })?;
    let offered = key.algorithm().jose_alg();
    if header.alg != offered {
        return Err(JweError::UnexpectedAlg {
            found: crate::sanitize::sanitize_detail(&header.alg),
            offered,
        });
    }
    if header.enc != ENC_A256GCM {
        return Err(JweError::UnexpectedEnc {
            found: crate::sanitize::sanitize_detail(&header.enc),
        });
    }
    if header.zip.is_some() {
        return Err(JweError::Unsupported {
            feature: "compression (zip)",
        });
    }
    if header.crit.is_some() {
        return Err(JweError::Unsupported {
            feature: "critical header parameters (crit)",
        });
    }
    let encrypted_key = b64(&jwe.encrypted_key, "encrypted_key")?;
    let iv = b64(&jwe.iv, "iv")?;
    let tag = b64(&jwe.tag, "tag")?;
    let ciphertext = b64(&jwe.ciphertext, "ciphertext")?;

    let cek = match &key.inner {
        Inner::Ec(sk) => ecdh_es_unwrap(sk, &header, &encrypted_key)?,
        Inner::Rsa(rsa) => {
            let mut out = Zeroizing::new(vec![0u8; rsa.min_output_size()]);
            let cek = rsa
                .decrypt(&OAEP_SHA256_MGF1SHA256, &encrypted_key, &mut out, None)
                .map_err(|_| JweError::Authentication)?;
            let cek: [u8; 32] = cek.try_into().map_err(|_| JweError::Authentication)?;
            Zeroizing::new(cek)
        }
    };

    let nonce = Nonce::try_from(iv.as_slice()).map_err(|_| JweError::Length { member: "iv" })?;
    let tag = <Tag>::try_from(tag.as_slice()).map_err(|_| JweError::Length { member: "tag" })?;
    let cipher = Aes256Gcm::new((&*cek).into());
    let mut buf = Zeroizing::new(ciphertext);
    cipher
        .decrypt_inout_detached(
            &nonce,
            jwe.protected.as_bytes(),
            buf.as_mut_slice().into(),
            &tag,
        )
        .map_err(|_| JweError::Authentication)?;
    Ok(Secret::new(buf))
}

/// ECDH-ES key agreement with the header's `epk`, Concat KDF, then AES-256 key unwrap.
fn ecdh_es_unwrap(
    sk: &p256::SecretKey,
    header: &Header,
    encrypted_key: &[u8],
) -> Result<Zeroizing<[u8; 32]>, JweError> {
    let epk = header.epk.as_ref().ok_or(JweError::Header {
        reason: "ECDH-ES needs an epk member",
    })?;
    if epk.kty != "EC" || epk.crv != "P-256" {
        return Err(JweError::Header {
            reason: "epk must be an EC P-256 key",
        });
    }
    let x = b64(&epk.x, "epk.x")?;
    let y = b64(&epk.y, "epk.y")?;
    if x.len() != 32 || y.len() != 32 {
        return Err(JweError::InvalidEphemeralKey);
    }
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    // from_sec1_bytes checks that the point is on the curve and not the identity.
    let peer =
        p256::PublicKey::from_sec1_bytes(&sec1).map_err(|_| JweError::InvalidEphemeralKey)?;
    let shared = p256::ecdh::diffie_hellman(sk.to_nonzero_scalar(), peer.as_affine());
    let apu = header.apu.as_deref().map(|s| b64(s, "apu")).transpose()?;
    let apv = header.apv.as_deref().map(|s| b64(s, "apv")).transpose()?;
    let kek = concat_kdf_a256kw(
        shared.raw_secret_bytes(),
        apu.as_deref().unwrap_or_default(),
        apv.as_deref().unwrap_or_default(),
    );
    if encrypted_key.len() != 40 {
        return Err(JweError::Length {
            member: "encrypted_key",
        });
    }
    let kw = aes_kw::KwAes256::new((&*kek).into());
    let mut cek = Zeroizing::new([0u8; 32]);
    kw.unwrap_key(encrypted_key, cek.as_mut_slice())
        .map_err(|_| JweError::Authentication)?;
    Ok(cek)
}

/// RFC 7518 §4.6.2 Concat KDF for the 256-bit KEK of `ECDH-ES+A256KW`.
pub(crate) fn concat_kdf_a256kw(z: &[u8], apu: &[u8], apv: &[u8]) -> Zeroizing<[u8; 32]> {
    concat_kdf_round1(z, ALG_ECDH_ES_A256KW.as_bytes(), apu, apv, 256)
}

/// The first (and, for at most 256 bits, only) round of the Concat KDF (NIST SP 800-56A
/// one-step, SHA-256): H(counter=1 ‖ Z ‖ len‖AlgorithmID ‖ len‖apu ‖ len‖apv ‖ keydatalen).
/// The caller keeps the leading `keydatalen_bits / 8` bytes.
fn concat_kdf_round1(
    z: &[u8],
    alg_id: &[u8],
    apu: &[u8],
    apv: &[u8],
    keydatalen_bits: u32,
) -> Zeroizing<[u8; 32]> {
    let len32 = |n: usize| u32::try_from(n).unwrap_or(u32::MAX).to_be_bytes();
    let mut h = sha2::Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    h.update(len32(alg_id.len()));
    h.update(alg_id);
    h.update(len32(apu.len()));
    h.update(apu);
    h.update(len32(apv.len()));
    h.update(apv);
    h.update(keydatalen_bits.to_be_bytes());
    let mut out = Zeroizing::new([0u8; 32]);
    out.copy_from_slice(&h.finalize());
    out
}

fn b64(s: &str, member: &'static str) -> Result<Vec<u8>, JweError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JweError::Base64 { member })
}

/// A test-side JWE encryptor, written from RFC 7516/7518 like the KBS side would be. It
/// exists to build vectors with fixed keys; interoperability is proven against the separately
/// written test KBS, not by this.
#[cfg(test)]
pub(crate) mod testing {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::indexing_slicing,
        reason = "tests"
    )]
    use super::*;
    use aes_gcm::aead::Aead as _;
    use aws_lc_rs::rsa::{OaepPublicEncryptingKey, PublicEncryptingKey};
    use kbs_types::TeePubKey;
    use p256::elliptic_curve::sec1::ToSec1Point as _;

    /// Options to produce deliberately wrong JWEs.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Knobs {
        pub(crate) alg: Option<String>,
        pub(crate) enc: Option<String>,
        pub(crate) epk_xy: Option<([u8; 32], [u8; 32])>,
    }

    pub(crate) fn encrypt(jwk: &TeePubKey, plaintext: &[u8], knobs: &Knobs) -> String {
        let cek = [7u8; 32];
        let (mut header, encrypted_key) = match jwk {
            TeePubKey::EC { x, y, .. } => {
                let mut sec1 = vec![4u8];
                sec1.extend(URL_SAFE_NO_PAD.decode(x).unwrap());
                sec1.extend(URL_SAFE_NO_PAD.decode(y).unwrap());
                let peer = p256::PublicKey::from_sec1_bytes(&sec1).unwrap();
                let eph = p256::SecretKey::from_slice(&[0x42; 32]).unwrap();
                let shared = p256::ecdh::diffie_hellman(eph.to_nonzero_scalar(), peer.as_affine());
                let kek = concat_kdf_a256kw(shared.raw_secret_bytes(), b"", b"");
                let mut wrapped = [0u8; 40];
                aes_kw::KwAes256::new((&*kek).into())
                    .wrap_key(&cek, &mut wrapped)
                    .unwrap();
                let pt = eph.public_key().to_sec1_point(false);
                let (ex, ey) = knobs
                    .epk_xy
                    .map(|(a, b)| (a.to_vec(), b.to_vec()))
                    .unwrap_or_else(|| (pt.x().unwrap().to_vec(), pt.y().unwrap().to_vec()));
                let header = serde_json::json!({
                    "alg": "ECDH-ES+A256KW", "enc": "A256GCM",
                    "epk": {"crv": "P-256", "kty": "EC",
                            "x": URL_SAFE_NO_PAD.encode(ex), "y": URL_SAFE_NO_PAD.encode(ey)}
                });
                (header, wrapped.to_vec())
            }
            TeePubKey::RSA { k_mod, k_exp, .. } => {
                let n = URL_SAFE_NO_PAD.decode(k_mod).unwrap();
                let e = URL_SAFE_NO_PAD.decode(k_exp).unwrap();
                let der = rsa_spki(&n, &e);
                let pk = OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&der).unwrap())
                    .unwrap();
                let mut out = vec![0u8; pk.ciphertext_size()];
                let ct = pk
                    .encrypt(&OAEP_SHA256_MGF1SHA256, &cek, &mut out, None)
                    .unwrap();
                (
                    serde_json::json!({"alg": "RSA-OAEP-256", "enc": "A256GCM"}),
                    ct.to_vec(),
                )
            }
            TeePubKey::AKP { .. } => unreachable!(),
        };
        if let Some(a) = &knobs.alg {
            header["alg"] = a.clone().into();
        }
        if let Some(e) = &knobs.enc {
            header["enc"] = e.clone().into();
        }
        let protected = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&header).unwrap());
        let iv = [9u8; 12];
        let cipher = Aes256Gcm::new((&cek).into());
        let ct = cipher
            .encrypt(
                (&iv).into(),
                aes_gcm::aead::Payload {
                    msg: plaintext,
                    aad: protected.as_bytes(),
                },
            )
            .unwrap();
        let (ct, tag) = ct.split_at(ct.len() - 16);
        serde_json::json!({
            "protected": protected,
            "encrypted_key": URL_SAFE_NO_PAD.encode(encrypted_key),
            "iv": URL_SAFE_NO_PAD.encode(iv),
            "ciphertext": URL_SAFE_NO_PAD.encode(ct),
            "tag": URL_SAFE_NO_PAD.encode(tag),
        })
        .to_string()
    }

    /// DER SubjectPublicKeyInfo for an RSA key (short and long lengths only as needed).
    fn rsa_spki(n: &[u8], e: &[u8]) -> Vec<u8> {
        fn tlv(tag: u8, body: &[u8]) -> Vec<u8> {
            let mut v = vec![tag];
            let l = body.len();
            if l < 0x80 {
                v.push(l as u8);
            } else if l < 0x100 {
                v.extend([0x81, l as u8]);
            } else {
                v.extend([0x82, (l >> 8) as u8, l as u8]);
            }
            v.extend_from_slice(body);
            v
        }
        let int = |b: &[u8]| {
            let mut body = Vec::new();
            if b[0] & 0x80 != 0 {
                body.push(0);
            }
            body.extend_from_slice(b);
            tlv(0x02, &body)
        };
        let rsa = tlv(0x30, &[int(n), int(e)].concat());
        let mut bits = vec![0u8];
        bits.extend(rsa);
        let alg = tlv(
            0x30,
            &[
                tlv(
                    0x06,
                    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01],
                ),
                vec![0x05, 0x00],
            ]
            .concat(),
        );
        tlv(0x30, &[alg, tlv(0x03, &bits)].concat())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::testing::{Knobs, encrypt};
    use super::*;
    use proptest::prelude::*;

    fn ec_key() -> TeeKeyPair {
        TeeKeyPair::from_ec_scalar(&[0x11; 32]).unwrap()
    }

    #[test]
    fn ec_round_trip_with_fixed_keys() {
        let k = ec_key();
        let jwe = encrypt(k.public_jwk(), b"model password", &Knobs::default());
        assert_eq!(
            decrypt(&k, jwe.as_bytes()).unwrap().expose(),
            b"model password"
        );
    }

    #[test]
    fn rsa_round_trip() {
        let k = TeeKeyPair::generate(KeyAlgorithm::Rsa2048).unwrap();
        let jwe = encrypt(k.public_jwk(), b"rsa secret", &Knobs::default());
        assert_eq!(decrypt(&k, jwe.as_bytes()).unwrap().expose(), b"rsa secret");
        // An EC JWE is refused by an RSA key: alg we did not offer.
        let ec = encrypt(ec_key().public_jwk(), b"x", &Knobs::default());
        assert!(matches!(
            decrypt(&k, ec.as_bytes()),
            Err(JweError::UnexpectedAlg { .. })
        ));
    }

    #[test]
    fn empty_plaintext() {
        let k = ec_key();
        let jwe = encrypt(k.public_jwk(), b"", &Knobs::default());
        assert!(decrypt(&k, jwe.as_bytes()).unwrap().is_empty());
    }

    /// Known answer from RFC 7518 Appendix C (ECDH-ES, AlgorithmID "A128GCM", apu "Alice",
    /// apv "Bob", 128 bits).
    #[test]
    fn concat_kdf_rfc7518_appendix_c() {
        // Z from RFC 7518 Appendix C.
        let z: [u8; 32] = [
            158, 86, 217, 29, 129, 113, 53, 211, 114, 131, 66, 131, 191, 132, 38, 156, 251, 49,
            110, 163, 218, 128, 106, 72, 246, 218, 167, 121, 140, 254, 144, 196,
        ];
        let out = concat_kdf_round1(&z, b"A128GCM", b"Alice", b"Bob", 128);
        assert_eq!(URL_SAFE_NO_PAD.encode(&out[..16]), "VqqN6vgjbSBcIijNcacQGg");
    }

    #[test]
    fn refuses_other_alg_and_enc() {
        let k = ec_key();
        for alg in ["RSA1_5", "dir", "ECDH-ES", "A256KW", "RSA-OAEP-256"] {
            let jwe = encrypt(
                k.public_jwk(),
                b"x",
                &Knobs {
                    alg: Some(alg.into()),
                    ..Knobs::default()
                },
            );
            assert!(
                matches!(
                    decrypt(&k, jwe.as_bytes()),
                    Err(JweError::UnexpectedAlg { .. })
                ),
                "{alg}"
            );
        }
        for enc in ["A128GCM", "A256CBC-HS512", ""] {
            let jwe = encrypt(
                k.public_jwk(),
                b"x",
                &Knobs {
                    enc: Some(enc.into()),
                    ..Knobs::default()
                },
            );
            assert!(matches!(
                decrypt(&k, jwe.as_bytes()),
                Err(JweError::UnexpectedEnc { .. })
            ));
        }
    }

    #[test]
    fn refuses_point_not_on_curve() {
        let k = ec_key();
        let jwe = encrypt(
            k.public_jwk(),
            b"x",
            &Knobs {
                epk_xy: Some(([1u8; 32], [2u8; 32])),
                ..Knobs::default()
            },
        );
        assert_eq!(
            decrypt(&k, jwe.as_bytes()).unwrap_err(),
            JweError::InvalidEphemeralKey
        );
    }

    #[test]
    fn tampering_is_detected() {
        let k = ec_key();
        let jwe = encrypt(k.public_jwk(), b"secret bytes here", &Knobs::default());
        let v: serde_json::Value = serde_json::from_str(&jwe).unwrap();
        for member in ["ciphertext", "tag", "iv", "encrypted_key"] {
            let mut bytes = URL_SAFE_NO_PAD.decode(v[member].as_str().unwrap()).unwrap();
            bytes[0] ^= 1;
            let mut t = v.clone();
            t[member] = URL_SAFE_NO_PAD.encode(&bytes).into();
            assert_eq!(
                decrypt(&k, t.to_string().as_bytes()).unwrap_err(),
                JweError::Authentication,
                "{member}"
            );
        }
        // The AAD is the protected string as received: re-encoding the same header JSON
        // differently (here: with padding stripped differently is impossible, so add a
        // space) must fail authentication.
        let hdr = URL_SAFE_NO_PAD
            .decode(v["protected"].as_str().unwrap())
            .unwrap();
        let mut spaced = b" ".to_vec();
        spaced.extend(hdr);
        let mut t = v.clone();
        t["protected"] = URL_SAFE_NO_PAD.encode(spaced).into();
        assert_eq!(
            decrypt(&k, t.to_string().as_bytes()).unwrap_err(),
            JweError::Authentication
        );
    }

    #[test]
    fn refuses_malformed_shapes() {
        let k = ec_key();
        let jwe: serde_json::Value =
            serde_json::from_str(&encrypt(k.public_jwk(), b"x", &Knobs::default())).unwrap();
        let mut with_aad = jwe.clone();
        with_aad["aad"] = "abc".into();
        assert!(matches!(
            decrypt(&k, with_aad.to_string().as_bytes()),
            Err(JweError::Unsupported { .. })
        ));
        let mut padded = jwe.clone();
        padded["iv"] = format!("{}=", jwe["iv"].as_str().unwrap()).into();
        assert_eq!(
            decrypt(&k, padded.to_string().as_bytes()).unwrap_err(),
            JweError::Base64 { member: "iv" }
        );
        let mut no_tag = jwe.clone();
        no_tag.as_object_mut().unwrap().remove("tag");
        assert!(matches!(
            decrypt(&k, no_tag.to_string().as_bytes()),
            Err(JweError::Malformed { .. })
        ));
        let mut short_iv = jwe.clone();
        short_iv["iv"] = URL_SAFE_NO_PAD.encode([0u8; 8]).into();
        assert_eq!(
            decrypt(&k, short_iv.to_string().as_bytes()).unwrap_err(),
            JweError::Length { member: "iv" }
        );
        for junk in [
            &b""[..],
            b"null",
            b"[]",
            b"{}",
            b"\xff\xfe",
            b"{\"protected\":1}",
        ] {
            assert!(decrypt(&k, junk).is_err());
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_decrypt(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            prop_assert!(decrypt(&ec_key(), &body).is_err());
        }

        #[test]
        fn single_char_corruption_never_yields_plaintext(pos in 0usize..400, c in "[A-Za-z0-9_-]") {
            let k = ec_key();
            let jwe = encrypt(k.public_jwk(), b"0123456789", &Knobs::default());
            let pos = pos % jwe.len();
            let mut s = jwe.clone().into_bytes();
            s[pos] = c.as_bytes()[0];
            if s != jwe.as_bytes()
                && let Ok(p) = decrypt(&k, &s)
            {
                    // Only a change that leaves every decoded member intact may succeed
                    // (e.g. a JSON key-order-neutral edit); the plaintext must be unchanged.
                    prop_assert_eq!(p.expose(), b"0123456789");
            }
        }
    }
}
