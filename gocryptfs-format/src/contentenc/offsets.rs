//! Plaintext ↔ ciphertext size and offset arithmetic, with no crypto in it.
//!
//! Mirrors gocryptfs `internal/contentenc/offsets.go`; spec §2.1 and §2.5. A file is an
//! 18-byte header followed by blocks of `4096 + overhead` bytes (overhead = nonce + 16-byte
//! tag); the last block holds 1..=4096 plaintext bytes; an empty plaintext is an empty file.
//! All functions are total: overflow gives `None`, never a panic.

#![warn(clippy::indexing_slicing, clippy::cast_possible_truncation)]

/// Length of the file header (`u16be version ‖ 16-byte file ID`).
pub const HEADER_LEN: u64 = 18;
/// Plaintext bytes per block.
pub const PLAIN_BS: u64 = 4096;
/// Length of the AEAD tag.
const TAG_LEN: u64 = 16;

/// The block geometry of one content algorithm (it depends only on the nonce length).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    overhead: u64,
}

/// What a ciphertext file size says about the file (for the no-key structural check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeCheck {
    /// 0 bytes: an empty plaintext file.
    Empty,
    /// Exactly the 18-byte header: reads as empty (left by a crash; gocryptfs tolerates it).
    HeaderOnly,
    /// 1..=17 bytes: a truncated header.
    ShortHeader,
    /// The last block is shorter than the per-block overhead: truncated.
    Truncated,
    /// A size some plaintext size maps to.
    Valid {
        /// The plaintext size.
        plain: u64,
    },
}

impl Geometry {
    /// Geometry for a nonce of `nonce_len` bytes (16 for AES-GCM/SIV, 24 for XChaCha).
    #[must_use]
    pub const fn new(nonce_len: usize) -> Self {
        Geometry {
            overhead: nonce_len as u64 + TAG_LEN,
        }
    }

    /// Nonce + tag bytes per block.
    #[must_use]
    pub const fn overhead(self) -> u64 {
        self.overhead
    }

    /// Bytes of a full ciphertext block.
    #[must_use]
    pub const fn cipher_bs(self) -> u64 {
        PLAIN_BS + self.overhead
    }

    /// Number of blocks holding `plain` bytes.
    #[must_use]
    pub const fn blocks(plain: u64) -> u64 {
        plain.div_ceil(PLAIN_BS)
    }

    /// Ciphertext size of a `plain`-byte file (`PlainSizeToCipherSize`); `None` on overflow.
    #[must_use]
    pub fn plain_to_cipher_size(self, plain: u64) -> Option<u64> {
        if plain == 0 {
            return Some(0);
        }
        Self::blocks(plain)
            .checked_mul(self.overhead)?
            .checked_add(plain)?
            .checked_add(HEADER_LEN)
    }

    /// Plaintext size `stat` reports for a `cipher`-byte file (`CipherSizeToPlainSize`),
    /// including gocryptfs' quirks: up to 18 bytes reads as empty, and a tail shorter than
    /// the overhead counts as one byte (reading it then fails).
    #[must_use]
    pub fn cipher_to_plain_size(self, cipher: u64) -> u64 {
        if cipher <= HEADER_LEN {
            return 0;
        }
        let body = cipher - HEADER_LEN;
        let full = body / self.cipher_bs();
        let rem = body % self.cipher_bs();
        let base = full.saturating_mul(PLAIN_BS);
        if rem == 0 {
            base
        } else if rem <= self.overhead {
            base.saturating_add(1)
        } else {
            base.saturating_add(rem - self.overhead)
        }
    }

    /// Classifies a ciphertext size without reading the file.
    #[must_use]
    pub fn check_cipher_size(self, cipher: u64) -> SizeCheck {
        match cipher {
            0 => SizeCheck::Empty,
            HEADER_LEN => SizeCheck::HeaderOnly,
            c if c < HEADER_LEN => SizeCheck::ShortHeader,
            c => {
                let rem = (c - HEADER_LEN) % self.cipher_bs();
                if rem != 0 && rem <= self.overhead {
                    SizeCheck::Truncated
                } else {
                    SizeCheck::Valid {
                        plain: self.cipher_to_plain_size(c),
                    }
                }
            }
        }
    }

