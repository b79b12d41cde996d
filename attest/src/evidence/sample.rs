//! The `sample` "TEE": fake evidence that Trustee's sample verifier accepts. Insecure.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §3.1: `{"svn":"1","report_data":"<standard
//! base64 of the raw digest>"}` (48 bytes, not padded). It proves nothing; it exists for test
//! KBSes and the demo. It is never chosen by detection, and every use logs a warning.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::{Attester, Evidence, EvidenceError, Tee};
use crate::binding::ReportData;

/// Produces sample evidence. Construct it only when the user asked for `sample`.
#[derive(Debug, Default)]
pub struct SampleAttester(());

impl SampleAttester {
    /// A sample attester.
    #[must_use]
    pub fn new() -> Self {
        Self(())
    }
}

impl Attester for SampleAttester {
    fn tee(&self) -> Tee {
        Tee::Sample
    }

    fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError> {
        // Once per process: a run that re-attests (token expiry) should not repeat it.
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                "INSECURE: sending SAMPLE evidence, which proves nothing about this machine; use it only with a test KBS"
            );
        });
        Ok(Evidence {
            json: serde_json::json!({
                "svn": "1",
                "report_data": STANDARD.encode(report_data.as_bytes()),
            }),
            summary: serde_json::json!({
                "kind": "sample (insecure, no hardware)",
                "svn": "1",
                "report_data_bytes": report_data.as_bytes().len(),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn exact_shape() {
        let e = SampleAttester::new()
            .evidence(&ReportData::from_digest(vec![0xab; 48]))
            .unwrap();
        assert_eq!(
            e.json.to_string(),
            format!(
                r#"{{"report_data":"{}","svn":"1"}}"#,
                STANDARD.encode([0xab; 48])
            )
        );
    }
}
