//! The crate's one public error type, its typed sub-enums, and [`ErrorKind`] (what a caller
//! does about an error: exit code, errno).
//!
//! Mirrors the failure classes of gocryptfs `internal/exitcodes/exitcodes.go` and the
//! "mitigated corruption" reports of `fsck.go`, as structured data (`docs/file-format.md`).
//! Messages are one line, lowercase, and name the cause and the fix. Secrets never appear in
//! them; authentication failures say *where* (path, block), never *why*.

use std::ffi::OsString;
use std::fmt;
use std::io;
use std::path::PathBuf;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from opening, reading, writing or checking a gocryptfs cipher directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `gocryptfs.conf` could not be parsed, or uses a feature or parameter we refuse.
    #[error("{path}: {source}", path = crate::escape::escaped(.path))]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong with it.
        #[source]
        source: ConfigError,
    },
    /// The password did not unlock the master key.
    #[error(
        "wrong password for {path}: the master key did not authenticate (or gocryptfs.conf was altered); check the password file",
        path = crate::escape::escaped(.path)
    )]
    WrongPassword {
        /// The config file.
        path: PathBuf,
    },
    /// A master key was given, and nothing checked with it authenticates.
    #[error(
        "wrong master key for {path}: no file block or name checked with it authenticates (or all of them are corrupt); check the key",
        path = crate::escape::escaped(.path)
    )]
    WrongMasterKey {
        /// The cipher directory.
        path: PathBuf,
    },
    /// A content block failed authentication: tampered, corrupt, moved, or the wrong key.
    #[error(
        "{path}: block {block} failed authentication (tampered, corrupt or moved); restore the file from a good copy",
        path = crate::escape::escaped(.path)
    )]
    Authentication {
        /// The file (plaintext path when known, else the cipher path).
        path: PathBuf,
        /// 0-based plaintext block number (4096-byte blocks).
        block: u64,
    },
    /// A content block is malformed (too short, all-zero nonce).
    #[error("{path}: block {block}: {kind}; restore the file from a good copy", path = crate::escape::escaped(.path))]
    Block {
        /// The file.
        path: PathBuf,
        /// 0-based plaintext block number.
        block: u64,
        /// What is wrong.
        kind: BlockErrorKind,
    },
    /// Structural corruption: a bad header, an impossible size, a bad diriv, name, long-name
    /// file, symlink target or xattr.
    #[error("{path}: {source}", path = crate::escape::escaped(.path))]
    Corrupt {
        /// The cipher-side path of the broken item.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: CorruptError,
    },
    /// A local I/O operation failed.
    #[error("{op} {path}: {source}", path = crate::escape::escaped(.path))]
    Io {
        /// What we were doing ("reading", "creating", ...).
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The input cannot be represented in a gocryptfs tree, or the output would be unsafe.
    #[error("{path}: {reason}", path = crate::escape::escaped(.path))]
    Refused {
        /// The path involved.
        path: PathBuf,
        /// Why, and what to do.
        reason: String,
    },
    /// An entry of the output already exists (and `force` was not given).
    #[error("{path}: already exists in the output", path = crate::escape::escaped(.path))]
    Exists {
        /// The entry, relative to the output directory.
        path: PathBuf,
    },
    /// The output directory exists and is not empty.
    #[error("{path}: output directory is not empty", path = crate::escape::escaped(.path))]
    OutputNotEmpty {
        /// The output directory.
        path: PathBuf,
    },
    /// A key or password could not be parsed.
    #[error("{0}")]
    Key(#[from] KeyError),
    /// Several problems were found (decrypt keeps going and reports them all).
    #[error("{count} problem(s) found, the first: {first}")]
    Problems {
        /// How many.
        count: usize,
        /// The first one, for the one-line message.
        first: Box<Error>,
        /// The exit class of the worst problem.
        kind: ErrorKind,
    },
}

/// What a caller should do about an [`Error`]; the agent maps it to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The cipher directory is missing, unreadable, or uses a format we refuse.
    BadCipherDir,
    /// Wrong password or master key.
    WrongKey,
    /// Tampering or corruption in the tree.
    Corrupt,
    /// A local I/O failure.
    Io,
    /// The output exists and would be overwritten.
    OutputExists,
    /// The request itself is invalid (bad key file, unrepresentable input).
    Usage,
}

