//! The GPU loader: decrypt one file of a cipher tree straight into a device buffer, through
//! a bounded ring of host staging buffers, with decryption and host-to-device copies
//! overlapped; for `*.safetensors` files, report each tensor's byte range in that buffer.
//!
//! Design and measurements: `docs/gpu.md`; what fast loaders do and what a GPU in
//! confidential-computing mode changes: `../shared/specs/gpu-loading-notes.md`. There is no
//! gocryptfs counterpart (gocryptfs only mounts).
//!
//! The pipeline ([`Loader`]) is written against the small [`CopyTarget`] trait, so its
//! ordering, overlap and error paths run in CI without a GPU on [`cpu::CpuTarget`] (a
//! `Vec<u8>` "device" whose copies run on their own threads, with injectable delays,
//! out-of-order completion and faults). The CUDA implementation, `cuda::CudaTarget`, is
//! behind the `cuda` feature (cudarc, driver loaded at run time).
//!
//! The crate sits on the format core (`gocryptfs-format`: [`CipherDir`], [`CipherFile`]) and
//! owns what only a GPU load needs: the pipeline, its targets, [`GpuError`] and the strict
//! [`safetensors`] parser.
//!
//! ```text
//!  producer (caller thread)         submitter thread              reaper thread
//!  free buffer ◄──────────────────────────────────────────────── wait(ticket) → buffer
//!   │ rayon: pread + decrypt 1 MiB pieces (+ SHA-256 per piece)      ▲
//!   └─► filled ──► submit_copy(dev, offset, buffer) → ticket ───────┘
//! ```
//!
//! Host memory is bounded by `depth × chunk_bytes` whatever the file size. A buffer is
//! reused only after the copy reading it completed (the ticket owns the buffer until then),
//! so copies may complete in any order. A block that fails authentication stops the load
//! with [`gocryptfs_format::Error::Authentication`] naming the file and block; the device buffer is then
//! freed and nothing is returned.

pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
mod error;
#[doc(hidden)]
pub mod internal;
mod pipeline;
pub mod safetensors;

pub use error::{Error, ErrorKind, Result};

use std::path::{Path, PathBuf};
use std::time::Instant;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use gocryptfs_format::contentenc::PLAIN_BS;
use gocryptfs_format::{CipherDir, CipherFile, FileKind, Progress};

use crate::safetensors::TensorInfo;

/// Why a GPU load could not run or failed. Messages are one line and name the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GpuError {
    /// The binary was built without the `gpu` feature.
    #[error("this build has no CUDA support (cargo feature `cuda` of gpu-loader)")]
    NotCompiled,
    /// `libcuda.so` could not be loaded.
    #[error(
        "no CUDA driver: the NVIDIA driver library (libcuda.so.1) could not be loaded; install the NVIDIA driver (in a container: the NVIDIA container toolkit)"
    )]
    NoDriver,
    /// The driver loaded, but the device cannot be used.
    #[error("CUDA device {ordinal} is not usable: {reason}; check the device with `nvidia-smi`")]
    NoDevice {
        /// The requested ordinal.
        ordinal: usize,
        /// The driver's answer.
        reason: String,
    },
    /// A driver call panicked inside cudarc (typically a symbol missing from an old driver).
    #[error(
        "the CUDA driver failed while {op} ({detail}); it may be older than CUDA 12.4: update the NVIDIA driver"
    )]
    DriverPanicked {
        /// What we were doing.
        op: &'static str,
        /// The panic message.
        detail: String,
    },
    /// A driver call returned an error.
    #[error("CUDA error while {op}: {code}; check the GPU with `nvidia-smi`")]
    Driver {
        /// What we were doing.
        op: &'static str,
        /// The driver's error name.
        code: String,
    },
    /// Not enough device memory.
    #[error("out of GPU memory allocating {bytes} bytes; free GPU memory or load fewer files")]
    OutOfMemory {
        /// Requested bytes.
        bytes: u64,
    },
    /// A host-to-device copy failed.
    #[error("copy to the device at offset {offset} failed: {reason}")]
    Copy {
        /// Destination offset.
        offset: u64,
        /// Why.
        reason: String,
    },
    /// The bytes read back from the device differ from the decrypted plaintext.
    #[error(
        "{path}: the device copy differs from the decrypted plaintext in bytes {start}..{end}; the transfer was corrupted (check the GPU and driver)",
        path = gocryptfs_format::escape::escaped(.path)
    )]
    Mismatch {
        /// The file.
        path: PathBuf,
        /// First byte of the differing piece.
        start: u64,
        /// End of that piece.
        end: u64,
    },
    /// The file was loaded without piece hashes, so it cannot be checked.
    #[error("{path}: loaded without hashes (LoadOptions::hash = false); it cannot be verified", path = gocryptfs_format::escape::escaped(.path))]
    NotHashed {
        /// The file.
        path: PathBuf,
    },
    /// Invalid [`LoadOptions`].
    #[error("invalid GPU loader options: {0}")]
    Options(String),
    /// A pipeline thread panicked (a bug).
    #[error("a GPU loader thread panicked ({0}); this is a bug, please report it")]
    Panicked(String),
}

