//! AMD SEV-SNP evidence: an attestation report plus the host's certificate table.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §3.3: evidence JSON
//! `{"attestation_report": <sev crate serde of the report>, "cert_chain": [{"cert_type","data"}] | null}`
//! with the binding digest zero-padded to the 64-byte `REPORT_DATA`, VMPL 0. The report and
//! certificate types are the `sev` crate's (6.3.1, the version guest-components sends and
//! Trustee's verifier reads), so the JSON shape is theirs, not ours. Source: configfs-tsm
//! (provider `sev_guest`, certificates from `auxblob`) when the kernel has it, else the
//! `SNP_GET_EXT_REPORT` ioctl on `/dev/sev-guest` (`sys.rs`).
//!
//! The certificate table layout (GHCB spec §4.1.8.1) is: entries of a 16-byte GUID (RFC 4122
//! byte order, as the sev crate reads it), a little-endian u32 offset and u32 length from the
//! start of the table, ended by an all-zero entry.

#![warn(clippy::indexing_slicing)]

use std::path::Path;

use sev::firmware::guest::AttestationReport;
use sev::firmware::host::{CertTableEntry, CertType};

use super::bytes::le_u32;
use super::tsm::{self, RealFs, TsmFs};
use super::{Attester, Evidence, EvidenceError, Platform, Tee};
use crate::binding::ReportData;

/// Offset of `REPORT_DATA` in the report (SEV-SNP ABI, Table "ATTESTATION_REPORT").
const REPORT_DATA_OFFSET: usize = 0x50;

/// Produces SNP evidence.
#[derive(Debug)]
pub struct SnpAttester {
    fs: Box<dyn TsmFs>,
    platform: Platform,
}

impl SnpAttester {
    /// An SNP attester for `platform` using the real configfs / device.
    #[must_use]
    pub fn new(platform: &Platform) -> Self {
        Self::with_fs(platform, Box::new(RealFs))
    }

    /// An SNP attester with another configfs implementation (tests).
    #[must_use]
    pub fn with_fs(platform: &Platform, fs: Box<dyn TsmFs>) -> Self {
        Self {
            fs,
            platform: platform.clone(),
        }
    }
}

impl Attester for SnpAttester {
    fn tee(&self) -> Tee {
        Tee::Snp
    }

    fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError> {
        let data = report_data
            .padded::<64>()
            .ok_or(EvidenceError::DigestTooLong { tee: "snp" })?;
        let (source, path, raw, table) = if self.platform.tsm_report.is_dir() {
            let r = tsm::request(
                self.fs.as_ref(),
                &self.platform.tsm_report,
                "sev_guest",
                &data,
                true,
            )?;
            let path = self.platform.tsm_report.join("<report>/outblob");
            ("configfs-tsm", path, r.outblob, r.auxblob)
        } else {
            let dev = &self.platform.sev_guest_dev;
            let (report, certs) = super::sys::snp_extended_report(dev, &data)?;
            ("/dev/sev-guest", dev.clone(), report, certs)
        };
        let report = AttestationReport::from_bytes(&raw).map_err(|_| EvidenceError::Malformed {
            what: "SNP attestation report",
            path: path.clone(),
            reason: "not a 1184-byte report the sev crate understands",
        })?;
        if raw.get(REPORT_DATA_OFFSET..REPORT_DATA_OFFSET + 64) != Some(data.as_slice()) {
            return Err(EvidenceError::Malformed {
                what: "SNP attestation report",
                path,
                reason: "REPORT_DATA differs from what we asked for",
            });
        }
        let certs = match table {
            Some(t) => Some(parse_cert_table(&t, &path)?),
            None => None,
        };
        let cert_names: Vec<String> = certs
            .iter()
            .flatten()
            .map(|c| format!("{:?}", c.cert_type))
            .collect();
        let json = serde_json::json!({
            "attestation_report": serde_json::to_value(report).map_err(|_| EvidenceError::Malformed {
                what: "SNP attestation report",
                path: path.clone(),
                reason: "cannot serialize",
            })?,
            "cert_chain": match &certs {
                Some(c) => serde_json::to_value(c).map_err(|_| EvidenceError::Malformed {
                    what: "SNP certificate table",
                    path: path.clone(),
                    reason: "cannot serialize",
                })?,
                None => serde_json::Value::Null,
            },
        });
        Ok(Evidence {
            json,
            summary: serde_json::json!({
                "kind": format!("snp report via {source}"),
                "report_version": report.version,
                "vmpl": report.vmpl,
                "certificates": cert_names,
            }),
        })
    }
}

