//! Entry points for fuzzing: one function per parser of untrusted bytes, each asserting a
//! property (round trip, or "error or valid"), never just "no panic". A later `fuzz/` crate
//! wraps each in a cargo-fuzz target; tests replay seeds through them on stable.
//!
//! Not a stable API (rustls `internal::fuzzing` pattern).

/// The fuzz bodies. Every function panics only when its property is violated.
pub mod fuzzing {
    #![allow(clippy::panic, reason = "a violated property is the fuzzing signal")]

    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    use crate::configfile::{Config, NameLayout};
    use crate::contentenc::{ContentEnc, FileHeader, FileId};
    use crate::cryptocore::{Backend, ContentAlgo, ContentCipher, MasterKey};
    use crate::nametransform::{DirIv, NameTransform, b64_decode, b64_encode};

    fn names(raw64: bool) -> NameTransform {
        let key = MasterKey::from_bytes(&[0x42; 32]).unwrap_or_else(|_| panic!("invariant"));
        NameTransform::new(
            NameLayout::Encrypted {
                dir_iv: true,
                raw64,
                long_name_max: 255,
            },
            &key,
            true,
        )
    }

    /// `gocryptfs.conf`: parse; if accepted, serialising and parsing again gives the same
    /// config, and the layout's flags validate.
    pub fn config(data: &[u8]) {
        if let Ok(c) = Config::parse(data) {
            let again = Config::parse(c.to_json().as_bytes())
                .unwrap_or_else(|e| panic!("re-parse of our own output failed: {e}"));
            assert_eq!(again, c, "config round trip");
            assert!(c.layout().flags().validate().is_ok());
        }
    }

    /// File header: parse; if accepted, `to_bytes` gives back the first 18 bytes, and the
    /// header is neither all zero nor with a zero file ID.
    pub fn header(data: &[u8]) {
        if let Ok(h) = FileHeader::parse(data) {
            assert_eq!(&h.to_bytes()[..], &data[..18], "header round trip");
            assert_ne!(h.id.0, [0u8; 16]);
        }
    }

    /// One content block (GCM, both backends; XChaCha; SIV): open never panics, backends
    /// agree, and an accepted block re-seals to the same bytes with the same nonce.
    pub fn block_open(data: &[u8]) {
        let id = FileId([7; 16]);
        let block_no = data.first().map_or(0, |b| u64::from(*b));
        let mut results = Vec::new();
        for (algo, backend) in [
            (ContentAlgo::AesGcm, Backend::AwsLc),
            (ContentAlgo::AesGcm, Backend::RustCrypto),
            (ContentAlgo::XChaCha20Poly1305, Backend::RustCrypto),
            (ContentAlgo::AesSiv, Backend::RustCrypto),
        ] {
            let key = [0x24u8; 64];
            let klen = if algo == ContentAlgo::AesSiv { 64 } else { 32 };
            let Ok(c) = ContentCipher::new(algo, backend, &key[..klen]) else {
                continue;
            };
            let enc = ContentEnc::new(c);
            let mut out = vec![0u8; 4096];
            let r = enc.decrypt_block(data, block_no, &id, &mut out);
            if algo == ContentAlgo::AesGcm {
                results.push(r.map(|n| out[..n].to_vec()));
            }
            if let Ok(n) = r {
                let nl = algo.nonce_len();
                let is_hole = data.iter().all(|&b| b == 0);
                if !is_hole {
                    let mut back = vec![0u8; data.len()];
                    let m = enc
                        .encrypt_block_with_nonce(&out[..n], block_no, &id, &data[..nl], &mut back)
                        .unwrap_or_else(|_| panic!("re-seal failed"));
                    assert_eq!(&back[..m], data, "block round trip");
                }
            }
        }
        if let [a, b] = &results[..] {
            assert_eq!(a.is_ok(), b.is_ok(), "GCM backends disagree");
            if let (Ok(x), Ok(y)) = (a, b) {
                assert_eq!(x, y, "GCM backends disagree on plaintext");
            }
        }
    }

    /// Encrypted name: decrypting either base64 variant gives a valid name or an error;
    /// an accepted name re-encrypts to exactly the input (canonical encoding).
    pub fn encrypted_name(data: &[u8]) {
        let iv = DirIv([9; 16]);
        for raw64 in [true, false] {
            let nt = names(raw64);
            if let Ok(plain) = nt.decrypt_name(data, &iv) {
                crate::nametransform::validate_plain_name(&plain)
                    .unwrap_or_else(|e| panic!("accepted an invalid name: {e}"));
                let again = nt
                    .encrypt_name(&plain, &iv)
                    .unwrap_or_else(|e| panic!("re-encrypt failed: {e}"));
                assert_eq!(again.as_bytes(), data, "name round trip");
            }
        }
    }

    /// Long-name file: `data` = entry name ‖ 0x00 ‖ `.name` content. Accepted pairs hash
    /// consistently.
    pub fn long_name_file(data: &[u8]) {
        let (entry, stored) = match data.iter().position(|&b| b == 0) {
            Some(i) => (&data[..i], &data[i + 1..]),
            None => (data, &[][..]),
        };
        for raw64 in [true, false] {
            let nt = names(raw64);
            if nt.check_long_name(OsStr::from_bytes(entry), stored).is_ok() {
                let s = std::str::from_utf8(stored).unwrap_or_else(|_| panic!("non-ASCII hashed"));
                assert_eq!(nt.hash_long_name(s).as_bytes(), entry);
            }
        }
    }

    /// `gocryptfs.diriv`: accepted iff exactly 16 bytes and not all zero.
    pub fn diriv(data: &[u8]) {
        let ok = DirIv::parse(data).is_ok();
        assert_eq!(ok, data.len() == 16 && data.iter().any(|&b| b != 0));
    }

    /// Strict base64: anything accepted re-encodes to the input.
    pub fn base64(data: &[u8]) {
        for raw64 in [true, false] {
            if let Ok(b) = b64_decode(data, raw64) {
                assert_eq!(b64_encode(&b, raw64).as_bytes(), data);
            }
        }
    }

    /// Manifest (and pin) parser: hostile bytes never panic; an accepted manifest is
    /// canonical (its canonical bytes are the input), its entries strictly sorted, and its
    /// digest is the SHA-256 of the input; an accepted pin of either form agrees.
    pub fn manifest(data: &[u8]) {
        use crate::manifest::{Expected, Manifest, ModelDigest};
        if let Ok(m) = Manifest::parse(data) {
            assert_eq!(m.to_canonical(), data, "accepted a non-canonical manifest");
            assert!(
                m.entries
                    .windows(2)
                    .all(|w| w[0].path.as_os_str().as_bytes() < w[1].path.as_os_str().as_bytes()),
                "entries not strictly sorted"
            );
            assert_eq!(m.digest(), ModelDigest::of(data));
            let again = Manifest::parse(&m.to_canonical())
                .unwrap_or_else(|e| panic!("re-parse of canonical bytes failed: {e}"));
            assert_eq!(again, m);
        }
        if let Ok(p) = Expected::parse(data) {
            match &p {
                Expected::Manifest(m) => assert_eq!(m.to_canonical(), data),
                Expected::Digest(d) => {
                    let text =
                        std::str::from_utf8(data).unwrap_or_else(|_| panic!("non-UTF-8 digest"));
                    assert_eq!(d.to_string(), text.trim().to_ascii_lowercase());
                }
            }
        }
    }
}
