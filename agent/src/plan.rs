//! The plan stage ("high args", as ripgrep's `HiArgs`): what the user typed ([`crate::cli`])
//! or what a `[model]` job of the config file says, checked and resolved into what a command
//! runs. Parse → plan → run: everything that can be refused without touching a secret, the
//! network or the output is refused here, with exit 2, before any side effect.
//!
//! A plan holds no secret: key sources are paths and resource URIs, read at run time by
//! [`crate::keys`]. The `secrets` command builds the same plans from TOML that `decrypt` and
//! `mount` build from flags, so a `[model]` job gets exactly the checks a typed command gets.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use attest::ResourceUri;

#[cfg(feature = "fuse")]
use crate::cli::ExpectMode;
use crate::cli::{Command, DecryptArgs, ExpectArgs, KeyArgs, KeyFormat};
use crate::exit::{Exit, coded};

/// Where the model key comes from. Exactly one source; nothing is read yet.
#[derive(Debug, Clone)]
pub(crate) enum KeyPlan {
    /// `--passfile FILE`: the first line is the password.
    Passfile(PathBuf),
    /// `--masterkey-file FILE`: 64 hex digits.
    MasterkeyFile(PathBuf),
    /// `--key kbs:///...`: fetched after attestation, read as `format`.
    Kbs {
        /// The resource.
        uri: ResourceUri,
        /// What it holds.
        format: KeyFormat,
    },
    /// The key is resolved in memory by the caller and handed to the run directly
    /// (`secure-mount`: the password is a field of the CDH request); [`crate::keys::load`]
    /// refuses this variant.
    Supplied,
}

impl KeyPlan {
    /// The key source the flags name, if any (the URI is checked now, fetched later).
    ///
    /// # Errors
    /// A malformed `--key` URI (exit 2).
    pub(crate) fn from_args(a: &KeyArgs) -> Result<Option<Self>> {
        Ok(if let Some(p) = &a.passfile {
            Some(KeyPlan::Passfile(p.clone()))
        } else if let Some(p) = &a.masterkey_file {
            Some(KeyPlan::MasterkeyFile(p.clone()))
        } else if let Some(u) = &a.key {
            let uri = ResourceUri::parse(u).with_context(|| format!("--key {u}"))?;
            Some(KeyPlan::Kbs {
                uri,
                format: a.key_format,
            })
        } else {
            None
        })
    }

    /// Like [`KeyPlan::from_args`], but a key is required.
    ///
    /// # Errors
    /// No key source given, or a malformed URI (exit 2).
    pub(crate) fn require(a: &KeyArgs) -> Result<Self> {
        Self::from_args(a)?.ok_or_else(|| {
            coded(
                Exit::Usage,
                "a key is required: --passfile FILE, --masterkey-file FILE or --key kbs:///REPO/TYPE/TAG",
            )
        })
    }

    /// The KBS resource of the key, for receipts.
    pub(crate) fn resource(&self) -> Option<String> {
        match self {
            KeyPlan::Kbs { uri, .. } => Some(uri.to_string()),
            KeyPlan::Passfile(_) | KeyPlan::MasterkeyFile(_) | KeyPlan::Supplied => None,
        }
    }
}

/// `ccmount decrypt`, or a `[model] decrypt_to` job.
#[derive(Debug, Clone)]
pub(crate) struct DecryptPlan {
    pub(crate) cipherdir: PathBuf,
    pub(crate) outdir: PathBuf,
    pub(crate) key: KeyPlan,
    pub(crate) force: bool,
    pub(crate) json: bool,
    pub(crate) expect: ExpectArgs,
    pub(crate) receipt: Option<PathBuf>,
}

impl DecryptPlan {
    /// The plan of `ccmount decrypt`.
    ///
    /// # Errors
    /// No key, or a malformed `--key` (exit 2).
    pub(crate) fn from_args(a: DecryptArgs) -> Result<Self> {
        check_s3(&a.cipherdir)?;
        Ok(DecryptPlan {
            key: KeyPlan::require(&a.key)?,
            cipherdir: a.cipherdir,
            outdir: a.outdir,
            force: a.force,
            json: a.json,
            expect: a.expect,
            receipt: a.receipt.receipt,
        })
    }
}

