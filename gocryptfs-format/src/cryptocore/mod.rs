//! Keys and the content AEADs.
//!
//! Mirrors gocryptfs `internal/cryptocore/{cryptocore,hkdf}.go` and spec §1.4, §2.4: the
//! 32-byte master key, its HKDF-SHA256 subkeys (one info string per purpose), and the three
//! content AEADs: AES-256-GCM with a 128-bit IV (two interchangeable backends), XChaCha20-Poly1305
//! and AES-SIV-512 (RFC 5297 with the nonce as the last header).
//!
//! Key material lives in types that zeroize on drop and never print (`MasterKey(..)`).

mod awslc;
pub(crate) mod eme;

use std::fmt;

use aes_gcm::aead::consts::U16;
use aes_gcm::{AeadInOut, AesGcm, KeyInit};
use aes_siv::Aes256SivAead;
use chacha20poly1305::XChaCha20Poly1305;
use hkdf::Hkdf;
use sha2::{Digest, Sha256, Sha512};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::KeyError;

/// Length of the master key and of every 256-bit subkey.
pub const KEY_LEN: usize = 32;
/// Length of every AEAD tag (all three backends).
pub const TAG_LEN: usize = 16;
/// Longest password gocryptfs reads from a password file.
pub const MAX_PASSWORD_LEN: usize = 2048;

/// HKDF info for the AES-GCM content key and for the master-key wrap (`hkdf.go`).
pub(crate) const HKDF_INFO_GCM: &[u8] = b"AES-GCM file content encryption";
/// HKDF info for the EME name key.
pub(crate) const HKDF_INFO_EME: &[u8] = b"EME filename encryption";
/// HKDF info for the 64-byte AES-SIV key.
pub(crate) const HKDF_INFO_SIV: &[u8] = b"AES-SIV file content encryption";
/// HKDF info for the XChaCha20-Poly1305 key.
pub(crate) const HKDF_INFO_XCHACHA: &[u8] = b"XChaCha20-Poly1305 file content encryption";

/// The 32-byte gocryptfs master key. Zeroized on drop; `Debug` prints `MasterKey(..)`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; KEY_LEN]);