impl Error {
    /// Classifies the error.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Config { .. } => ErrorKind::BadCipherDir,
            Error::WrongPassword { .. } | Error::WrongMasterKey { .. } => ErrorKind::WrongKey,
            Error::Authentication { .. } | Error::Block { .. } | Error::Corrupt { .. } => {
                ErrorKind::Corrupt
            }
            Error::Io { .. } => ErrorKind::Io,
            Error::OutputNotEmpty { .. } | Error::Exists { .. } => ErrorKind::OutputExists,
            Error::Refused { .. } | Error::Key(_) => ErrorKind::Usage,
            Error::Problems { kind, .. } => *kind,
        }
    }

    /// An [`Error::Io`] (for the frontends built on this crate too).
    pub fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// An [`Error::Corrupt`] naming `path`.
    pub fn corrupt(path: impl Into<PathBuf>, source: impl Into<CorruptError>) -> Self {
        Error::Corrupt {
            path: path.into(),
            source: source.into(),
        }
    }

    /// An [`Error::Refused`] (for the frontends built on this crate too).
    pub fn refused(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::Refused {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The [`Error`] of a failed block of file `path`.
    pub fn from_block(path: impl Into<PathBuf>, e: BlockError) -> Self {
        let path = path.into();
        match e.kind {
            BlockErrorKind::Authentication => Error::Authentication {
                path,
                block: e.block,
            },
            kind => Error::Block {
                path,
                block: e.block,
                kind,
            },
        }
    }
}

/// Problems with `gocryptfs.conf`. The file comes from the storage host: messages name the
/// field and what was expected, never a value read from it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not JSON, or not the JSON shape gocryptfs writes.
    #[error("malformed gocryptfs.conf: {0}; restore the file from a backup")]
    Json(String),
    /// `Version` is not 2.
    #[error(
        "unsupported on-disk format Version (gocryptfs 1.0 and later write 2); use the gocryptfs release that made the tree"
    )]
    Version,
    /// A feature flag we do not know: a newer gocryptfs made this tree.
    #[error(
        "FeatureFlags[{index}] is not a flag this version knows (a newer gocryptfs made the tree, or the file was edited); refusing to guess its format"
    )]
    UnknownFlag {
        /// Position in the `FeatureFlags` array.
        index: usize,
    },
    /// The FIDO2 flag or object: the password comes from a hardware token.
    #[error(
        "the tree needs a FIDO2 token (feature flag FIDO2) and there is no token in a TEE; re-encrypt it with a password or master key"
    )]
    Fido2,
    /// A flag appears twice.
    #[error("FeatureFlags[{index}] repeats an earlier flag; the file was edited by hand")]
    DuplicateFlag {
        /// Position of the repeat.
        index: usize,
    },
    /// A combination of flags gocryptfs itself never writes and refuses.
    #[error("feature flags conflict: {0}")]
    FlagMatrix(&'static str),
    /// A flag or combination gocryptfs can read but we deliberately refuse.
    #[error("unsupported layout: {0}")]
    Unsupported(&'static str),
    /// scrypt parameters below gocryptfs' minimums (a weakened or rogue config).
    #[error(
        "weak scrypt parameters: {0}; gocryptfs refuses these too (minimum N=2^10, R=8, P=1, 32-byte salt and key)"
    )]
    WeakScrypt(&'static str),
    /// scrypt parameters outside what any gocryptfs writes (a denial-of-service config).
    #[error("impossible scrypt parameters: {0}")]
    ScryptTooExpensive(&'static str),
    /// scrypt would need more memory (or time) than this run allows.
    #[error(
        "scrypt would need {needed_mib} MiB of memory (or as much work), more than the limit of {limit_mib} MiB; nothing was allocated"
    )]
    ScryptCost {
        /// What the config asks for (N × R × 128 bytes, × P for the work), in MiB.
        needed_mib: u64,
        /// The limit in force, in MiB.
        limit_mib: u64,
    },
    /// The layout keeps names and symlink targets in plaintext, outside the key.
    #[error(
        "the tree stores names and symlink targets in plaintext (feature flag PlaintextNames), so the storage host can choose them; refusing by default"
    )]
    PlaintextNames,
    /// A base64 field does not decode.
    #[error("field {0} is not valid standard base64")]
    Base64(&'static str),
    /// `EncryptedKey` has the wrong length for the flags.
    #[error("EncryptedKey is {got} bytes, expected {expected} for these feature flags")]
    EncryptedKeyLength {
        /// Decoded length.
        got: usize,
        /// Expected length.
        expected: usize,
    },
    /// `LongNameMax` field and flag disagree or are out of range.
    #[error("LongNameMax: {0}")]
    LongNameMax(&'static str),
    /// `gocryptfs.conf` is a FIFO, symlink, directory or device.
    #[error("gocryptfs.conf is a {0}, not a regular file")]
    NotRegular(&'static str),
    /// The cipher directory itself cannot be opened.
    #[error("the cipher directory cannot be opened ({0})")]
    NoDir(io::ErrorKind),
    /// There is no `gocryptfs.conf`.
    #[error(
        "no gocryptfs.conf here: not a gocryptfs cipher directory (a tree made without one opens only with its master key)"
    )]
    Missing,
}

