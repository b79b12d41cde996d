//! File names: per-directory IVs, EME + PKCS#7 + strict base64url, long names, xattr names.
//!
//! Mirrors gocryptfs `internal/nametransform/{names,pad16,diriv,longnames,xattr,valid}.go`;
//! spec §3. Names are bytes (`OsStr`), never assumed UTF-8. Decoding is strict everywhere:
//! base64 must be the canonical encoding (no stray padding bits, no CR/LF, the variant the
//! flags say), padding must be exact, and a decrypted name must be a single valid path
//! component (non-empty, ≤ 255 bytes, no `/`, no NUL, not `.` or `..`).

#![warn(clippy::indexing_slicing, clippy::cast_possible_truncation)]

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use base64::Engine;
use base64::engine::general_purpose::{URL_SAFE, URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::configfile::{DEFAULT_LONG_NAME_MAX, NameLayout};
use crate::cryptocore::eme::{Direction, Eme};
use crate::cryptocore::{HKDF_INFO_EME, KEY_LEN, MasterKey, fill_random, hkdf_sha256};
use crate::error::{DirIvError, KeyError, LongNameError, NameError};

/// Name of the per-directory IV file.
pub const DIRIV_NAME: &str = "gocryptfs.diriv";
/// Prefix of hashed long names.
pub const LONGNAME_PREFIX: &str = "gocryptfs.longname.";
/// Suffix of a long name's side file.
pub const LONGNAME_SUFFIX: &str = ".name";
/// Prefix of the temporary file of gocryptfs' crash-safe rmdir.
pub const RMDIR_PREFIX: &str = "gocryptfs.diriv.rmdir.";
/// Largest `.name` file gocryptfs reads.
pub const MAX_LONGNAME_FILE: u64 = 344;
/// Prefix of every encrypted xattr name on the backing file.
pub const XATTR_PREFIX: &str = "user.gocryptfs.";
/// The fixed EME tweak of xattr names.
pub const XATTR_IV: [u8; 16] = *b"xattr_name_iv_xx";
/// Longest plaintext name (bytes).
pub const NAME_MAX: usize = 255;

/// A directory's 16-byte IV (the EME tweak of its entries' names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirIv(pub [u8; 16]);

impl DirIv {
    /// The all-zero IV of deterministic-names trees (no `DirIV` flag).
    pub const ZERO: DirIv = DirIv([0u8; 16]);

    /// Parses the content of `gocryptfs.diriv`: exactly 16 bytes, not all zero.
    ///
    /// # Errors
    /// [`DirIvError::Length`], [`DirIvError::AllZero`].
    pub fn parse(bytes: &[u8]) -> Result<Self, DirIvError> {
        let arr: [u8; 16] = bytes
            .try_into()
            .map_err(|_| DirIvError::Length(bytes.len() as u64))?;
        if arr == [0u8; 16] {
            return Err(DirIvError::AllZero);
        }
        Ok(DirIv(arr))
    }

    /// A fresh random IV.
    ///
    /// # Errors
    /// [`KeyError::Random`].
    pub fn generate() -> Result<Self, KeyError> {
        let mut iv = [0u8; 16];
        while iv == [0u8; 16] {
            fill_random(&mut iv)?;
        }
        Ok(DirIv(iv))
    }
}

/// How a plaintext name is stored on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskName {
    /// The name itself (`PlaintextNames`).
    Plain(OsString),
    /// An encrypted name short enough to be the file name.
    Short(String),
    /// A hashed long name: the entry is `hashed`, and `hashed.name` holds `cipher`.
    Long {
        /// `gocryptfs.longname.<hash>`.
        hashed: String,
        /// The encrypted name stored in the `.name` file.
        cipher: String,
    },
}

impl DiskName {
    /// The directory entry name on disk.
    #[must_use]
    pub fn on_disk(&self) -> &OsStr {
        match self {
            DiskName::Plain(n) => n,
            DiskName::Short(s) | DiskName::Long { hashed: s, .. } => OsStr::new(s.as_str()),
        }
    }
}

/// What a directory entry on disk is, by its name alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryClass {
    /// `gocryptfs.conf` (skipped in the root).
    Conf,
    /// `gocryptfs.diriv`.
    DirIv,
    /// `gocryptfs.longname.<hash>`: the entry of a long name.
    LongName,
    /// `gocryptfs.longname.<hash>.name`: its side file.
    LongNameFile,
    /// `gocryptfs.diriv.rmdir.*`: left over by an interrupted rmdir.
    RmdirLeftover,
    /// Anything else: an encrypted (or plaintext) name.
    Regular,
}

