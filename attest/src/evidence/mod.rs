//! TEE evidence: one [`Attester`] trait, chosen at run time, never a silent fallback.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §3 (evidence per TEE) and §2.2 (where the
//! binding digest goes). Unlike guest-components' `detect_tee_type()` (style-anchors §6 item
//! 7), detection that finds nothing is an error: `sample` evidence is produced only when the
//! caller names it, and every use logs a warning. All platform paths live in [`Platform`], so
//! tests point them at fake trees.
//!
//! | TEE | how | module |
//! |---|---|---|
//! | `tdx` | configfs-tsm quote + CCEL event log | [`tdx`] |
//! | `snp` | configfs-tsm report + `auxblob`, else `/dev/sev-guest` ioctl | [`snp`] |
//! | `sample` | fake evidence, explicit opt-in only | [`sample`] |
//! | `az-snp-vtpm`, `az-tdx-vtpm` | refused: needs the Azure vTPM/HCL stack | – |

#![warn(clippy::indexing_slicing)]

mod bytes;
pub mod sample;
#[cfg(feature = "snp")]
pub mod snp;
#[cfg(feature = "snp")]
mod sys;
#[cfg(feature = "tdx")]
pub mod tdx;
pub mod tsm;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

pub use kbs_types::Tee;

use crate::binding::ReportData;

/// Evidence for one attestation: the `primary_evidence` JSON and a short summary for humans.
#[derive(Debug, Clone)]
pub struct Evidence {
    /// The TEE-specific JSON sent as `tee-evidence.primary_evidence`.
    pub json: serde_json::Value,
    /// A few public facts about the evidence (sizes, versions) for `ccmount attest`.
    pub summary: serde_json::Value,
}

/// A source of TEE evidence.
pub trait Attester: Send + Sync + fmt::Debug {
    /// The TEE type sent in `/auth`.
    fn tee(&self) -> Tee;

    /// Produces evidence binding `report_data` (the digest, unpadded; the attester pads it to
    /// its TEE's field).
    ///
    /// # Errors
    /// An [`EvidenceError`] naming the file or device that failed.
    fn evidence(&self, report_data: &ReportData) -> Result<Evidence, EvidenceError>;
}

/// Why evidence could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EvidenceError {
    /// Auto-detection found no TEE.
    #[error(
        "no TEE found (looked for TDX and SEV-SNP guest devices){hint}; run inside a TDX or SNP guest"
    )]
    NoTee {
        /// Extra advice (e.g. an Azure CVM was recognised).
        hint: &'static str,
    },
    /// The named TEE is not present on this machine.
    #[error(
        "TEE {tee} requested, but this machine is not a {tee} guest (none of {looked_at} exists)"
    )]
    NotPresent {
        /// The TEE asked for.
        tee: &'static str,
        /// The paths that were checked.
        looked_at: String,
    },
    /// A TEE type ccmount refuses, with the reason.
    #[error("TEE {tee} is not supported: {reason}")]
    Unsupported {
        /// The TEE asked for.
        tee: String,
        /// Why.
        reason: &'static str,
    },
    /// configfs-tsm is not there.
    #[error(
        "configfs-tsm is not available at {}: needs Linux 6.7 or newer with configfs mounted (mount -t configfs none /sys/kernel/config)",
        path.display()
    )]
    TsmUnavailable {
        /// The report directory root.
        path: PathBuf,
    },
    /// The configfs-tsm provider is not the expected one.
    #[error("configfs-tsm provider at {} is {found:?}, expected {expected:?}", path.display())]
    ProviderMismatch {
        /// The report directory.
        path: PathBuf,
        /// What we need.
        expected: &'static str,
        /// What the kernel says (sanitized).
        found: String,
    },
    /// Someone else wrote to our report directory between our write and our read.
    #[error(
        "configfs-tsm report at {} changed under us (generation {found}, expected {expected}): another process wrote to it; retry",
        path.display()
    )]
    GenerationRace {
        /// The report directory.
        path: PathBuf,
        /// The generation we expected.
        expected: u64,
        /// The generation we read.
        found: u64,
    },
    /// A file or device operation failed.
    #[error("{op} {}", path.display())]
    Io {
        /// What we were doing.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel or firmware returned something we cannot use.
    #[error("{what} from {} is malformed: {reason}", path.display())]
    Malformed {
        /// What it is (quote, report, certificate table, …).
        what: &'static str,
        /// Where it came from.
        path: PathBuf,
        /// What is wrong.
        reason: &'static str,
    },
    /// The SEV firmware refused the request.
    #[error(
        "SEV-SNP guest request on {} failed: firmware error {fw_error:#x}, VMM error {vmm_error:#x}",
        path.display()
    )]
    Firmware {
        /// The device.
        path: PathBuf,
        /// Firmware error code.
        fw_error: u32,
        /// Hypervisor error code.
        vmm_error: u32,
    },
    /// The binding digest does not fit the TEE's report-data field.
    #[error("the binding digest does not fit the {tee} report-data field")]
    DigestTooLong {
        /// The TEE.
        tee: &'static str,
    },
}

