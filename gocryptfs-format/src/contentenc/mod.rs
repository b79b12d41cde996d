//! File contents: the 18-byte header, block encryption with its AAD, hole blocks, and
//! decryption of runs of blocks (the API the FUSE read path and the GPU loader use).
//!
//! Mirrors gocryptfs `internal/contentenc/{content,file_header}.go`; spec §2.1–§2.4, §2.6.
//! Rules kept exactly: AAD = `u64be(block) ‖ file ID` (content) or `u64be(0)` (master key,
//! symlink target, xattr value); a *whole* all-zero ciphertext block is a file hole, which
//! gocryptfs reads as 4096 zeros without authentication (a known weakness:
//! `docs/file-format.md`). Here a hole is refused as [`BlockErrorKind::Hole`] unless the
//! caller opts in ([`ContentEnc::allow_holes`]): the storage host can zero any block without
//! the key. Any other all-zero nonce is an error; an all-zero header or file ID is an error.

// No `cast_possible_truncation` here: every u64 -> usize cast is a block size or a length
// bounded by an in-memory buffer, and the crate targets 64-bit Unix.
#![warn(clippy::indexing_slicing)]

pub mod offsets;

use std::fmt;

use rayon::prelude::*;

use crate::cryptocore::{ContentCipher, TAG_LEN, fill_random};
use crate::error::{BlockError, BlockErrorKind, HeaderError, KeyError};
pub use offsets::{Geometry, HEADER_LEN, PLAIN_BS, SizeCheck};

/// The on-disk format version in every file header.
pub const CURRENT_VERSION: u16 = 2;

/// Blocks per parallel piece (1 MiB of plaintext): the unit of one `pread`, one decrypt or
/// encrypt run and one `pwrite` in the reader, decrypt, verify and the writer.
pub const PIECE_BLOCKS: u64 = 256;

/// A file's random 16-byte ID, bound into every block's AAD.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileId(pub [u8; 16]);

impl FileId {
    /// A fresh random, non-zero file ID.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the OS random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut id = [0u8; 16];
        while id == [0u8; 16] {
            fill_random(&mut id)?;
        }
        Ok(FileId(id))
    }

    /// Lowercase hex, as reports and manifests print it.
    #[must_use]
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileId({})", self.to_hex())
    }
}

impl fmt::Display for FileId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// The 18-byte file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// The file ID.
    pub id: FileId,
}

impl FileHeader {
    /// Parses the first 18 bytes of a file (extra bytes are ignored).
    ///
    /// # Errors
    /// [`HeaderError`]: short, all zero, wrong version, zero file ID.
    pub fn parse(bytes: &[u8]) -> Result<Self, HeaderError> {
        let h = bytes
            .get(..18)
            .ok_or(HeaderError::Short(bytes.len() as u64))?;
        if h.iter().all(|&b| b == 0) {
            return Err(HeaderError::AllZero);
        }
        let (v, id) = h.split_at(2);
        let version = u16::from_be_bytes([
            v.first().copied().unwrap_or(0),
            v.get(1).copied().unwrap_or(0),
        ]);
        if version != CURRENT_VERSION {
            return Err(HeaderError::Version(version));
        }
        let mut arr = [0u8; 16];
        arr.copy_from_slice(id);
        if arr == [0u8; 16] {
            return Err(HeaderError::ZeroFileId);
        }
        Ok(FileHeader { id: FileId(arr) })
    }

    /// The 18 header bytes.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 18] {
        let mut out = [0u8; 18];
        let (v, id) = out.split_at_mut(2);
        v.copy_from_slice(&CURRENT_VERSION.to_be_bytes());
        id.copy_from_slice(&self.id.0);
        out
    }
}

/// Builds the content AAD: `u64be(block) ‖ file ID`.
fn content_aad(block: u64, id: &FileId) -> [u8; 24] {
    let mut aad = [0u8; 24];
    let (b, i) = aad.split_at_mut(8);
    b.copy_from_slice(&block.to_be_bytes());
    i.copy_from_slice(&id.0);
    aad
}

/// AAD of the "block 0 without file ID" blobs: master key, symlink targets, xattr values.
const BLOB_AAD: [u8; 8] = [0u8; 8];