impl GpuError {
    /// What the caller does about it.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            GpuError::NotCompiled
            | GpuError::NoDriver
            | GpuError::NoDevice { .. }
            | GpuError::DriverPanicked { .. } => ErrorKind::NoGpu,
            GpuError::Options(_) => ErrorKind::Usage,
            _ => ErrorKind::Gpu,
        }
    }
}

/// A host staging buffer of a [`CopyTarget`].
pub trait Staging: Send {
    /// Capacity in bytes.
    fn len(&self) -> usize;

    /// True when the capacity is zero.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, for the decrypting workers to write into.
    ///
    /// # Errors
    /// A target-specific [`GpuError`].
    fn bytes_mut(&mut self) -> Result<&mut [u8], GpuError>;

    /// Page-locked (pinned) memory, which the device can read by DMA without a bounce.
    fn is_pinned(&self) -> bool;
}

/// Where a load goes: a device with memory, host staging buffers and asynchronous copies.
///
/// Contract, relied on by the pipeline and checked by the CPU implementation's tests:
/// - [`submit_copy`](CopyTarget::submit_copy) starts copying `buf[..len]` to
///   `dev[offset..offset + len]` and returns at once or after the copy (both are fine); the
///   returned ticket owns `buf` until [`wait`](CopyTarget::wait) gives it back after the copy
///   completed. Dropping a ticket without waiting must not free the buffer under a running
///   copy.
/// - Copies may complete in any order; `wait` may be called from another thread than
///   `submit_copy`.
/// - [`read_back`](CopyTarget::read_back) is synchronous.
pub trait CopyTarget: Sync {
    /// Host staging buffer.
    type Staging: Staging;
    /// One device allocation (one file); freed on drop.
    type Device: Send;
    /// An in-flight copy.
    type Ticket: Send;

    /// What the target is.
    fn info(&self) -> TargetInfo;

    /// A staging buffer of `len` bytes (pinned when the target can, else pageable).
    ///
    /// # Errors
    /// [`GpuError`] when no memory can be had at all.
    fn alloc_staging(&self, len: usize) -> Result<Self::Staging, GpuError>;

    /// A device buffer of `len` bytes.
    ///
    /// # Errors
    /// [`GpuError::OutOfMemory`], [`GpuError::Driver`].
    fn alloc_device(&self, len: u64) -> Result<Self::Device, GpuError>;

    /// Starts copying `buf[..len]` to `dev[offset..]`.
    ///
    /// # Errors
    /// [`GpuError::Copy`] (out of range, injected fault), [`GpuError::Driver`]; `buf` is
    /// then dropped safely.
    fn submit_copy(
        &self,
        dev: &mut Self::Device,
        offset: u64,
        buf: Self::Staging,
        len: usize,
    ) -> Result<Self::Ticket, GpuError>;