impl EvidenceError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}

/// What the user asked for with `--tee`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum TeeChoice {
    /// Detect TDX or SNP; fail if neither (never `sample`).
    #[default]
    Auto,
    /// Intel TDX.
    Tdx,
    /// AMD SEV-SNP.
    Snp,
    /// Fake evidence for test KBSes. Insecure.
    Sample,
    /// Azure SNP CVM with vTPM (refused).
    AzSnpVtpm,
    /// Azure TDX CVM with vTPM (refused).
    AzTdxVtpm,
}

impl FromStr for TeeChoice {
    type Err = EvidenceError;
    fn from_str(s: &str) -> Result<Self, EvidenceError> {
        Ok(match s {
            "auto" => Self::Auto,
            "tdx" => Self::Tdx,
            "snp" => Self::Snp,
            "sample" => Self::Sample,
            "az-snp-vtpm" => Self::AzSnpVtpm,
            "az-tdx-vtpm" => Self::AzTdxVtpm,
            other => {
                return Err(EvidenceError::Unsupported {
                    tee: other
                        .chars()
                        .filter(char::is_ascii_graphic)
                        .take(32)
                        .collect(),
                    reason: "use one of auto, tdx, snp, sample (tests only), az-snp-vtpm, az-tdx-vtpm",
                });
            }
        })
    }
}

/// Reason shown for the Azure vTPM TEEs.
const AZURE_REFUSAL: &str = "Azure vTPM attestation needs the paravisor's HCL report from TPM NV index 0x01400001 and a TPM2 quote, which ccmount does not implement; use a TDX or SNP guest without a paravisor";

/// Where the platform interfaces live. [`Platform::default`] is the real machine; tests use
/// [`Platform::under`] with a fake tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// configfs-tsm report root (`/sys/kernel/config/tsm/report`).
    pub tsm_report: PathBuf,
    /// TDX guest device (`/dev/tdx_guest`).
    pub tdx_guest_dev: PathBuf,
    /// TDX guest sysfs node (`/sys/devices/virtual/misc/tdx_guest`).
    pub tdx_guest_sysfs: PathBuf,
    /// SEV guest device (`/dev/sev-guest`).
    pub sev_guest_dev: PathBuf,
    /// SEV guest platform device (`/sys/devices/platform/sev-guest`).
    pub sev_guest_sysfs: PathBuf,
    /// ACPI CCEL event log data (`/sys/firmware/acpi/tables/data/CCEL`).
    pub ccel: PathBuf,
    /// DMI system vendor (to recognise Azure).
    pub dmi_sys_vendor: PathBuf,
    /// TPM resource manager device (Azure vTPM hint).
    pub tpm_dev: PathBuf,
}

impl Default for Platform {
    fn default() -> Self {
        Self::under(Path::new("/"))
    }
}

impl Platform {
    /// All paths under `root` (a fake tree in tests; `/` on a real machine).
    #[must_use]
    pub fn under(root: &Path) -> Self {
        Self {
            tsm_report: root.join("sys/kernel/config/tsm/report"),
            tdx_guest_dev: root.join("dev/tdx_guest"),
            tdx_guest_sysfs: root.join("sys/devices/virtual/misc/tdx_guest"),
            sev_guest_dev: root.join("dev/sev-guest"),
            sev_guest_sysfs: root.join("sys/devices/platform/sev-guest"),
            ccel: root.join("sys/firmware/acpi/tables/data/CCEL"),
            dmi_sys_vendor: root.join("sys/class/dmi/id/sys_vendor"),
            tpm_dev: root.join("dev/tpmrm0"),
        }
    }

    fn is_tdx(&self) -> bool {
        self.tdx_guest_dev.exists() || self.tdx_guest_sysfs.exists()
    }

    fn is_snp(&self) -> bool {
        self.sev_guest_dev.exists() || self.sev_guest_sysfs.exists()
    }

    fn looks_like_azure_cvm(&self) -> bool {
        std::fs::read_to_string(&self.dmi_sys_vendor)
            .is_ok_and(|v| v.contains("Microsoft Corporation"))
            && self.tpm_dev.exists()
    }
}