impl MasterKey {
    /// Wraps 32 raw bytes.
    ///
    /// # Errors
    /// [`KeyError::MasterKeyLength`] unless `bytes` is exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let arr: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyError::MasterKeyLength(bytes.len() * 2))?;
        Ok(MasterKey(arr))
    }

    /// Parses the hex form gocryptfs prints (`e543d594-816f188b-...`): 64 hex digits, with
    /// dashes and whitespace (line breaks) ignored, as `gocryptfs -masterkey` does.
    ///
    /// # Errors
    /// [`KeyError::MasterKeyHex`] for a non-hex character, [`KeyError::MasterKeyLength`]
    /// unless there are exactly 64 digits.
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let mut digits = Zeroizing::new(Vec::with_capacity(64));
        for c in text.bytes() {
            if c == b'-' || c.is_ascii_whitespace() {
                continue;
            }
            if !c.is_ascii_hexdigit() {
                return Err(KeyError::MasterKeyHex);
            }
            digits.push(c);
        }
        if digits.len() != 2 * KEY_LEN {
            return Err(KeyError::MasterKeyLength(digits.len()));
        }
        let mut key = [0u8; KEY_LEN];
        hex::decode_to_slice(&*digits, &mut key).map_err(|_| KeyError::MasterKeyHex)?;
        let k = MasterKey(key);
        key.zeroize();
        Ok(k)
    }

    /// A fresh random key from the OS.
    ///
    /// # Errors
    /// [`KeyError::Random`] if the OS random source fails.
    pub fn generate() -> Result<Self, KeyError> {
        let mut k = MasterKey([0u8; KEY_LEN]);
        fill_random(&mut k.0)?;
        Ok(k)
    }

    /// The raw key bytes. Handle with care: never log or print them.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The key in gocryptfs' printed form: 8 groups of 8 hex digits joined by dashes.
    #[must_use]
    pub fn to_hex_groups(&self) -> Zeroizing<String> {
        let hex = Zeroizing::new(hex::encode(self.0));
        let mut out = Zeroizing::new(String::with_capacity(72));
        for (i, chunk) in hex.as_bytes().chunks(8).enumerate() {
            if i > 0 {
                out.push('-');
            }
            out.push_str(std::str::from_utf8(chunk).unwrap_or_default());
        }
        out
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// Where the key of a cipher directory comes from. The agent turns `--passfile`,
/// `--masterkey-file` or a KBS resource into one of these.
pub enum KeySource {
    /// A gocryptfs password: scrypt + HKDF unwrap `EncryptedKey` from `gocryptfs.conf`.
    Password(Zeroizing<Vec<u8>>),
    /// The raw master key (`gocryptfs -masterkey`); `gocryptfs.conf` is read only for the
    /// layout, or not at all when absent.
    MasterKey(MasterKey),
}

impl KeySource {
    /// Reads a password the way `gocryptfs -passfile` does: the first line without its
    /// `\n` (a `\r` is kept), non-empty, at most 2048 bytes. Text after the first line is
    /// ignored (gocryptfs warns about it).
    ///
    /// # Errors
    /// [`KeyError::EmptyPassword`], [`KeyError::PasswordTooLong`].
    pub fn password_from_passfile(contents: &[u8]) -> Result<Self, KeyError> {
        let line = contents.split(|&b| b == b'\n').next().unwrap_or_default();
        if line.is_empty() {
            return Err(KeyError::EmptyPassword);
        }
        if line.len() > MAX_PASSWORD_LEN {
            return Err(KeyError::PasswordTooLong);
        }
        Ok(KeySource::Password(Zeroizing::new(line.to_vec())))
    }
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Password(_) => f.write_str("KeySource::Password(..)"),
            KeySource::MasterKey(_) => f.write_str("KeySource::MasterKey(..)"),
        }
    }
}

/// Fills `buf` from the OS random source.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<(), KeyError> {
    getrandom::fill(buf).map_err(|e| KeyError::Random(e.to_string()))
}

/// HKDF-SHA256 with no salt, as gocryptfs `hkdfDerive`.
pub(crate) fn hkdf_sha256(ikm: &[u8], info: &[u8], out: &mut [u8]) {
    let hk = Hkdf::<Sha256>::new(None, ikm);
    // Output lengths here are 32 or 64 bytes, far below HKDF's 255*32 limit.
    if hk.expand(info, out).is_err() {
        out.zeroize();
    }
}

/// The subkeys gocryptfs derives (spec §1.4), for known-answer tests.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subkey {
    /// HKDF "AES-GCM file content encryption" (also the master-key wrap key from the KEK).
    Gcm,
    /// HKDF "EME filename encryption".
    Eme,
    /// HKDF "AES-SIV file content encryption", 64 bytes.
    Siv,
    /// HKDF "XChaCha20-Poly1305 file content encryption".
    XChaCha,
    /// SHA-512 of the key (AES-SIV without HKDF).
    LegacySiv,
}

/// Derives a subkey from `ikm` (a master key, or the scrypt KEK for the wrap key).
#[doc(hidden)]
#[must_use]
pub fn derive_subkey(ikm: &[u8], which: Subkey) -> Zeroizing<Vec<u8>> {
    let (info, len) = match which {
        Subkey::Gcm => (HKDF_INFO_GCM, 32),
        Subkey::Eme => (HKDF_INFO_EME, 32),
        Subkey::Siv => (HKDF_INFO_SIV, 64),
        Subkey::XChaCha => (HKDF_INFO_XCHACHA, 32),
        Subkey::LegacySiv => return Zeroizing::new(Sha512::digest(ikm).to_vec()),
    };
    let mut out = Zeroizing::new(vec![0u8; len]);
    hkdf_sha256(ikm, info, &mut out);
    out
}

