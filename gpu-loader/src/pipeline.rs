//! The load pipeline of one file: a producer (the caller's thread, decrypting on the rayon
//! pool), a submitter thread (issues copies) and a reaper thread (waits for copies and
//! returns their buffers).
//!
//! Why three threads: a copy call may block (pageable memory, or any copy in
//! confidential-computing mode, where "async" copies are synchronous), and waiting for a
//! copy blocks; with each on its own thread, decryption of chunk k+1 always overlaps the
//! copy of chunk k, and a new copy is queued while an older one is being waited for.
//!
//! Shutdown: the producer stops on its own error, on a `Stop` message, or when a channel
//! closes; it then drops its sender, the submitter drains (returning buffers once a failure
//! is recorded) and drops its ticket sender, and the reaper waits for every ticket still in
//! flight before returning. So when [`run`] returns, no copy is running and every surviving
//! buffer is back in the ring.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SendError};

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use gocryptfs_format::contentenc::PLAIN_BS;
use gocryptfs_format::{BlockError, BlockErrorKind, CipherFile, Progress};

use crate::{CopyTarget, Error, GpuError, LoadOptions, Result, Staging};

/// What one run produced.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub(super) chunks: u64,
    pub(super) max_in_flight: usize,
    pub(super) digests: Vec<[u8; 32]>,
    /// SHA-256 of the whole file as it was copied (with `LoadOptions::file_hash`).
    pub(super) sha256: Option<[u8; 32]>,
}

/// Messages to the producer about buffers.
enum Free<S> {
    /// A buffer whose copy completed (or that was never used).
    Buf(S),
    /// Something failed downstream: stop producing.
    Stop,
}

/// A decrypted chunk waiting for its copy.
struct Filled<S> {
    buf: S,
    offset: u64,
    len: usize,
}

/// State shared by the three threads.
struct Shared {
    failed: AtomicBool,
    first_error: Mutex<Option<Error>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
}

impl Shared {
    /// Records the first error; later ones are consequences.
    fn fail(&self, e: Error) {
        self.failed.store(true, Ordering::SeqCst);
        if let Ok(mut slot) = self.first_error.lock()
            && slot.is_none()
        {
            *slot = Some(e);
        }
    }

    fn failed(&self) -> bool {
        self.failed.load(Ordering::SeqCst)
    }
}

