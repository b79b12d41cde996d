//! Random-access decryption of one file: thread-safe `read_at`, piecewise bulk decryption
//! for the offline tools, and a `Read + Seek` adapter.
//!
//! Mirrors gocryptfs `internal/fusefrontend/file.go` (`readFileID`, `doRead`) and spec §2.6:
//! the header (file ID) is read once at open; each read `pread`s the whole block range in
//! one call into a per-thread ciphertext buffer and decrypts out of place straight into the
//! caller's buffer (a scratch block only for partial first/last blocks). A block that fails
//! authentication is never returned: the read fails with the file's path and block number.

use std::cell::RefCell;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::contentenc::{ContentEnc, FileHeader, FileId, HEADER_LEN, PIECE_BLOCKS, PLAIN_BS};
use crate::error::{BlockError, BlockErrorKind, CorruptError, Error, HeaderError, Result};
use crate::safeio::{self, OpenFail};

thread_local! {
    /// Per-thread ciphertext buffer: reads allocate nothing after warm-up.
    static CT_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Largest plaintext file accepted (1 TiB): far above any model file, far below what a
/// sparse file can claim.
pub const MAX_PLAIN_SIZE: u64 = 1 << 40;

/// One open ciphertext file. `Send + Sync`: `read_at` takes `&self` and may run on many
/// threads at once (it uses `pread`, never the file position).
#[derive(Debug)]
pub struct CipherFile {
    file: File,
    path: PathBuf,
    content: Arc<ContentEnc>,
    id: Option<FileId>,
    cipher_size: u64,
    plain_size: u64,
    stamp: Stamp,
}

/// What identifies the backing file's content at open: if any of it differs at a later open,
/// the host replaced or rewrote the file, and cached plaintext of it must go.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Stamp {
    /// Device and inode of the cipher file.
    pub dev_ino: (u64, u64),
    /// Its ctime (seconds, nanoseconds): any write or metadata change moves it.
    pub ctime: (i64, i64),
    /// Its size.
    pub size: u64,
    /// The file ID from its header.
    pub file_id: Option<FileId>,
}

/// The outcome of decrypting one piece of a file with [`CipherFile::decrypt_piece`].
#[derive(Debug, Default)]
pub struct Piece {
    /// Plaintext bytes produced (failed blocks are zero-filled, never returned as data).
    pub plain_len: usize,
    /// Every block that failed, in order.
    pub bad: Vec<BlockError>,
    /// Blocks that were all-zero holes (unauthenticated zeros, gocryptfs-compatible).
    pub holes: Vec<u64>,
}

impl CipherFile {
    /// Opens `cipher_path` (never through a symlink) and reads its header. `display` is the
    /// path errors name (normally the plaintext path).
    ///
    /// An 18-byte (header-only) file reads as empty, as in gocryptfs; a file of 1..=17 bytes
    /// is a truncated header and refused (gocryptfs reads it as empty and logs corruption; we
    /// fail closed).
    ///
    /// # Errors
    /// [`Error::Io`]; [`Error::Corrupt`] with [`HeaderError`] for a bad header.
    pub fn open(
        content: Arc<ContentEnc>,
        cipher_path: &Path,
        display: impl Into<PathBuf>,
    ) -> Result<Self> {
        let path = display.into();
        // Never through a symlink, never blocking on a FIFO swapped in by the host.
        let file = safeio::open_regular(cipher_path).map_err(|e| match e {
            OpenFail::NotRegular(kind) => {
                Error::corrupt(path.clone(), CorruptError::NotRegular(kind))
            }
            OpenFail::Io(e) => Error::io("opening", cipher_path, e),
        })?;
        let meta = file
            .metadata()
            .map_err(|e| Error::io("reading", cipher_path, e))?;
        let cipher_size = meta.len();
        let stamp_base = ((meta.dev(), meta.ino()), (meta.ctime(), meta.ctime_nsec()));
        if cipher_size > 0 && cipher_size < HEADER_LEN {
            return Err(Error::corrupt(
                path,
                CorruptError::Header(HeaderError::Short(cipher_size)),
            ));
        }
        let implied = content.geometry().cipher_to_plain_size(cipher_size);
        if implied > MAX_PLAIN_SIZE {
            // A sparse 4 EiB file reads as zeros forever: refuse before any work.
            return Err(Error::corrupt(path, CorruptError::Absurd { size: implied }));
        }
        let (id, plain_size) = if cipher_size <= HEADER_LEN {
            (None, 0)
        } else {
            let mut h = [0u8; 18];
            file.read_exact_at(&mut h, 0)
                .map_err(|e| Error::io("reading", cipher_path, e))?;
            let header = FileHeader::parse(&h)
                .map_err(|e| Error::corrupt(path.clone(), CorruptError::Header(e)))?;
            (
                Some(header.id),
                content.geometry().cipher_to_plain_size(cipher_size),
            )
        };
        Ok(CipherFile {
            file,
            path,
            content,
            id,
            cipher_size,
            plain_size,
            stamp: Stamp {
                dev_ino: stamp_base.0,
                ctime: stamp_base.1,
                size: cipher_size,
                file_id: id,
            },
        })
    }

