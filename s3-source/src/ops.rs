//! The commands' work on a tree in a bucket, in the core's own terms: `verify` fills a
//! keyed [`Report`] (so reports, manifests and pins are the same as for a local tree), and
//! `decrypt_into` writes an output directory under the rules of the core's `decrypt_tree`
//! (temporary name, renamed only when whole; with a pin, only what matches it).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use gocryptfs_format::decrypt::{OutDir, OutFile};
use gocryptfs_format::manifest::{EntryKind, Manifest};
use gocryptfs_format::verify::{FileRecord, Finding, Report};
use gocryptfs_format::{CorruptError, Error, FileId, Progress};
use sha2::{Digest as _, Sha256};

use crate::error::S3Error;
use crate::stream::FileEvent;
use crate::tree::RemoteTree;

/// What a pinned decrypt holds each file to (from the accepted manifest).
pub type FilePin = gocryptfs_format::manifest::FilePin;

/// What `decrypt_into` did.
#[derive(Debug, Default)]
pub struct DecryptSummary {
    /// Files written.
    pub files: u64,
    /// Directories created.
    pub dirs: u64,
    /// Plaintext bytes written.
    pub bytes: u64,
    /// Files not written, and why.
    pub problems: Vec<(PathBuf, S3Error)>,
}

struct Hashing {
    hasher: Sha256,
    id: Option<FileId>,
}

impl RemoteTree {
    /// Authenticates every block of every file (hashing the plaintext when `hash`) and
    /// reports structure problems and bad blocks as findings. Failures that are not about
    /// the tree (network, credentials, an object changed while read) stop it.
    ///
    /// # Errors
    /// [`S3Error`] other than [`S3Error::Format`].
    pub fn verify(&self, hash: bool, progress: &dyn Progress) -> Result<Report, S3Error> {
        let dir = self.cipher_dir();
        let mut report = Report::keyed(dir);
        for p in &self.problems {
            report.findings.push(Finding::from_error(
                p.plain.clone(),
                PathBuf::from(&p.cipher_key),
                &p.error,
                p.warning,
            ));
        }
        report.remote_dirs.clone_from(&self.dirs);
        report.stats.dirs = self.dirs.len() as u64;
        progress.set_total(self.plain_bytes());
        let mut state: HashMap<usize, Hashing> = HashMap::new();
        let all: Vec<usize> = (0..self.files.len()).collect();
        self.stream(&all, |ev| -> Result<(), S3Error> {
            match ev {
                FileEvent::Data(c) => {
                    let st = state.entry(c.file).or_insert_with(|| Hashing {
                        hasher: Sha256::new(),
                        id: None,
                    });
                    if hash {
                        st.hasher.update(&c.data);
                    }
                    st.id = c.file_id;
                    progress.advance(c.data.len() as u64);
                    if c.last
                        && let Some(st) = state.remove(&c.file)
                    {
                        let f = &self.files[c.file];
                        report.files.push(FileRecord {
                            path: f.plain.clone(),
                            cipher_path: PathBuf::from(&f.key),
                            size: f.plain_size,
                            cipher_size: f.cipher_size,
                            file_id: st.id.map(|i| i.to_hex()),
                            sha256: hash.then(|| hex::encode(st.hasher.finalize())),
                            holes: 0,
                            hole_ranges: Vec::new(),
                            ok: true,
                        });
                        report.stats.bytes += f.plain_size;
                    }
                    Ok(())
                }
                FileEvent::Failed { file, error } => {
                    state.remove(&file);
                    let f = &self.files[file];
                    let S3Error::Format(e) = error else {
                        return Err(error);
                    };
                    report.findings.push(Finding::from_error(
                        Some(f.plain.clone()),
                        PathBuf::from(&f.key),
                        &e,
                        false,
                    ));
                    report.files.push(FileRecord {
                        path: f.plain.clone(),
                        cipher_path: PathBuf::from(&f.key),
                        size: f.plain_size,
                        cipher_size: f.cipher_size,
                        file_id: None,
                        sha256: None,
                        holes: 0,
                        hole_ranges: Vec::new(),
                        ok: false,
                    });
                    Ok(())
                }
            }
        })?;
        report.stats.files = report.files.len() as u64;
        report.files.sort_by(|a, b| a.path.cmp(&b.path));
        report.finish();
        Ok(report)
    }

