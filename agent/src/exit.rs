//! Documented, stable exit codes (`docs/cli.md`). Numbers are never reused or renumbered;
//! 12 and 26 match gocryptfs (wrong password, fsck found corruption).
//!
//! Commands return `anyhow::Error`. [`classify`] walks the error chain and picks the code
//! from the first error it recognises: an explicit [`Coded`] marker, or a typed library error.

use std::fmt;
use std::process::ExitCode;

/// Every exit code ccmount uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
#[allow(
    dead_code,
    reason = "the table is the documented contract; commands adopt codes as they land"
)]
pub(crate) enum Exit {
    /// Success.
    Ok = 0,
    /// Unexpected internal error (a bug: please report it).
    Internal = 1,
    /// Usage error: bad arguments or configuration.
    Usage = 2,
    /// An input/output error on a local file (missing, permission, disk full).
    Io = 3,
    /// The cipher directory is missing, unreadable, or uses a format we refuse.
    BadCipherDir = 4,
    /// The output exists and would be overwritten (use --force).
    OutputExists = 5,
    /// Wrong password or master key (as gocryptfs).
    WrongKey = 12,
    /// Corruption or tampering found, or the model differs from the pinned manifest
    /// (as gocryptfs -fsck).
    Corrupt = 26,
    /// The KBS could not be reached within the deadline.
    KbsUnreachable = 30,
    /// TLS to the KBS failed (certificate, CA, handshake).
    Tls = 31,
    /// The KBS speaks another protocol version.
    ProtocolVersion = 32,
    /// The KBS rejected our attestation evidence.
    AttestationRejected = 33,
    /// The KBS resource policy refused the resource.
    PolicyDenied = 34,
    /// The KBS has no such resource.
    ResourceMissing = 35,
    /// No usable TEE, or evidence could not be produced.
    Evidence = 36,
    /// The KBS answered something we cannot accept (malformed JSON, bad JWE, ...).
    KbsProtocol = 37,
    /// The FUSE mount failed.
    MountFailed = 40,
    /// FUSE is unavailable (/dev/fuse missing or not permitted).
    NoFuse = 41,
    /// The mount point is busy, missing, or not empty.
    MountpointBusy = 42,
    /// No GPU or no CUDA driver.
    NoGpu = 50,
    /// A GPU operation failed.
    GpuFailed = 51,
    /// Object storage could not be reached, or kept failing, within the deadline.
    StorageUnreachable = 60,
    /// Object storage refused the credentials.
    StorageAuth = 61,
    /// The bucket, the prefix or an object does not exist.
    StorageNotFound = 62,
    /// An object changed in the bucket while it was read.
    StorageChanged = 63,
    /// Stopped by SIGINT (128 + 2); work in progress was cleaned up.
    Interrupted = 130,
    /// Stopped by SIGTERM (128 + 15); work in progress was cleaned up.
    Terminated = 143,
}

/// Every code, for [`Exit::from_code`].
const ALL: [Exit; 27] = [
    Exit::Ok,
    Exit::Internal,
    Exit::Usage,
    Exit::Io,
    Exit::BadCipherDir,
    Exit::OutputExists,
    Exit::WrongKey,
    Exit::Corrupt,
    Exit::KbsUnreachable,
    Exit::Tls,
    Exit::ProtocolVersion,
    Exit::AttestationRejected,
    Exit::PolicyDenied,
    Exit::ResourceMissing,
    Exit::Evidence,
    Exit::KbsProtocol,
    Exit::MountFailed,
    Exit::NoFuse,
    Exit::MountpointBusy,
    Exit::NoGpu,
    Exit::GpuFailed,
    Exit::StorageUnreachable,
    Exit::StorageAuth,
    Exit::StorageNotFound,
    Exit::StorageChanged,
    Exit::Interrupted,
    Exit::Terminated,
];

impl Exit {
    /// The process exit code.
    pub(crate) fn code(self) -> ExitCode {
        ExitCode::from(self as u8)
    }