/// `ccmount mount`, or a `[model] mount_at` job.
#[cfg(feature = "fuse")]
#[derive(Debug, Clone)]
pub(crate) struct MountPlan {
    pub(crate) cipherdir: PathBuf,
    pub(crate) mountpoint: PathBuf,
    pub(crate) key: KeyPlan,
    /// The mount options (`-o`, `--threads`, `--direct-io`), parsed and checked.
    pub(crate) config: fuse_decrypt::MountConfig,
    pub(crate) ready_file: Option<PathBuf>,
    pub(crate) expect: ExpectArgs,
    pub(crate) expect_mode: ExpectMode,
    pub(crate) receipt: Option<PathBuf>,
    /// Served by a process that keeps its terminal (progress bars are drawn).
    pub(crate) foreground: bool,
    /// `--cache-size` of an `s3://` tree (bytes).
    pub(crate) cache_size: Option<u64>,
}

#[cfg(feature = "fuse")]
impl MountPlan {
    /// The plan of `ccmount mount`.
    ///
    /// # Errors
    /// No key, a malformed `--key`, a bad mount option (exit 2).
    pub(crate) fn from_args(a: &crate::cli::MountArgs) -> Result<Self> {
        let config = crate::mountopts::config(&a.options, a.threads, a.direct_io)
            .map_err(|m| coded(Exit::Usage, m))?;
        let cache_size = match &a.cache_size {
            None => None,
            Some(_) if !check_s3(&a.cipherdir)? => {
                return Err(coded(
                    Exit::Usage,
                    "--cache-size applies to s3:// trees; a local tree is cached by the kernel's page cache",
                ));
            }
            Some(c) => {
                let n = crate::policy::parse_size(c)
                    .map_err(|e| coded(Exit::Usage, format!("--cache-size {c}: {e}")))?;
                if n < 1 << 20 {
                    return Err(coded(
                        Exit::Usage,
                        format!("--cache-size {c}: give at least 1MiB"),
                    ));
                }
                Some(n)
            }
        };
        check_s3(&a.cipherdir)?;
        Ok(MountPlan {
            key: KeyPlan::require(&a.key)?,
            cipherdir: a.cipherdir.clone(),
            mountpoint: a.mountpoint.clone(),
            config,
            ready_file: a.ready_file.clone(),
            expect: a.expect.clone(),
            expect_mode: a.expect_mode,
            receipt: a.receipt.receipt.clone(),
            // The daemon child keeps the caller's terminal until it is ready: the pin check
            // before going live shows its progress there.
            foreground: a.foreground || a.daemon_child,
            cache_size,
        })
    }
}

/// Moves a `--receipt FILE` typed before the subcommand (`ccmount --receipt F verify ...`,
/// the form of older releases) into the subcommand that writes it, and refuses it for every
/// command that writes no receipt, as clap refuses it after those subcommands.
///
/// # Errors
/// `--receipt` before a command that writes none, or given twice (exit 2).
pub(crate) fn place_receipt(top: Option<PathBuf>, command: &mut Command) -> Result<()> {
    let Some(path) = top else { return Ok(()) };
    let slot = match command {
        Command::Verify(a) => &mut a.receipt.receipt,
        Command::Decrypt(a) => &mut a.receipt.receipt,
        Command::Manifest(a) => &mut a.receipt.receipt,
        Command::Mount(a) => &mut a.receipt.receipt,
        Command::LoadGpu(a) => &mut a.receipt.receipt,
        _ => {
            return Err(coded(
                Exit::Usage,
                "--receipt is written by verify, decrypt, manifest, mount and load-gpu only; drop it here",
            ));
        }
    };
    if slot.is_some() {
        return Err(coded(Exit::Usage, "--receipt is given twice"));
    }
    *slot = Some(path);
    Ok(())
}

/// `path` relative to `base` unless absolute (paths in a config file are relative to it).
pub(crate) fn under(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

/// Whether `cipherdir` is an `s3://` location; a malformed one is refused now (exit 2
/// before any key or request; it is parsed again at run time).
///
/// # Errors
/// The location does not parse.
pub(crate) fn check_s3(cipherdir: &Path) -> Result<bool> {
    if !s3_source::S3Location::is_s3(cipherdir.as_os_str()) {
        return Ok(false);
    }
    let s = cipherdir
        .to_str()
        .ok_or_else(|| coded(Exit::Usage, "an s3:// location must be valid UTF-8"))?;
    s3_source::S3Location::parse(s)?;
    Ok(true)
}