/// Blocks per parallel work item in [`ContentEnc::decrypt_blocks_par`] (256 KiB).
const PAR_CHUNK_BLOCKS: usize = 64;

/// Block encryption for one tree: a content cipher and its geometry. `Send + Sync`; share it
/// through an `Arc` and call it from any number of threads.
#[derive(Debug)]
pub struct ContentEnc {
    cipher: ContentCipher,
    geo: Geometry,
    allow_holes: bool,
}

impl ContentEnc {
    /// Wraps a content cipher. Hole blocks are refused (see [`ContentEnc::allow_holes`]).
    #[must_use]
    pub fn new(cipher: ContentCipher) -> Self {
        let geo = Geometry::new(cipher.nonce_len());
        ContentEnc {
            cipher,
            geo,
            allow_holes: false,
        }
    }

    /// With `allow`, a whole all-zero block reads as 4096 zeros, as in gocryptfs (trees that
    /// really hold sparse files); without it (the default) it is [`BlockErrorKind::Hole`].
    #[must_use]
    pub fn allow_holes(mut self, allow: bool) -> Self {
        self.allow_holes = allow;
        self
    }

    /// Whether hole blocks read as zeros.
    #[must_use]
    pub fn holes_allowed(&self) -> bool {
        self.allow_holes
    }

    /// The block geometry.
    #[must_use]
    pub fn geometry(&self) -> Geometry {
        self.geo
    }

    /// The underlying AEAD.
    #[must_use]
    pub fn cipher(&self) -> &ContentCipher {
        &self.cipher
    }

    fn nonce_len(&self) -> usize {
        self.cipher.nonce_len()
    }

    /// Opens one sealed message (`nonce ‖ ct ‖ tag`, or `nonce ‖ tag ‖ ct` for AES-SIV) with
    /// `aad` into `out`; returns the plaintext length. No hole handling.
    fn open_raw(&self, sealed: &[u8], aad: &[u8], out: &mut [u8]) -> Result<usize, BlockErrorKind> {
        let n = self.nonce_len();
        if sealed.len() <= n + TAG_LEN {
            return Err(BlockErrorKind::TooShort);
        }
        let (nonce, rest) = sealed.split_at(n);
        if nonce.iter().all(|&b| b == 0) {
            return Err(BlockErrorKind::AllZeroNonce);
        }
        let (ct, tag) = if self.cipher.tag_first() {
            let (t, c) = rest.split_at(TAG_LEN);
            (c, t)
        } else {
            rest.split_at(rest.len() - TAG_LEN)
        };
        let dst = out
            .get_mut(..ct.len())
            .ok_or(BlockErrorKind::Authentication)?;
        self.cipher
            .open(nonce, ct, tag, aad, dst)
            .map_err(|_| BlockErrorKind::Authentication)?;
        Ok(ct.len())
    }

    /// Seals `pt` with `nonce` and `aad` into `out` (`pt.len() + overhead` bytes).
    fn seal_raw(
        &self,
        nonce: &[u8],
        pt: &[u8],
        aad: &[u8],
        out: &mut [u8],
    ) -> Result<usize, BlockErrorKind> {
        let n = self.nonce_len();
        let total = pt.len() + n + TAG_LEN;
        let out = out.get_mut(..total).ok_or(BlockErrorKind::TooShort)?;
        let (nonce_dst, rest) = out.split_at_mut(n);
        nonce_dst.copy_from_slice(nonce);
        let (ct, tag) = if self.cipher.tag_first() {
            let (t, c) = rest.split_at_mut(TAG_LEN);
            (c, t)
        } else {
            let l = rest.len() - TAG_LEN;
            rest.split_at_mut(l)
        };
        self.cipher
            .seal(nonce, pt, aad, ct, tag)
            .map_err(|_| BlockErrorKind::Authentication)?;
        Ok(total)
    }

