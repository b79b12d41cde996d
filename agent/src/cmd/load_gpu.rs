//! `ccmount load-gpu CIPHERDIR [FILE…] KEY [--device N] [--json]`: decrypt model files
//! straight into GPU memory (every `*.safetensors` of the tree by default), check the device
//! copy, and report throughput and tensors. `--target cpu` runs the same pipeline against a
//! simulated device in host memory. Also the hidden `bench-h2d` baseline of the benchmark.
//!
//! The device check reads each file back from the device and compares SHA-256 digests of
//! 1 MiB pieces with digests taken from the plaintext while it was decrypted (`docs/gpu.md`
//! explains the choice). Exit 50: no GPU or driver; 51: a GPU operation failed; 26: a block
//! failed authentication (the error names file and block).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

#[cfg(feature = "gpu")]
use anyhow::Context;
use anyhow::Result;
use base64::Engine as _;
use gocryptfs_format::cipherdir::FileKind;
use gocryptfs_format::escape::escaped;
use gocryptfs_format::manifest::{
    CheckMode, EntryKind, Expected, Manifest, ManifestEntry, VerifiedTree, check,
};
use gocryptfs_format::{CipherDir, walk};
use gpu_loader::cpu::{CpuOptions, CpuTarget};
use gpu_loader::{CopyTarget, LoadOptions, LoadedFile, Loader, TargetInfo};
use serde_json::{Value, json};

use crate::cli::{BenchH2dArgs, GlobalArgs, GpuArgs, GpuTarget, LoadGpuArgs};
use crate::exit::{Exit, coded};
use crate::keys;
use crate::pin;
use crate::plan::KeyPlan;
use crate::progress::{Bar, count};
use crate::receipt::Receipt;

/// Where the files come from: a local cipher directory, or a tree in a bucket read through
/// a [`s3_source::RemoteReader`] (ranged GETs, read-ahead).
enum Tree {
    Local(Box<CipherDir>),
    Remote(std::sync::Arc<s3_source::RemoteReader>),
}

/// The tree a pin accepted before the load.
enum Accepted {
    Local(VerifiedTree),
    Remote(Manifest),
}

impl Accepted {
    fn pinned(&self, path: &Path) -> Option<&ManifestEntry> {
        match self {
            Accepted::Local(v) => v.pinned(path),
            Accepted::Remote(m) => m.get(path),
        }
    }

    fn digest(&self) -> gocryptfs_format::manifest::ModelDigest {
        match self {
            Accepted::Local(v) => v.digest,
            Accepted::Remote(m) => m.digest(),
        }
    }
}

/// One file of a bucket's tree as the loader's plaintext source.
struct RemoteFile {
    reader: std::sync::Arc<s3_source::RemoteReader>,
    file: usize,
    path: PathBuf,
    len: u64,
}

impl gpu_loader::PlainSource for RemoteFile {
    fn path(&self) -> &Path {
        &self.path
    }

    fn len(&self) -> u64 {
        self.len
    }

    fn read_at(
        &self,
        offset: u64,
        buf: &mut [u8],
    ) -> std::result::Result<usize, Box<dyn std::error::Error + Send + Sync + 'static>> {
        self.reader
            .read_at(self.file, offset, buf)
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    }
}

/// Lists and opens the bucket's tree; with a pin, every block is checked and the tree
/// accepted first (as `decrypt s3://` does), then each loaded file is held to its pinned
/// file ID (while reading) and SHA-256 (on the bytes copied).
fn open_remote(
    g: &GlobalArgs,
    a: &LoadGpuArgs,
    key: gocryptfs_format::KeySource,
    pin: Option<&pin::Pin>,
) -> Result<(Tree, Option<Accepted>)> {
    let b = crate::remote::bucket(g, &a.cipherdir)?;
    let location = b.location().to_string();
    let tree = crate::remote::open_tree(g, b, key)?;
    if let Some(first) = tree.first_error() {
        return Err(anyhow::Error::new(s3_source::S3Error::Problems {
            count: tree.problems.iter().filter(|p| !p.warning).count(),
            first: first.to_string(),
            kind: first.kind(),
        })
        .context(format!("{location}: nothing loaded")));
    }
    let accepted = match pin {
        Some(p) => {
            let bar = Bar::new("check", !g.quiet && !a.json);
            let report = tree.verify(true, &bar);
            bar.finish();
            Some(
                gocryptfs_format::manifest::check_report(tree.cipher_dir(), &report?, &p.expected)
                    .map_err(pin::mismatch_error)?,
            )
        }
        None => None,
    };
    let ids = tree
        .files
        .iter()
        .map(|f| {
            match accepted
                .as_ref()
                .and_then(|m| m.get(&f.plain))
                .map(|e| &e.kind)
            {
                Some(EntryKind::File(p)) => p.file_id,
                _ => None,
            }
        })
        .collect();
    // Two chunks ahead per request in flight, whatever the loader's chunk.
    let cache = 2 * tree.bucket().options().concurrency as u64 * tree.bucket().options().chunk;
    let reader = s3_source::RemoteReader::with_expected_ids(
        std::sync::Arc::new(tree),
        s3_source::ReaderOptions {
            cache_bytes: cache,
            ..s3_source::ReaderOptions::default()
        },
        ids,
    );
    Ok((Tree::Remote(reader), accepted.map(Accepted::Remote)))
}

