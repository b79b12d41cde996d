//! Intel TDX evidence: a TD quote from configfs-tsm plus the CCEL event log.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §3.2: evidence JSON
//! `{"cc_eventlog": <standard base64 or null>, "quote": <standard base64>}`; the binding digest
//! zero-padded to the 64-byte REPORTDATA (§2.2). Quotes come only through configfs-tsm
//! (provider `tdx_guest`, Linux ≥ 6.7), as upstream kernels offer no quote ioctl.
//!
//! Deliberate differences from guest-components: the event log is the ACPI CCEL table data as
//! the firmware left it (its `0xFF` fill ends the log), without an attestation-agent event log
//! appended, because ccmount extends no runtime measurements.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::bytes::{le_u16, le_u32};
use super::tsm::{self, RealFs, TsmFs};
use super::{Attester, Evidence, EvidenceError, Platform, Tee};
use crate::binding::ReportData;

/// Produces TDX evidence.
#[derive(Debug)]
pub struct TdxAttester {
    fs: Box<dyn TsmFs>,
    platform: Platform,
}

impl TdxAttester {
    /// A TDX attester for `platform` using the real configfs.
    #[must_use]
    pub fn new(platform: &Platform) -> Self {
        Self::with_fs(platform, Box::new(RealFs))
    }

    /// A TDX attester with another configfs implementation (tests).
    #[must_use]
    pub fn with_fs(platform: &Platform, fs: Box<dyn TsmFs>) -> Self {
        Self {
            fs,
            platform: platform.clone(),
        }
    }
}

impl Attester for TdxAttester {
    fn tee(&self) -> Tee {
        Tee::Tdx
    }

    fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError> {
        let inblob = report_data
            .padded::<64>()
            .ok_or(EvidenceError::DigestTooLong { tee: "tdx" })?;
        let report = tsm::request(
            self.fs.as_ref(),
            &self.platform.tsm_report,
            "tdx_guest",
            &inblob,
            false,
        )?;
        let quote = report.outblob;
        let path = self.platform.tsm_report.join("<report>/outblob");
        let (Some(version), Some(tee_type)) = (le_u16(&quote, 0), le_u32(&quote, 4)) else {
            return Err(EvidenceError::Malformed {
                what: "TDX quote",
                path,
                reason: "shorter than a quote header",
            });
        };
        // Trustee's verifier accepts quote versions 4 and 5 only; 0x81 is the TDX TEE type.
        if !(4..=5).contains(&version) || tee_type != 0x81 {
            return Err(EvidenceError::Malformed {
                what: "TDX quote",
                path,
                reason: "not a version 4/5 TDX quote",
            });
        }
        let eventlog = match std::fs::read(&self.platform.ccel) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(EvidenceError::io("read", &self.platform.ccel, e)),
        };
        Ok(Evidence {
            json: serde_json::json!({
                "cc_eventlog": eventlog.as_ref().map(|b| STANDARD.encode(b)),
                "quote": STANDARD.encode(&quote),
            }),
            summary: serde_json::json!({
                "kind": "tdx quote via configfs-tsm",
                "quote_version": version,
                "quote_bytes": quote.len(),
                "event_log_bytes": eventlog.as_ref().map(Vec::len),
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::super::tsm::fake::{FakeKernel, FakeTsm};
    use super::*;

    fn fake_quote(inblob: &[u8]) -> Vec<u8> {
        let mut q = vec![0u8; 48 + 584];
        q[0..2].copy_from_slice(&4u16.to_le_bytes());
        q[4..8].copy_from_slice(&0x81u32.to_le_bytes());
        // REPORTDATA sits in the TD report body; put it at the end for the test.
        q.extend_from_slice(inblob);
        q
    }

    fn setup(kernel: FakeKernel) -> (tempfile::TempDir, TdxAttester) {
        let d = tempfile::tempdir().unwrap();
        let p = Platform::under(d.path());
        std::fs::create_dir_all(&p.tsm_report).unwrap();
        let a = TdxAttester::with_fs(
            &p,
            Box::new(FakeTsm {
                kernel,
                ..FakeTsm::default()
            }),
        );
        (d, a)
    }

    #[test]
    fn quote_and_eventlog() {
        let (d, a) = setup(FakeKernel {
            provider: "tdx_guest",
            outblob: Some(fake_quote),
            ..FakeKernel::default()
        });
        let ccel = Platform::under(d.path()).ccel;
        std::fs::create_dir_all(ccel.parent().unwrap()).unwrap();
        std::fs::write(&ccel, [1, 2, 3, 0xff, 0xff]).unwrap();
        let rd = ReportData::from_digest(vec![0x5a; 48]);
        let e = a.evidence(&rd).unwrap();
        let quote = STANDARD.decode(e.json["quote"].as_str().unwrap()).unwrap();
        let mut padded = vec![0x5a; 48];
        padded.extend([0u8; 16]);
        assert_eq!(
            &quote[quote.len() - 64..],
            padded.as_slice(),
            "64-byte inblob, zero padded"
        );
        assert_eq!(
            e.json["cc_eventlog"],
            STANDARD.encode([1, 2, 3, 0xff, 0xff])
        );
        assert_eq!(e.summary["quote_version"], 4);
    }

    #[test]
    fn no_eventlog_is_null() {
        let (_d, a) = setup(FakeKernel {
            provider: "tdx_guest",
            outblob: Some(fake_quote),
            ..FakeKernel::default()
        });
        let e = a.evidence(&ReportData::from_digest(vec![1; 48])).unwrap();
        assert!(e.json["cc_eventlog"].is_null());
    }

    #[test]
    fn refuses_non_tdx_provider_race_and_bad_quote() {
        let (_d, a) = setup(FakeKernel {
            provider: "sev_guest",
            ..FakeKernel::default()
        });
        let rd = ReportData::from_digest(vec![1; 48]);
        assert!(matches!(
            a.evidence(&rd),
            Err(EvidenceError::ProviderMismatch { .. })
        ));
        let (_d, a) = setup(FakeKernel {
            provider: "tdx_guest",
            race: true,
            outblob: Some(fake_quote),
            ..FakeKernel::default()
        });
        assert!(matches!(
            a.evidence(&rd),
            Err(EvidenceError::GenerationRace { .. })
        ));
        // The default fake echoes the inblob: not a quote.
        let (_d, a) = setup(FakeKernel {
            provider: "tdx_guest",
            ..FakeKernel::default()
        });
        assert!(matches!(
            a.evidence(&rd),
            Err(EvidenceError::Malformed { .. })
        ));
        // A digest longer than REPORTDATA cannot be sent.
        assert!(matches!(
            a.evidence(&ReportData::from_digest(vec![0; 65])),
            Err(EvidenceError::DigestTooLong { .. })
        ));
    }
}