    /// Waits for a copy and returns its buffer.
    ///
    /// # Errors
    /// [`GpuError::Copy`], [`GpuError::Driver`].
    fn wait(&self, ticket: Self::Ticket) -> Result<Self::Staging, GpuError>;

    /// Copies `dev[offset..offset + out.len()]` back into `out`.
    ///
    /// # Errors
    /// [`GpuError::Copy`], [`GpuError::Driver`].
    fn read_back(&self, dev: &Self::Device, offset: u64, out: &mut [u8]) -> Result<(), GpuError>;
}

/// A description of a target for reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetInfo {
    /// `"cuda"` or `"cpu"`.
    pub kind: &'static str,
    /// Device name (`"NVIDIA H100 80GB HBM3"`, `"cpu (simulated device)"`).
    pub name: String,
    /// Device ordinal.
    pub ordinal: usize,
    /// Device memory in bytes, when known.
    pub total_mem: Option<u64>,
    /// Driver version (`"12.4"`), when known.
    pub driver: Option<String>,
}

/// Tuning of a [`Loader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    /// Bytes per staging buffer and per host-to-device copy. A multiple of 4096, and of
    /// 1 MiB when at least 1 MiB. Large copies amortise the per-copy cost, which is high in
    /// confidential-computing mode (hundreds of µs).
    pub chunk_bytes: usize,
    /// Staging buffers in the ring (1..=64): host memory is `depth × chunk_bytes`.
    pub depth: usize,
    /// Hash each 1 MiB piece of plaintext while decrypting, so [`Loader::verify`] can check
    /// the device copy. Costs about one SHA-256 pass over the data on the worker threads.
    pub hash: bool,
    /// Also hash the whole file, in order, as it is handed to the copy (for a pinned load:
    /// [`LoadedFile::sha256`] is the SHA-256 of exactly the bytes loaded). One more SHA-256
    /// pass, on one thread, overlapped with decryption.
    pub file_hash: bool,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            chunk_bytes: 32 << 20,
            depth: 3,
            hash: true,
            file_hash: false,
        }
    }
}

/// Size of the pieces one worker decrypts (and hashes) at a time.
const PIECE_BYTES: usize = 1 << 20;

impl LoadOptions {
    fn piece_bytes(&self) -> usize {
        self.chunk_bytes.min(PIECE_BYTES)
    }

    fn validate(&self) -> Result<(), GpuError> {
        let c = self.chunk_bytes;
        if c < PLAIN_BS as usize || !c.is_multiple_of(PLAIN_BS as usize) || c > 1 << 30 {
            return Err(GpuError::Options(format!(
                "chunk size {c} must be a multiple of 4096 between 4 KiB and 1 GiB"
            )));
        }
        if c >= PIECE_BYTES && !c.is_multiple_of(PIECE_BYTES) {
            return Err(GpuError::Options(format!(
                "chunk size {c} must be a whole number of MiB when at least 1 MiB"
            )));
        }
        if !(1..=64).contains(&self.depth) {
            return Err(GpuError::Options(format!(
                "pipeline depth {} must be between 1 and 64",
                self.depth
            )));
        }
        Ok(())
    }
}

/// What one load measured.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LoadStats {
    /// Wall time of the pipeline (decrypt + copy, overlapped), seconds.
    pub seconds: f64,
    /// Copies issued.
    pub chunks: u64,
    /// Most copies submitted and not yet reclaimed at once.
    pub max_in_flight: usize,
    /// Whether the staging buffers were pinned.
    pub pinned: bool,
}

