//! One module per subcommand. Each exposes `run(&GlobalArgs, Args) -> anyhow::Result<Exit>`.

mod attest;
mod decrypt;
#[cfg(feature = "demo")]
mod demo;
mod encrypt;
mod get_resource;
mod info;
mod load_gpu;
mod manifest;
#[cfg(feature = "fuse")]
mod mount;
mod secrets;
#[cfg(feature = "fuse")]
mod umount;
mod verify;

use std::ffi::OsString;
use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use gocryptfs_format::{CipherDir, KeySource, OpenOptions};

use crate::cli::{Command, GlobalArgs};
use crate::exit::{Exit, coded};

/// Runs one parsed command. `argv` is the command line as parsed (after the mount-helper
/// rewrite): the background mount daemon is started with it.
// With every feature on, each arm returns and the refusal below is unreachable.
#[cfg_attr(
    all(feature = "fuse", feature = "demo"),
    allow(unreachable_code, unused_variables, reason = "feature-gated arms")
)]
pub(crate) fn dispatch(global: &GlobalArgs, command: Command, argv: &[OsString]) -> Result<Exit> {
    #[cfg(not(feature = "fuse"))]
    let _ = argv;
    let name = match command {
        Command::GetResource(args) => return get_resource::run(global, args),
        Command::Attest(args) => return attest::run(global, &args),
        Command::Encrypt(a) => return encrypt::run(global, a),
        Command::Decrypt(a) => return decrypt::run(global, a),
        Command::Verify(a) => return verify::run(global, a),
        Command::Info(a) => return info::run(global, a),
        Command::Manifest(a) => return manifest::run(global, a),
        #[cfg(feature = "fuse")]
        Command::Mount(a) => return mount::run(global, a, argv),
        #[cfg(feature = "fuse")]
        Command::Umount(a) => return umount::run(global, a),
        #[cfg(not(feature = "fuse"))]
        Command::Mount(_) => "mount (this build has no `fuse` feature)",
        #[cfg(not(feature = "fuse"))]
        Command::Umount(_) => "umount (this build has no `fuse` feature)",
        Command::Secrets(a) => return secrets::run(global, &a),
        Command::LoadGpu(a) => return load_gpu::run(global, a),
        Command::BenchH2d(a) => return load_gpu::bench_h2d(global, a),
        #[cfg(feature = "demo")]
        Command::Demo(a) => return demo::run(global, &a),
        #[cfg(not(feature = "demo"))]
        Command::Demo(_) => "demo",
    };
    Err(coded(
        Exit::Usage,
        format!("`ccmount {name}` is not available in this build yet"),
    ))
}

/// Options that parse today but whose feature lands in a later release: refused clearly
/// when given, ignored when absent. `--receipt` is written by `verify`, `decrypt` and
/// `manifest` only.
pub(crate) fn refuse_unavailable(global: &GlobalArgs) -> Result<()> {
    if global.receipt.is_some() {
        return Err(coded(
            Exit::Usage,
            "--receipt is written by verify, decrypt and manifest; drop the option here",
        ));
    }
    Ok(())
}

/// Opens a cipher directory with the fastest backend.
pub(crate) fn open_dir(path: &Path, key: KeySource) -> Result<CipherDir> {
    CipherDir::open(path, key, &OpenOptions::default())
        .with_context(|| format!("opening {}", path.display()))
}

/// Writes `data` to `path` atomically (temp file in the same directory, fsync, rename).
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .with_context(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(".{}.ccmount-tmp", name.to_string_lossy()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    let res = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res.with_context(|| format!("writing {}", path.display()))
}

/// Pretty JSON with a trailing newline.
pub(crate) fn json_bytes(v: &serde_json::Value) -> Vec<u8> {
    let mut out = serde_json::to_vec_pretty(v).unwrap_or_default();
    out.push(b'\n');
    out
}