/// Classifies an on-disk name of an encrypted-names directory.
#[must_use]
pub fn classify(name: &OsStr) -> EntryClass {
    let b = name.as_bytes();
    if b == b"gocryptfs.conf" {
        EntryClass::Conf
    } else if b == DIRIV_NAME.as_bytes() {
        EntryClass::DirIv
    } else if b.starts_with(RMDIR_PREFIX.as_bytes()) {
        EntryClass::RmdirLeftover
    } else if b.starts_with(LONGNAME_PREFIX.as_bytes()) {
        if b.ends_with(LONGNAME_SUFFIX.as_bytes()) {
            EntryClass::LongNameFile
        } else {
            EntryClass::LongName
        }
    } else {
        EntryClass::Regular
    }
}

/// Checks that `name` is one valid path component: non-empty, ≤ 255 bytes, no `/` or NUL,
/// not `.` or `..`.
///
/// # Errors
/// The matching [`NameError`].
pub fn validate_plain_name(name: &[u8]) -> Result<(), NameError> {
    match name {
        [] => Err(NameError::Empty),
        b"." => Err(NameError::Dot(".")),
        b".." => Err(NameError::Dot("..")),
        n if n.len() > NAME_MAX => Err(NameError::TooLong(n.len())),
        n if n.contains(&b'/') => Err(NameError::Slash),
        n if n.contains(&0) => Err(NameError::Nul),
        _ => Ok(()),
    }
}

/// PKCS#7 padding to a multiple of 16 (always adds 1..=16 bytes).
#[must_use]
pub fn pad16(data: &[u8]) -> Vec<u8> {
    let pad = 16 - data.len() % 16;
    let mut out = Vec::with_capacity(data.len() + pad);
    out.extend_from_slice(data);
    // pad is 1..=16, fits in a byte.
    out.resize(data.len() + pad, u8::try_from(pad).unwrap_or(16));
    out
}

/// Strict PKCS#7 unpadding: non-empty aligned input, pad byte 1..=16, shorter than the
/// input, all pad bytes equal.
///
/// # Errors
/// [`NameError::Length`] or [`NameError::Padding`].
pub fn unpad16(data: &[u8]) -> Result<&[u8], NameError> {
    if data.is_empty() || !data.len().is_multiple_of(16) {
        return Err(NameError::Length(data.len()));
    }
    let pad = usize::from(*data.last().ok_or(NameError::Padding)?);
    if pad == 0 || pad > 16 || pad >= data.len() {
        return Err(NameError::Padding);
    }
    let (body, tail) = data.split_at(data.len() - pad);
    if tail.iter().any(|&b| usize::from(b) != pad) {
        return Err(NameError::Padding);
    }
    Ok(body)
}

/// Encodes with the base64url variant of the tree (`raw64`: no padding).
#[must_use]
pub fn b64_encode(data: &[u8], raw64: bool) -> String {
    if raw64 {
        URL_SAFE_NO_PAD.encode(data)
    } else {
        URL_SAFE.encode(data)
    }
}

/// Strict base64url decoding: the given variant only, canonical only (re-encoding must give
/// back the input exactly: no non-zero trailing bits, no CR/LF, no stray `=`).
///
/// # Errors
/// [`NameError::Base64`], [`NameError::NonCanonical`].
pub fn b64_decode(text: &[u8], raw64: bool) -> Result<Vec<u8>, NameError> {
    let engine = if raw64 { &URL_SAFE_NO_PAD } else { &URL_SAFE };
    let decoded = engine.decode(text).map_err(|e| match e {
        base64::DecodeError::InvalidLastSymbol(..) | base64::DecodeError::InvalidPadding => {
            NameError::NonCanonical
        }
        _ => NameError::Base64,
    })?;
    if engine.encode(&decoded).as_bytes() != text {
        return Err(NameError::NonCanonical);
    }
    Ok(decoded)
}

/// Name encryption for one tree (plus xattr names, which are EME-encrypted even with
/// `PlaintextNames`).
pub struct NameTransform {
    layout: NameLayout,
    eme: Eme,
}

impl std::fmt::Debug for NameTransform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NameTransform")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