/// A file in device memory.
#[derive(Debug)]
pub struct LoadedFile<D> {
    /// The plaintext path (relative to the cipher root) or the path errors named.
    pub path: PathBuf,
    /// The device buffer holding the whole plaintext file, header included.
    pub device: D,
    /// Plaintext bytes.
    pub len: u64,
    /// For `*.safetensors` files: the tensors, sorted by offset, with byte ranges in
    /// [`LoadedFile::device`].
    pub tensors: Option<Vec<TensorInfo>>,
    /// Timings.
    pub stats: LoadStats,
    /// SHA-256 of the whole plaintext as loaded ([`LoadOptions::file_hash`]).
    pub sha256: Option<[u8; 32]>,
    /// SHA-256 of each 1 MiB piece (or chunk, if smaller) when hashing was on.
    digests: Option<Vec<[u8; 32]>>,
    piece: usize,
}

impl<D> LoadedFile<D> {
    /// Whether [`Loader::verify`] can check this file.
    #[must_use]
    pub fn is_hashed(&self) -> bool {
        self.digests.is_some()
    }
}

/// Plaintext of one file from somewhere other than a local cipher file (a tree in object
/// storage, `s3-source`), read in order by [`Loader::load_plain`]. The source authenticates
/// what it returns: bytes that failed authentication must be an error, never returned.
pub trait PlainSource {
    /// The plaintext path, for reports and errors.
    fn path(&self) -> &Path;
    /// Plaintext size.
    fn len(&self) -> u64;
    /// Whether the file is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Reads at `offset` into `buf`; returns the bytes read, short only at the end.
    ///
    /// # Errors
    /// The source's error (wrapped in [`Error::Source`]).
    fn read_at(
        &self,
        offset: u64,
        buf: &mut [u8],
    ) -> std::result::Result<usize, Box<dyn std::error::Error + Send + Sync + 'static>>;
}

/// Loads files into a [`CopyTarget`], reusing one ring of staging buffers across files.
pub struct Loader<'t, T: CopyTarget> {
    target: &'t T,
    opts: LoadOptions,
    ring: Vec<T::Staging>,
}

impl<T: CopyTarget> std::fmt::Debug for Loader<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loader")
            .field("target", &self.target.info())
            .field("opts", &self.opts)
            .field("staging_buffers", &self.ring.len())
            .finish()
    }
}

impl<'t, T: CopyTarget> Loader<'t, T> {
    /// A loader for `target`. Staging buffers are allocated on the first load.
    ///
    /// # Errors
    /// [`GpuError::Options`].
    pub fn new(target: &'t T, opts: LoadOptions) -> Result<Self> {
        opts.validate()?;
        Ok(Loader {
            target,
            opts,
            ring: Vec::new(),
        })
    }

    /// The options.
    #[must_use]
    pub fn options(&self) -> &LoadOptions {
        &self.opts
    }

    /// Whether the staging buffers allocated so far are pinned (`None` before any).
    #[must_use]
    pub fn pinned(&self) -> Option<bool> {
        self.ring.first().map(Staging::is_pinned)
    }

    /// Resolves `plain` (a plaintext path relative to the root) in `dir` and loads it.
    ///
    /// # Errors
    /// As [`Loader::load_file`]; a refusal if `plain` is not a regular file.
    pub fn load_path(
        &mut self,
        dir: &CipherDir,
        plain: &Path,
        progress: &dyn Progress,
    ) -> Result<LoadedFile<T::Device>> {
        let entry = dir.resolve(plain)?;
        if entry.kind != FileKind::File {
            return Err(gocryptfs_format::Error::refused(
                plain,
                "not a regular file; only regular files (not directories or symlinks) load",
            )
            .into());
        }
        let file = dir.open_file(&entry)?;
        self.load_file(&file, progress)
    }