/// The content encryption of a tree (`ContentEncryption()` in gocryptfs' config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ContentAlgo {
    /// AES-256-GCM with a 128-bit IV (the default).
    AesGcm,
    /// XChaCha20-Poly1305 (`-xchacha`).
    XChaCha20Poly1305,
    /// AES-SIV-512 (`-aessiv`, reverse mode). Read support; the writer can emit it for tests.
    AesSiv,
}

impl ContentAlgo {
    /// Nonce length on disk for this algorithm.
    #[must_use]
    pub fn nonce_len(self) -> usize {
        match self {
            ContentAlgo::AesGcm | ContentAlgo::AesSiv => 16,
            ContentAlgo::XChaCha20Poly1305 => 24,
        }
    }

    /// The name gocryptfs `-info` prints.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            ContentAlgo::AesGcm => "AES-GCM-256",
            ContentAlgo::XChaCha20Poly1305 => "XChaCha20-Poly1305",
            ContentAlgo::AesSiv => "AES-SIV-512",
        }
    }
}

/// Which implementation runs AES-256-GCM. Both produce identical bytes (a proptest checks).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Backend {
    /// aws-lc's `EVP_AEAD` through `aws-lc-sys` (~12 GB/s/core with AES-NI + PCLMUL).
    AwsLc,
    /// RustCrypto `aes-gcm` (`AesGcm<Aes256, U16>`), portable (~2.8 GB/s/core).
    RustCrypto,
}

impl Backend {
    /// The fastest backend compiled in: aws-lc with the `aws-lc` feature, else RustCrypto.
    #[must_use]
    pub fn preferred() -> Self {
        if awslc::AVAILABLE {
            Backend::AwsLc
        } else {
            Backend::RustCrypto
        }
    }

    /// Whether this backend is compiled in.
    #[must_use]
    pub fn is_available(self) -> bool {
        match self {
            Backend::AwsLc => awslc::AVAILABLE,
            Backend::RustCrypto => true,
        }
    }

    /// Every compiled-in backend.
    #[must_use]
    pub fn all() -> Vec<Backend> {
        [Backend::AwsLc, Backend::RustCrypto]
            .into_iter()
            .filter(|b| b.is_available())
            .collect()
    }
}

impl Default for Backend {
    fn default() -> Self {
        Backend::preferred()
    }
}

/// The AEAD failed (tag mismatch, or a length the cipher does not accept). Opaque on
/// purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AeadFailed;

type Aes256GcmIv128 = AesGcm<aes::Aes256, U16>;

enum Inner {
    GcmRust(Box<Aes256GcmIv128>),
    #[cfg_attr(not(feature = "aws-lc"), allow(dead_code))]
    GcmAwsLc(awslc::GcmKey),
    XChaCha(Box<XChaCha20Poly1305>),
    Siv(Box<Aes256SivAead>),
}

/// One content AEAD with its key, shared by all threads (`&self` methods, `Send + Sync`).
///
/// The layout of a sealed block differs per algorithm: GCM and XChaCha put the tag after the
/// ciphertext, AES-SIV puts it (the synthetic IV) before; [`ContentCipher::tag_first`] says
/// which.
pub struct ContentCipher {
    algo: ContentAlgo,
    backend: Backend,
    inner: Inner,
}