impl NameTransform {
    /// Derives the EME key (HKDF "EME filename encryption", or the master key itself without
    /// HKDF) and builds the transform.
    #[must_use]
    pub fn new(layout: NameLayout, master: &MasterKey, hkdf: bool) -> Self {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if hkdf {
            hkdf_sha256(master.expose_secret(), HKDF_INFO_EME, &mut *key);
        } else {
            key.copy_from_slice(master.expose_secret());
        }
        NameTransform {
            layout,
            eme: Eme::new(&key),
        }
    }

    /// The name layout.
    #[must_use]
    pub fn layout(&self) -> NameLayout {
        self.layout
    }

    /// Whether names are encrypted.
    #[must_use]
    pub fn encrypted(&self) -> bool {
        matches!(self.layout, NameLayout::Encrypted { .. })
    }

    /// Whether each directory has its own `gocryptfs.diriv`.
    #[must_use]
    pub fn uses_dir_iv(&self) -> bool {
        matches!(self.layout, NameLayout::Encrypted { dir_iv: true, .. })
    }

    /// Base64 variant of names and symlink targets (`Raw64`).
    #[must_use]
    pub fn raw64(&self) -> bool {
        matches!(self.layout, NameLayout::Encrypted { raw64: true, .. })
    }

    /// Encrypted names longer than this many characters are hashed.
    #[must_use]
    pub fn long_name_max(&self) -> usize {
        match self.layout {
            NameLayout::Encrypted { long_name_max, .. } => usize::from(long_name_max),
            NameLayout::Plaintext => usize::from(DEFAULT_LONG_NAME_MAX),
        }
    }

    /// EME-encrypts a plaintext name under `iv`; returns the base64 form.
    ///
    /// # Errors
    /// [`NameError`] if `plain` is not a valid path component.
    pub fn encrypt_name(&self, plain: &[u8], iv: &DirIv) -> Result<String, NameError> {
        validate_plain_name(plain)?;
        let c = self
            .eme
            .transform(&iv.0, &pad16(plain), Direction::Encrypt)
            .map_err(|_| NameError::TooLong(plain.len()))?;
        Ok(b64_encode(&c, self.raw64()))
    }

    /// Encrypts any bytes as a name, skipping the plaintext-name checks. Only for tests that
    /// craft hostile trees (names decrypting to `.`, `..`, `/`, NUL).
    #[doc(hidden)]
    #[must_use]
    pub fn encrypt_name_unchecked(&self, plain: &[u8], iv: &DirIv) -> String {
        let c = self
            .eme
            .transform(&iv.0, &pad16(plain), Direction::Encrypt)
            .unwrap_or_default();
        b64_encode(&c, self.raw64())
    }

    /// Decodes and decrypts an encrypted name; the result is a valid path component.
    ///
    /// # Errors
    /// [`NameError`]: base64, non-canonical, length, padding, or an invalid plaintext name.
    pub fn decrypt_name(&self, cipher: &[u8], iv: &DirIv) -> Result<Vec<u8>, NameError> {
        let bin = self.check_cipher_name(cipher)?;
        let p = self
            .eme
            .transform(&iv.0, &bin, Direction::Decrypt)
            .map_err(|_| NameError::Length(bin.len()))?;
        let name = unpad16(&p)?.to_vec();
        validate_plain_name(&name)?;
        Ok(name)
    }

    /// The no-key part of [`NameTransform::decrypt_name`]: canonical base64 of the tree's
    /// variant, decoding to 16..=2048 bytes in whole 16-byte blocks. Returns the bytes.
    ///
    /// # Errors
    /// As [`NameTransform::decrypt_name`], minus the decryption failures.
    pub fn check_cipher_name(&self, cipher: &[u8]) -> Result<Vec<u8>, NameError> {
        check_cipher_name(cipher, self.raw64())
    }

    /// Encrypts and, when longer than the threshold, hashes a name (`EncryptAndHashName`).
    /// With `PlaintextNames` the name is returned as is.
    ///
    /// # Errors
    /// [`NameError`] for an invalid plaintext name.
    pub fn to_disk(&self, plain: &OsStr, iv: &DirIv) -> Result<DiskName, NameError> {
        if !self.encrypted() {
            validate_plain_name(plain.as_bytes())?;
            return Ok(DiskName::Plain(plain.to_owned()));
        }
        let c = self.encrypt_name(plain.as_bytes(), iv)?;
        if c.len() > self.long_name_max() {
            Ok(DiskName::Long {
                hashed: self.hash_long_name(&c),
                cipher: c,
            })
        } else {
            Ok(DiskName::Short(c))
        }
    }