    /// Decrypts `file` into a new device buffer. For a path ending in `.safetensors`, the
    /// header is parsed (strictly) first, so a bad header fails before any device memory is
    /// used.
    ///
    /// # Errors
    /// [`Error::Format`] (authentication or block errors naming the file and block, I/O);
    /// [`Error::Safetensors`]; [`Error::Gpu`]. On error the device buffer is freed.
    pub fn load_file(
        &mut self,
        file: &CipherFile,
        progress: &dyn Progress,
    ) -> Result<LoadedFile<T::Device>> {
        let path = file.path().to_path_buf();
        let len = file.plain_size();
        let tensors = if path.extension().is_some_and(|e| e == "safetensors") {
            Some(read_safetensors_header(file)?)
        } else {
            None
        };
        let start = Instant::now();
        let mut device = self.target.alloc_device(len)?;
        let out = pipeline::run(
            self.target,
            &mut self.ring,
            &self.opts,
            file,
            &mut device,
            progress,
        )?;
        let stats = LoadStats {
            seconds: start.elapsed().as_secs_f64(),
            chunks: out.chunks,
            max_in_flight: out.max_in_flight,
            pinned: self.ring.first().is_some_and(Staging::is_pinned),
        };
        Ok(LoadedFile {
            path,
            device,
            len,
            tensors,
            stats,
            sha256: out.sha256.or_else(|| {
                // An empty file is never handed to the copy: its hash is the empty one.
                (self.opts.file_hash && len == 0).then(|| Sha256::digest([]).into())
            }),
            digests: self.opts.hash.then_some(out.digests),
            piece: self.opts.piece_bytes(),
        })
    }

    /// Loads the plaintext `src` delivers into a new device buffer, chunk by chunk through
    /// the staging ring (copies overlap the source's next reads; a source that reads ahead,
    /// like `s3-source`'s, keeps the network busy meanwhile). Hashes as [`Loader::load_file`]
    /// does; a `*.safetensors` header is parsed (strictly) before any device memory is used.
    ///
    /// # Errors
    /// [`Error::Source`] (the source failed, e.g. a block that does not authenticate);
    /// [`Error::Safetensors`]; [`Error::Gpu`]. On error the device buffer is freed.
    pub fn load_plain(
        &mut self,
        src: &dyn PlainSource,
        progress: &dyn Progress,
    ) -> Result<LoadedFile<T::Device>> {
        use std::collections::VecDeque;
        let path = src.path().to_path_buf();
        let len = src.len();
        let read = |off: u64, buf: &mut [u8]| -> Result<usize> {
            src.read_at(off, buf).map_err(Error::Source)
        };
        let tensors = if path.extension().is_some_and(|e| e == "safetensors") {
            let bad = |problem| Error::Safetensors {
                path: path.clone(),
                problem,
            };
            let mut prefix = [0u8; 8];
            let got = read(0, &mut prefix)?;
            let n =
                safetensors::json_len(prefix.get(..got).unwrap_or_default(), len).map_err(bad)?;
            let mut json = vec![0u8; usize::try_from(n).unwrap_or(0)];
            if read(8, &mut json)? != json.len() {
                return Err(bad(safetensors::SafetensorsError::HeaderPastEnd {
                    len: n,
                    file_size: len,
                }));
            }
            Some(safetensors::parse_json(&json, len).map_err(bad)?.tensors)
        } else {
            None
        };
        let start = Instant::now();
        let mut device = self.target.alloc_device(len)?;
        let chunk = self.opts.chunk_bytes;
        let piece = self.opts.piece_bytes();
        self.ring.retain(|b| b.len() >= chunk);
        let n_chunks = usize::try_from(len.div_ceil(chunk as u64)).unwrap_or(usize::MAX);
        while self.ring.len() < self.opts.depth.min(n_chunks) {
            self.ring.push(self.target.alloc_staging(chunk)?);
        }
        progress.set_total(len);
        let mut digests = Vec::new();
        let mut file_hash = self.opts.file_hash.then(Sha256::new);
        let mut inflight = VecDeque::new();
        let mut max_in_flight = 0;
        let mut chunks = 0u64;
        let mut off = 0u64;
        let res = (|| -> Result<()> {
            while off < len {
                let n = usize::try_from((len - off).min(chunk as u64)).unwrap_or(chunk);
                let mut buf = match self.ring.pop() {
                    Some(b) => b,
                    None => match inflight.pop_front() {
                        Some(t) => self.target.wait(t)?,
                        None => self.target.alloc_staging(chunk)?,
                    },
                };
                let dst = buf.bytes_mut()?.get_mut(..n).ok_or_else(|| {
                    GpuError::Options("invariant: staging holds one chunk".into())
                })?;
                let mut got = 0;
                while got < n {
                    let Some(rest) = dst.get_mut(got..) else {
                        break;
                    };
                    let r = read(off + got as u64, rest)?;
                    if r == 0 {
                        return Err(Error::Source(
                            format!(
                                "{}: ended at byte {} of {len}",
                                path.display(),
                                off + got as u64
                            )
                            .into(),
                        ));
                    }
                    got += r;
                }
                if self.opts.hash {
                    digests.extend(
                        dst.chunks(piece)
                            .map(|p| <[u8; 32]>::from(Sha256::digest(p))),
                    );
                }
                if let Some(h) = file_hash.as_mut() {
                    h.update(&*dst);
                }
                inflight.push_back(self.target.submit_copy(&mut device, off, buf, n)?);
                max_in_flight = max_in_flight.max(inflight.len());
                chunks += 1;
                off += n as u64;
                progress.advance(n as u64);
            }
            Ok(())
        })();
        // Every copy is waited for, also after an error, before its buffer is reused or freed.
        while let Some(t) = inflight.pop_front() {
            match self.target.wait(t) {
                Ok(b) => self.ring.push(b),
                Err(e) if res.is_ok() => return Err(e.into()),
                Err(_) => {}
            }
        }
        res?;
        let stats = LoadStats {
            seconds: start.elapsed().as_secs_f64(),
            chunks,
            max_in_flight,
            pinned: self.ring.first().is_some_and(Staging::is_pinned),
        };
        Ok(LoadedFile {
            path,
            device,
            len,
            tensors,
            stats,
            sha256: file_hash.map(|h| h.finalize().into()),
            digests: self.opts.hash.then_some(digests),
            piece: self.opts.piece_bytes(),
        })
    }