/// One loaded file, as reported.
struct FileReport {
    path: PathBuf,
    bytes: u64,
    seconds: f64,
    chunks: u64,
    verify_seconds: Option<f64>,
    tensors: Option<Vec<gpu_loader::safetensors::TensorInfo>>,
}

fn load_options(g: &GpuArgs, hash: bool) -> Result<LoadOptions> {
    if !(1..=1024).contains(&g.chunk_mib) {
        return Err(coded(
            Exit::Usage,
            format!("--chunk-mib {}: use 1..=1024", g.chunk_mib),
        ));
    }
    Ok(LoadOptions {
        chunk_bytes: g.chunk_mib << 20,
        depth: g.depth,
        hash,
        file_hash: false,
    })
}

pub(crate) fn run(g: &GlobalArgs, a: LoadGpuArgs) -> Result<Exit> {
    crate::plan::check_s3(&a.cipherdir)?;
    if a.receipt.receipt.is_some() && a.expect.expect.is_none() {
        return Err(coded(
            Exit::Usage,
            "load-gpu --receipt needs --expect (the receipt records the accepted model digest)",
        ));
    }
    let mut opts = load_options(&a.gpu, !a.no_verify)?;
    // A pinned load hashes every file as it is copied and holds it to the pin.
    opts.file_hash = a.expect.expect.is_some();
    match a.gpu.target {
        GpuTarget::Cpu => {
            let t = CpuTarget::new(CpuOptions::default()).map_err(gpu_loader::Error::from)?;
            run_on(g, &a, &t, opts, None)
        }
        GpuTarget::Cuda => run_cuda(g, &a, opts),
    }
}

#[cfg(feature = "gpu")]
fn open_cuda(device: usize, g: &GpuArgs) -> Result<gpu_loader::cuda::CudaTarget> {
    use gpu_loader::cuda::{CudaOptions, CudaTarget};
    // Checked before the key is fetched or scrypt runs: fail fast on a host without a GPU.
    CudaTarget::new(
        device,
        CudaOptions {
            pinned: !g.no_pinned,
        },
    )
    .map_err(|e| anyhow::Error::new(gpu_loader::Error::from(e)))
}

#[cfg(feature = "gpu")]
fn run_cuda(g: &GlobalArgs, a: &LoadGpuArgs, opts: LoadOptions) -> Result<Exit> {
    let t = open_cuda(a.device, &a.gpu)?;
    run_on(g, a, &t, opts, Some(&|| t.pinned_refused()))
}

#[cfg(not(feature = "gpu"))]
fn run_cuda(_g: &GlobalArgs, _a: &LoadGpuArgs, _opts: LoadOptions) -> Result<Exit> {
    Err(gpu_loader::Error::from(gpu_loader::GpuError::NotCompiled).into())
}

/// Every regular `*.safetensors` file of the tree, in walk order. A name that does not
/// decrypt could hide a shard, so any walk problem is an error.
fn default_files(dir: &CipherDir) -> Result<Vec<PathBuf>> {
    let w = walk::walk(dir)?;
    if let Some(p) = w.problems.into_iter().find(|p| !p.warning) {
        return Err(anyhow::Error::new(p.error).context(format!(
            "listing {}: a damaged entry could hide a model file; run `ccmount verify`",
            dir.root().display()
        )));
    }
    Ok(w.entries
        .into_iter()
        .filter(|e| e.kind == FileKind::File && e.name.as_bytes().ends_with(b".safetensors"))
        .map(|e| e.plain_path)
        .collect())
}