    /// `gocryptfs.longname.` + base64(SHA-256(encrypted name)), same base64 variant.
    #[must_use]
    pub fn hash_long_name(&self, cipher: &str) -> String {
        let h = Sha256::digest(cipher.as_bytes());
        format!("{LONGNAME_PREFIX}{}", b64_encode(&h, self.raw64()))
    }

    /// Checks a long-name entry against its `.name` content: the hash in `entry` must be
    /// canonical and equal the hash of `stored`, and `stored` must be longer than the
    /// threshold. Returns the encrypted name.
    ///
    /// # Errors
    /// [`LongNameError`].
    pub fn check_long_name<'a>(
        &self,
        entry: &OsStr,
        stored: &'a [u8],
    ) -> Result<&'a [u8], LongNameError> {
        check_long_name(entry, stored, self.raw64(), self.long_name_max())
    }

    /// Encrypts an xattr name into its backing name `user.gocryptfs.<EME name>`.
    ///
    /// # Errors
    /// [`NameError`] for an empty or over-long attribute name.
    pub fn encrypt_xattr_name(&self, plain: &[u8]) -> Result<String, NameError> {
        if plain.is_empty() || plain.contains(&0) {
            return Err(NameError::Empty);
        }
        let c = self
            .eme
            .transform(&XATTR_IV, &pad16(plain), Direction::Encrypt)
            .map_err(|_| NameError::TooLong(plain.len()))?;
        Ok(format!("{XATTR_PREFIX}{}", b64_encode(&c, self.raw64())))
    }

    /// Decrypts a backing xattr name; `None` if it lacks the `user.gocryptfs.` prefix (not
    /// ours, ignored as gocryptfs does).
    ///
    /// # Errors
    /// [`NameError`] if the prefixed part does not decode and decrypt.
    pub fn decrypt_xattr_name(&self, backing: &[u8]) -> Option<Result<Vec<u8>, NameError>> {
        let c = backing.strip_prefix(XATTR_PREFIX.as_bytes())?;
        Some((|| {
            let bin = check_cipher_name(c, self.raw64())?;
            let p = self
                .eme
                .transform(&XATTR_IV, &bin, Direction::Decrypt)
                .map_err(|_| NameError::Length(bin.len()))?;
            let name = unpad16(&p)?.to_vec();
            if name.is_empty() || name.contains(&0) {
                return Err(NameError::Nul);
            }
            Ok(name)
        })())
    }
}

/// No-key check of an encrypted name (see [`NameTransform::check_cipher_name`]).
///
/// # Errors
/// [`NameError`].
pub fn check_cipher_name(cipher: &[u8], raw64: bool) -> Result<Vec<u8>, NameError> {
    let bin = b64_decode(cipher, raw64)?;
    if bin.is_empty() || !bin.len().is_multiple_of(16) || bin.len() > 2048 {
        return Err(NameError::Length(bin.len()));
    }
    Ok(bin)
}

/// No-key check of a long-name entry and its `.name` content (see
/// [`NameTransform::check_long_name`]).
///
/// # Errors
/// [`LongNameError`].
pub fn check_long_name<'a>(
    entry: &OsStr,
    stored: &'a [u8],
    raw64: bool,
    long_name_max: usize,
) -> Result<&'a [u8], LongNameError> {
    let hash = entry
        .as_bytes()
        .strip_prefix(LONGNAME_PREFIX.as_bytes())
        .ok_or(LongNameError::BadHash)?;
    let h = b64_decode(hash, raw64).map_err(|_| LongNameError::BadHash)?;
    if h.len() != 32 {
        return Err(LongNameError::BadHash);
    }
    if Sha256::digest(stored).as_slice() != h.as_slice() {
        return Err(LongNameError::HashMismatch);
    }
    if stored.len() <= long_name_max {
        return Err(LongNameError::NotLong(stored.len()));
    }
    Ok(stored)
}

