//! The no-key checker: structure only, without any secret (config, directory IVs, canonical
//! names and long names, possible sizes, headers, symlink and xattr encodings); mirrors the
//! key-independent half of gocryptfs `fsck.go` (spec §5).

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::{FileRecord, Finding, FindingKind, Mode, Report, Severity};

/// Hole ranges listed per file in the report (the count covers all of them).
const MAX_HOLE_RANGES: usize = 64;
use crate::Progress;
use crate::cipherdir::{read_dir_iv, read_long_name_file};
use crate::configfile::{CONF_NAME, Config, Layout, NameLayout};
use crate::contentenc::HEADER_LEN;
use crate::contentenc::{Geometry, SizeCheck};
use crate::error::{ConfigError, CorruptError, Error, HeaderError};
use crate::escape::escaped;
use crate::listing::{self, Item};
use crate::nametransform::{self, DIRIV_NAME, XATTR_PREFIX};
use crate::policy::Policy;
use crate::reader::{MAX_PLAIN_SIZE, check_header, hole_blocks_between};
use crate::safeio::{self, OpenFail};

/// Structural check without any key: config parses and is supported; every directory has a
/// valid `gocryptfs.diriv`; names are canonical base64 of a possible length; long names match
/// their `.name` files; file sizes are possible and headers valid; symlink targets and xattrs
/// have possible encodings and lengths. Authenticates nothing. Under `policy` it also
/// reports what a keyed run would refuse: a plaintext-names layout, a scrypt cost above the
/// bound, and (with plaintext names, where targets are readable) symlinks leaving the tree.
///
/// # Errors
/// Only if `root` cannot be read at all.
pub fn verify_no_key(
    root: &Path,
    policy: &Policy,
    progress: &dyn Progress,
) -> Result<Report, Error> {
    let _ = progress;
    let mut report = Report::new(Mode::NoKey, root);
    fs::read_dir(root).map_err(|e| Error::Config {
        path: root.to_path_buf(),
        source: ConfigError::NoDir(e.kind()),
    })?;
    let config = match Config::load(root) {
        Ok(c) => c,
        Err(e) => {
            report.findings.push(Finding::from_error(
                None,
                PathBuf::from(CONF_NAME),
                &e,
                false,
            ));
            report.finish();
            return Ok(report);
        }
    };
    let layout = config.layout();
    report.layout = Some(layout);
    report.feature_flags = config.flags.iter().map(|f| f.name().to_owned()).collect();
    let conf_problem = |source| Error::Config {
        path: root.join(CONF_NAME),
        source,
    };
    if layout.names == NameLayout::Plaintext && !policy.allow_plaintext_names {
        report.findings.push(Finding::from_error(
            None,
            PathBuf::from(CONF_NAME),
            &conf_problem(ConfigError::PlaintextNames),
            false,
        ));
    }
    if let Err(e) = config.scrypt.check_cost(policy.max_scrypt_memory) {
        report.findings.push(Finding::from_error(
            None,
            PathBuf::from(CONF_NAME),
            &conf_problem(e),
            false,
        ));
    }
    let ck = NoKeyChecker {
        root,
        geo: Geometry::new(layout.content.nonce_len()),
        layout,
        policy,
    };
    let mut stack = vec![PathBuf::new()];
    while let Some(d) = stack.pop() {
        ck.check_dir(&d, &mut report, &mut stack);
    }
    report.finish();
    Ok(report)
}

struct NoKeyChecker<'a> {
    root: &'a Path,
    geo: Geometry,
    layout: Layout,
    policy: &'a Policy,
}