fn run_on<T: CopyTarget>(
    g: &GlobalArgs,
    a: &LoadGpuArgs,
    target: &T,
    opts: LoadOptions,
    pinned_refused: Option<&dyn Fn() -> Option<String>>,
) -> Result<Exit> {
    let key_plan = KeyPlan::require(&a.key)?;
    // The pin first (a kbs:/// pin shares the attested session with the key).
    let pin = pin::resolve(&a.expect)?;
    let key = keys::load(&key_plan)?;
    let (tree, accepted) = if crate::remote::is_s3(&a.cipherdir) {
        open_remote(g, a, key, pin.as_ref())?
    } else {
        let dir = keys::open_dir(g, &a.cipherdir, key)?;
        // With a pin, the tree is accepted before anything is loaded (a manifest pin: names,
        // types, sizes and file IDs; a bare digest needs every file hashed to compute the
        // manifest), and then every loaded file is held to its pinned SHA-256 on the bytes
        // actually copied: there is no window between the check and the load.
        let accepted = match &pin {
            Some(p) => {
                let mode = match p.expected {
                    Expected::Manifest(_) => CheckMode::Structure,
                    Expected::Digest(_) => CheckMode::Full,
                };
                let bar = Bar::new("check", !g.quiet && !a.json);
                let v = check(&dir, &p.expected, mode, &bar).map_err(pin::mismatch_error);
                bar.finish();
                Some(Accepted::Local(v?))
            }
            None => None,
        };
        (Tree::Local(Box::new(dir)), accepted)
    };
    let files = if a.files.is_empty() {
        let f = match &tree {
            Tree::Local(dir) => default_files(dir)?,
            Tree::Remote(r) => r
                .tree()
                .files
                .iter()
                .filter(|f| f.plain.as_os_str().as_bytes().ends_with(b".safetensors"))
                .map(|f| f.plain.clone())
                .collect(),
        };
        if f.is_empty() {
            return Err(coded(
                Exit::Usage,
                format!(
                    "{}: no *.safetensors files in the tree; name the files to load",
                    a.cipherdir.display()
                ),
            ));
        }
        f
    } else {
        a.files.clone()
    };
    let mut loader = Loader::new(target, opts)?;
    let bar = Bar::new("load-gpu", !g.quiet && !a.json);
    // Every file stays resident until the end, as a model load would keep it.
    let mut resident: Vec<LoadedFile<T::Device>> = Vec::new();
    let mut reports = Vec::new();
    let mut failure = None;
    for f in &files {
        let r = load_one(&mut loader, &tree, f, &bar, !a.no_verify).and_then(|(loaded, report)| {
            if let Some(v) = &accepted {
                held_to_pin(v.pinned(&loaded.path), &loaded)?;
            }
            Ok((loaded, report))
        });
        match r {
            Ok((loaded, report)) => {
                resident.push(loaded);
                reports.push(report);
            }
            Err(e) => {
                failure = Some(e.context(format!("loading {}", f.display())));
                break;
            }
        }
    }
    bar.finish();
    let info = target.info();
    let pinned = loader.pinned().unwrap_or(false);
    let refused = pinned_refused.and_then(|f| f());
    if a.json {
        let v = report_json(
            &info,
            &opts,
            pinned,
            refused.as_deref(),
            &reports,
            failure.as_ref(),
        );
        crate::fsutil::print_json(&v)?;
    } else if failure.is_none() {
        print_human(g, &info, &opts, pinned, refused.as_deref(), &reports)?;
    }
    drop(resident);
    if let Some(e) = failure {
        return Err(e);
    }
    if let (Some(path), Some(v)) = (&a.receipt.receipt, &accepted) {
        Receipt {
            command: "load-gpu",
            cipherdir: &a.cipherdir,
            digest: v.digest(),
            pin: pin.as_ref(),
            key_resource: key_plan.resource().as_deref(),
        }
        .write(path)?;
    }
    Ok(Exit::Ok)
}

/// Holds a loaded file to the accepted manifest: pinned as a regular file, same size, and
/// the SHA-256 of the bytes copied to the device equal to the pinned one.
fn held_to_pin<D>(pinned: Option<&ManifestEntry>, loaded: &LoadedFile<D>) -> Result<()> {
    let differs = |what: &str| {
        coded(
            Exit::Corrupt,
            format!(
                "{}: {what}; the model is not the pinned one (nothing of it stays loaded)",
                escaped(&loaded.path)
            ),
        )
    };
    let Some(EntryKind::File(want)) = pinned.map(|e| &e.kind) else {
        return Err(differs("not a file of the pinned manifest"));
    };
    if want.size != loaded.len {
        return Err(differs("its size differs from the pinned one"));
    }
    match loaded.sha256 {
        Some(got) if got == want.sha256 => Ok(()),
        Some(_) => Err(differs("the loaded bytes differ from the pinned SHA-256")),
        None => Err(differs("it was loaded without its hash")),
    }
}