    /// The `Exit` with this number (as a child process reported it), if it is one of ours.
    #[cfg_attr(not(feature = "fuse"), allow(dead_code, reason = "used by mount"))]
    pub(crate) fn from_code(code: u8) -> Option<Exit> {
        ALL.into_iter().find(|e| *e as u8 == code)
    }
}

/// Wraps an error with an explicit exit code. Use through [`coded`] or
/// `anyhow::Error::new(Coded::new(..))`.
#[derive(Debug)]
pub(crate) struct Coded {
    pub(crate) exit: Exit,
    pub(crate) msg: String,
}

impl fmt::Display for Coded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Coded {}

/// An `anyhow::Error` carrying `exit`.
pub(crate) fn coded(exit: Exit, msg: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Coded {
        exit,
        msg: msg.into(),
    })
}

/// Picks the exit code for an error: the outermost explicit [`Coded`], else the first
/// library error with a known meaning, else [`Exit::Internal`].
pub(crate) fn classify(err: &anyhow::Error) -> Exit {
    // `.context(Coded {..})` is only visible through anyhow's own downcast.
    if let Some(c) = err.downcast_ref::<Coded>() {
        return c.exit;
    }
    for cause in err.chain() {
        if let Some(c) = cause.downcast_ref::<Coded>() {
            return c.exit;
        }
        if let Some(code) = classify_library(cause) {
            return code;
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::AlreadyExists => Exit::OutputExists,
                _ => Exit::Io,
            };
        }
    }
    Exit::Internal
}

/// Library error types → exit codes. Each library error enum gets its arm here.
fn classify_library(cause: &(dyn std::error::Error + 'static)) -> Option<Exit> {
    if let Some(e) = cause.downcast_ref::<attest::Error>() {
        return Some(attest_exit(e));
    }
    if cause.downcast_ref::<attest::EvidenceError>().is_some() {
        return Some(Exit::Evidence);
    }
    if cause.downcast_ref::<attest::UriError>().is_some() {
        return Some(Exit::Usage);
    }
    if let Some(e) = cause.downcast_ref::<gocryptfs_format::Error>() {
        return Some(format_exit(e));
    }
    if let Some(e) = cause.downcast_ref::<s3_source::S3Error>() {
        return Some(storage_exit(e));
    }
    if cause.downcast_ref::<gocryptfs_format::KeyError>().is_some() {
        // An empty password file, a malformed master key file: the input, not a bug.
        return Some(Exit::Usage);
    }
    if let Some(e) = cause.downcast_ref::<gpu_loader::Error>() {
        // A source's failure (object storage) is classified by its own error, next in the chain.
        if e.kind() == gpu_loader::ErrorKind::Source {
            return None;
        }
        return Some(gpu_exit(e.kind()));
    }
    if let Some(e) = cause.downcast_ref::<gpu_loader::GpuError>() {
        return Some(gpu_exit(e.kind()));
    }
    #[cfg(feature = "fuse")]
    if let Some(e) = cause.downcast_ref::<fuse_decrypt::Error>() {
        return Some(match e {
            fuse_decrypt::Error::Mount { source, .. } => mount_exit(source),
            fuse_decrypt::Error::Format(f) => format_exit(f),
            _ => Exit::Internal,
        });
    }
    None
}

/// Format-core errors → exit codes.
fn format_exit(e: &gocryptfs_format::Error) -> Exit {
    format_kind_exit(e.kind())
}

fn format_kind_exit(k: gocryptfs_format::ErrorKind) -> Exit {
    use gocryptfs_format::ErrorKind as K;
    match k {
        K::BadCipherDir => Exit::BadCipherDir,
        K::WrongKey => Exit::WrongKey,
        K::Corrupt => Exit::Corrupt,
        K::Io => Exit::Io,
        K::OutputExists => Exit::OutputExists,
        _ => Exit::Usage,
    }
}

/// Object-storage errors → exit codes.
fn storage_exit(e: &s3_source::S3Error) -> Exit {
    use s3_source::S3Error as E;
    match e.root() {
        E::Usage(_) | E::PlainHttp { .. } | E::CredentialsInUrl => Exit::Usage,
        E::Unreachable { .. } => Exit::StorageUnreachable,
        E::Auth { .. } => Exit::StorageAuth,
        E::NotFound { .. } => Exit::StorageNotFound,
        E::Changed { .. } => Exit::StorageChanged,
        E::Format(f) => format_exit(f),
        E::Problems { kind, .. } => format_kind_exit(*kind),
        _ => Exit::Corrupt,
    }
}

/// GPU loader errors → exit codes.
fn gpu_exit(k: gpu_loader::ErrorKind) -> Exit {
    match k {
        gpu_loader::ErrorKind::Format(f) => format_kind_exit(f),
        gpu_loader::ErrorKind::NoGpu => Exit::NoGpu,
        gpu_loader::ErrorKind::Usage => Exit::Usage,
        _ => Exit::GpuFailed,
    }
}

/// FUSE mount errors → exit codes.
#[cfg(feature = "fuse")]
fn mount_exit(e: &fuse_decrypt::MountError) -> Exit {
    use fuse_decrypt::MountErrorKind as K;
    match e.kind() {
        K::NoFuse => Exit::NoFuse,
        K::Mountpoint => Exit::MountpointBusy,
        K::Usage => Exit::Usage,
        _ => Exit::MountFailed,
    }
}

/// The fix for an error, in the words of this command line: libraries state the problem
/// ("output directory is not empty"), the binary says which flag or command solves it.
/// `None` when the message already says all there is.
pub(crate) fn hint(err: &anyhow::Error) -> Option<&'static str> {
    err.chain().find_map(hint_of)
}