/// Why a key or password input was rejected. Never contains the secret itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The password file's first line is empty.
    #[error("the password file's first line is empty; put the password on the first line")]
    EmptyPassword,
    /// The password is longer than gocryptfs accepts.
    #[error("the password is longer than 2048 bytes (gocryptfs' limit)")]
    PasswordTooLong,
    /// A master key is not 32 bytes / 64 hex digits.
    #[error(
        "a master key must be 64 hex digits (dashes and whitespace allowed), as gocryptfs prints it; got {0} digits"
    )]
    MasterKeyLength(usize),
    /// A master key contains something that is not a hex digit.
    #[error("the master key contains a character that is not a hex digit or a dash")]
    MasterKeyHex,
    /// The operation needs a password (e.g. creating a gocryptfs.conf).
    #[error("a password is needed here (a master key alone cannot create gocryptfs.conf)")]
    PasswordRequired,
    /// The OS random source failed.
    #[error("the OS random number generator failed: {0}")]
    Random(String),
}

/// Why a content block could not be decrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BlockErrorKind {
    /// The AEAD tag did not verify.
    Authentication,
    /// The block is shorter than nonce + tag + 1 byte (truncated file).
    TooShort,
    /// The nonce is all zero, and the block is not a whole all-zero hole block.
    AllZeroNonce,
    /// A whole all-zero block (a hole): zeros no key authenticates, refused by default.
    Hole,
}

impl fmt::Display for BlockErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockErrorKind::Authentication => "failed authentication (tampered, corrupt or moved)",
            BlockErrorKind::TooShort => "block is too short (file truncated)",
            BlockErrorKind::AllZeroNonce => "all-zero nonce (zeroed or truncated data)",
            BlockErrorKind::Hole => {
                "all-zero block (a hole: zeros that no key authenticates; the storage can zero any block)"
            }
        })
    }
}

/// A block-level failure before the file path is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("block {block}: {kind}")]
pub struct BlockError {
    /// 0-based plaintext block number.
    pub block: u64,
    /// What went wrong.
    pub kind: BlockErrorKind,
}