fn load_one<T: CopyTarget>(
    loader: &mut Loader<'_, T>,
    tree: &Tree,
    path: &Path,
    bar: &Bar,
    verify: bool,
) -> Result<(LoadedFile<T::Device>, FileReport)> {
    let loaded = match tree {
        Tree::Local(dir) => loader.load_path(dir, path, bar)?,
        Tree::Remote(r) => {
            let (file, f) = r
                .tree()
                .files
                .iter()
                .enumerate()
                .find(|(_, f)| f.plain == path)
                .ok_or_else(|| {
                    coded(
                        Exit::Usage,
                        format!(
                            "{}: no such regular file in the bucket's tree",
                            escaped(path)
                        ),
                    )
                })?;
            let src = RemoteFile {
                reader: std::sync::Arc::clone(r),
                file,
                path: f.plain.clone(),
                len: f.plain_size,
            };
            loader.load_plain(&src, bar).map_err(|e| match e {
                gpu_loader::Error::Source(inner) => match inner.downcast::<s3_source::S3Error>() {
                    Ok(s3) => anyhow::Error::new(*s3),
                    Err(other) => anyhow::anyhow!("{other}"),
                },
                e => anyhow::Error::new(e),
            })?
        }
    };
    let verify_seconds = if verify {
        Some(loader.verify(&loaded)?)
    } else {
        None
    };
    let report = FileReport {
        path: path.to_path_buf(),
        bytes: loaded.len,
        seconds: loaded.stats.seconds,
        chunks: loaded.stats.chunks,
        verify_seconds,
        tensors: loaded.tensors.clone(),
    };
    Ok((loaded, report))
}

fn gbps(bytes: u64, seconds: f64) -> f64 {
    if seconds > 0.0 {
        bytes as f64 / seconds / 1e9
    } else {
        0.0
    }
}

fn path_json(p: &Path, obj: &mut serde_json::Map<String, Value>) {
    obj.insert("path".into(), json!(p.to_string_lossy()));
    if p.to_str().is_none() {
        obj.insert(
            "path_b64".into(),
            json!(base64::engine::general_purpose::STANDARD.encode(p.as_os_str().as_bytes())),
        );
    }
}

/// The `ccmount.load-gpu/v1` document (`docs/cli.md`).
fn report_json(
    info: &TargetInfo,
    opts: &LoadOptions,
    pinned: bool,
    pinned_refused: Option<&str>,
    reports: &[FileReport],
    failure: Option<&anyhow::Error>,
) -> Value {
    let total: u64 = reports.iter().map(|r| r.bytes).sum();
    let secs: f64 = reports.iter().map(|r| r.seconds).sum();
    let files: Vec<Value> = reports
        .iter()
        .map(|r| {
            let mut o = serde_json::Map::new();
            path_json(&r.path, &mut o);
            o.insert("bytes".into(), json!(r.bytes));
            o.insert("seconds".into(), json!(r.seconds));
            o.insert("gb_per_s".into(), json!(gbps(r.bytes, r.seconds)));
            o.insert("chunks".into(), json!(r.chunks));
            o.insert("verified".into(), json!(r.verify_seconds.is_some()));
            o.insert("verify_seconds".into(), json!(r.verify_seconds));
            o.insert(
                "tensors".into(),
                match &r.tensors {
                    None => Value::Null,
                    Some(ts) => ts
                        .iter()
                        .map(|t| {
                            json!({
                                "name": t.name,
                                "dtype": t.dtype.as_str(),
                                "shape": t.shape,
                                "offset": t.range.start,
                                "bytes": t.range.end - t.range.start,
                            })
                        })
                        .collect(),
                },
            );
            Value::Object(o)
        })
        .collect();
    json!({
        "schema": "ccmount.load-gpu/v1",
        "ok": failure.is_none(),
        "target": {
            "kind": info.kind,
            "name": info.name,
            "ordinal": info.ordinal,
            "total_mem": info.total_mem,
            "driver": info.driver,
        },
        "staging": {
            "chunk_bytes": opts.chunk_bytes,
            "depth": opts.depth,
            "pinned": pinned,
            "pinned_refused": pinned_refused,
        },
        "files": files,
        "total_bytes": total,
        "seconds": secs,
        "gb_per_s": gbps(total, secs),
        "tensors": reports.iter().filter_map(|r| r.tensors.as_ref()).map(Vec::len).sum::<usize>(),
        "error": failure.map(|e| format!("{e:#}")),
    })
}