/// Builds the attester for `choice` on `platform`.
///
/// # Errors
/// [`EvidenceError::NoTee`], [`EvidenceError::NotPresent`] or [`EvidenceError::Unsupported`].
pub fn attester(
    choice: TeeChoice,
    platform: &Platform,
) -> Result<Box<dyn Attester>, EvidenceError> {
    let looked = |a: &Path, b: &Path| format!("{}, {}", a.display(), b.display());
    match choice {
        TeeChoice::Auto => {
            if platform.is_tdx() {
                tdx_attester(platform)
            } else if platform.is_snp() {
                snp_attester(platform)
            } else if platform.looks_like_azure_cvm() {
                Err(EvidenceError::NoTee {
                    hint: " (this looks like an Azure confidential VM with a paravisor vTPM, which ccmount does not support)",
                })
            } else {
                Err(EvidenceError::NoTee { hint: "" })
            }
        }
        TeeChoice::Tdx if platform.is_tdx() => tdx_attester(platform),
        TeeChoice::Tdx => Err(EvidenceError::NotPresent {
            tee: "tdx",
            looked_at: looked(&platform.tdx_guest_dev, &platform.tdx_guest_sysfs),
        }),
        TeeChoice::Snp if platform.is_snp() => snp_attester(platform),
        TeeChoice::Snp => Err(EvidenceError::NotPresent {
            tee: "snp",
            looked_at: looked(&platform.sev_guest_dev, &platform.sev_guest_sysfs),
        }),
        TeeChoice::Sample => Ok(Box::new(sample::SampleAttester::new())),
        TeeChoice::AzSnpVtpm => Err(EvidenceError::Unsupported {
            tee: "az-snp-vtpm".into(),
            reason: AZURE_REFUSAL,
        }),
        TeeChoice::AzTdxVtpm => Err(EvidenceError::Unsupported {
            tee: "az-tdx-vtpm".into(),
            reason: AZURE_REFUSAL,
        }),
    }
}

#[cfg(feature = "tdx")]
fn tdx_attester(platform: &Platform) -> Result<Box<dyn Attester>, EvidenceError> {
    Ok(Box::new(tdx::TdxAttester::new(platform)))
}

#[cfg(not(feature = "tdx"))]
fn tdx_attester(_: &Platform) -> Result<Box<dyn Attester>, EvidenceError> {
    Err(EvidenceError::Unsupported {
        tee: "tdx".into(),
        reason: "this build has no TDX support (cargo feature `tdx` of attest)",
    })
}

#[cfg(feature = "snp")]
fn snp_attester(platform: &Platform) -> Result<Box<dyn Attester>, EvidenceError> {
    Ok(Box::new(snp::SnpAttester::new(platform)))
}

#[cfg(not(feature = "snp"))]
fn snp_attester(_: &Platform) -> Result<Box<dyn Attester>, EvidenceError> {
    Err(EvidenceError::Unsupported {
        tee: "snp".into(),
        reason: "this build has no SEV-SNP support (cargo feature `snp` of attest)",
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn auto_never_falls_back_to_sample() {
        let dir = tempfile::tempdir().unwrap();
        let p = Platform::under(dir.path());
        let e = attester(TeeChoice::Auto, &p).unwrap_err();
        assert!(matches!(e, EvidenceError::NoTee { hint: "" }), "{e}");
        assert!(e.to_string().contains("run inside a TDX or SNP guest"));
    }

    #[cfg(all(feature = "tdx", feature = "snp"))]
    #[test]
    fn auto_detects_tdx_and_snp() {
        let dir = tempfile::tempdir().unwrap();
        let p = Platform::under(dir.path());
        std::fs::create_dir_all(&p.sev_guest_sysfs).unwrap();
        assert_eq!(attester(TeeChoice::Auto, &p).unwrap().tee(), Tee::Snp);
        std::fs::create_dir_all(p.tdx_guest_dev.parent().unwrap()).unwrap();
        std::fs::write(&p.tdx_guest_dev, b"").unwrap();
        assert_eq!(attester(TeeChoice::Auto, &p).unwrap().tee(), Tee::Tdx);
    }

    #[test]
    fn azure_is_recognised_and_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = Platform::under(dir.path());
        std::fs::create_dir_all(p.dmi_sys_vendor.parent().unwrap()).unwrap();
        std::fs::write(&p.dmi_sys_vendor, "Microsoft Corporation\n").unwrap();
        std::fs::create_dir_all(p.tpm_dev.parent().unwrap()).unwrap();
        std::fs::write(&p.tpm_dev, b"").unwrap();
        let e = attester(TeeChoice::Auto, &p).unwrap_err();
        assert!(e.to_string().contains("Azure"), "{e}");
        let e = attester(TeeChoice::AzSnpVtpm, &p).unwrap_err();
        assert!(matches!(e, EvidenceError::Unsupported { .. }));
    }

    #[test]
    fn explicit_choice_must_be_present() {
        let dir = tempfile::tempdir().unwrap();
        let p = Platform::under(dir.path());
        assert!(matches!(
            attester(TeeChoice::Tdx, &p),
            Err(EvidenceError::NotPresent { tee: "tdx", .. })
        ));
        assert!(matches!(
            attester(TeeChoice::Snp, &p),
            Err(EvidenceError::NotPresent { tee: "snp", .. })
        ));
        assert_eq!(attester(TeeChoice::Sample, &p).unwrap().tee(), Tee::Sample);
        assert!("sgx".parse::<TeeChoice>().is_err());
        assert_eq!("sample".parse::<TeeChoice>().unwrap(), TeeChoice::Sample);
    }
}
