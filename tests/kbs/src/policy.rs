//! Resource policy: allow or deny a resource by the TEE type in the token.
//!
//! Mirrors the *effect* of Trustee's resource policy (`../shared/specs/kbs-protocol.md` §1.5,
//! §6.5) without Rego: the default rule is Trustee's `default.rego` ("allow unless the token's
//! `submods.cpu0["ear.veraison.annotated-evidence"]` has a `sample` member"), and a test can
//! switch to allow-all (Trustee's `allow_all.rego`), deny-all, or an explicit TEE list, for
//! all resources or per resource. The admin endpoint `POST /kbs/v0/resource-policy` takes
//! `{"policy": base64url-nopad(<test-kbs policy JSON>)}` — see [`Policy::from_json`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::Error;

/// One rule: which TEE types may read a resource.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeeRule {
    /// Trustee's default policy: any TEE except `sample`.
    TrusteeDefault,
    /// Every TEE, including `sample` (Trustee's `allow_all.rego`).
    AllowAll,
    /// Nobody.
    DenyAll,
    /// Only these TEE types (kbs-types names: `sample`, `tdx`, `snp`, ...).
    Allow(Vec<String>),
}

impl TeeRule {
    /// Whether a token from `tee` (None: no recognisable TEE claim) passes this rule.
    #[must_use]
    pub fn allows(&self, tee: Option<&str>) -> bool {
        match self {
            Self::TrusteeDefault => tee != Some("sample"),
            Self::AllowAll => true,
            Self::DenyAll => false,
            Self::Allow(list) => tee.is_some_and(|t| list.iter().any(|a| a == t)),
        }
    }

    /// This rule widened so that `tee` is allowed too.
    #[must_use]
    pub fn with_tee(self, tee: &str) -> Self {
        match self {
            Self::AllowAll => Self::AllowAll,
            Self::TrusteeDefault if tee == "sample" => Self::AllowAll,
            Self::TrusteeDefault => Self::TrusteeDefault,
            Self::DenyAll => Self::Allow(vec![tee.to_owned()]),
            Self::Allow(mut list) => {
                if !list.iter().any(|t| t == tee) {
                    list.push(tee.to_owned());
                }
                Self::Allow(list)
            }
        }
    }
}

/// The whole resource policy: a default rule and per-resource overrides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// Rule for resources without an override.
    pub default: TeeRule,
    /// Overrides keyed by `repo/type/tag`.
    #[serde(default)]
    pub resources: BTreeMap<String, TeeRule>,
}

impl Default for Policy {
    fn default() -> Self {
        Self::trustee_default()
    }
}

impl Policy {
    /// Trustee's start-up policy: deny `sample`, allow every other TEE.
    #[must_use]
    pub fn trustee_default() -> Self {
        Self {
            default: TeeRule::TrusteeDefault,
            resources: BTreeMap::new(),
        }
    }

    /// Allow every TEE including `sample` (what tests usually install).
    #[must_use]
    pub fn allow_all() -> Self {
        Self {
            default: TeeRule::AllowAll,
            resources: BTreeMap::new(),
        }
    }

    /// Deny everything.
    #[must_use]
    pub fn deny_all() -> Self {
        Self {
            default: TeeRule::DenyAll,
            resources: BTreeMap::new(),
        }
    }

    /// Parse the JSON form, e.g.
    /// `{"default":"trustee-default","resources":{"default/key/a":{"allow":["tdx"]}}}`.
    ///
    /// # Errors
    /// [`Error::Policy`] when the text is not that JSON (Rego is not supported).
    pub fn from_json(text: &str) -> Result<Self, Error> {
        let policy: Self = serde_json::from_str(text).map_err(|e| {
            Error::Policy(format!(
                "{e}; test-kbs takes its own JSON policy, not Rego (see tests/kbs/README.md)"
            ))
        })?;
        for path in policy.resources.keys() {
            if !crate::resource::valid_resource_path(path) {
                return Err(Error::InvalidResourcePath { path: path.clone() });
            }
        }
        Ok(policy)
    }

    /// The rule that applies to `path`.
    #[must_use]
    pub fn rule_for(&self, path: &str) -> &TeeRule {
        self.resources.get(path).unwrap_or(&self.default)
    }

    /// Evaluate on the token claims, like Trustee evaluates `data.policy.allow` on `input`.
    #[must_use]
    pub fn evaluate(&self, path: &str, claims: &Value) -> bool {
        self.rule_for(path).allows(tee_of_claims(claims).as_deref())
    }
}

/// The primary TEE named in the token: the member of
/// `submods.cpu0["ear.veraison.annotated-evidence"]` that is a kbs-types TEE name.
#[must_use]
pub fn tee_of_claims(claims: &Value) -> Option<String> {
    let annotated = claims
        .get("submods")?
        .get("cpu0")?
        .get("ear.veraison.annotated-evidence")?
        .as_object()?;
    annotated
        .keys()
        .find(|k| crate::verifier::parse_tee(k).is_ok())
        .cloned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    fn claims(tee: &str) -> Value {
        json!({"submods":{"cpu0":{"ear.veraison.annotated-evidence":{tee: {}, "report_data":"00"}}}})
    }

    #[test]
    fn default_denies_sample_only() {
        let p = Policy::default();
        assert!(!p.evaluate("a/b/c", &claims("sample")));
        assert!(p.evaluate("a/b/c", &claims("tdx")));
        assert!(p.evaluate("a/b/c", &json!({})));
    }

    #[test]
    fn overrides_and_widening() {
        let mut p = Policy::deny_all();
        p.resources
            .insert("a/b/c".into(), TeeRule::DenyAll.with_tee("snp"));
        assert!(p.evaluate("a/b/c", &claims("snp")));
        assert!(!p.evaluate("a/b/c", &claims("tdx")));
        assert!(!p.evaluate("a/b/d", &claims("snp")));
        assert_eq!(
            TeeRule::TrusteeDefault.with_tee("sample"),
            TeeRule::AllowAll
        );
    }

    #[test]
    fn json_form() {
        let p =
            Policy::from_json(r#"{"default":"allow-all","resources":{"x/y/z":{"allow":["tdx"]}}}"#)
                .unwrap();
        assert_eq!(p.default, TeeRule::AllowAll);
        assert!(Policy::from_json("package policy\nallow = true").is_err());
        assert!(
            Policy::from_json(r#"{"default":"deny-all","resources":{"../x/y":"allow-all"}}"#)
                .is_err()
        );
    }
}
