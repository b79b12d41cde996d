//! EME ("ECB-Mix-ECB", Halevi-Rogaway) wide-block encryption over AES-256, as gocryptfs uses it
//! for file and xattr names. Spec: `../shared/specs/gocryptfs-format.md` §3.3 (the algorithm of
//! `rfjakob/eme`, with GF(2^128) doubling where byte 0 is the least significant byte).
//!
//! Written here over `aes` 0.9 rather than using the `eme-mode` crate: that crate is built on
//! `cipher` 0.4 / `aes` 0.8 (a second, older copy of AES next to the one `aes-gcm` 0.11 uses),
//! and the mode is ~60 lines checked against the upstream known answers (tests below) and the
//! corpus names in `KAT.json`.

use aes::Aes256;
use aes::cipher::{Array, BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};

/// Most 16-byte blocks EME accepts (rfjakob/eme: 2048 bytes).
pub(crate) const MAX_BLOCKS: usize = 128;

type Block = [u8; 16];

/// Direction of an EME transform.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Encrypt,
    Decrypt,
}

/// An EME instance with its AES-256 key schedule.
pub(crate) struct Eme {
    aes: Aes256,
}

/// EME input is empty, not a multiple of 16, or longer than 2048 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BadLength;

impl Eme {
    pub(crate) fn new(key: &[u8; 32]) -> Self {
        Eme {
            aes: Aes256::new(&Array::from(*key)),
        }
    }

    fn aes_enc(&self, b: &mut Block) {
        let mut a = Array::from(*b);
        self.aes.encrypt_block(&mut a);
        *b = a.into();
    }

    fn aes(&self, b: &mut Block, dir: Direction) {
        let mut a = Array::from(*b);
        match dir {
            Direction::Encrypt => self.aes.encrypt_block(&mut a),
            Direction::Decrypt => self.aes.decrypt_block(&mut a),
        }
        *b = a.into();
    }

    /// Encrypts or decrypts `data` (16..=2048 bytes, a multiple of 16) under `tweak`.
    pub(crate) fn transform(
        &self,
        tweak: &[u8; 16],
        data: &[u8],
        dir: Direction,
    ) -> Result<Vec<u8>, BadLength> {
        if data.is_empty() || !data.len().is_multiple_of(16) || data.len() / 16 > MAX_BLOCKS {
            return Err(BadLength);
        }
        let mut blocks: Vec<Block> = data
            .chunks_exact(16)
            .map(|c| {
                let mut b = [0u8; 16];
                b.copy_from_slice(c);
                b
            })
            .collect();

        // L table: L0 = AES-enc(0); L[j] = 2^(j+1) * L0. Always built with encryption.
        let mut l = [0u8; 16];
        self.aes_enc(&mut l);
        let ltable: Vec<Block> = blocks
            .iter()
            .map(|_| {
                l = mul2(&l);
                l
            })
            .collect();

        // PPP[j] = E(P[j] xor L[j])
        for (b, lj) in blocks.iter_mut().zip(&ltable) {
            xor_in(b, lj);
            self.aes(b, dir);
        }
        // MP = T xor sum PPP[j]; MC = E(MP); M = MP xor MC
        let mut mp = *tweak;
        for b in &blocks {
            xor_in(&mut mp, b);
        }
        let mut mc = mp;
        self.aes(&mut mc, dir);
        let mut m = mp;
        xor_in(&mut m, &mc);
        // CCC[j] = PPP[j] xor 2^(j-1) M, for j >= 1
        for b in blocks.iter_mut().skip(1) {
            m = mul2(&m);
            xor_in(b, &m);
        }
        // CCC[0] = MC xor T xor sum CCC[j>=1]
        let mut c0 = mc;
        xor_in(&mut c0, tweak);
        for b in blocks.iter().skip(1) {
            xor_in(&mut c0, b);
        }
        if let Some(first) = blocks.first_mut() {
            *first = c0;
        }
        // C[j] = E(CCC[j]) xor L[j]
        let mut out = Vec::with_capacity(data.len());
        for (b, lj) in blocks.iter_mut().zip(&ltable) {
            self.aes(b, dir);
            xor_in(b, lj);
            out.extend_from_slice(b);
        }
        Ok(out)
    }
}

fn xor_in(a: &mut Block, b: &Block) {
    for (x, y) in a.iter_mut().zip(b) {
        *x ^= y;
    }
}

/// Doubling in GF(2^128), byte 0 least significant (rfjakob/eme `multByTwo`).
fn mul2(x: &Block) -> Block {
    let mut out = [0u8; 16];
    let mut carry = 0u8;
    for (o, &b) in out.iter_mut().zip(x) {
        *o = (b << 1) | carry;
        carry = b >> 7;
    }
    if carry != 0 {
        out[0] ^= 0x87;
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests"
    )]
    use super::*;

    /// Upstream known answer (rfjakob/eme `eme_test.go`, also spec §3.3): zero key, zero
    /// tweak, 16 zero bytes.
    #[test]
    fn upstream_kat_one_block() {
        let e = Eme::new(&[0u8; 32]);
        let c = e
            .transform(&[0u8; 16], &[0u8; 16], Direction::Encrypt)
            .unwrap();
        assert_eq!(hex::encode(&c), "f1b9ce8ca15a4ba9fb476905434b9fd3");
        let p = e.transform(&[0u8; 16], &c, Direction::Decrypt).unwrap();
        assert_eq!(p, [0u8; 16]);
    }

    #[test]
    fn round_trip_all_lengths() {
        let e = Eme::new(&[3u8; 32]);
        let tweak = [5u8; 16];
        for blocks in 1..=MAX_BLOCKS {
            let data: Vec<u8> = (0..blocks * 16).map(|i| (i * 7 % 251) as u8).collect();
            let c = e.transform(&tweak, &data, Direction::Encrypt).unwrap();
            assert_ne!(c, data);
            assert_eq!(e.transform(&tweak, &c, Direction::Decrypt).unwrap(), data);
        }
        assert!(e.transform(&tweak, &[], Direction::Encrypt).is_err());
        assert!(e.transform(&tweak, &[0; 15], Direction::Encrypt).is_err());
        assert!(e.transform(&tweak, &[0; 2064], Direction::Encrypt).is_err());
    }

    #[test]
    fn mul2_carries() {
        let mut x = [0u8; 16];
        x[15] = 0x80;
        let y = mul2(&x);
        assert_eq!(y[0], 0x87);
        assert_eq!(&y[1..], &[0u8; 15]);
        let mut x = [0u8; 16];
        x[0] = 0x80;
        let y = mul2(&x);
        assert_eq!(y[1], 1);
        assert_eq!(y[0], 0);
    }
}