impl fmt::Debug for ContentCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ContentCipher")
            .field("algo", &self.algo)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl ContentCipher {
    /// Builds the cipher for `algo` from its derived key (32 bytes; 64 for AES-SIV).
    /// `backend` matters only for AES-GCM; an unavailable backend falls back to RustCrypto.
    ///
    /// # Errors
    /// [`AeadFailed`] if the key length is wrong or aws-lc cannot create its context.
    pub fn new(algo: ContentAlgo, backend: Backend, key: &[u8]) -> Result<Self, AeadFailed> {
        let (inner, backend) = match algo {
            ContentAlgo::AesGcm => {
                if backend == Backend::AwsLc && awslc::AVAILABLE {
                    let k: &[u8; KEY_LEN] = key.try_into().map_err(|_| AeadFailed)?;
                    (Inner::GcmAwsLc(awslc::GcmKey::new(k)?), Backend::AwsLc)
                } else {
                    let c = Aes256GcmIv128::new_from_slice(key).map_err(|_| AeadFailed)?;
                    (Inner::GcmRust(Box::new(c)), Backend::RustCrypto)
                }
            }
            ContentAlgo::XChaCha20Poly1305 => {
                let c = XChaCha20Poly1305::new_from_slice(key).map_err(|_| AeadFailed)?;
                (Inner::XChaCha(Box::new(c)), Backend::RustCrypto)
            }
            ContentAlgo::AesSiv => {
                let c = Aes256SivAead::new_from_slice(key).map_err(|_| AeadFailed)?;
                (Inner::Siv(Box::new(c)), Backend::RustCrypto)
            }
        };
        Ok(ContentCipher {
            algo,
            backend,
            inner,
        })
    }

    /// Derives the content key from the master key and builds the cipher.
    ///
    /// With `hkdf` (every tree since gocryptfs 1.3) the key is HKDF-derived; without it the
    /// legacy rules apply: the master key itself, or SHA-512 of it for AES-SIV.
    ///
    /// # Errors
    /// [`AeadFailed`] as [`ContentCipher::new`].
    pub fn from_master(
        algo: ContentAlgo,
        backend: Backend,
        master: &MasterKey,
        hkdf: bool,
    ) -> Result<Self, AeadFailed> {
        let mut key = Zeroizing::new([0u8; 64]);
        let len = match algo {
            ContentAlgo::AesSiv => 64,
            _ => KEY_LEN,
        };
        let k = key.get_mut(..len).ok_or(AeadFailed)?;
        match (algo, hkdf) {
            (ContentAlgo::AesGcm, true) => hkdf_sha256(master.expose_secret(), HKDF_INFO_GCM, k),
            (ContentAlgo::XChaCha20Poly1305, true) => {
                hkdf_sha256(master.expose_secret(), HKDF_INFO_XCHACHA, k);
            }
            (ContentAlgo::AesSiv, true) => hkdf_sha256(master.expose_secret(), HKDF_INFO_SIV, k),
            (ContentAlgo::AesSiv, false) => {
                k.copy_from_slice(&Sha512::digest(master.expose_secret()));
            }
            (_, false) => k.copy_from_slice(master.expose_secret()),
        }
        Self::new(algo, backend, k)
    }

    /// The algorithm.
    #[must_use]
    pub fn algo(&self) -> ContentAlgo {
        self.algo
    }

    /// The backend actually in use.
    #[must_use]
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Nonce length on disk.
    #[must_use]
    pub fn nonce_len(&self) -> usize {
        self.algo.nonce_len()
    }

    /// Whether the tag precedes the ciphertext (AES-SIV) rather than following it.
    #[must_use]
    pub fn tag_first(&self) -> bool {
        self.algo == ContentAlgo::AesSiv
    }

    /// Authenticates and decrypts `ct` into `out` (same length), out of place. On failure
    /// `out` holds no plaintext (it may hold garbage, never authenticated-looking data is
    /// returned to callers because they see the error).
    ///
    /// # Errors
    /// [`AeadFailed`] on a tag mismatch or a length mismatch.
    pub fn open(
        &self,
        nonce: &[u8],
        ct: &[u8],
        tag: &[u8],
        aad: &[u8],
        out: &mut [u8],
    ) -> Result<(), AeadFailed> {
        if out.len() != ct.len() || tag.len() != TAG_LEN || nonce.len() != self.nonce_len() {
            return Err(AeadFailed);
        }
        let res = match &self.inner {
            Inner::GcmAwsLc(k) => k.open(nonce, ct, tag, aad, out),
            Inner::GcmRust(c) => {
                let buf = aes_gcm::aead::inout::InOutBuf::new(ct, out).map_err(|_| AeadFailed)?;
                let nonce = nonce.try_into().map_err(|_| AeadFailed)?;
                let tag = tag.try_into().map_err(|_| AeadFailed)?;
                c.decrypt_inout_detached(nonce, aad, buf, tag)
                    .map_err(|_| AeadFailed)
            }
            Inner::XChaCha(c) => {
                let buf = aes_gcm::aead::inout::InOutBuf::new(ct, out).map_err(|_| AeadFailed)?;
                let nonce = nonce.try_into().map_err(|_| AeadFailed)?;
                let tag = tag.try_into().map_err(|_| AeadFailed)?;
                c.decrypt_inout_detached(nonce, aad, buf, tag)
                    .map_err(|_| AeadFailed)
            }
            Inner::Siv(c) => {
                let buf = aes_gcm::aead::inout::InOutBuf::new(ct, out).map_err(|_| AeadFailed)?;
                let nonce = nonce.try_into().map_err(|_| AeadFailed)?;
                let tag = tag.try_into().map_err(|_| AeadFailed)?;
                c.decrypt_inout_detached(nonce, aad, buf, tag)
                    .map_err(|_| AeadFailed)
            }
        };
        if res.is_err() {
            // Never leave anything plaintext-like behind on failure.
            out.fill(0);
        }
        res
    }

    /// Encrypts `pt` into `out` (same length) and writes the tag. The nonce MUST be unique
    /// per (key, message): callers pass fresh random nonces.
    ///
    /// # Errors
    /// [`AeadFailed`] on a length mismatch.
    pub fn seal(
        &self,
        nonce: &[u8],
        pt: &[u8],
        aad: &[u8],
        out: &mut [u8],
        tag_out: &mut [u8],
    ) -> Result<(), AeadFailed> {
        if out.len() != pt.len() || tag_out.len() != TAG_LEN || nonce.len() != self.nonce_len() {
            return Err(AeadFailed);
        }
        let tag = match &self.inner {
            Inner::GcmAwsLc(k) => return k.seal(nonce, pt, aad, out, tag_out),
            Inner::GcmRust(c) => {
                let buf = aes_gcm::aead::inout::InOutBuf::new(pt, out).map_err(|_| AeadFailed)?;
                let nonce = nonce.try_into().map_err(|_| AeadFailed)?;
                c.encrypt_inout_detached(nonce, aad, buf)
                    .map_err(|_| AeadFailed)?
            }
            Inner::XChaCha(c) => {
                let buf = aes_gcm::aead::inout::InOutBuf::new(pt, out).map_err(|_| AeadFailed)?;
                let nonce = nonce.try_into().map_err(|_| AeadFailed)?;
                c.encrypt_inout_detached(nonce, aad, buf)
                    .map_err(|_| AeadFailed)?
            }
            Inner::Siv(c) => {
                let buf = aes_gcm::aead::inout::InOutBuf::new(pt, out).map_err(|_| AeadFailed)?;
                let nonce = nonce.try_into().map_err(|_| AeadFailed)?;
                c.encrypt_inout_detached(nonce, aad, buf)
                    .map_err(|_| AeadFailed)?
            }
        };
        tag_out.copy_from_slice(&tag);
        Ok(())
    }
}