    /// Plaintext size (as gocryptfs' `stat` reports it).
    #[must_use]
    pub fn plain_size(&self) -> u64 {
        self.plain_size
    }

    /// Ciphertext size at open.
    #[must_use]
    pub fn cipher_size(&self) -> u64 {
        self.cipher_size
    }

    /// The file ID from the header (`None` for an empty file).
    #[must_use]
    pub fn file_id(&self) -> Option<FileId> {
        self.id
    }

    /// The identity of the backing file at open (see [`Stamp`]).
    #[must_use]
    pub fn stamp(&self) -> Stamp {
        self.stamp
    }

    /// The path errors name.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The content codec.
    #[must_use]
    pub fn content(&self) -> &Arc<ContentEnc> {
        &self.content
    }

    /// Number of plaintext blocks.
    #[must_use]
    pub fn blocks(&self) -> u64 {
        self.plain_size.div_ceil(PLAIN_BS)
    }

    fn block_err(&self, e: BlockError) -> Error {
        Error::from_block(self.path.clone(), e)
    }

    /// Reads plaintext at `offset` into `buf`; returns the bytes read (0 at or past EOF,
    /// fewer than `buf.len()` only at EOF). Thread-safe.
    ///
    /// # Errors
    /// [`Error::Authentication`] / [`Error::Block`] naming the file and block; [`Error::Io`].
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize> {
        if offset >= self.plain_size || buf.is_empty() {
            return Ok(0);
        }
        let len = (self.plain_size - offset).min(buf.len() as u64) as usize;
        let Some(id) = self.id else {
            return Ok(0);
        };
        let geo = self.content.geometry();
        let cbs = geo.cipher_bs() as usize;
        CT_BUF.with(|cell| {
            let mut ct = cell.borrow_mut();
            let mut done = 0usize;
            let mut scratch = [0u8; PLAIN_BS as usize];
            while done < len {
                let off = offset + done as u64;
                let first = off / PLAIN_BS;
                let end = (offset + len as u64).min((first + PIECE_BLOCKS) * PLAIN_BS);
                let last = (end - 1) / PLAIN_BS;
                let got = self.pread_blocks(first, last - first + 1, &mut ct)?;
                for (i, chunk) in ct[..got].chunks(cbs).enumerate() {
                    let b = first + i as u64;
                    if b > last {
                        break;
                    }
                    let bstart = b * PLAIN_BS;
                    let s = (off.max(bstart) - bstart) as usize;
                    let e = (end.min(bstart + PLAIN_BS) - bstart) as usize;
                    let chunk_plain = if chunk.len() == cbs {
                        PLAIN_BS as usize
                    } else {
                        chunk.len().saturating_sub(geo.overhead() as usize)
                    };
                    let dst = &mut buf[done..done + (e - s)];
                    if s == 0 && chunk_plain == e {
                        self.content
                            .decrypt_block(chunk, b, &id, dst)
                            .map_err(|x| self.block_err(x))?;
                    } else {
                        let n = self
                            .content
                            .decrypt_block(chunk, b, &id, &mut scratch)
                            .map_err(|x| self.block_err(x))?;
                        if n < e {
                            return Err(self.block_err(BlockError {
                                block: b,
                                kind: BlockErrorKind::TooShort,
                            }));
                        }
                        dst.copy_from_slice(&scratch[s..e]);
                    }
                    done += e - s;
                }
                if got < (last - first + 1) as usize * cbs && done < len {
                    // The file shrank since it was opened.
                    return Err(self.block_err(BlockError {
                        block: first + (got / cbs) as u64,
                        kind: BlockErrorKind::TooShort,
                    }));
                }
            }
            scratch.fill(0);
            Ok(len)
        })
    }

