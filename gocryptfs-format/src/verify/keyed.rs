//! The keyed checker: walks the plaintext view of an open [`CipherDir`] and authenticates
//! every block of every file (in parallel, hashing when asked), every name, long name,
//! symlink target and xattr; mirrors gocryptfs `fsck.go` (spec §5).

use std::path::PathBuf;
use std::sync::Mutex;

use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::{FileRecord, Finding, FindingKind, Report, Severity, VerifyOptions};
use crate::Progress;
use crate::cipherdir::{CipherDir, Entry, FileKind};
use crate::contentenc::{PIECE_BLOCKS, PLAIN_BS, SizeCheck};
use crate::error::{BlockError, BlockErrorKind, Error, HeaderError};
use crate::reader::Piece;
use crate::walk::walk;

/// Pieces decrypted in parallel per batch when hashing; two batches are in flight (one
/// being hashed, one being decrypted), so at most `2 * HASH_BATCH` MiB of plaintext per file.
const HASH_BATCH: usize = 4;

thread_local! {
    /// Per-thread (ciphertext, scratch plaintext) buffers.
    static CT_BUF: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Verifies every block, name, long name, diriv, symlink and xattr of an open tree.
#[must_use]
pub fn verify(dir: &CipherDir, opts: &VerifyOptions, progress: &dyn Progress) -> Report {
    let mut report = Report::keyed(dir);
    let tree = match walk(dir) {
        Ok(t) => t,
        Err(e) => {
            report
                .findings
                .push(Finding::from_error(None, PathBuf::new(), &e, false));
            report.finish();
            return report;
        }
    };
    for p in &tree.problems {
        report.findings.push(Finding::from_error(
            None,
            p.cipher_path.clone(),
            &p.error,
            p.warning,
        ));
    }
    progress.set_total(
        tree.entries
            .iter()
            .filter(|e| e.kind == FileKind::File)
            .map(|e| e.plain_size)
            .sum(),
    );
    let findings = Mutex::new(Vec::new());
    let push = |f: Finding| {
        if let Ok(mut v) = findings.lock() {
            v.push(f);
        }
    };
    if let Ok(root) = dir.root_entry() {
        check_xattrs(dir, &root, &push);
    }
    for e in &tree.entries {
        match e.kind {
            FileKind::Dir => {
                report.stats.dirs += 1;
                check_xattrs(dir, e, &push);
            }
            FileKind::Symlink => {
                report.stats.symlinks += 1;
                match dir.read_link(e) {
                    Ok(t) => report.symlink_targets.push((e.plain_path.clone(), t)),
                    Err(err) => push(Finding::from_error(
                        Some(e.plain_path.clone()),
                        e.cipher_path.clone(),
                        &err,
                        false,
                    )),
                }
            }
            FileKind::Other => {
                report.stats.other += 1;
                push(Finding {
                    severity: Severity::Warning,
                    kind: FindingKind::Unexpected,
                    path: Some(e.plain_path.clone()),
                    cipher_path: e.cipher_path.clone(),
                    block: None,
                    message: "FIFO, socket or device node: stored unencrypted, not checked".into(),
                });
            }
            FileKind::File => {}
        }
    }
    let files: Vec<&Entry> = tree
        .entries
        .iter()
        .filter(|e| e.kind == FileKind::File)
        .collect();
    let records: Vec<FileRecord> = files
        .par_iter()
        .map(|e| {
            check_xattrs(dir, e, &push);
            verify_file(dir, e, opts, progress, &push)
        })
        .collect();
    report.stats.files = records.len() as u64;
    report.stats.bytes = records.iter().map(|r| r.size).sum();
    report.files = records;
    report
        .findings
        .extend(findings.into_inner().unwrap_or_default());
    report.entries = tree.entries;
    report.finish();
    report
}

fn check_xattrs(dir: &CipherDir, e: &Entry, push: &(dyn Fn(Finding) + Sync)) {
    match dir.xattrs(e) {
        Ok((_, bad)) => {
            for err in bad {
                push(Finding::from_error(
                    Some(e.plain_path.clone()),
                    e.cipher_path.clone(),
                    &err,
                    false,
                ));
            }
        }
        Err(err) => push(Finding::from_error(
            Some(e.plain_path.clone()),
            e.cipher_path.clone(),
            &err,
            false,
        )),
    }
}

fn verify_file(
    dir: &CipherDir,
    e: &Entry,
    opts: &VerifyOptions,
    progress: &dyn Progress,
    push: &(dyn Fn(Finding) + Sync),
) -> FileRecord {
    let mut rec = FileRecord {
        path: e.plain_path.clone(),
        cipher_path: e.cipher_path.clone(),
        size: e.plain_size,
        cipher_size: e.meta.len(),
        file_id: None,
        sha256: None,
        holes: 0,
        hole_ranges: Vec::new(),
        ok: true,
    };
    let found = |kind, block, severity, message: String| Finding {
        severity,
        kind,
        path: Some(e.plain_path.clone()),
        cipher_path: e.cipher_path.clone(),
        block,
        message,
    };
    let geo = dir.content().geometry();
    match geo.check_cipher_size(e.meta.len()) {
        SizeCheck::ShortHeader => {
            push(found(
                FindingKind::Header,
                None,
                Severity::Error,
                format!(
                    "{}: {}",
                    e.plain_path.display(),
                    HeaderError::Short(e.meta.len())
                ),
            ));
            rec.ok = false;
            return rec;
        }
        SizeCheck::HeaderOnly => push(found(
            FindingKind::Size,
            None,
            Severity::Warning,
            format!(
                "{}: header-only file (18 bytes): reads as empty; left by an interrupted write",
                e.plain_path.display()
            ),
        )),
        _ => {}
    }
    let cf = match dir.open_file(e) {
        Ok(cf) => cf,
        Err(err) => {
            push(Finding::from_error(
                Some(e.plain_path.clone()),
                e.cipher_path.clone(),
                &err,
                false,
            ));
            rec.ok = false;
            return rec;
        }
    };
    rec.file_id = cf.file_id().map(|id| id.to_hex());
    let blocks = cf.blocks();
    let pieces: Vec<u64> = (0..blocks).step_by(PIECE_BLOCKS as usize).collect();
    // Holes refused and the cipher file sparse: pieces lying wholly in a file-system hole
    // are hole findings without being read (a sparse 1 TiB file costs nothing), and the file
    // is not hashed (it cannot be accepted).
    let fs_holes = if dir.content().holes_allowed() {
        Vec::new()
    } else {
        cf.fs_hole_blocks()
    };
    let skipped = |first: u64| {
        let end = (first + PIECE_BLOCKS).min(blocks);
        fs_holes.iter().any(|r| r.start <= first && end <= r.end)
    };
    // The first `max_block_findings` failing blocks, and how many there are in all.
    let mut bad: Vec<BlockError> = Vec::new();
    let mut bad_count = 0u64;
    let mut holes = 0u64;
    let mut refused_holes = 0u64;
    let mut io_err = None;
    let mut hasher = (opts.hash && fs_holes.is_empty()).then(Sha256::new);
    let hashing = hasher.is_some();
    // Decrypts one batch of pieces in parallel into `pts` (kept when hashing: the hash needs
    // the plaintext in order; else each thread's scratch buffer is enough).
    let decrypt_batch = |batch: &[u64], pts: &mut Vec<Vec<u8>>| -> Vec<Result<Piece, Error>> {
        pts.resize_with(batch.len().max(pts.len()), Vec::new);
        batch
            .par_iter()
            .zip(pts.par_iter_mut())
            .map(|(&first, pt)| {
                CT_BUF.with(|cell| {
                    let mut guard = cell.borrow_mut();
                    let (ct, scratch) = &mut *guard;
                    let out = if hashing { pt } else { scratch };
                    if skipped(first) {
                        let end = (first + PIECE_BLOCKS).min(blocks);
                        let plain_len =
                            (cf.plain_size().min(end * PLAIN_BS) - first * PLAIN_BS) as usize;
                        progress.advance(plain_len as u64);
                        return Ok(Piece {
                            plain_len,
                            bad: (first..end)
                                .map(|block| BlockError {
                                    block,
                                    kind: BlockErrorKind::Hole,
                                })
                                .collect(),
                            holes: Vec::new(),
                        });
                    }
                    let r = cf.decrypt_piece(first, PIECE_BLOCKS, ct, out);
                    if let Ok(p) = &r {
                        progress.advance(p.plain_len as u64);
                    }
                    r
                })
            })
            .collect()
    };
    // Without hashing, one parallel pass. With hashing, batches are double-buffered: the
    // SHA-256 of batch N (one thread, in order) runs while batch N+1 is decrypted on the
    // others, so hashing no longer waits for decryption and vice versa.
    let batches: Vec<&[u64]> = pieces
        .chunks(if hashing { HASH_BATCH } else { usize::MAX })
        .collect();
    let (mut cur, mut next): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (Vec::new(), Vec::new());
    let mut results = batches.first().map(|b| decrypt_batch(b, &mut cur));
    let mut i = 0;
    while let Some(rs) = results.take() {
        let mut lens = Vec::with_capacity(rs.len());
        for r in rs {
            match r {
                Ok(piece) => {
                    holes += piece.holes.len() as u64;
                    refused_holes += piece
                        .bad
                        .iter()
                        .filter(|b| b.kind == BlockErrorKind::Hole)
                        .count() as u64;
                    bad_count += piece.bad.len() as u64;
                    let room = opts.max_block_findings.saturating_sub(bad.len());
                    bad.extend(piece.bad.into_iter().take(room));
                    lens.push(piece.plain_len);
                }
                Err(err) => {
                    io_err.get_or_insert(err);
                }
            }
        }
        if io_err.is_some() {
            break;
        }
        i += 1;
        let hash_cur = |h: &mut Option<Sha256>| {
            if let Some(h) = h {
                for (pt, &len) in cur.iter().zip(&lens) {
                    h.update(pt.get(..len).unwrap_or_default());
                }
            }
        };
        match batches.get(i) {
            Some(b) => {
                let ((), rs) =
                    rayon::join(|| hash_cur(&mut hasher), || decrypt_batch(b, &mut next));
                results = Some(rs);
            }
            None => hash_cur(&mut hasher),
        }
        std::mem::swap(&mut cur, &mut next);
    }
    rec.holes = holes;
    if let Some(err) = io_err {
        push(Finding::from_error(
            Some(e.plain_path.clone()),
            e.cipher_path.clone(),
            &err,
            false,
        ));
        rec.ok = false;
        return rec;
    }
    if holes > 0 {
        // Only with the opt-in: the report counts the holes it accepted.
        push(found(
            FindingKind::Hole,
            None,
            Severity::Warning,
            format!(
                "{}: {holes} all-zero hole block(s) accepted (allow_holes): read as zeros without authentication",
                e.plain_path.display()
            ),
        ));
    }
    rec.holes += refused_holes;
    let listed = bad.len();
    for b in &bad {
        let err = Error::from_block(e.plain_path.clone(), *b);
        push(Finding::from_error(
            Some(e.plain_path.clone()),
            e.cipher_path.clone(),
            &err,
            false,
        ));
    }
    if bad_count > listed as u64 {
        push(found(
            FindingKind::MoreBlocks,
            None,
            Severity::Error,
            format!(
                "{} more failing blocks not listed",
                bad_count - listed as u64
            ),
        ));
    }
    if bad_count == 0 {
        rec.sha256 = hasher.map(|h| hex::encode(h.finalize()));
    } else {
        rec.ok = false;
    }
    rec
}
