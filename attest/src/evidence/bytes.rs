//! Bounds-checked little-endian field reads shared by the TDX quote, the SNP report and the
//! SNP ioctl reply parsers (so that SNP builds without TDX and the other way round).

/// The `u16` at byte `at`, or `None` if `b` is too short.
#[cfg_attr(
    not(feature = "tdx"),
    allow(dead_code, reason = "the TDX quote reads it")
)]
pub(crate) fn le_u16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(
        b.get(at..at.checked_add(2)?)?.try_into().ok()?,
    ))
}

/// The `u32` at byte `at`, or `None` if `b` is too short.
#[cfg_attr(
    not(any(feature = "tdx", feature = "snp")),
    allow(dead_code, reason = "the TDX and SNP parsers read it")
)]
pub(crate) fn le_u32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(
        b.get(at..at.checked_add(4)?)?.try_into().ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_in_bounds_only() {
        let b = [1u8, 2, 3, 4, 5];
        assert_eq!(le_u16(&b, 0), Some(0x0201));
        assert_eq!(le_u32(&b, 1), Some(0x0504_0302));
        assert_eq!(le_u32(&b, 2), None);
        assert_eq!(le_u16(&b, usize::MAX), None);
    }
}