    /// Decrypts one content block (`block` bytes as stored, at most one cipher block) into
    /// `out`, which needs room for the plaintext (`block.len() - overhead`, 4096 for a hole).
    /// Returns the plaintext length.
    ///
    /// # Errors
    /// [`BlockError`] naming `block_no`: authentication, too short, all-zero nonce, a hole
    /// (unless allowed).
    pub fn decrypt_block(
        &self,
        block: &[u8],
        block_no: u64,
        id: &FileId,
        out: &mut [u8],
    ) -> Result<usize, BlockError> {
        let err = |kind| BlockError {
            block: block_no,
            kind,
        };
        if block.len() as u64 == self.geo.cipher_bs() && is_hole(block, self.nonce_len()) {
            if !self.allow_holes {
                return Err(err(BlockErrorKind::Hole));
            }
            let dst = out
                .get_mut(..PLAIN_BS as usize)
                .ok_or(err(BlockErrorKind::TooShort))?;
            dst.fill(0);
            return Ok(PLAIN_BS as usize);
        }
        self.open_raw(block, &content_aad(block_no, id), out)
            .map_err(err)
    }

    /// Decrypts a run of consecutive blocks: `ciphertext` starts at block `first` (at a
    /// block boundary, after the header) and may end with a partial block. Writes the
    /// plaintext to the front of `out` and returns its length. Callable from many threads at
    /// once (this is the GPU loader's entry point).
    ///
    /// # Errors
    /// The first failing block, as [`BlockError`]. `out` may then hold plaintext of the
    /// blocks before it, never of the failing one.
    pub fn decrypt_blocks(
        &self,
        first: u64,
        id: &FileId,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, BlockError> {
        let cbs = self.geo.cipher_bs() as usize;
        let mut pos = 0usize;
        for (i, chunk) in ciphertext.chunks(cbs).enumerate() {
            let block_no = first.saturating_add(i as u64);
            let dst = out.get_mut(pos..).ok_or(BlockError {
                block: block_no,
                kind: BlockErrorKind::TooShort,
            })?;
            pos += self.decrypt_block(chunk, block_no, id, dst)?;
        }
        Ok(pos)
    }

    /// [`ContentEnc::decrypt_blocks`] split over the rayon pool in 256 KiB pieces. `out`
    /// must hold the whole plaintext (see [`Geometry::plain_len_of_blocks`]).
    ///
    /// # Errors
    /// The lowest-numbered failing block.
    pub fn decrypt_blocks_par(
        &self,
        first: u64,
        id: &FileId,
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, BlockError> {
        let cbs = self.geo.cipher_bs() as usize;
        let need = self
            .geo
            .plain_len_of_blocks(ciphertext.len() as u64)
            .ok_or(BlockError {
                block: first.saturating_add((ciphertext.len() / cbs) as u64),
                kind: BlockErrorKind::TooShort,
            })?;
        let out = out.get_mut(..need as usize).ok_or(BlockError {
            block: first,
            kind: BlockErrorKind::TooShort,
        })?;
        let piece_c = cbs * PAR_CHUNK_BLOCKS;
        let piece_p = PLAIN_BS as usize * PAR_CHUNK_BLOCKS;
        ciphertext
            .par_chunks(piece_c)
            .zip(out.par_chunks_mut(piece_p))
            .enumerate()
            .map(|(i, (c, o))| {
                let b = first.saturating_add((i * PAR_CHUNK_BLOCKS) as u64);
                self.decrypt_blocks(b, id, c, o).map(|_| ())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .collect::<Result<(), _>>()?;
        Ok(need as usize)
    }

    /// Encrypts one block with a fresh random nonce into `out` (`pt.len() + overhead` bytes);
    /// returns the ciphertext length. `pt` must be 1..=4096 bytes.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the OS random source fails.
    pub fn encrypt_block(
        &self,
        pt: &[u8],
        block_no: u64,
        id: &FileId,
        out: &mut [u8],
    ) -> Result<usize, KeyError> {
        let mut nonce = [0u8; 24];
        let n = self.nonce_len();
        let nonce = nonce.get_mut(..n).unwrap_or_default();
        random_nonce(nonce)?;
        self.encrypt_block_with_nonce(pt, block_no, id, nonce, out)
    }

    /// Encrypts one block with the given nonce. Only for known-answer tests and the
    /// benchmark: a nonce MUST be unique per (key, message).
    ///
    /// # Errors
    /// [`KeyError::Random`] never; a wrong `out`/nonce length gives `KeyError::Random` too
    /// (a caller bug).
    #[doc(hidden)]
    pub fn encrypt_block_with_nonce(
        &self,
        pt: &[u8],
        block_no: u64,
        id: &FileId,
        nonce: &[u8],
        out: &mut [u8],
    ) -> Result<usize, KeyError> {
        self.seal_raw(nonce, pt, &content_aad(block_no, id), out)
            .map_err(|_| KeyError::Random("invariant: encrypt buffer sized by caller".into()))
    }

    /// Encrypts a run of plaintext blocks starting at block `first` into `out` (room for
    /// `plain_to_cipher_size - header`); returns the ciphertext length. Nonces for the whole
    /// run come from one OS random call.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the OS random source fails.
    pub fn encrypt_blocks(
        &self,
        first: u64,
        id: &FileId,
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, KeyError> {
        let n = self.nonce_len();
        let blocks = plaintext.len().div_ceil(PLAIN_BS as usize);
        let mut nonces = vec![0u8; blocks * n];
        random_nonces(&mut nonces, n)?;
        let mut pos = 0usize;
        for (i, (pt, nonce)) in plaintext
            .chunks(PLAIN_BS as usize)
            .zip(nonces.chunks_exact(n))
            .enumerate()
        {
            let dst = out.get_mut(pos..).unwrap_or_default();
            pos += self.encrypt_block_with_nonce(pt, first + i as u64, id, nonce, dst)?;
        }
        Ok(pos)
    }

    /// Opens a "block 0, no file ID" blob: the wrapped master key, a symlink target, an
    /// xattr value. Returns the plaintext. Holes are not accepted here.
    ///
    /// # Errors
    /// [`BlockErrorKind`] of the failure.
    pub fn open_blob(&self, blob: &[u8]) -> Result<Vec<u8>, BlockErrorKind> {
        let mut out = vec![0u8; blob.len()];
        let n = self.open_raw(blob, &BLOB_AAD, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Seals a blob (symlink target, xattr value, master key) with a fresh random nonce.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the OS random source fails.
    pub fn seal_blob(&self, pt: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut nonce = vec![0u8; self.nonce_len()];
        random_nonce(&mut nonce)?;
        self.seal_blob_with_nonce(pt, &nonce)
    }

    /// [`ContentEnc::seal_blob`] with a given nonce (known-answer tests only).
    ///
    /// # Errors
    /// [`KeyError::Random`] on a caller bug (wrong nonce length).
    #[doc(hidden)]
    pub fn seal_blob_with_nonce(&self, pt: &[u8], nonce: &[u8]) -> Result<Vec<u8>, KeyError> {
        let mut out = vec![0u8; pt.len() + self.nonce_len() + TAG_LEN];
        self.seal_raw(nonce, pt, &BLOB_AAD, &mut out)
            .map_err(|_| KeyError::Random("invariant: nonce length matches cipher".into()))?;
        Ok(out)
    }
}

/// A whole all-zero block is a hole. Checks the nonce first so that real blocks cost 16
/// byte compares, not 4128.
pub(crate) fn is_hole(block: &[u8], nonce_len: usize) -> bool {
    let (nonce, rest) = block.split_at(nonce_len.min(block.len()));
    nonce.iter().all(|&b| b == 0) && rest.iter().all(|&b| b == 0)
}

/// Fills one nonce with OS randomness; never all zero (readers reject that).
fn random_nonce(nonce: &mut [u8]) -> Result<(), KeyError> {
    // MUST be unique per (key, message): 128/192 random bits per block, as gocryptfs.
    loop {
        fill_random(nonce)?;
        if nonce.iter().any(|&b| b != 0) {
            return Ok(());
        }
    }
}

/// Fills consecutive `n`-byte nonces; re-draws any that came out all zero.
fn random_nonces(buf: &mut [u8], n: usize) -> Result<(), KeyError> {
    fill_random(buf)?;
    for nonce in buf.chunks_exact_mut(n) {
        if nonce.iter().all(|&b| b == 0) {
            random_nonce(nonce)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::cast_possible_truncation,
        reason = "tests"
    )]
    use super::*;
    use crate::cryptocore::{Backend, ContentAlgo};

    fn enc(algo: ContentAlgo) -> ContentEnc {
        ContentEnc::new(
            ContentCipher::new(algo, Backend::preferred(), &[0x11; 64][..key_len(algo)]).unwrap(),
        )
    }

    fn key_len(algo: ContentAlgo) -> usize {
        if algo == ContentAlgo::AesSiv { 64 } else { 32 }
    }

    #[test]
    fn header_rules() {
        assert_eq!(FileHeader::parse(&[0; 18]), Err(HeaderError::AllZero));
        assert_eq!(FileHeader::parse(&[0; 5]), Err(HeaderError::Short(5)));
        let mut h = [0u8; 18];
        h[1] = 3;
        h[5] = 1;
        assert_eq!(FileHeader::parse(&h), Err(HeaderError::Version(3)));
        h[1] = 2;
        h[5] = 0;
        assert_eq!(FileHeader::parse(&h), Err(HeaderError::ZeroFileId));
        h[5] = 9;
        let p = FileHeader::parse(&h).unwrap();
        assert_eq!(p.to_bytes(), h);
    }

    #[test]
    fn blocks_round_trip_and_bind_position() {
        for algo in [
            ContentAlgo::AesGcm,
            ContentAlgo::XChaCha20Poly1305,
            ContentAlgo::AesSiv,
        ] {
            let e = enc(algo);
            let id = FileId([7; 16]);
            let pt: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
            let mut ct = vec![0u8; 10_000 + 3 * e.geometry().overhead() as usize];
            let n = e.encrypt_blocks(0, &id, &pt, &mut ct).unwrap();
            assert_eq!(n, ct.len());
            let mut back = vec![0u8; 10_000];
            assert_eq!(e.decrypt_blocks(0, &id, &ct, &mut back).unwrap(), 10_000);
            assert_eq!(back, pt);
            let mut back2 = vec![0u8; 10_000];
            assert_eq!(
                e.decrypt_blocks_par(0, &id, &ct, &mut back2).unwrap(),
                10_000
            );
            assert_eq!(back2, pt);
            // Wrong first block number, wrong file ID: every block fails.
            assert_eq!(
                e.decrypt_blocks(1, &id, &ct, &mut back).unwrap_err().block,
                1
            );
            assert_eq!(
                e.decrypt_blocks(0, &FileId([8; 16]), &ct, &mut back)
                    .unwrap_err()
                    .kind,
                BlockErrorKind::Authentication
            );
            // Flip a bit in block 1.
            let cbs = e.geometry().cipher_bs() as usize;
            ct[cbs + 40] ^= 1;
            let err = e.decrypt_blocks(0, &id, &ct, &mut back).unwrap_err();
            assert_eq!(err.block, 1);
            assert_eq!(err.kind, BlockErrorKind::Authentication);
        }
    }

    #[test]
    fn holes_and_zero_nonces() {
        let refusing = enc(ContentAlgo::AesGcm);
        let id = FileId([1; 16]);
        let cbs = refusing.geometry().cipher_bs() as usize;
        let mut out = vec![9u8; 4096];
        assert_eq!(
            refusing.decrypt_block(&vec![0u8; cbs], 3, &id, &mut out),
            Err(BlockError {
                block: 3,
                kind: BlockErrorKind::Hole
            })
        );
        let e = enc(ContentAlgo::AesGcm).allow_holes(true);
        assert_eq!(e.decrypt_block(&vec![0u8; cbs], 3, &id, &mut out), Ok(4096));
        assert!(out.iter().all(|&b| b == 0));
        // A partial all-zero tail is not a hole.
        assert_eq!(
            e.decrypt_block(&[0u8; 100], 3, &id, &mut out)
                .unwrap_err()
                .kind,
            BlockErrorKind::AllZeroNonce
        );
        assert_eq!(
            e.decrypt_block(&[1u8; 32], 0, &id, &mut out)
                .unwrap_err()
                .kind,
            BlockErrorKind::TooShort
        );
    }

    #[test]
    fn nonces_differ() {
        let e = enc(ContentAlgo::AesGcm);
        let id = FileId([1; 16]);
        let mut a = vec![0u8; 4128];
        let mut b = vec![0u8; 4128];
        e.encrypt_block(&[0u8; 4096], 0, &id, &mut a).unwrap();
        e.encrypt_block(&[0u8; 4096], 0, &id, &mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn blobs() {
        let e = enc(ContentAlgo::AesGcm);
        let s = e.seal_blob(b"target").unwrap();
        assert_eq!(e.open_blob(&s).unwrap(), b"target");
        assert!(e.open_blob(&s[..20]).is_err());
    }
}
