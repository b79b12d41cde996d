//! `ccmount._native.File`: one open file of the tree, read at random offsets, and its
//! safetensors header; plus [`read_parallel`], the decryption of one byte range on all
//! cores.
//!
//! Mirrors `safetensors.safe_open`'s lazy model: the header is read and checked once
//! (`gpu_loader::safetensors`, the same hostile-input rules as the GPU loader: bounded
//! header, known dtypes, dtype × shape == byte length, offsets tiling the data section, no
//! overflow); a tensor costs only the cipher blocks under its byte range, decrypted in
//! 1 MiB pieces by rayon with the GIL released, into a `bytearray` the array then owns.

use std::mem::MaybeUninit;
use std::path::PathBuf;
use std::sync::Arc;

use gocryptfs_format::contentenc::{PIECE_BLOCKS, PLAIN_BS};
use gocryptfs_format::{BlockErrorKind, CipherFile};
use gpu_loader::safetensors::{self, Header, PREFIX_LEN};
use pyo3::prelude::*;
use pyo3::types::PyByteArray;
use rayon::prelude::*;

use crate::alloc::{cleared, filled_bytearray};
use crate::dir::Opened;
use crate::errors::{Failure, Result};

/// The unit of parallel work: one piece of the core (256 blocks, 1 MiB of plaintext).
const PIECE: u64 = PIECE_BLOCKS * PLAIN_BS;

/// Fills `buf` with the plaintext at `offset`, or fails naming the file and block. A piece
/// that comes back short means the file shrank since it was opened (a block error).
fn read_exact(file: &CipherFile, offset: u64, buf: &mut [u8]) -> Result<()> {
    let n = file.read_at(offset, buf)?;
    if n < buf.len() {
        return Err(gocryptfs_format::Error::Block {
            path: file.path().to_path_buf(),
            block: (offset + n as u64) / PLAIN_BS,
            kind: BlockErrorKind::TooShort,
        }
        .into());
    }
    Ok(())
}

/// Runs `f(offset, piece)` over `buf` split at 1 MiB piece boundaries of the file, on rayon's
/// pool (a buffer of one piece or less stays on the calling thread). The first piece runs to
/// the next boundary, so that every later one is a whole run of blocks (one `pread`, no
/// partial blocks).
fn for_each_piece<T: Send>(
    offset: u64,
    buf: &mut [T],
    f: impl Fn(u64, &mut [T]) -> Result<()> + Sync,
) -> Result<()> {
    let len = buf.len() as u64;
    if len <= PIECE {
        return f(offset, buf);
    }
    let head = (PIECE - offset % PIECE).min(len) as usize;
    let (first, rest) = buf.split_at_mut(head);
    let mut jobs: Vec<(u64, &mut [T])> = vec![(offset, first)];
    let mut at = offset + head as u64;
    for chunk in rest.chunks_mut(PIECE as usize) {
        let n = chunk.len() as u64;
        jobs.push((at, chunk));
        at += n;
    }
    jobs.into_par_iter()
        .try_for_each(|(off, chunk)| f(off, chunk))
}

/// Decrypts `buf.len()` bytes at `offset` into `buf`, in parallel. The first failing block
/// fails the whole read; `buf` is then zeroed so no partial plaintext survives in it.
pub(crate) fn read_parallel(file: &CipherFile, offset: u64, buf: &mut [u8]) -> Result<()> {
    let r = for_each_piece(offset, buf, |off, chunk| read_exact(file, off, chunk));
    if r.is_err() {
        buf.fill(0);
    }
    r
}

/// [`read_parallel`] into storage that may be uninitialised (`alloc::filled_bytearray`):
/// each piece is cleared by the worker that decrypts it, right before.
pub(crate) fn read_parallel_uninit(
    file: &CipherFile,
    offset: u64,
    buf: &mut [MaybeUninit<u8>],
) -> Result<()> {
    let r = for_each_piece(offset, buf, |off, chunk| {
        read_exact(file, off, cleared(chunk))
    });
    if r.is_err() {
        cleared(buf);
    }
    r
}