/// Structural corruption of one item.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CorruptError {
    /// The 18-byte file header is bad.
    #[error("file header: {0}")]
    Header(#[from] HeaderError),
    /// The ciphertext size cannot come from any plaintext size.
    #[error(
        "impossible ciphertext size {cipher_size}: the last block is shorter than its {overhead}-byte overhead (truncated)"
    )]
    Size {
        /// Size on disk.
        cipher_size: u64,
        /// Nonce + tag length.
        overhead: u64,
    },
    /// `gocryptfs.diriv` is missing or bad.
    #[error("gocryptfs.diriv: {0}")]
    DirIv(#[from] DirIvError),
    /// An encrypted name does not decode or decrypt to a valid name.
    #[error("encrypted name {name:?}: {source}")]
    Name {
        /// The name on disk.
        name: OsString,
        /// What is wrong.
        #[source]
        source: NameError,
    },
    /// A `gocryptfs.longname.*` entry or its `.name` file is bad.
    #[error("long name: {0}")]
    LongName(#[from] LongNameError),
    /// A symlink target does not decrypt.
    #[error("symlink target: {0}")]
    Symlink(String),
    /// A symlink whose target is absolute or climbs above the tree's root.
    #[error(
        "symlink target leaves the tree (absolute, or climbs above the root); not followed, not created, not served"
    )]
    SymlinkOutside,
    /// A FIFO, socket, device or symlink where a regular file belongs.
    #[error("is a {0}, not a regular file")]
    NotRegular(&'static str),
    /// An xattr name or value does not decrypt.
    #[error("xattr {name:?}: {reason}")]
    Xattr {
        /// Backing xattr name.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A file larger than any model file (1 TiB of plaintext): refused before any work.
    #[error("impossible plaintext size of {size} bytes (more than 1 TiB)")]
    Absurd {
        /// The plaintext size the ciphertext size implies.
        size: u64,
    },
    /// The entry is not what the pinned manifest says (`decrypt` with a pin: the storage
    /// changed after the check).
    #[error("differs from the pinned manifest: {0}")]
    Pin(String),
    /// A content block is bad (used in reports).
    #[error("{0}")]
    Block(#[from] BlockError),
}

/// Problems with an 18-byte file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// Fewer than 18 bytes (and not empty).
    #[error("only {0} bytes, a header needs 18 (truncated)")]
    Short(u64),
    /// All 18 bytes are zero.
    #[error("header is all zero (zeroed data)")]
    AllZero,
    /// Version field is not 2.
    #[error("header version {0}, expected 2")]
    Version(u16),
    /// The file ID is all zero.
    #[error("file ID is all zero")]
    ZeroFileId,
}

/// Problems with `gocryptfs.diriv`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DirIvError {
    /// The file is missing.
    #[error("missing (the directory's names cannot be decrypted)")]
    Missing,
    /// The file is not 16 bytes.
    #[error("is {0} bytes, expected 16")]
    Length(u64),
    /// The 16 bytes are all zero.
    #[error("is all zero")]
    AllZero,
}

/// Why an encrypted name was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// Not base64url of the expected variant.
    #[error("not valid base64url")]
    Base64,
    /// Decodes, but is not the canonical encoding (non-zero trailing bits, wrong padding).
    #[error("non-canonical base64 (malleable encoding)")]
    NonCanonical,
    /// The decoded length is not a positive multiple of 16.
    #[error("decoded length {0} is not a positive multiple of 16")]
    Length(usize),
    /// PKCS#7 padding is wrong (usually: the wrong key, or a name from another directory).
    #[error("bad padding (wrong key, or a name moved from another directory)")]
    Padding,
    /// Decrypts to an empty name.
    #[error("decrypts to an empty name")]
    Empty,
    /// Decrypts to more than 255 bytes.
    #[error("decrypts to {0} bytes, more than 255")]
    TooLong(usize),
    /// Decrypts to `.` or `..`.
    #[error("decrypts to {0:?}, a reserved name")]
    Dot(&'static str),
    /// Decrypts to a name containing `/`.
    #[error("decrypts to a name containing '/'")]
    Slash,
    /// Decrypts to a name containing NUL.
    #[error("decrypts to a name containing NUL")]
    Nul,
}

/// Problems with long names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LongNameError {
    /// `gocryptfs.longname.X` has no `.name` file.
    #[error("the .name file is missing")]
    MissingNameFile,
    /// The `.name` file is larger than any valid encrypted name.
    #[error("the .name file is {0} bytes, more than 344")]
    TooLarge(u64),
    /// The hash in the file name does not match the `.name` content.
    #[error("the hash in the entry name does not match its .name file (swapped .name files)")]
    HashMismatch,
    /// The hash part of the entry name is not valid.
    #[error("the hash part of the entry name is not 32 bytes of canonical base64url")]
    BadHash,
    /// A `.name` file without its entry.
    #[error("a .name file without its entry")]
    Orphan,
    /// The stored name was short enough that gocryptfs would not have hashed it.
    #[error("the stored name is only {0} characters; gocryptfs hashes only longer names")]
    NotLong(usize),
}