    /// Decrypts every file into `out` (created if absent; non-empty only with `force`).
    /// With `pin`, a file is renamed into place only when its file ID, size and SHA-256
    /// match the pinned entry, and a file the pin does not list is not written. A tree
    /// with structure errors writes nothing. `cancel` (a signal flag) stops the run; files
    /// in progress leave no temporary file.
    ///
    /// # Errors
    /// Structure errors of the tree, output errors, and failures that are not about one
    /// file (network, credentials).
    pub fn decrypt_into(
        &self,
        out: &Path,
        force: bool,
        pin: Option<&Manifest>,
        progress: &dyn Progress,
        cancel: Option<&AtomicBool>,
    ) -> Result<DecryptSummary, S3Error> {
        if let Some(p) = self.problems.iter().find(|p| !p.warning) {
            return Err(S3Error::Problems {
                count: self.problems.iter().filter(|p| !p.warning).count(),
                first: p.error.to_string(),
                kind: p.error.kind(),
            });
        }
        let od = OutDir::prepare(out, force)?;
        let mut summary = DecryptSummary::default();
        for d in &self.dirs {
            od.make_dir(d)?;
            summary.dirs += 1;
        }
        progress.set_total(self.plain_bytes());
        let mode = self.cipher_dir().policy().mode(0o644);
        let mut open: HashMap<usize, (OutFile, Hashing)> = HashMap::new();
        let all: Vec<usize> = (0..self.files.len()).collect();
        let pinned = |f: &crate::tree::RemoteFile| -> Option<Option<FilePin>> {
            pin.map(|m| match m.get(&f.plain).map(|e| &e.kind) {
                Some(EntryKind::File(p)) => Some(*p),
                _ => None,
            })
        };
        self.stream(&all, |ev| -> Result<(), S3Error> {
            if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
                return Err(S3Error::Format(Error::refused(out, "interrupted")));
            }
            match ev {
                FileEvent::Data(c) => {
                    let f = &self.files[c.file];
                    let (of, st) = match open.entry(c.file) {
                        std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                        std::collections::hash_map::Entry::Vacant(v) => v.insert((
                            od.create_file(&f.plain)?,
                            Hashing {
                                hasher: Sha256::new(),
                                id: None,
                            },
                        )),
                    };
                    of.write_at(&c.data, c.offset)?;
                    if pin.is_some() {
                        st.hasher.update(&c.data);
                    }
                    st.id = c.file_id;
                    progress.advance(c.data.len() as u64);
                    if c.last
                        && let Some((of, st)) = open.remove(&c.file)
                    {
                        if let Some(expected) = pinned(f) {
                            let ok = expected.is_some_and(|p| {
                                p.size == f.plain_size
                                    && p.file_id == st.id
                                    && p.sha256 == <[u8; 32]>::from(st.hasher.finalize())
                            });
                            if !ok {
                                summary.problems.push((
                                    f.plain.clone(),
                                    S3Error::Format(Error::corrupt(
                                        f.plain.clone(),
                                        CorruptError::Pin(
                                            "not the pinned file (not renamed into place)".into(),
                                        ),
                                    )),
                                ));
                                return Ok(()); // `of` dropped: its temporary file goes
                            }
                        }
                        of.commit(f.plain_size, mode)?;
                        summary.files += 1;
                        summary.bytes += f.plain_size;
                    }
                    Ok(())
                }
                FileEvent::Failed { file, error } => {
                    open.remove(&file);
                    match error {
                        S3Error::Format(_) | S3Error::Refused { .. } => {
                            summary
                                .problems
                                .push((self.files[file].plain.clone(), error));
                            Ok(())
                        }
                        e => Err(e),
                    }
                }
            }
        })?;
        let dmode = self.cipher_dir().policy().mode(0o755);
        for d in self.dirs.iter().rev() {
            od.set_dir_mode(d, dmode)?;
        }
        Ok(summary)
    }
}