    /// `pread`s blocks `first..first+count` (clipped at EOF) into `ct`; returns the bytes.
    fn pread_blocks(&self, first: u64, count: u64, ct: &mut Vec<u8>) -> Result<usize> {
        let geo = self.content.geometry();
        let start = geo.block_cipher_offset(first).ok_or_else(|| {
            self.block_err(BlockError {
                block: first,
                kind: BlockErrorKind::TooShort,
            })
        })?;
        let want = (count * geo.cipher_bs()).min(self.cipher_size.saturating_sub(start)) as usize;
        if ct.len() < want {
            ct.resize(want, 0);
        }
        let mut got = 0usize;
        while got < want {
            match self.file.read_at(&mut ct[got..want], start + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::io("reading", self.path.clone(), e)),
            }
        }
        Ok(got)
    }

    /// Decrypts blocks `first..first+count` (clipped at the end of the file) into `out`,
    /// recording every failing block instead of stopping at the first: the building block of
    /// `decrypt` and `verify`. `out` is resized to the plaintext length; failed blocks are
    /// zero-filled. `ct` is a reusable ciphertext buffer.
    ///
    /// # Errors
    /// Only [`Error::Io`]; block failures are in [`Piece::bad`].
    pub fn decrypt_piece(
        &self,
        first: u64,
        count: u64,
        ct: &mut Vec<u8>,
        out: &mut Vec<u8>,
    ) -> Result<Piece> {
        let mut piece = Piece::default();
        let Some(id) = self.id else {
            out.clear();
            return Ok(piece);
        };
        let geo = self.content.geometry();
        let cbs = geo.cipher_bs() as usize;
        let count = count.min(self.blocks().saturating_sub(first));
        let plain_expected = (0..count)
            .map(|i| geo.plain_block_len(self.plain_size, first + i))
            .sum::<u64>() as usize;
        // Every byte is overwritten below (plaintext, or zeros for a failed block), so only
        // growth needs initialising: no per-piece memset.
        out.resize(plain_expected, 0);
        let got = self.pread_blocks(first, count, ct)?;
        let mut pos = 0usize;
        for i in 0..count {
            let b = first + i;
            let want = geo.plain_block_len(self.plain_size, b) as usize;
            let lo = i as usize * cbs;
            let chunk = ct.get(lo..got.min(lo + cbs)).unwrap_or_default();
            let dst = &mut out[pos..pos + want];
            let hole = chunk.len() == cbs
                && crate::contentenc::is_hole(chunk, self.content.cipher().nonce_len());
            match self.content.decrypt_block(chunk, b, &id, dst) {
                Ok(n) if n == want => {
                    if hole {
                        piece.holes.push(b);
                    }
                }
                Ok(_) => {
                    dst.fill(0);
                    piece.bad.push(BlockError {
                        block: b,
                        kind: BlockErrorKind::TooShort,
                    });
                }
                Err(e) => {
                    dst.fill(0);
                    piece.bad.push(e);
                }
            }
            pos += want;
        }
        piece.plain_len = pos;
        Ok(piece)
    }

    /// Runs of whole blocks `[first, end)` that lie entirely in file-system holes of the
    /// ciphertext (found with `SEEK_DATA`/`SEEK_HOLE`, without reading): they read as
    /// all-zero blocks. Empty when the file system cannot tell (then reads find them).
    #[must_use]
    pub fn fs_hole_blocks(&self) -> Vec<std::ops::Range<u64>> {
        let geo = self.content.geometry();
        let cbs = geo.cipher_bs();
        if self.cipher_size <= HEADER_LEN {
            return Vec::new();
        }
        let Some(segs) = safeio::data_segments(&self.file, self.cipher_size) else {
            return Vec::new();
        };
        hole_blocks_between(&segs, self.cipher_size, cbs)
    }

    /// A `Read + Seek` view of the plaintext.
    #[must_use]
    pub fn reader(&self) -> FileReader<'_> {
        FileReader { file: self, pos: 0 }
    }
}

/// `Read + Seek` over a [`CipherFile`]'s plaintext. Errors surface as `io::Error` of kind
/// `InvalidData` wrapping the crate [`Error`] (path and block).
#[derive(Debug)]
pub struct FileReader<'a> {
    file: &'a CipherFile,
    pos: u64,
}

impl Read for FileReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self
            .file
            .read_at(self.pos, buf)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileReader<'_> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let new = match pos {
            SeekFrom::Start(p) => Some(p),
            SeekFrom::End(d) => self.file.plain_size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let new = new.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        self.pos = new;
        Ok(new)
    }
}

/// The runs of whole cipher blocks `[first, end)` of a file of `cipher_size` bytes that no
/// data segment `[start, end)` touches (blocks of `cbs` bytes after the 18-byte header).
pub(crate) fn hole_blocks_between(
    segs: &[(u64, u64)],
    cipher_size: u64,
    cbs: u64,
) -> Vec<std::ops::Range<u64>> {
    let full_blocks = cipher_size.saturating_sub(HEADER_LEN) / cbs;
    let mut out = Vec::new();
    let mut prev = 0u64;
    for &(s, e) in segs
        .iter()
        .chain(std::iter::once(&(cipher_size, cipher_size)))
    {
        if s > prev {
            let first = prev.saturating_sub(HEADER_LEN).div_ceil(cbs);
            let end = (s.saturating_sub(HEADER_LEN) / cbs).min(full_blocks);
            if first < end {
                out.push(first..end);
            }
        }
        prev = prev.max(e);
    }
    out
}

/// Checks a header without a key (for the structural verify).
///
/// # Errors
/// [`HeaderError`].
pub fn check_header(bytes: &[u8]) -> std::result::Result<FileId, HeaderError> {
    FileHeader::parse(bytes).map(|h| h.id)
}