    /// Reads the device buffer back, chunk by chunk, and compares each piece's SHA-256 with
    /// the one computed from the plaintext while decrypting. Returns the seconds it took.
    ///
    /// # Errors
    /// [`GpuError::Mismatch`] naming the file and byte range; [`GpuError::NotHashed`];
    /// copy errors.
    pub fn verify(&mut self, loaded: &LoadedFile<T::Device>) -> Result<f64> {
        let start = Instant::now();
        let digests = loaded.digests.as_ref().ok_or_else(|| GpuError::NotHashed {
            path: loaded.path.clone(),
        })?;
        let piece = loaded.piece.max(1);
        if digests.len() as u64 != loaded.len.div_ceil(piece as u64) {
            return Err(GpuError::NotHashed {
                path: loaded.path.clone(),
            }
            .into());
        }
        // Read back in chunks of whole pieces, through a staging buffer when one is free
        // (pinned memory makes the device-to-host copy a DMA too).
        let chunk = (self.opts.chunk_bytes / piece).max(1) * piece;
        let mut staging = match self.ring.pop() {
            Some(s) if s.len() >= chunk => Some(s),
            Some(s) => {
                self.ring.push(s);
                None
            }
            None => None,
        };
        let mut own = Vec::new();
        let result = (|| -> Result<()> {
            let buf: &mut [u8] = match staging.as_mut() {
                Some(s) => s.bytes_mut()?,
                None => {
                    own.resize(chunk.min(usize::try_from(loaded.len).unwrap_or(chunk)), 0);
                    &mut own
                }
            };
            let mut off = 0u64;
            while off < loaded.len {
                let n = usize::try_from((loaded.len - off).min(chunk as u64)).unwrap_or(chunk);
                let part = buf.get_mut(..n).ok_or_else(|| {
                    GpuError::Options("invariant: read-back buffer holds one chunk".into())
                })?;
                self.target.read_back(&loaded.device, off, part)?;
                let first_piece = usize::try_from(off / piece as u64).unwrap_or(usize::MAX);
                let bad = part
                    .par_chunks(piece)
                    .enumerate()
                    .filter_map(|(i, p)| {
                        let want = digests.get(first_piece + i)?;
                        (Sha256::digest(p).as_slice() != want.as_slice()).then_some(i)
                    })
                    .min();
                if let Some(i) = bad {
                    let s = off + (i * piece) as u64;
                    return Err(GpuError::Mismatch {
                        path: loaded.path.clone(),
                        start: s,
                        end: (s + piece as u64).min(loaded.len),
                    }
                    .into());
                }
                off += n as u64;
            }
            Ok(())
        })();
        if let Some(s) = staging {
            self.ring.push(s);
        }
        result.map(|()| start.elapsed().as_secs_f64())
    }
}