/// Converts bytes to an `OsString` (names are bytes on Unix).
#[must_use]
pub fn os(bytes: Vec<u8>) -> OsString {
    OsString::from_vec(bytes)
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

    fn zero_key_names() -> NameTransform {
        NameTransform::new(
            NameLayout::Encrypted {
                dir_iv: true,
                raw64: true,
                long_name_max: 255,
            },
            &MasterKey::from_bytes(&[0u8; 32]).unwrap(),
            true,
        )
    }

    #[test]
    fn pad16_strict() {
        assert_eq!(pad16(b""), vec![16u8; 16]);
        assert_eq!(pad16(b"a").len(), 16);
        assert_eq!(pad16(&[1u8; 16]).len(), 32);
        assert_eq!(unpad16(&pad16(b"abc")).unwrap(), b"abc");
        let mut bad = pad16(b"abc");
        bad[14] = 12;
        assert_eq!(unpad16(&bad), Err(NameError::Padding));
        assert_eq!(unpad16(&[16u8; 16]), Err(NameError::Padding));
        assert_eq!(unpad16(&[0u8; 16]), Err(NameError::Padding));
        assert_eq!(unpad16(&[17u8; 32]), Err(NameError::Padding));
        assert_eq!(unpad16(&[1u8; 15]), Err(NameError::Length(15)));
        assert_eq!(unpad16(&[]), Err(NameError::Length(0)));
    }

    #[test]
    fn base64_strict() {
        assert_eq!(
            b64_decode(b"CgaUTx__A_2N2uVogIvc9w", true).unwrap().len(),
            16
        );
        // Non-zero trailing bits: last char 'w' (..110000) → 'x' (..110001).
        assert_eq!(
            b64_decode(b"CgaUTx__A_2N2uVogIvc9x", true),
            Err(NameError::NonCanonical)
        );
        assert!(b64_decode(b"CgaUTx__A_2N2uVogIvc9w==", true).is_err());
        assert!(b64_decode(b"CgaUTx__A_2N2uVogIvc9w", false).is_err());
        assert!(b64_decode(b"CgaUTx__A_2N2uVogIvc9w\n", true).is_err());
        assert!(b64_decode(b"Cga+Tx__A_2N2uVogIvc9w", true).is_err());
        assert_eq!(
            b64_decode(b"CgaUTx__A_2N2uVogIvc9w==", false)
                .unwrap()
                .len(),
            16
        );
    }

    #[test]
    fn names_reject_reserved_plaintexts() {
        let nt = zero_key_names();
        let iv = DirIv([1; 16]);
        for bad in [&b"."[..], b"..", b"a/b", b"a\0b", b""] {
            assert!(nt.encrypt_name(bad, &iv).is_err());
            // Craft the cipher name directly (bypassing the writer's check).
            let c = nt
                .eme
                .transform(&iv.0, &pad16(bad), Direction::Encrypt)
                .unwrap();
            let on_disk = b64_encode(&c, true);
            assert!(nt.decrypt_name(on_disk.as_bytes(), &iv).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn long_names() {
        let nt = zero_key_names();
        let iv = DirIv([1; 16]);
        let short = nt.to_disk(OsStr::new(&"x".repeat(175)), &iv).unwrap();
        assert!(matches!(short, DiskName::Short(ref s) if s.len() == 235));
        let long = nt.to_disk(OsStr::new(&"x".repeat(176)), &iv).unwrap();
        let DiskName::Long { hashed, cipher } = long else {
            panic!()
        };
        assert_eq!(cipher.len(), 256);
        assert_eq!(
            nt.check_long_name(OsStr::new(&hashed), cipher.as_bytes())
                .unwrap(),
            cipher.as_bytes()
        );
        assert_eq!(
            nt.check_long_name(OsStr::new(&hashed), b"other"),
            Err(LongNameError::HashMismatch)
        );
        assert_eq!(classify(OsStr::new(&hashed)), EntryClass::LongName);
        assert_eq!(
            classify(OsStr::new(&format!("{hashed}.name"))),
            EntryClass::LongNameFile
        );
    }

    #[test]
    fn xattr_names_round_trip() {
        let nt = zero_key_names();
        let b = nt.encrypt_xattr_name(b"user.comment").unwrap();
        assert!(b.starts_with(XATTR_PREFIX));
        assert_eq!(
            nt.decrypt_xattr_name(b.as_bytes()).unwrap().unwrap(),
            b"user.comment"
        );
        assert!(nt.decrypt_xattr_name(b"user.other").is_none());
    }
}