impl NoKeyChecker<'_> {
    fn abs(&self, rel: &Path) -> PathBuf {
        self.root.join(rel)
    }

    fn raw64(&self) -> bool {
        matches!(self.layout.names, NameLayout::Encrypted { raw64: true, .. })
    }

    fn add(&self, r: &mut Report, rel: &Path, err: &Error, warning: bool) {
        r.findings
            .push(Finding::from_error(None, rel.to_path_buf(), err, warning));
    }

    fn check_dir(&self, d: &Path, r: &mut Report, stack: &mut Vec<PathBuf>) {
        let abs = self.abs(d);
        let encrypted = matches!(self.layout.names, NameLayout::Encrypted { .. });
        if matches!(
            self.layout.names,
            NameLayout::Encrypted { dir_iv: true, .. }
        ) && let Err(e) = read_dir_iv(&abs.join(DIRIV_NAME))
        {
            self.add(r, &d.join(DIRIV_NAME), &e, false);
        }
        self.check_xattrs(d, r);
        let names = match listing::read_names(&abs) {
            Ok(n) => n,
            Err(e) => {
                self.add(r, d, &e, false);
                return;
            }
        };
        let mut subdirs = Vec::new();
        for item in listing::classify_listing(d, &names, self.layout.names) {
            let name: &OsStr = match item {
                Item::Oddity(name, e) => {
                    self.add(r, &d.join(name), &e, true);
                    continue;
                }
                Item::LongName(name) => {
                    if let Err(e) = self.check_long(&d.join(name), name) {
                        self.add(r, &d.join(name), &e, false);
                        continue;
                    }
                    name
                }
                Item::Name(name) => {
                    if encrypted
                        && let Err(source) =
                            nametransform::check_cipher_name(name.as_bytes(), self.raw64())
                    {
                        let rel = d.join(name);
                        let e = Error::corrupt(
                            &rel,
                            CorruptError::Name {
                                name: name.to_owned(),
                                source,
                            },
                        );
                        self.add(r, &rel, &e, false);
                        continue;
                    }
                    name
                }
            };
            let rel = d.join(name);
            let meta = match fs::symlink_metadata(self.abs(&rel)) {
                Ok(m) => m,
                Err(e) => {
                    self.add(r, &rel, &Error::io("reading", self.abs(&rel), e), false);
                    continue;
                }
            };
            let ft = meta.file_type();
            if ft.is_dir() {
                r.stats.dirs += 1;
                subdirs.push(rel);
            } else if ft.is_file() {
                r.stats.files += 1;
                self.check_file(&rel, &meta, r);
            } else if ft.is_symlink() {
                r.stats.symlinks += 1;
                if encrypted {
                    self.check_symlink(&rel, r);
                } else {
                    self.check_plain_symlink(&rel, r);
                }
                self.check_xattrs(&rel, r);
            } else {
                r.stats.other += 1;
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }

    fn check_long(&self, rel: &Path, name: &OsStr) -> Result<(), Error> {
        let stored = read_long_name_file(self.root, rel, name)?;
        let lnm = match self.layout.names {
            NameLayout::Encrypted { long_name_max, .. } => usize::from(long_name_max),
            NameLayout::Plaintext => 255,
        };
        nametransform::check_long_name(name, &stored, self.raw64(), lnm)
            .map_err(|e| Error::corrupt(rel, e))?;
        nametransform::check_cipher_name(&stored, self.raw64()).map_err(|source| {
            Error::corrupt(
                rel,
                CorruptError::Name {
                    name: name.to_owned(),
                    source,
                },
            )
        })?;
        Ok(())
    }

    fn check_file(&self, rel: &Path, meta: &fs::Metadata, r: &mut Report) {
        let size = meta.len();
        let mut rec = FileRecord {
            path: rel.to_path_buf(),
            cipher_path: rel.to_path_buf(),
            size: self.geo.cipher_to_plain_size(size),
            cipher_size: size,
            file_id: None,
            sha256: None,
            holes: 0,
            hole_ranges: Vec::new(),
            ok: true,
        };
        match self.geo.check_cipher_size(size) {
            SizeCheck::Empty => {}
            SizeCheck::HeaderOnly => self.add(
                r,
                rel,
                &Error::refused(rel, "header-only file (18 bytes): reads as empty"),
                true,
            ),
            SizeCheck::ShortHeader => {
                self.add(
                    r,
                    rel,
                    &Error::corrupt(rel, HeaderError::Short(size)),
                    false,
                );
            }
            SizeCheck::Truncated => self.add(
                r,
                rel,
                &Error::corrupt(
                    rel,
                    CorruptError::Size {
                        cipher_size: size,
                        overhead: self.geo.overhead(),
                    },
                ),
                false,
            ),
            SizeCheck::Valid { .. } => {}
        }
        if size > 18 {
            let mut h = [0u8; 18];
            let res = safeio::open_regular(&self.abs(rel))
                .and_then(|f| f.read_exact_at(&mut h, 0).map_err(OpenFail::Io));
            match res {
                Ok(()) => match check_header(&h) {
                    Ok(id) => rec.file_id = Some(id.to_hex()),
                    Err(e) => self.add(r, rel, &Error::corrupt(rel, e), false),
                },
                Err(OpenFail::NotRegular(kind)) => {
                    self.add(
                        r,
                        rel,
                        &Error::corrupt(rel, CorruptError::NotRegular(kind)),
                        false,
                    );
                }
                Err(OpenFail::Io(e)) => {
                    self.add(r, rel, &Error::io("reading", self.abs(rel), e), false);
                }
            }
        }
        if rec.size > MAX_PLAIN_SIZE {
            self.add(
                r,
                rel,
                &Error::corrupt(rel, CorruptError::Absurd { size: rec.size }),
                false,
            );
        }
        if size > HEADER_LEN
            && rec.size <= MAX_PLAIN_SIZE
            && let Ok(f) = safeio::open_regular(&self.abs(rel))
        {
            match self.hole_ranges(&f, size) {
                Ok(ranges) if !ranges.is_empty() => {
                    let count: u64 = ranges.iter().map(|(a, b)| b - a).sum();
                    let first = ranges.first().map_or(0, |x| x.0);
                    rec.holes = count;
                    rec.hole_ranges = ranges.into_iter().take(MAX_HOLE_RANGES).collect();
                    let allowed = self.policy.allow_holes;
                    r.findings.push(Finding {
                        severity: if allowed {
                            Severity::Warning
                        } else {
                            Severity::Error
                        },
                        kind: FindingKind::Hole,
                        path: None,
                        cipher_path: rel.to_path_buf(),
                        block: Some(first),
                        message: format!(
                            "{}: {count} all-zero block(s) (holes: zeros no key authenticates), the first is block {first}{}",
                            escaped(rel),
                            if allowed { "; accepted (allow_holes)" } else { "" }
                        ),
                    });
                }
                Ok(_) => {}
                Err(e) => self.add(r, rel, &Error::io("reading", self.abs(rel), e), false),
            }
        }
        self.check_xattrs(rel, r);
        r.stats.bytes += rec.size;
        r.files.push(rec);
    }

    /// The runs `[first, end)` of whole all-zero blocks (holes) of an open cipher file: the
    /// file-system holes (`SEEK_HOLE`, not read), and all-zero blocks inside the data, found
    /// by reading it (a block whose nonce is not all zero is no hole: one look at 16 bytes).
    fn hole_ranges(&self, f: &fs::File, size: u64) -> std::io::Result<Vec<(u64, u64)>> {
        let cbs = self.geo.cipher_bs();
        let nonce = (self.geo.overhead() - crate::cryptocore::TAG_LEN as u64) as usize;
        let segs = safeio::data_segments(f, size).unwrap_or_else(|| vec![(0, size)]);
        let mut blocks: Vec<std::ops::Range<u64>> = hole_blocks_between(&segs, size, cbs);
        let full_blocks = (size - HEADER_LEN) / cbs;
        let mut buf = vec![0u8; (cbs * 256) as usize];
        for &(s, e) in &segs {
            // Whole blocks overlapping this data segment.
            let mut b = s.saturating_sub(HEADER_LEN) / cbs;
            let end = e.saturating_sub(HEADER_LEN).div_ceil(cbs).min(full_blocks);
            while b < end {
                let n = (end - b).min(256);
                let want = (n * cbs) as usize;
                let off = HEADER_LEN + b * cbs;
                let chunk = buf.get_mut(..want).unwrap_or_default();
                f.read_exact_at(chunk, off)?;
                for (i, blk) in chunk.chunks(cbs as usize).enumerate() {
                    if blk.get(..nonce).is_some_and(|x| x.iter().all(|&v| v == 0))
                        && blk.iter().all(|&v| v == 0)
                    {
                        let k = b + i as u64;
                        blocks.push(k..k + 1);
                    }
                }
                b += n;
            }
        }
        blocks.sort_by_key(|r| r.start);
        let mut merged: Vec<(u64, u64)> = Vec::new();
        for r in blocks {
            match merged.last_mut() {
                Some(last) if r.start <= last.1 => last.1 = last.1.max(r.end),
                _ => merged.push((r.start, r.end)),
            }
        }
        Ok(merged)
    }

    /// With plaintext names the target is readable without the key: check the policy.
    fn check_plain_symlink(&self, rel: &Path, r: &mut Report) {
        match fs::read_link(self.abs(rel)) {
            Ok(t) if !self.policy.symlink_allowed(rel, t.as_os_str()) => {
                self.add(
                    r,
                    rel,
                    &Error::corrupt(rel, CorruptError::SymlinkOutside),
                    false,
                );
            }
            Ok(_) => {}
            Err(e) => self.add(r, rel, &Error::io("reading link", self.abs(rel), e), false),
        }
    }

    fn check_symlink(&self, rel: &Path, r: &mut Report) {
        let target = match fs::read_link(self.abs(rel)) {
            Ok(t) => t,
            Err(e) => {
                self.add(r, rel, &Error::io("reading link", self.abs(rel), e), false);
                return;
            }
        };
        if target.as_os_str().is_empty() {
            return;
        }
        let min = self.geo.overhead() as usize + 1;
        match nametransform::b64_decode(target.as_os_str().as_bytes(), self.raw64()) {
            Ok(b) if b.len() >= min => {}
            Ok(b) => self.add(
                r,
                rel,
                &Error::corrupt(
                    rel,
                    CorruptError::Symlink(format!(
                        "{} bytes, shorter than nonce + tag + 1",
                        b.len()
                    )),
                ),
                false,
            ),
            Err(e) => self.add(
                r,
                rel,
                &Error::corrupt(rel, CorruptError::Symlink(e.to_string())),
                false,
            ),
        }
    }

    fn check_xattrs(&self, rel: &Path, r: &mut Report) {
        let abs = self.abs(rel);
        let Ok(names) = crate::cipherdir::list_xattrs(&abs) else {
            return;
        };
        // xattr names use Raw64 only when names do (PlaintextNames: padded).
        let raw64 = self.raw64();
        for n in names {
            let Some(c) = n.strip_prefix(XATTR_PREFIX.as_bytes()) else {
                continue;
            };
            let name = String::from_utf8_lossy(&n).into_owned();
            if let Err(e) = nametransform::check_cipher_name(c, raw64) {
                self.add(
                    r,
                    rel,
                    &Error::corrupt(
                        rel,
                        CorruptError::Xattr {
                            name,
                            reason: e.to_string(),
                        },
                    ),
                    false,
                );
                continue;
            }
            if let Ok(Some(v)) = crate::cipherdir::get_xattr(&abs, &n)
                && !v.is_empty()
                && v.len() < self.geo.overhead() as usize + 1
            {
                self.add(
                    r,
                    rel,
                    &Error::corrupt(
                        rel,
                        CorruptError::Xattr {
                            name,
                            reason: format!(
                                "value of {} bytes is shorter than nonce + tag + 1",
                                v.len()
                            ),
                        },
                    ),
                    false,
                );
            }
        }
    }
}