/// Reads and strictly parses the header of a safetensors file through the decrypting
/// reader (its blocks authenticate like any others).
fn read_safetensors_header(file: &CipherFile) -> Result<Vec<TensorInfo>> {
    let path = file.path();
    let size = file.plain_size();
    let bad = |problem| Error::Safetensors {
        path: path.to_path_buf(),
        problem,
    };
    let mut prefix = [0u8; 8];
    let got = file.read_at(0, &mut prefix)?;
    let n = safetensors::json_len(prefix.get(..got).unwrap_or_default(), size).map_err(bad)?;
    // n <= 100 MB (json_len checked it), so it fits in memory and in usize.
    let mut json = vec![0u8; usize::try_from(n).unwrap_or(0)];
    let got = file.read_at(8, &mut json)?;
    if got != json.len() {
        return Err(bad(safetensors::SafetensorsError::HeaderPastEnd {
            len: n,
            file_size: size,
        }));
    }
    let header = safetensors::parse_json(&json, size).map_err(bad)?;
    Ok(header.tensors)
}

/// The plain baseline: copies `bytes` bytes of one constant host pattern to a new device
/// buffer through the same target in `chunk_bytes` copies with `depth` staging buffers,
/// without decryption. Returns the seconds it took and whether staging was pinned.
///
/// # Errors
/// [`GpuError`] from the target.
pub fn plain_copy<T: CopyTarget>(
    target: &T,
    bytes: u64,
    chunk_bytes: usize,
    depth: usize,
) -> Result<(f64, bool), GpuError> {
    use std::collections::VecDeque;
    let chunk = chunk_bytes.max(1);
    let mut dev = target.alloc_device(bytes)?;
    let mut free = Vec::new();
    for _ in 0..depth.max(1) {
        let mut s = target.alloc_staging(chunk)?;
        s.bytes_mut()?.fill(0x5a);
        free.push(s);
    }
    let pinned = free.first().is_some_and(Staging::is_pinned);
    let start = Instant::now();
    let mut inflight = VecDeque::new();
    let mut off = 0u64;
    while off < bytes {
        let n = usize::try_from((bytes - off).min(chunk as u64)).unwrap_or(chunk);
        let buf = match free.pop() {
            Some(b) => b,
            None => match inflight.pop_front() {
                Some(t) => target.wait(t)?,
                None => return Err(GpuError::Options("invariant: depth >= 1".into())),
            },
        };
        inflight.push_back(target.submit_copy(&mut dev, off, buf, n)?);
        off += n as u64;
    }
    while let Some(t) = inflight.pop_front() {
        free.push(target.wait(t)?);
    }
    Ok((start.elapsed().as_secs_f64(), pinned))
}