    /// Ciphertext offset where block `block` starts; `None` on overflow.
    #[must_use]
    pub fn block_cipher_offset(self, block: u64) -> Option<u64> {
        block.checked_mul(self.cipher_bs())?.checked_add(HEADER_LEN)
    }

    /// The inclusive block range covering plaintext `[offset, offset + len)`; `None` when
    /// `len` is 0 or the range overflows.
    #[must_use]
    pub fn block_range(self, offset: u64, len: u64) -> Option<(u64, u64)> {
        if len == 0 {
            return None;
        }
        let last = offset.checked_add(len - 1)?;
        Some((offset / PLAIN_BS, last / PLAIN_BS))
    }

    /// Plaintext bytes in block `block` of a `plain`-byte file (0 past the end).
    #[must_use]
    pub fn plain_block_len(self, plain: u64, block: u64) -> u64 {
        let start = block.saturating_mul(PLAIN_BS);
        plain.saturating_sub(start).min(PLAIN_BS)
    }

    /// Plaintext bytes that `cipher_len` bytes of consecutive blocks hold; `None` if the
    /// last partial block is shorter than the overhead + 1.
    #[must_use]
    pub fn plain_len_of_blocks(self, cipher_len: u64) -> Option<u64> {
        let full = cipher_len / self.cipher_bs();
        let rem = cipher_len % self.cipher_bs();
        let base = full.checked_mul(PLAIN_BS)?;
        if rem == 0 {
            Some(base)
        } else if rem <= self.overhead {
            None
        } else {
            base.checked_add(rem - self.overhead)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GCM: Geometry = Geometry::new(16);
    const XCHACHA: Geometry = Geometry::new(24);

    /// Worked sizes from the corpus (`MANIFEST.json` `cipher_size`) and spec §2.5.
    #[test]
    fn corpus_sizes() {
        for (p, c) in [
            (0, 0),
            (1, 51),
            (4095, 4145),
            (4096, 4146),
            (4097, 4179),
            (100, 150),
            (5000, 5082),
            (12389, 12535),
            (65536, 66066),
            (1 << 20, 1_056_786),
        ] {
            assert_eq!(GCM.plain_to_cipher_size(p), Some(c), "plain {p}");
            assert_eq!(GCM.cipher_to_plain_size(c), p, "cipher {c}");
            let expect = if p == 0 {
                SizeCheck::Empty
            } else {
                SizeCheck::Valid { plain: p }
            };
            assert_eq!(GCM.check_cipher_size(c), expect);
        }
        assert_eq!(XCHACHA.plain_to_cipher_size(1), Some(59));
        assert_eq!(XCHACHA.plain_to_cipher_size(65536), Some(66194));
    }

    #[test]
    fn quirks() {
        assert_eq!(GCM.cipher_to_plain_size(18), 0);
        assert_eq!(GCM.cipher_to_plain_size(5), 0);
        assert_eq!(GCM.check_cipher_size(18), SizeCheck::HeaderOnly);
        assert_eq!(GCM.check_cipher_size(17), SizeCheck::ShortHeader);
        // 18 + 32 bytes: a block with only nonce and tag is impossible.
        assert_eq!(GCM.cipher_to_plain_size(50), 1);
        assert_eq!(GCM.check_cipher_size(50), SizeCheck::Truncated);
        assert_eq!(GCM.check_cipher_size(4146 + 10), SizeCheck::Truncated);
    }

    #[test]
    fn offsets_and_ranges() {
        assert_eq!(GCM.block_cipher_offset(0), Some(18));
        assert_eq!(GCM.block_cipher_offset(2), Some(18 + 2 * 4128));
        assert_eq!(GCM.block_range(0, 4096), Some((0, 0)));
        assert_eq!(GCM.block_range(4095, 2), Some((0, 1)));
        assert_eq!(GCM.block_range(5, 0), None);
        assert_eq!(GCM.block_range(u64::MAX, 2), None);
        assert_eq!(GCM.plain_block_len(5000, 0), 4096);
        assert_eq!(GCM.plain_block_len(5000, 1), 904);
        assert_eq!(GCM.plain_block_len(5000, 2), 0);
        assert_eq!(GCM.plain_len_of_blocks(4128 + 33), Some(4097));
        assert_eq!(GCM.plain_len_of_blocks(4128 + 32), None);
        assert_eq!(GCM.plain_to_cipher_size(u64::MAX), None);
    }
}
