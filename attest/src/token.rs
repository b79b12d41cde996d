//! The attestation token: a JWT whose claims we read but do not verify.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §1.4 (EAR token from the built-in AS: `exp`,
//! `iat`, `submods`, …). The KBS verifies the token on every resource request, so the client
//! only needs `exp` (and `nbf`) to decide when to re-attest, as guest-components'
//! `Token::check_valid` does. The token is a bearer credential for this key pair: it is never
//! printed (its `Debug` is redacted); its claims are public and `ccmount attest` shows them.

#![warn(clippy::indexing_slicing)]

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Why a token could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three dot-separated parts.
    #[error("not a JWT (expected header.payload.signature)")]
    NotJwt,
    /// A part is not base64url.
    #[error("JWT {part} is not base64url")]
    Base64 {
        /// Which part.
        part: &'static str,
    },
    /// The payload is not a JSON object.
    #[error("JWT payload is not a JSON object")]
    NotJson,
    /// `exp`, `nbf` or `iat` is present but not a non-negative integer.
    #[error("JWT claim {claim} is not a number of seconds")]
    BadTime {
        /// The claim.
        claim: &'static str,
    },
}

/// An attestation token and its (unverified) claims.
#[derive(Clone)]
pub struct Token {
    jwt: String,
    claims: TokenClaims,
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("claims", &self.claims)
            .finish_non_exhaustive()
    }
}

/// Claims of a token, read without verifying the signature.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenClaims {
    /// Expiry, seconds since the epoch.
    pub exp: Option<u64>,
    /// Not before, seconds since the epoch.
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch.
    pub iat: Option<u64>,
    /// The whole payload (public: evidence claims, the TEE public key, …).
    pub all: serde_json::Value,
}

impl Token {
    /// Parses a compact JWT.
    ///
    /// # Errors
    /// [`TokenError`] if it is not a JWT with a JSON object payload and numeric times.
    pub fn parse(jwt: &str) -> Result<Self, TokenError> {
        let mut parts = jwt.split('.');
        let (Some(header), Some(payload), Some(sig), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::NotJwt);
        };
        // Tolerate padding some issuers add; the KBS is the one that verifies.
        let decode = |s: &str, part| {
            URL_SAFE_NO_PAD
                .decode(s.trim_end_matches('='))
                .map_err(|_| TokenError::Base64 { part })
        };
        decode(header, "header")?;
        decode(sig, "signature")?;
        let payload = decode(payload, "payload")?;
        let all: serde_json::Value =
            serde_json::from_slice(&payload).map_err(|_| TokenError::NotJson)?;
        if !all.is_object() {
            return Err(TokenError::NotJson);
        }
        let time = |claim: &'static str| match all.get(claim) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .or_else(|| {
                    // Some issuers write floats; accept whole non-negative seconds.
                    v.as_f64()
                        .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e15)
                        .map(|f| f as u64)
                })
                .map(Some)
                .ok_or(TokenError::BadTime { claim }),
        };
        let claims = TokenClaims {
            exp: time("exp")?,
            nbf: time("nbf")?,
            iat: time("iat")?,
            all,
        };
        Ok(Self {
            jwt: jwt.to_owned(),
            claims,
        })
    }

    /// The compact JWT, for the `Authorization: Bearer` header only.
    #[must_use]
    pub(crate) fn as_str(&self) -> &str {
        &self.jwt
    }

    /// The claims.
    #[must_use]
    pub fn claims(&self) -> &TokenClaims {
        &self.claims
    }

    /// Whether the token may still be used at `now`, keeping a margin before `exp` for clock
    /// skew and the request's own latency. The margin is `skew`, but at most a quarter of the
    /// token's lifetime (so short-lived tokens are still reused). A token without `exp` is
    /// used until the KBS refuses it.
    #[must_use]
    pub fn usable_at(&self, now: SystemTime, skew: Duration) -> bool {
        let now = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs();
        if self
            .claims
            .nbf
            .is_some_and(|nbf| now + skew.as_secs() < nbf)
        {
            return false;
        }
        match self.claims.exp {
            None => true,
            Some(exp) => {
                let lifetime = self.claims.iat.map(|iat| exp.saturating_sub(iat));
                let margin = lifetime.map_or(skew.as_secs(), |l| skew.as_secs().min(l / 4));
                now.saturating_add(margin) < exp
            }
        }
    }
}

#[cfg(test)]
pub(crate) fn test_jwt(claims: &serde_json::Value) -> String {
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"ES256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode([1u8; 64])
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn reads_times_and_keeps_claims() {
        let jwt = test_jwt(&serde_json::json!({"exp": 2000, "iat": 1000, "submods": {"cpu0": {}}}));
        let t = Token::parse(&jwt).unwrap();
        assert_eq!(t.claims().exp, Some(2000));
        assert_eq!(t.claims().iat, Some(1000));
        assert!(t.claims().all["submods"]["cpu0"].is_object());
        assert!(
            !format!("{t:?}").contains(&jwt),
            "the JWT itself is never printed"
        );
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert!(t.usable_at(at(1500), Duration::from_secs(5)));
        assert!(t.usable_at(at(1994), Duration::from_secs(5)));
        assert!(!t.usable_at(at(1995), Duration::from_secs(5)));
        assert!(!t.usable_at(at(3000), Duration::from_secs(5)));
    }

    #[test]
    fn short_lived_tokens_keep_a_proportional_margin() {
        let t = Token::parse(&test_jwt(&serde_json::json!({"exp": 1004, "iat": 1000}))).unwrap();
        let at = |s| UNIX_EPOCH + Duration::from_secs(s);
        assert!(t.usable_at(at(1002), Duration::from_secs(5)));
        assert!(!t.usable_at(at(1004), Duration::from_secs(5)));
    }

    #[test]
    fn rejects_non_jwts() {
        assert_eq!(Token::parse("").unwrap_err(), TokenError::NotJwt);
        assert_eq!(Token::parse("a.b").unwrap_err(), TokenError::NotJwt);
        assert_eq!(Token::parse("a.b.c.d").unwrap_err(), TokenError::NotJwt);
        assert!(matches!(
            Token::parse("a.!.c"),
            Err(TokenError::Base64 { .. })
        ));
        let arr = format!("e30.{}.e30", URL_SAFE_NO_PAD.encode("[1]"));
        assert_eq!(Token::parse(&arr).unwrap_err(), TokenError::NotJson);
        let bad = test_jwt(&serde_json::json!({"exp": "tomorrow"}));
        assert_eq!(
            Token::parse(&bad).unwrap_err(),
            TokenError::BadTime { claim: "exp" }
        );
        let neg = test_jwt(&serde_json::json!({"exp": -5}));
        assert!(Token::parse(&neg).is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            let _ = Token::parse(&s);
        }

        #[test]
        fn exp_round_trips(exp in 0u64..(1u64 << 53), iat in proptest::option::of(0u64..(1u64 << 53))) {
            let mut c = serde_json::json!({"exp": exp});
            if let Some(iat) = iat { c["iat"] = iat.into(); }
            let t = Token::parse(&test_jwt(&c)).unwrap();
            prop_assert_eq!(t.claims().exp, Some(exp));
            prop_assert_eq!(t.claims().iat, iat);
            prop_assert!(!t.usable_at(UNIX_EPOCH + Duration::from_secs(exp), Duration::ZERO));
        }
    }
}
