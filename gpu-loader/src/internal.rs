//! Entry points for fuzzing the GPU loader's parser of untrusted bytes (the safetensors
//! header), asserting a property, never just "no panic". The `fuzz/` crate wraps it in a
//! cargo-fuzz target; the e2e tests replay its corpus on stable.
//!
//! Not a stable API (rustls `internal::fuzzing` pattern).

/// The fuzz bodies. Every function panics only when its property is violated.
pub mod fuzzing {
    #![allow(clippy::panic, reason = "a violated property is the fuzzing signal")]

    /// safetensors header (the whole file, or a prefix of it taken as the whole file):
    /// anything accepted is internally consistent: tensors sorted, tiling the data section
    /// exactly, each tensor's byte length equal to dtype bits × elements / 8, and the
    /// header re-parses identically.
    pub fn safetensors_header(data: &[u8]) {
        let size = data.len() as u64;
        let Ok(h) = crate::safetensors::parse(data, size) else {
            return;
        };
        assert_eq!(h.data_start, 8 + h.json_len);
        let mut pos = h.data_start;
        for t in &h.tensors {
            assert_eq!(t.range.start, pos, "tensors must tile the data section");
            assert!(t.range.end >= t.range.start);
            let elems: u128 = t.shape.iter().map(|&d| u128::from(d)).product();
            assert_eq!(
                elems * u128::from(t.dtype.bits()),
                u128::from(t.range.end - t.range.start) * 8,
                "tensor size matches dtype and shape"
            );
            pos = t.range.end;
        }
        assert_eq!(pos, size, "no trailing bytes");
        let json_end = usize::try_from(h.data_start).unwrap_or(usize::MAX);
        let again = crate::safetensors::parse_json(data.get(8..json_end).unwrap_or_default(), size)
            .unwrap_or_else(|e| panic!("re-parse failed: {e}"));
        assert_eq!(again, h);
    }
}