/// Decrypts `file` into `dev` through `ring`. `dev` must hold `file.plain_size()` bytes.
pub(super) fn run<T: CopyTarget>(
    target: &T,
    ring: &mut Vec<T::Staging>,
    opts: &LoadOptions,
    file: &CipherFile,
    dev: &mut T::Device,
    progress: &dyn Progress,
) -> Result<Outcome> {
    let len = file.plain_size();
    let chunk = opts.chunk_bytes;
    let piece = opts.piece_bytes();
    let n_chunks = len.div_ceil(chunk as u64);
    if n_chunks == 0 {
        return Ok(Outcome::default());
    }
    ring.retain(|b| b.len() >= chunk);
    let want = opts
        .depth
        .min(usize::try_from(n_chunks).unwrap_or(usize::MAX));
    while ring.len() < want {
        ring.push(target.alloc_staging(chunk)?);
    }
    progress.set_total(len);

    let n_pieces = if opts.hash {
        usize::try_from(len.div_ceil(piece as u64))
            .map_err(|_| GpuError::Options("file too large to hash on this platform".into()))?
    } else {
        0
    };
    let mut digests = vec![[0u8; 32]; n_pieces];
    let shared = Shared {
        failed: AtomicBool::new(false),
        first_error: Mutex::new(None),
        in_flight: AtomicUsize::new(0),
        max_in_flight: AtomicUsize::new(0),
    };
    let (free_tx, free_rx) = mpsc::channel::<Free<T::Staging>>();
    for b in ring.drain(..) {
        // The receiver is alive: cannot fail.
        let _ = free_tx.send(Free::Buf(b));
    }
    let (filled_tx, filled_rx) = mpsc::sync_channel::<Filled<T::Staging>>(opts.depth);
    let (ticket_tx, ticket_rx) = mpsc::sync_channel::<(T::Ticket, usize)>(opts.depth);
    let mut spare: Vec<T::Staging> = Vec::new();
    let mut chunks = 0u64;
    let mut file_sha256 = None;

    std::thread::scope(|s| {
        let sh = &shared;
        let free_sub = free_tx.clone();
        let submitter = s.spawn(move || {
            // The whole-file hash runs here, in file order, on the bytes about to be copied
            // (a pinned load checks exactly what it loads), overlapping the next decrypts.
            let mut hasher = opts.file_hash.then(Sha256::new);
            for mut f in filled_rx {
                if sh.failed() {
                    let _ = free_sub.send(Free::Buf(f.buf));
                    continue;
                }
                if let Some(h) = hasher.as_mut() {
                    match f.buf.bytes_mut() {
                        Ok(b) => h.update(b.get(..f.len).unwrap_or_default()),
                        Err(e) => {
                            sh.fail(e.into());
                            let _ = free_sub.send(Free::Stop);
                            let _ = free_sub.send(Free::Buf(f.buf));
                            continue;
                        }
                    }
                }
                match target.submit_copy(dev, f.offset, f.buf, f.len) {
                    Ok(t) => {
                        let now = sh.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        sh.max_in_flight.fetch_max(now, Ordering::SeqCst);
                        if ticket_tx.send((t, f.len)).is_err() {
                            // The reaper is gone (it panicked); the ticket was dropped safely.
                            sh.fail(GpuError::Panicked("copy reaper exited".into()).into());
                            let _ = free_sub.send(Free::Stop);
                            break;
                        }
                    }
                    Err(e) => {
                        sh.fail(e.into());
                        let _ = free_sub.send(Free::Stop);
                    }
                }
            }
            hasher.map(|h| <[u8; 32]>::from(h.finalize()))
        });
        let free_reap = free_tx.clone();
        let reaper = s.spawn(move || {
            for (t, n) in ticket_rx {
                let r = target.wait(t);
                sh.in_flight.fetch_sub(1, Ordering::SeqCst);
                match r {
                    Ok(b) => {
                        progress.advance(n as u64);
                        let _ = free_reap.send(Free::Buf(b));
                    }
                    Err(e) => {
                        sh.fail(e.into());
                        let _ = free_reap.send(Free::Stop);
                    }
                }
            }
        });
        // Only the helpers hold senders now: when both exit, `recv` reports it.
        drop(free_tx);

        let mut c = 0u64;
        while c < n_chunks {
            let mut buf = match free_rx.recv() {
                Ok(Free::Buf(b)) => b,
                Ok(Free::Stop) | Err(_) => break,
            };
            if shared.failed() {
                spare.push(buf);
                break;
            }
            let offset = c * chunk as u64;
            let n = usize::try_from((len - offset).min(chunk as u64)).unwrap_or(chunk);
            let first_piece = usize::try_from(offset / piece as u64).unwrap_or(0);
            let slot = if opts.hash {
                digests.get_mut(first_piece..first_piece + n.div_ceil(piece))
            } else {
                None
            };
            if let Err(e) = decrypt_chunk(file, &mut buf, offset, n, piece, slot) {
                shared.fail(e);
                spare.push(buf);
                break;
            }
            if let Err(SendError(f)) = filled_tx.send(Filled {
                buf,
                offset,
                len: n,
            }) {
                spare.push(f.buf);
                break;
            }
            c += 1;
        }
        chunks = c;
        drop(filled_tx);
        match submitter.join() {
            Ok(h) => file_sha256 = h,
            Err(_) => shared.fail(GpuError::Panicked("copy submitter thread".into()).into()),
        }
        if reaper.join().is_err() {
            shared.fail(GpuError::Panicked("copy reaper thread".into()).into());
        }
    });

    // Everything has stopped: gather the buffers back into the ring.
    for m in free_rx.try_iter() {
        if let Free::Buf(b) = m {
            ring.push(b);
        }
    }
    ring.append(&mut spare);
    if let Some(e) = shared.first_error.into_inner().ok().flatten() {
        return Err(e);
    }
    if chunks != n_chunks {
        return Err(GpuError::Panicked("pipeline stopped without an error".into()).into());
    }
    Ok(Outcome {
        chunks,
        max_in_flight: shared.max_in_flight.load(Ordering::SeqCst),
        digests,
        sha256: file_sha256,
    })
}

/// Decrypts plaintext `offset..offset + n` of `file` into `buf[..n]`, in pieces spread over
/// the rayon pool (each `pread`s its own ciphertext), hashing each piece into `digests`
/// when given. Reports the lowest failing block.
fn decrypt_chunk<S: Staging>(
    file: &CipherFile,
    buf: &mut S,
    offset: u64,
    n: usize,
    piece: usize,
    digests: Option<&mut [[u8; 32]]>,
) -> Result<()> {
    let out = buf
        .bytes_mut()?
        .get_mut(..n)
        .ok_or_else(|| GpuError::Options("invariant: staging buffer holds one chunk".into()))?;
    let hash = digests.is_some();
    let results: Vec<Result<[u8; 32]>> = out
        .par_chunks_mut(piece)
        .enumerate()
        .map(|(i, p)| {
            let at = offset + (i * piece) as u64;
            let got = file.read_at(at, p)?;
            if got != p.len() {
                // The file shrank under us.
                return Err(gocryptfs_format::Error::from_block(
                    file.path(),
                    BlockError {
                        block: (at + got as u64) / PLAIN_BS,
                        kind: BlockErrorKind::TooShort,
                    },
                )
                .into());
            }
            Ok(if hash {
                Sha256::digest(&*p).into()
            } else {
                [0u8; 32]
            })
        })
        .collect();
    let mut digests = digests;
    for (i, r) in results.into_iter().enumerate() {
        let d = r?;
        if let Some(slot) = digests.as_deref_mut().and_then(|ds| ds.get_mut(i)) {
            *slot = d;
        }
    }
    Ok(())
}