/// The Python class `ccmount._native.File`.
#[pyclass(frozen, module = "ccmount._native", name = "File")]
#[derive(Debug)]
pub(crate) struct NativeFile {
    path: PathBuf,
    file: CipherFile,
    /// Keeps the tree (and its key) alive as long as the file is open.
    _dir: Arc<Opened>,
}

impl NativeFile {
    pub(crate) fn new(path: PathBuf, file: CipherFile, dir: Arc<Opened>) -> NativeFile {
        NativeFile {
            path,
            file,
            _dir: dir,
        }
    }

    fn header_err(&self, source: safetensors::SafetensorsError) -> Failure {
        Failure::Header {
            path: self.path.clone(),
            source,
        }
    }
}

/// One tensor as Python sees it: `(name, dtype, shape, begin, end)`, offsets in the file.
type TensorTuple = (String, &'static str, Vec<u64>, u64, u64);

/// The header as Python sees it: tensors in file order, and the metadata pairs if any.
type HeaderTuple = (Vec<TensorTuple>, Option<Vec<(String, String)>>);

#[pymethods]
impl NativeFile {
    /// Plaintext size in bytes.
    #[getter]
    fn size(&self) -> u64 {
        self.file.plain_size()
    }

    /// The plaintext path inside the tree.
    #[getter]
    fn path(&self) -> String {
        gocryptfs_format::escape::escaped(&self.path).to_string()
    }

    /// `end - begin` plaintext bytes at `begin` as a new `bytearray`, decrypted in parallel
    /// with the GIL released. Fails (naming the file and block) if any block under the range
    /// does not authenticate; nothing of the range is returned then.
    fn read_range<'py>(
        &self,
        py: Python<'py>,
        begin: u64,
        end: u64,
    ) -> PyResult<Bound<'py, PyByteArray>> {
        if begin > end || end > self.file.plain_size() {
            return Err(Failure::Usage(format!(
                "range {begin}..{end} is outside the {}-byte file {}",
                self.file.plain_size(),
                self.path()
            ))
            .into());
        }
        let len = usize::try_from(end - begin)
            .map_err(|_| Failure::Usage("the range is too large for this machine".into()))?;
        filled_bytearray(py, len, |buf| read_parallel_uninit(&self.file, begin, buf))
    }

    /// Reads and checks the safetensors header: returns `(tensors, metadata)`, tensors as
    /// `(name, dtype, shape, begin, end)` sorted by offset (offsets in the file), metadata
    /// as a dict of strings, or None when the header has none.
    fn safetensors_header(&self, py: Python<'_>) -> PyResult<HeaderTuple> {
        let header = py.detach(|| self.parse_header())?;
        let metadata = if header.metadata.is_empty() {
            None
        } else {
            Some(header.metadata)
        };
        let tensors = header
            .tensors
            .into_iter()
            .map(|t| {
                (
                    t.name,
                    t.dtype.as_str(),
                    t.shape,
                    t.range.start,
                    t.range.end,
                )
            })
            .collect();
        Ok((tensors, metadata))
    }
}

impl NativeFile {
    fn parse_header(&self) -> Result<Header> {
        let size = self.file.plain_size();
        let mut prefix = [0u8; PREFIX_LEN as usize];
        let got = self.file.read_at(0, &mut prefix)?;
        let n = safetensors::json_len(prefix.get(..got).unwrap_or_default(), size)
            .map_err(|e| self.header_err(e))?;
        // n ≤ 100 MB and 8 + n ≤ size (checked by json_len), so this allocation is bounded.
        let mut json = vec![
            0u8;
            usize::try_from(n).map_err(
                |_| self.header_err(safetensors::SafetensorsError::HeaderTooLarge(n))
            )?
        ];
        read_parallel(&self.file, PREFIX_LEN, &mut json)?;
        safetensors::parse_json(&json, size).map_err(|e| self.header_err(e))
    }
}