fn hint_of(cause: &(dyn std::error::Error + 'static)) -> Option<&'static str> {
    if let Some(e) = cause.downcast_ref::<s3_source::S3Error>() {
        use s3_source::S3Error as E;
        return match e.root() {
            E::PlainHttp { .. } => {
                Some("use https, or add --s3-allow-http for a local test server")
            }
            E::CredentialsInUrl => Some(
                "give credentials with AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --s3-credentials",
            ),
            E::Unreachable { message, .. } if message.contains("certificate is not trusted") => {
                Some("give the endpoint's CA certificate with --s3-ca-cert (or [source] ca_cert)")
            }
            E::Unreachable { .. } => Some(
                "check --s3-endpoint (or AWS_ENDPOINT_URL) and the network; raise --timeout if the server is slow",
            ),
            E::Usage(m) if m.starts_with("extra CA certificates") => {
                Some("give --s3-ca-cert a file of PEM certificates (-----BEGIN CERTIFICATE-----)")
            }
            E::Auth { .. } => Some(
                "check the storage credentials: AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the --s3-credentials resource",
            ),
            E::NotFound { .. } => {
                Some("check the bucket and prefix of the s3:// location (and --s3-region)")
            }
            E::Changed { .. } => {
                Some("the bucket is being rewritten: wait for the upload to finish and run again")
            }
            E::Format(f) => format_hint(f),
            _ => None,
        };
    }
    if let Some(e) = cause.downcast_ref::<gocryptfs_format::Error>() {
        return format_hint(e);
    }
    if let Some(e) = cause.downcast_ref::<gpu_loader::Error>() {
        return match e {
            gpu_loader::Error::Format(f) => format_hint(f),
            gpu_loader::Error::Gpu(g) => gpu_hint(g),
            gpu_loader::Error::Safetensors { .. } => {
                Some("re-export the file with a current safetensors writer")
            }
            _ => None,
        };
    }
    if let Some(e) = cause.downcast_ref::<gpu_loader::GpuError>() {
        return gpu_hint(e);
    }
    #[cfg(feature = "fuse")]
    if let Some(fuse_decrypt::Error::Mount { source, .. }) = cause.downcast_ref() {
        return mount_hint(source);
    }
    if let Some(e) = cause.downcast_ref::<attest::Error>() {
        use attest::{Error as E, ProtocolError as P};
        return match e {
            E::InsecureHttp { .. } => {
                Some("use https://, or pass --insecure-http for a local test KBS")
            }
            E::InvalidCaCert { .. } => Some(
                "pass the CA certificate that signed the KBS's certificate, as PEM, with --kbs-cert",
            ),
            E::Unreachable { .. } => Some("check --kbs-url"),
            E::Timeout { .. } => Some("raise --timeout if the KBS is slow"),
            E::Tls { problem, .. } => Some(match problem {
                attest::TlsProblem::UnknownIssuer => {
                    "pass the CA that signed the KBS certificate with --kbs-cert PEM"
                }
                attest::TlsProblem::CaAsServerCertificate => {
                    "give the KBS a server certificate issued by a CA (or made with basicConstraints CA:FALSE) and pass that CA with --kbs-cert"
                }
                attest::TlsProblem::WrongName => {
                    "use the host name the certificate names in --kbs-url, or reissue the certificate with this name"
                }
                attest::TlsProblem::Expired => {
                    "renew the KBS certificate (or check this machine's clock)"
                }
                attest::TlsProblem::NotTls => {
                    "check the port; a plain-HTTP test KBS needs http:// and --insecure-http"
                }
                _ => "check --kbs-url and --kbs-cert",
            }),
            E::Protocol(
                P::MalformedJson { .. } | P::UnexpectedStatus { .. } | P::TooLarge { .. },
            ) => Some("check that --kbs-url points at a Trustee KBS"),
            E::Evidence(ev) => evidence_hint(ev),
            _ => None,
        };
    }
    if let Some(ev) = cause.downcast_ref::<attest::EvidenceError>() {
        return evidence_hint(ev);
    }
    None
}

fn format_hint(e: &gocryptfs_format::Error) -> Option<&'static str> {
    use gocryptfs_format::ConfigError as C;
    match e {
        gocryptfs_format::Error::Config { source, .. } => match source {
            C::PlaintextNames => Some(
                "if the owner really made a plaintext-names tree, opt in with --allow-plaintextnames",
            ),
            C::ScryptCost { .. } => Some(
                "if the owner really chose this cost, raise the limit with --max-scrypt-memory SIZE",
            ),
            _ => None,
        },
        gocryptfs_format::Error::Block {
            kind: gocryptfs_format::BlockErrorKind::Hole,
            ..
        } => Some("for a tree that really holds sparse files, opt in with --allow-holes"),
        gocryptfs_format::Error::Corrupt {
            source: gocryptfs_format::CorruptError::SymlinkOutside,
            ..
        } => Some("if the owner really made such links, opt in with --allow-outside-symlinks"),
        gocryptfs_format::Error::OutputNotEmpty { .. } | gocryptfs_format::Error::Exists { .. } => {
            Some("pass --force to write into it")
        }
        gocryptfs_format::Error::WrongPassword { .. } => {
            Some("check --passfile (its first line is the password) or the --key resource")
        }
        gocryptfs_format::Error::Problems { first, .. } => format_hint(first),
        _ => None,
    }
}

fn gpu_hint(e: &gpu_loader::GpuError) -> Option<&'static str> {
    use gpu_loader::GpuError as G;
    match e {
        G::NotCompiled => Some(
            "rebuild ccmount with its `gpu` feature, or use --target cpu to run the pipeline without a GPU",
        ),
        G::NoDriver => Some("or use --target cpu to run the pipeline without a GPU"),
        G::NoDevice { .. } => Some("check --device (the CUDA ordinal)"),
        _ => None,
    }
}