/// Parses a GHCB certificate table. Unknown GUIDs are skipped (the verifier only uses the
/// AMD ones).
fn parse_cert_table(table: &[u8], path: &Path) -> Result<Vec<CertTableEntry>, EvidenceError> {
    let bad = |reason| EvidenceError::Malformed {
        what: "SNP certificate table",
        path: path.to_owned(),
        reason,
    };
    let mut out = Vec::new();
    for i in 0..64 {
        let at = i * 24;
        let entry = table.get(at..at + 24).ok_or(bad("no terminating entry"))?;
        let (guid, rest) = entry.split_at(16);
        if entry.iter().all(|&b| b == 0) {
            return Ok(out);
        }
        let (Some(offset), Some(length)) = (le_u32(rest, 0), le_u32(rest, 4)) else {
            return Err(bad("truncated entry"));
        };
        let start = usize::try_from(offset).map_err(|_| bad("offset out of range"))?;
        let len = usize::try_from(length).map_err(|_| bad("length out of range"))?;
        let data = start
            .checked_add(len)
            .and_then(|end| table.get(start..end))
            .ok_or(bad("certificate outside the table"))?;
        let cert_type = match hex::encode(guid).as_str() {
            "63da758de6644564adc5f4b93be8accd" => CertType::VCEK,
            "a8074bc2a25a483eaae639c045a0b8a1" => CertType::VLEK,
            "4ab7b379bbac4fe4a02f05aef327c782" => CertType::ASK,
            "c0b406a4a803495297433fb6014cd0ae" => CertType::ARK,
            "92f81bc358114d3d97ffd19f88dc67ea" => CertType::CRL,
            _ => {
                tracing::debug!(guid = %hex::encode(guid), "skipping unknown SNP certificate");
                continue;
            }
        };
        out.push(CertTableEntry::new(cert_type, data.to_vec()));
    }
    Err(bad("more than 64 entries"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::super::tsm::fake::{FakeKernel, FakeTsm};
    use super::*;

    /// A version-2 report the sev crate parses: non-zero, non-Turin chip id; report data
    /// copied from the inblob.
    fn fake_report(inblob: &[u8]) -> Vec<u8> {
        let mut r = vec![0u8; 1184];
        r[0..4].copy_from_slice(&2u32.to_le_bytes());
        r[REPORT_DATA_OFFSET..REPORT_DATA_OFFSET + 64].copy_from_slice(&inblob[..64]);
        r[0x1A0..0x1E0].fill(0x11);
        r
    }

    fn table(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let header = 24 * (entries.len() + 1);
        let mut t = Vec::new();
        let mut data = Vec::new();
        for (guid, cert) in entries {
            t.extend(hex::decode(guid).unwrap());
            t.extend(u32::try_from(header + data.len()).unwrap().to_le_bytes());
            t.extend(u32::try_from(cert.len()).unwrap().to_le_bytes());
            data.extend_from_slice(cert);
        }
        t.extend([0u8; 24]);
        t.extend(data);
        t
    }

    const VCEK: &str = "63da758de6644564adc5f4b93be8accd";
    const ASK: &str = "4ab7b379bbac4fe4a02f05aef327c782";

    #[test]
    fn report_and_certs_via_configfs() {
        let d = tempfile::tempdir().unwrap();
        let p = Platform::under(d.path());
        std::fs::create_dir_all(&p.tsm_report).unwrap();
        let a = SnpAttester::with_fs(
            &p,
            Box::new(FakeTsm {
                kernel: FakeKernel {
                    provider: "sev_guest",
                    outblob: Some(fake_report),
                    auxblob: Some(table(&[(VCEK, b"vcek-der"), (ASK, b"ask")])),
                    ..FakeKernel::default()
                },
                ..FakeTsm::default()
            }),
        );
        let e = a
            .evidence(&ReportData::from_digest(vec![0x77; 48]))
            .unwrap();
        let rd: Vec<u64> = e.json["attestation_report"]["report_data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect();
        let mut want = vec![0x77u64; 48];
        want.extend([0u64; 16]);
        assert_eq!(
            rd, want,
            "byte arrays as JSON number arrays, zero padded to 64"
        );
        assert_eq!(e.json["attestation_report"]["version"], 2);
        assert_eq!(e.json["cert_chain"][0]["cert_type"], "VCEK");
        assert_eq!(
            e.json["cert_chain"][0]["data"],
            serde_json::json!(b"vcek-der".to_vec())
        );
        assert_eq!(e.json["cert_chain"][1]["cert_type"], "ASK");
        assert_eq!(
            e.summary["certificates"],
            serde_json::json!(["VCEK", "ASK"])
        );
    }

    #[test]
    fn provider_race_and_report_data_checks() {
        let d = tempfile::tempdir().unwrap();
        let p = Platform::under(d.path());
        std::fs::create_dir_all(&p.tsm_report).unwrap();
        let rd = ReportData::from_digest(vec![1; 48]);
        let mk = |kernel| {
            SnpAttester::with_fs(
                &p,
                Box::new(FakeTsm {
                    kernel,
                    ..FakeTsm::default()
                }),
            )
        };
        let e = mk(FakeKernel {
            provider: "tdx_guest",
            ..FakeKernel::default()
        })
        .evidence(&rd);
        assert!(matches!(e, Err(EvidenceError::ProviderMismatch { .. })));
        let e = mk(FakeKernel {
            provider: "sev_guest",
            race: true,
            outblob: Some(fake_report),
            ..FakeKernel::default()
        })
        .evidence(&rd);
        assert!(matches!(e, Err(EvidenceError::GenerationRace { .. })));
        let e = mk(FakeKernel {
            provider: "sev_guest",
            outblob: Some(|_| fake_report(&[9u8; 64])),
            ..FakeKernel::default()
        })
        .evidence(&rd);
        assert!(
            matches!(e, Err(EvidenceError::Malformed { reason, .. }) if reason.contains("REPORT_DATA"))
        );
    }

    #[test]
    fn cert_table_rejects_garbage() {
        let p = Path::new("x");
        assert!(parse_cert_table(&[], p).is_err());
        assert!(parse_cert_table(&[1u8; 23], p).is_err());
        let mut t = table(&[(VCEK, b"abc")]);
        t[16..20].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(parse_cert_table(&t, p).is_err());
        assert!(parse_cert_table(&table(&[]), p).unwrap().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn cert_table_never_panics(t in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = parse_cert_table(&t, Path::new("x"));
        }
    }
}