/// Opens the 60-byte legacy `EncryptedKey` (no HKDF: AES-256-GCM with a 96-bit nonce).
pub(crate) fn open_gcm96(
    key: &[u8],
    nonce: &[u8],
    ct: &[u8],
    tag: &[u8],
    aad: &[u8],
    out: &mut [u8],
) -> Result<(), AeadFailed> {
    let c = aes_gcm::Aes256Gcm::new_from_slice(key).map_err(|_| AeadFailed)?;
    let buf = aes_gcm::aead::inout::InOutBuf::new(ct, out).map_err(|_| AeadFailed)?;
    let nonce = nonce.try_into().map_err(|_| AeadFailed)?;
    let tag = tag.try_into().map_err(|_| AeadFailed)?;
    c.decrypt_inout_detached(nonce, aad, buf, tag)
        .map_err(|_| AeadFailed)
}

/// Raw aws-lc `EVP_AEAD_CTX_open_gather` over gocryptfs-layout blocks, with none of this
/// crate's logic: the baseline of `tests/bench/run.sh offline`.
#[doc(hidden)]
pub fn bench_raw_evp_open(
    key: &[u8; KEY_LEN],
    file_id: &[u8; 16],
    blocks: &[u8],
    block_len: usize,
) -> Option<u64> {
    awslc::bench_raw_open(key, file_id, blocks, block_len)
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        reason = "tests"
    )]
    use super::*;

    #[test]
    fn masterkey_hex_forms() {
        let printed = "e543d594-816f188b-97cff577-1beb01b3-\nc6a14c67-5d05e765-093a2a3b-27029ecd\n";
        let k = MasterKey::from_hex(printed).unwrap();
        assert_eq!(
            hex::encode(k.expose_secret()),
            "e543d594816f188b97cff5771beb01b3c6a14c675d05e765093a2a3b27029ecd"
        );
        assert_eq!(
            &*k.to_hex_groups(),
            "e543d594-816f188b-97cff577-1beb01b3-c6a14c67-5d05e765-093a2a3b-27029ecd"
        );
        assert!(matches!(
            MasterKey::from_hex("abcd"),
            Err(KeyError::MasterKeyLength(4))
        ));
        assert!(matches!(
            MasterKey::from_hex(&"g".repeat(64)),
            Err(KeyError::MasterKeyHex)
        ));
        assert_eq!(format!("{k:?}"), "MasterKey(..)");
    }

    #[test]
    fn passfile_rules() {
        let KeySource::Password(p) = KeySource::password_from_passfile(b"pw\r\nrest").unwrap()
        else {
            panic!()
        };
        assert_eq!(&**p, b"pw\r");
        assert!(matches!(
            KeySource::password_from_passfile(b"\nx"),
            Err(KeyError::EmptyPassword)
        ));
        assert!(matches!(
            KeySource::password_from_passfile(b""),
            Err(KeyError::EmptyPassword)
        ));
        let long = vec![b'a'; 2049];
        assert!(matches!(
            KeySource::password_from_passfile(&long),
            Err(KeyError::PasswordTooLong)
        ));
        let ks = KeySource::password_from_passfile(b"secret").unwrap();
        assert!(!format!("{ks:?}").contains("secret"));
    }

    #[test]
    fn both_gcm_backends_agree_on_a_block() {
        let key = [7u8; 32];
        let nonce = [9u8; 16];
        let pt = [1u8; 100];
        let aad = [2u8; 24];
        let mut outs = Vec::new();
        for b in Backend::all() {
            let c = ContentCipher::new(ContentAlgo::AesGcm, b, &key).unwrap();
            assert_eq!(c.backend(), b);
            let mut ct = [0u8; 100];
            let mut tag = [0u8; 16];
            c.seal(&nonce, &pt, &aad, &mut ct, &mut tag).unwrap();
            let mut back = [0u8; 100];
            c.open(&nonce, &ct, &tag, &aad, &mut back).unwrap();
            assert_eq!(back, pt);
            tag[0] ^= 1;
            assert!(c.open(&nonce, &ct, &tag, &aad, &mut back).is_err());
            assert_eq!(back, [0u8; 100]);
            outs.push((ct, tag));
        }
        assert!(outs.windows(2).all(|w| w[0].0 == w[1].0));
    }
}