fn evidence_hint(e: &attest::EvidenceError) -> Option<&'static str> {
    match e {
        attest::EvidenceError::NoTee { .. } => {
            Some("or pass --tee sample against a test KBS (never in production)")
        }
        attest::EvidenceError::NotPresent { .. } | attest::EvidenceError::Unsupported { .. } => {
            Some("drop --tee to auto-detect, or name the TEE this machine has")
        }
        _ => None,
    }
}

#[cfg(feature = "fuse")]
fn mount_hint(e: &fuse_decrypt::MountError) -> Option<&'static str> {
    use fuse_decrypt::MountError as M;
    match e {
        M::NoDevice(_) => Some(
            "load the fuse module (modprobe fuse), or give the container the device (--device /dev/fuse)",
        ),
        M::NotPermitted(_) => Some(
            "run as root (CAP_SYS_ADMIN), or install fuse3 so that fusermount3 can mount for a normal user",
        ),
        M::MountpointMissing => Some("create it first (mkdir -p)"),
        M::NotEmpty => Some("use an empty directory, or -o nonempty to hide its contents"),
        M::AlreadyMounted => Some("unmount it first (ccmount umount MOUNTPOINT)"),
        M::Stale => Some("detach it first with ccmount umount --lazy MOUNTPOINT"),
        M::Busy => Some("close the open files, or detach with ccmount umount --lazy"),
        M::InsideCipherDir(_) => Some("mount outside the cipher directory"),
        _ => None,
    }
}