fn print_human(
    g: &GlobalArgs,
    info: &TargetInfo,
    opts: &LoadOptions,
    pinned: bool,
    pinned_refused: Option<&str>,
    reports: &[FileReport],
) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    // One line per file on stdout whatever it is (a pipe or a log gets them too), not with -q.
    for r in reports {
        if g.quiet {
            break;
        }
        let tensors = r
            .tensors
            .as_ref()
            .map(|t| format!(", {} tensors", t.len()))
            .unwrap_or_default();
        let check = match r.verify_seconds {
            Some(s) => format!(", device copy verified ({s:.3} s)"),
            None => String::new(),
        };
        writeln!(
            out,
            "{}: {} bytes in {:.3} s ({:.2} GB/s){tensors}{check}",
            gocryptfs_format::escape::escape_text(&r.path.to_string_lossy()),
            r.bytes,
            r.seconds,
            gbps(r.bytes, r.seconds)
        )?;
    }
    let total: u64 = reports.iter().map(|r| r.bytes).sum();
    let secs: f64 = reports.iter().map(|r| r.seconds).sum();
    let tensors: usize = reports
        .iter()
        .filter_map(|r| r.tensors.as_ref())
        .map(Vec::len)
        .sum();
    let staging = if pinned { "pinned" } else { "pageable" };
    writeln!(
        out,
        "loaded {} ({}, {}) in {secs:.3} s: {:.2} GB/s into {} device {} ({}); {staging} staging {} x {} MiB{}",
        count(reports.len() as u64, "file", "files"),
        count(total, "byte", "bytes"),
        count(tensors as u64, "tensor", "tensors"),
        gbps(total, secs),
        info.kind,
        info.ordinal,
        info.name,
        opts.depth,
        opts.chunk_bytes >> 20,
        if reports.iter().all(|r| r.verify_seconds.is_some()) {
            "; device copies verified"
        } else {
            "; device copies not verified (--no-verify)"
        }
    )?;
    if let Some(why) = pinned_refused {
        writeln!(
            out,
            "note: pinned host memory was refused ({why}); copies used pageable memory"
        )?;
    }
    Ok(())
}

/// `ccmount bench-h2d`: copies `--mib` MiB of a constant pattern to the device in chunks
/// through the same target, without decryption; prints one `key=value` line.
pub(crate) fn bench_h2d(_g: &GlobalArgs, a: BenchH2dArgs) -> Result<Exit> {
    let opts = load_options(&a.gpu, false)?;
    let bytes = a.mib << 20;
    let (secs, pinned, kind) = match a.gpu.target {
        GpuTarget::Cpu => {
            let t = CpuTarget::new(CpuOptions::default()).map_err(gpu_loader::Error::from)?;
            let (s, p) = gpu_loader::plain_copy(&t, bytes, opts.chunk_bytes, opts.depth)
                .map_err(gpu_loader::Error::from)?;
            (s, p, "cpu")
        }
        GpuTarget::Cuda => bench_cuda(a.device, &a.gpu, bytes, &opts)?,
    };
    println!(
        "plain_h2d_gbps={:.3} bytes={bytes} seconds={secs:.4} pinned={pinned} target={kind}",
        gbps(bytes, secs)
    );
    Ok(Exit::Ok)
}

#[cfg(feature = "gpu")]
fn bench_cuda(
    device: usize,
    g: &GpuArgs,
    bytes: u64,
    opts: &LoadOptions,
) -> Result<(f64, bool, &'static str)> {
    let t = open_cuda(device, g)?;
    let (s, p) = gpu_loader::plain_copy(&t, bytes, opts.chunk_bytes, opts.depth)
        .map_err(gpu_loader::Error::from)
        .context("plain host-to-device copy")?;
    Ok((s, p, "cuda"))
}

#[cfg(not(feature = "gpu"))]
fn bench_cuda(
    _device: usize,
    _g: &GpuArgs,
    _bytes: u64,
    _opts: &LoadOptions,
) -> Result<(f64, bool, &'static str)> {
    Err(gpu_loader::Error::from(gpu_loader::GpuError::NotCompiled).into())
}
