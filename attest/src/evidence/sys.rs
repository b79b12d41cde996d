//! The one module with `unsafe`: the `SNP_GET_EXT_REPORT` ioctl on `/dev/sev-guest`.
//!
//! Mirrors Linux `include/uapi/linux/sev-guest.h` (as summarised in
//! `../shared/specs/kbs-protocol.md` §3.3 and `crate-stack.md` §5): `struct
//! snp_guest_request_ioctl { u8 msg_version; u64 req_data; u64 resp_data; u64 exitinfo2 }`,
//! `struct snp_ext_report_req { struct snp_report_req { u8 user_data[64]; u32 vmpl; u8
//! rsvd[28] } data; u64 certs_address; u32 certs_len }`, response `struct snp_report_resp {
//! u8 data[4000] }` holding `MSG_REPORT_RSP` (u32 status, u32 report_size, 24 reserved bytes,
//! the report). `SNP_GET_EXT_REPORT = _IOWR('S', 0x2, struct snp_guest_request_ioctl)`. The
//! certificate buffer must be page-aligned and a whole number of pages; when it is too small
//! the host answers VMM error 1 (INVALID_LEN) and writes the needed length back into
//! `certs_len`, and we retry once. Used only when configfs-tsm is absent. Untested here: it
//! needs SNP hardware.

#![allow(unsafe_code)]
#![warn(clippy::indexing_slicing)]

use std::os::fd::AsRawFd as _;
use std::path::Path;

use super::EvidenceError;

const PAGE: usize = 4096;
const VMM_ERR_INVALID_LEN: u32 = 1;

#[repr(C)]
struct SnpGuestRequestIoctl {
    msg_version: u8,
    req_data: u64,
    resp_data: u64,
    exitinfo2: u64,
}

#[repr(C)]
struct SnpReportReq {
    user_data: [u8; 64],
    vmpl: u32,
    rsvd: [u8; 28],
}

#[repr(C)]
struct SnpExtReportReq {
    data: SnpReportReq,
    certs_address: u64,
    certs_len: u32,
}

#[repr(C)]
struct SnpReportResp {
    data: [u8; 4000],
}

nix::ioctl_readwrite!(snp_get_ext_report, b'S', 0x2, SnpGuestRequestIoctl);

/// A zeroed, page-aligned buffer of `pages` pages inside a larger allocation.
struct AlignedPages {
    buf: Vec<u8>,
    offset: usize,
    len: usize,
}

impl AlignedPages {
    fn new(pages: usize) -> Self {
        let len = pages * PAGE;
        let buf = vec![0u8; len + PAGE];
        let offset = buf.as_ptr().align_offset(PAGE).min(PAGE);
        Self { buf, offset, len }
    }
    fn as_mut_ptr(&mut self) -> *mut u8 {
        self.buf
            .get_mut(self.offset..)
            .map_or(std::ptr::null_mut(), <[u8]>::as_mut_ptr)
    }
    fn bytes(&self) -> &[u8] {
        self.buf
            .get(self.offset..self.offset + self.len)
            .unwrap_or_default()
    }
}

/// Asks the SEV firmware for a VMPL-0 report over `report_data`, with the host's
/// certificate table. Returns `(report, certificate table or None)`.
pub(crate) fn snp_extended_report(
    dev: &Path,
    report_data: &[u8; 64],
) -> Result<(Vec<u8>, Option<Vec<u8>>), EvidenceError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .map_err(|e| EvidenceError::io("open", dev, e))?;
    let mut pages = 4;
    for _attempt in 0..2 {
        let mut certs = AlignedPages::new(pages);
        let mut req = SnpExtReportReq {
            data: SnpReportReq {
                user_data: *report_data,
                vmpl: 0,
                rsvd: [0; 28],
            },
            certs_address: certs.as_mut_ptr() as u64,
            certs_len: u32::try_from(certs.len).unwrap_or(u32::MAX),
        };
        let mut resp = Box::new(SnpReportResp { data: [0; 4000] });
        let mut io = SnpGuestRequestIoctl {
            msg_version: 1,
            req_data: std::ptr::from_mut(&mut req) as u64,
            resp_data: std::ptr::from_mut(resp.as_mut()) as u64,
            exitinfo2: 0,
        };
        // SAFETY: `io` points at live, properly laid out (#[repr(C)]) request and response
        // structs and a certificate buffer of `certs_len` writable, page-aligned bytes, all of
        // which outlive the call; the kernel writes only within those sizes.
        let rc = unsafe { snp_get_ext_report(file.as_raw_fd(), &mut io) };
        let fw_error = (io.exitinfo2 & 0xffff_ffff) as u32;
        let vmm_error = (io.exitinfo2 >> 32) as u32;
        match rc {
            Ok(_) => {
                let d = &resp.data;
                let status = super::bytes::le_u32(d, 0).unwrap_or(u32::MAX);
                let size = super::bytes::le_u32(d, 4).unwrap_or(0) as usize;
                if status != 0 {
                    return Err(EvidenceError::Firmware {
                        path: dev.to_owned(),
                        fw_error: status,
                        vmm_error: 0,
                    });
                }
                let report = d.get(32..32 + size).ok_or(EvidenceError::Malformed {
                    what: "SNP report response",
                    path: dev.to_owned(),
                    reason: "report size exceeds the response",
                })?;
                let table = certs.bytes();
                let certs = if table.iter().take(24).all(|&b| b == 0) {
                    None
                } else {
                    Some(table.to_vec())
                };
                return Ok((report.to_vec(), certs));
            }
            Err(_) if vmm_error == VMM_ERR_INVALID_LEN => {
                // The host wrote the needed size back into certs_len.
                let need = req.certs_len as usize;
                pages = need.div_ceil(PAGE).clamp(1, 256);
            }
            Err(errno) => {
                if io.exitinfo2 != 0 && io.exitinfo2 != 0xff {
                    return Err(EvidenceError::Firmware {
                        path: dev.to_owned(),
                        fw_error,
                        vmm_error,
                    });
                }
                return Err(EvidenceError::io(
                    "SNP_GET_EXT_REPORT ioctl on",
                    dev,
                    std::io::Error::from(errno),
                ));
            }
        }
    }
    Err(EvidenceError::Malformed {
        what: "SNP certificate table",
        path: dev.to_owned(),
        reason: "the host kept asking for a larger certificate buffer",
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn uapi_sizes() {
        assert_eq!(size_of::<SnpGuestRequestIoctl>(), 32);
        assert_eq!(size_of::<SnpReportReq>(), 96);
        assert_eq!(size_of::<SnpExtReportReq>(), 112);
        assert_eq!(size_of::<SnpReportResp>(), 4000);
        let mut p = AlignedPages::new(2);
        assert_eq!(p.as_mut_ptr() as usize % PAGE, 0);
        assert_eq!(p.bytes().len(), 2 * PAGE);
    }

    #[test]
    fn missing_device_is_an_io_error() {
        let e = snp_extended_report(Path::new("/nonexistent/sev-guest"), &[0; 64]).unwrap_err();
        assert!(matches!(e, EvidenceError::Io { op: "open", .. }));
    }
}