/// The one line printed for an error: the chain, each cause said once, then the fix when
/// there is one. Library errors print their cause in their own message and also expose it
/// as `source()` (so typed causes stay reachable); a cause already said by the link before
/// it is not repeated.
pub(crate) fn message(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let s = cause.to_string();
        if s.is_empty() || parts.last().is_some_and(|p| p.contains(&s)) {
            continue;
        }
        parts.push(s);
    }
    let text = parts.join(": ");
    match hint(err) {
        Some(h) if !text.contains(h) => format!("{text}; {h}"),
        _ => text,
    }
}

/// `attest::Error` → exit code (table in `docs/kbs-protocol.md`).
fn attest_exit(e: &attest::Error) -> Exit {
    use attest::{Error as E, ProtocolError as P};
    match e {
        E::InvalidUrl { .. } | E::InsecureHttp { .. } | E::InvalidCaCert { .. } | E::Uri(_) => {
            Exit::Usage
        }
        E::Unreachable { .. } | E::Timeout { .. } => Exit::KbsUnreachable,
        E::Tls { .. } => Exit::Tls,
        E::ProtocolVersion { .. } => Exit::ProtocolVersion,
        E::AttestationRejected { .. } | E::Protocol(P::FreshTokenRejected { .. }) => {
            Exit::AttestationRejected
        }
        E::PolicyDenied { .. } => Exit::PolicyDenied,
        E::ResourceMissing { .. } => Exit::ResourceMissing,
        E::Evidence(_) => Exit::Evidence,
        E::Protocol(_) | E::Jwe(_) => Exit::KbsProtocol,
        E::HttpClient { .. } | E::KeyGeneration { .. } => Exit::Internal,
        _ => Exit::Internal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exit-code table of `docs/cli.md` is this enum: every code with its name, and
    /// no row the binary does not know.
    #[test]
    fn docs_exit_table_matches_the_code() {
        let doc = include_str!("../../docs/cli.md");
        let table = doc.split("## Exit codes").nth(1).unwrap_or_default();
        let rows: Vec<(u8, String)> = table
            .lines()
            .filter_map(|l| {
                let mut cells = l.strip_prefix('|')?.split('|').map(str::trim);
                let code = cells.next()?.parse::<u8>().ok()?;
                Some((code, cells.next()?.to_owned()))
            })
            .collect();
        let want: Vec<(u8, String)> = ALL.iter().map(|e| (*e as u8, format!("{e:?}"))).collect();
        assert_eq!(rows, want, "docs/cli.md's exit table differs from exit.rs");
    }

    #[test]
    fn coded_wins_over_io() {
        let e = anyhow::Error::new(std::io::Error::other("x"))
            .context("reading")
            .context(Coded {
                exit: Exit::WrongKey,
                msg: "bad".into(),
            });
        assert_eq!(classify(&e), Exit::WrongKey);
    }

    #[test]
    fn io_is_io() {
        let e = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::NotFound));
        assert_eq!(classify(&e), Exit::Io);
    }

    #[test]
    fn attest_errors_map_to_kbs_codes() {
        let uri = attest::ResourceUri::parse("kbs:///a/b/c").unwrap_or_else(|_| unreachable!());
        let cases = [
            (
                attest::Error::PolicyDenied {
                    resource: uri.clone(),
                    detail: String::new(),
                },
                Exit::PolicyDenied,
            ),
            (
                attest::Error::ResourceMissing {
                    resource: uri,
                    detail: String::new(),
                },
                Exit::ResourceMissing,
            ),
            (
                attest::Error::ProtocolVersion {
                    ours: "0.4.0".into(),
                    theirs: "x".into(),
                },
                Exit::ProtocolVersion,
            ),
            (attest::Error::InsecureHttp { url: "x".into() }, Exit::Usage),
        ];
        for (e, want) in cases {
            let e = anyhow::Error::new(e).context("fetching");
            assert_eq!(classify(&e), want);
        }
        assert_eq!(Exit::KbsUnreachable as u8, 30);
        assert_eq!(Exit::KbsProtocol as u8, 37);
    }

    #[test]
    fn library_errors_map_to_documented_codes() {
        let e = anyhow::Error::new(gocryptfs_format::Error::WrongPassword { path: "c".into() })
            .context("opening c");
        assert_eq!(classify(&e), Exit::WrongKey);
        let e = anyhow::Error::new(gocryptfs_format::Error::Authentication {
            path: "f".into(),
            block: 3,
        });
        assert_eq!(classify(&e), Exit::Corrupt);
        let e = anyhow::Error::new(gocryptfs_format::Error::OutputNotEmpty { path: "o".into() });
        assert_eq!(classify(&e), Exit::OutputExists);
        use gpu_loader::GpuError;
        let e = anyhow::Error::new(gpu_loader::Error::from(GpuError::NoDriver)).context("load-gpu");
        assert_eq!(classify(&e), Exit::NoGpu);
        let e = anyhow::Error::new(gpu_loader::Error::from(GpuError::OutOfMemory { bytes: 1 }));
        assert_eq!(classify(&e), Exit::GpuFailed);
        let e = anyhow::Error::new(gpu_loader::Error::from(
            gocryptfs_format::Error::Authentication {
                path: "f".into(),
                block: 1,
            },
        ));
        assert_eq!(classify(&e), Exit::Corrupt);
    }

    #[cfg(feature = "fuse")]
    #[test]
    fn mount_errors_map_to_mount_codes() {
        use fuse_decrypt::MountError as M;
        for (source, want) in [
            (M::NoDevice(std::io::Error::other("x")), Exit::NoFuse),
            (M::NotPermitted("x".into()), Exit::NoFuse),
            (M::NotEmpty, Exit::MountpointBusy),
            (M::MountpointMissing, Exit::MountpointBusy),
            (M::Busy, Exit::MountpointBusy),
            (M::Failed("x".into()), Exit::MountFailed),
        ] {
            let e = anyhow::Error::new(fuse_decrypt::Error::Mount {
                path: "/mnt".into(),
                source,
            });
            assert_eq!(classify(&e), want);
        }
        assert_eq!(Exit::from_code(42), Some(Exit::MountpointBusy));
        assert_eq!(Exit::from_code(12), Some(Exit::WrongKey));
        assert_eq!(Exit::from_code(99), None);
    }

    #[test]
    fn causes_are_said_once() {
        let io = std::io::Error::from(std::io::ErrorKind::NotFound);
        let e = anyhow::Error::new(gocryptfs_format::Error::Io {
            op: "opening cipher directory",
            path: "x".into(),
            source: io,
        })
        .context("opening x");
        let m = message(&e);
        assert_eq!(m.matches("entity not found").count(), 1, "{m}");
        assert!(
            m.starts_with("opening x: opening cipher directory x"),
            "{m}"
        );
    }

    #[test]
    fn codes_are_stable() {
        // Never renumber: scripts depend on these.
        assert_eq!(Exit::WrongKey as u8, 12);
        assert_eq!(Exit::Corrupt as u8, 26);
        assert_eq!(Exit::Usage as u8, 2);
        assert_eq!(Exit::NoGpu as u8, 50);
        assert_eq!(Exit::GpuFailed as u8, 51);
    }
}
