//! `ccmount encrypt PLAINDIR CIPHERDIR --passfile FILE [...]`: a new gocryptfs tree from a
//! plaintext tree, with the `gocryptfs -init` options we support (`docs/cli.md`).

use std::os::unix::fs::DirBuilderExt as _;
use std::path::Path;

use anyhow::{Context, Result};
use gocryptfs_format::configfile::{Layout, NameLayout};
use gocryptfs_format::writer::{InitOptions, encrypt_tree, encrypt_tree_with_manifest};
use gocryptfs_format::{ContentAlgo, KeySource};

use crate::cli::{EncryptArgs, GlobalArgs};
use crate::exit::{Exit, coded};
use crate::keys;
use crate::progress::{Bar, chatty, count};

/// Builds the layout from the flags, refusing combinations gocryptfs refuses too.
fn layout(a: &EncryptArgs) -> Result<Layout> {
    let content = if a.xchacha {
        ContentAlgo::XChaCha20Poly1305
    } else {
        ContentAlgo::AesGcm
    };
    let names = if a.plaintextnames {
        if a.deterministic_names || a.longnamemax.is_some() {
            return Err(coded(
                Exit::Usage,
                "--plaintextnames cannot be combined with --deterministic-names or --longnamemax (names are not encrypted)",
            ));
        }
        NameLayout::Plaintext
    } else {
        let long_name_max = match a.longnamemax {
            None => 255,
            Some(n) if (62..=255).contains(&n) => u8::try_from(n).unwrap_or(255),
            Some(n) => {
                return Err(coded(
                    Exit::Usage,
                    format!("--longnamemax {n}: must be 62..=255 (as gocryptfs)"),
                ));
            }
        };
        NameLayout::Encrypted {
            dir_iv: !a.deterministic_names,
            raw64: true,
            long_name_max,
        }
    };
    Ok(Layout {
        content,
        hkdf: true,
        names,
    })
}

pub(crate) fn run(g: &GlobalArgs, a: EncryptArgs) -> Result<Exit> {
    if a.manifest.is_none() && a.model.model_name.is_some() {
        return Err(coded(
            Exit::Usage,
            "--model is recorded in the manifest: give --manifest FILE too",
        ));
    }
    // Checked before anything is written.
    let model = super::manifest::model_tag(&a.model)?;
    let layout = layout(&a)?;
    let log_n = a.scryptn.unwrap_or(16);
    if !(10..=28).contains(&log_n) {
        return Err(coded(
            Exit::Usage,
            format!("--scryptn {log_n}: must be 10..=28 (as gocryptfs)"),
        ));
    }
    let KeySource::Password(password) = keys::password_from_file(&a.passfile)? else {
        return Err(coded(
            Exit::Internal,
            "invariant: a passfile yields a password",
        ));
    };
    let opts = InitOptions {
        layout,
        scrypt_log_n: log_n,
        ..InitOptions::default()
    };
    // To a bucket: written to a private staging directory (ciphertext only), then
    // uploaded; the prefix must be empty (a tree is never merged into another).
    let (bucket, staging) = if crate::remote::is_s3(&a.cipherdir) {
        refuse_symlinks(&a.plaindir)?;
        let b = crate::remote::bucket(g, &a.cipherdir)?;
        if !b.is_empty()? {
            return Err(coded(
                Exit::OutputExists,
                format!(
                    "{} already holds objects: choose an empty prefix (a tree is never merged into another)",
                    a.cipherdir.display()
                ),
            ));
        }
        (Some(b), Some(Staging::new()?))
    } else {
        (None, None)
    };
    let target = staging
        .as_ref()
        .map_or(a.cipherdir.clone(), |s| s.path.join("tree"));
    let bar = Bar::new("encrypt", !g.quiet);
    let result = if a.manifest.is_some() {
        encrypt_tree_with_manifest(&a.plaindir, &target, &password, &opts, &bar)
            .map(|(s, m)| (s, Some(m)))
    } else {
        encrypt_tree(&a.plaindir, &target, &password, &opts, &bar).map(|s| (s, None))
    };
    let result = result.with_context(|| {
        format!(
            "encrypting {} into {}",
            a.plaindir.display(),
            a.cipherdir.display()
        )
    });
    bar.finish();
    let (summary, manifest) = result?;
    if let Some(b) = &bucket {
        let up = b
            .upload_tree(&target)
            .with_context(|| format!("uploading to {}", a.cipherdir.display()))?;
        tracing::info!(
            "uploaded {} ({}) to {}",
            count(up.objects, "object", "objects"),
            count(up.bytes, "byte", "bytes"),
            a.cipherdir.display()
        );
    }
    for p in &summary.skipped {
        tracing::warn!(path = %p.display(), "skipped: FIFOs, sockets and device nodes are not encrypted");
    }
    if chatty(g.quiet) {
        eprintln!(
            "encrypted {} ({}), {}, {} into {}",
            count(summary.files, "file", "files"),
            count(summary.bytes, "byte", "bytes"),
            count(summary.dirs, "directory", "directories"),
            count(summary.symlinks, "symlink", "symlinks"),
            a.cipherdir.display()
        );
    }
    if let (Some(out), Some(m)) = (&a.manifest, manifest) {
        let m = m.with_model(model);
        crate::fsutil::write_atomic(out, &m.to_canonical(), 0o644)
            .with_context(|| format!("writing the manifest {}", out.display()))?;
        if chatty(g.quiet) {
            eprintln!("manifest {}: {}", out.display(), m.digest());
        }
    }
    Ok(Exit::Ok)
}

/// A private directory for the ciphertext of an upload, removed when dropped.
struct Staging {
    path: std::path::PathBuf,
}

impl Staging {
    fn new() -> Result<Self> {
        let mut r = [0u8; 8];
        getrandom::fill(&mut r).map_err(|e| anyhow::anyhow!("random: {e}"))?;
        let path = std::env::temp_dir().join(format!(
            "ccmount-upload-{}",
            r.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&path)
            .with_context(|| format!("creating the staging directory {}", path.display()))?;
        Ok(Staging { path })
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// A bucket holds no symlinks: the first one in PLAINDIR is refused by its plaintext path
/// before any key is derived or object written (FIFOs and devices are skipped as locally).
fn refuse_symlinks(plaindir: &Path) -> Result<()> {
    let mut stack = vec![plaindir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?;
        for e in entries {
            let e = e.with_context(|| format!("reading {}", dir.display()))?;
            let ft = e
                .file_type()
                .with_context(|| format!("reading {}", e.path().display()))?;
            if ft.is_symlink() {
                return Err(coded(
                    Exit::Usage,
                    format!(
                        "{}: a symlink cannot be stored in a bucket (objects have no links); replace it with the file it points to, or encrypt to a local directory",
                        e.path().display()
                    ),
                ));
            }
            if ft.is_dir() {
                stack.push(e.path());
            }
        }
    }
    Ok(())
}
