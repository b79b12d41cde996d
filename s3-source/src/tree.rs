//! The plaintext view of a cipher tree in a bucket: one listing (all pages), then
//! `gocryptfs.conf`, every `gocryptfs.diriv` and every long-name `.name` object fetched in
//! parallel, then names decrypted directory by directory with the core's classifier and
//! name transform (the same rules as `CipherDir::read_dir`, spec §3). Directories exist in
//! S3 only as key prefixes; a gocryptfs directory always holds its `gocryptfs.diriv`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt as _;
use gocryptfs_format::configfile::{CONF_NAME, MAX_CONF_LEN};
use gocryptfs_format::contentenc::SizeCheck;
use gocryptfs_format::listing::{Item, classify_listing};
use gocryptfs_format::nametransform::{
    self, DIRIV_NAME, DirIv, LONGNAME_SUFFIX, MAX_LONGNAME_FILE,
};
use gocryptfs_format::reader::MAX_PLAIN_SIZE;
use gocryptfs_format::{CipherDir, Config, Error, KeySource, OpenOptions};
use gocryptfs_format::{CorruptError, DirIvError, HeaderError};

use crate::error::S3Error;
use crate::store::{Bucket, Listed};

/// One regular file of the tree.
#[derive(Debug, Clone)]
pub struct RemoteFile {
    /// Plaintext path relative to the root.
    pub plain: PathBuf,
    /// Object key relative to the prefix.
    pub key: String,
    /// Ciphertext size (the object's listed size).
    pub cipher_size: u64,
    /// Plaintext size it implies.
    pub plain_size: u64,
    /// The listed ETag: every read of the file is pinned to it.
    pub etag: Option<String>,
}

/// A cipher tree in a bucket, opened with its key.
#[derive(Debug)]
pub struct RemoteTree {
    bucket: Bucket,
    dir: CipherDir,
    /// Regular files, sorted by plaintext path.
    pub files: Vec<RemoteFile>,
    /// Directories (not the root), parents before children.
    pub dirs: Vec<PathBuf>,
    /// Problems found while building the view (bad names, missing dirivs, impossible
    /// sizes, leftovers).
    pub problems: Vec<Problem>,
}

/// One problem of the tree's structure.
#[derive(Debug)]
pub struct Problem {
    /// The object key (relative to the prefix) it concerns.
    pub cipher_key: String,
    /// The plaintext path, when known.
    pub plain: Option<PathBuf>,
    /// What is wrong.
    pub error: Error,
    /// Harmless (a leftover), not corruption.
    pub warning: bool,
}

#[derive(Debug, Default)]
pub(crate) struct DirNode {
    /// Names in this directory: `Some(index into listing)` for an object, `None` for a
    /// subdirectory (a key prefix).
    pub(crate) names: BTreeMap<String, Option<usize>>,
}

impl RemoteTree {
    /// Lists the prefix, reads the config and control objects, and decrypts every name.
    ///
    /// # Errors
    /// [`S3Error`]: listing/credential/network failures, an empty prefix
    /// ([`S3Error::NotFound`]), a refused listing, a bad config or wrong key
    /// ([`S3Error::Format`]).
    pub fn open(bucket: Bucket, key: KeySource, opts: &OpenOptions) -> Result<Self, S3Error> {
        let listed = bucket.list()?;
        if listed.is_empty() {
            return Err(S3Error::NotFound {
                what: format!("{}: no objects under the prefix", bucket.location()),
            });
        }
        let dirs = build_dirs(&listed)?;
        let label = PathBuf::from(bucket.location().to_string());
        // gocryptfs.conf: required with a password, optional with a master key.
        let config = match dirs.get("").and_then(|d| d.names.get(CONF_NAME)) {
            Some(Some(i)) => {
                let l = &listed[*i];
                let bytes = bucket.rt.block_on(Bucket::get_small(
                    Arc::clone(&bucket.store),
                    bucket.path(&l.rel)?,
                    l.rel.clone(),
                    l.size,
                    MAX_CONF_LEN,
                    l.etag.clone(),
                ))?;
                Some(Config::parse(&bytes).map_err(|source| Error::Config {
                    path: label.join(CONF_NAME),
                    source,
                })?)
            }
            _ => None,
        };
        let mut o = *opts;
        o.check_master_key = false; // no local blocks to sample; the first block read tells
        let dir = CipherDir::open_with_config(&label, config, key, &o)?;

        // Control objects: every diriv and every long-name side file, in parallel.
        let names = dir.names();
        let mut wanted: Vec<usize> = Vec::new();
        for node in dirs.values() {
            if names.uses_dir_iv()
                && let Some(Some(i)) = node.names.get(DIRIV_NAME)
            {
                wanted.push(*i);
            }
            for (n, idx) in &node.names {
                if let Some(i) = idx
                    && n.starts_with(nametransform::LONGNAME_PREFIX)
                    && n.ends_with(LONGNAME_SUFFIX)
                {
                    wanted.push(*i);
                }
            }
        }
        let small = fetch_small(&bucket, &listed, &wanted)?;

        let mut tree = RemoteTree {
            bucket,
            dir,
            files: Vec::new(),
            dirs: Vec::new(),
            problems: Vec::new(),
        };
        // Walk from the root: (cipher rel, plain rel).
        let mut queue: Vec<(String, PathBuf)> = vec![(String::new(), PathBuf::new())];
        while let Some((crel, prel)) = queue.pop() {
            let Some(node) = dirs.get(&crel) else {
                continue;
            };
            tree.read_dir(&crel, &prel, node, &listed, &small, &mut queue);
        }
        tree.files.sort_by(|a, b| a.plain.cmp(&b.plain));
        tree.dirs.sort();
        Ok(tree)
    }

    #[allow(clippy::too_many_lines, reason = "one directory, one pass")]
    fn read_dir(
        &mut self,
        crel: &str,
        prel: &Path,
        node: &DirNode,
        listed: &[Listed],
        small: &HashMap<usize, bytes::Bytes>,
        queue: &mut Vec<(String, PathBuf)>,
    ) {
        let names = self.dir.names();
        let join = |n: &str| {
            if crel.is_empty() {
                n.to_owned()
            } else {
                format!("{crel}/{n}")
            }
        };
        let label = PathBuf::from(self.bucket.location().to_string());
        let iv = if names.uses_dir_iv() {
            match node.names.get(DIRIV_NAME) {
                Some(Some(i)) => match small.get(i).map(|b| DirIv::parse(b)) {
                    Some(Ok(iv)) => iv,
                    Some(Err(e)) => {
                        let k = join(DIRIV_NAME);
                        push(
                            &mut self.problems,
                            k.clone(),
                            None,
                            Error::corrupt(label.join(k), e),
                            false,
                        );
                        return;
                    }
                    None => return,
                },
                _ => {
                    push(
                        &mut self.problems,
                        crel.to_owned(),
                        Some(prel.to_path_buf()),
                        Error::corrupt(label.join(crel), DirIvError::Missing),
                        false,
                    );
                    return;
                }
            }
        } else {
            DirIv::ZERO
        };
        let raw: Vec<OsString> = node.names.keys().map(OsString::from).collect();
        let mut seen: BTreeMap<OsString, String> = BTreeMap::new();
        for item in classify_listing(Path::new(crel), &raw, self.dir.layout().names) {
            let (name, stored): (&OsStr, Option<Vec<u8>>) = match item {
                Item::Oddity(n, error) => {
                    push(
                        &mut self.problems,
                        join(&n.to_string_lossy()),
                        None,
                        error,
                        true,
                    );
                    continue;
                }
                Item::Name(n) => (n, None),
                Item::LongName(n) => {
                    let side = format!("{}{LONGNAME_SUFFIX}", n.to_string_lossy());
                    let content = node
                        .names
                        .get(&side)
                        .copied()
                        .flatten()
                        .and_then(|i| small.get(&i));
                    let Some(content) = content else {
                        let k = join(&side);
                        let e = Error::refused(label.join(&k), "long-name side file missing");
                        push(&mut self.problems, k, None, e, false);
                        continue;
                    };
                    match names.check_long_name(n, content) {
                        Ok(c) => (n, Some(c.to_vec())),
                        Err(e) => {
                            let k = join(&n.to_string_lossy());
                            let e = Error::corrupt(label.join(&k), e);
                            push(&mut self.problems, k, None, e, false);
                            continue;
                        }
                    }
                }
            };
            let name_s = name.to_string_lossy().into_owned();
            let cipher_key = join(&name_s);
            let plain = if names.encrypted() {
                match names.decrypt_name(stored.as_deref().unwrap_or(name.as_bytes()), &iv) {
                    Ok(p) => nametransform::os(p),
                    Err(source) => {
                        let e = Error::corrupt(
                            label.join(&cipher_key),
                            CorruptError::Name {
                                name: name.to_owned(),
                                source,
                            },
                        );
                        push(&mut self.problems, cipher_key, None, e, false);
                        continue;
                    }
                }
            } else {
                name.to_owned()
            };
            if let Some(first) = seen.insert(plain.clone(), cipher_key.clone()) {
                let e = Error::refused(
                    label.join(&cipher_key),
                    format!("a second entry decrypts to the name {plain:?} (a copy of {first})"),
                );
                push(&mut self.problems, cipher_key, None, e, false);
                continue;
            }
            let prel = prel.join(&plain);
            match node.names.get(&name_s).copied().flatten() {
                None => {
                    self.dirs.push(prel.clone());
                    queue.push((cipher_key, prel));
                }
                Some(i) => {
                    let l = &listed[i];
                    match plain_size(&self.dir, l.size) {
                        Ok(plain_size) => self.files.push(RemoteFile {
                            plain: prel,
                            key: l.rel.clone(),
                            cipher_size: l.size,
                            plain_size,
                            etag: l.etag.clone(),
                        }),
                        Err(e) => {
                            let err = Error::corrupt(prel.clone(), e);
                            push(&mut self.problems, l.rel.clone(), Some(prel), err, false);
                        }
                    }
                }
            }
        }
    }

    /// The bucket it reads.
    #[must_use]
    pub fn bucket(&self) -> &Bucket {
        &self.bucket
    }

    /// The keyed cipher state (config, content cipher, names, policy).
    #[must_use]
    pub fn cipher_dir(&self) -> &CipherDir {
        &self.dir
    }

    /// Total plaintext bytes of all files.
    #[must_use]
    pub fn plain_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.plain_size).sum()
    }

    /// The first error (not warning) found while opening, if any.
    #[must_use]
    pub fn first_error(&self) -> Option<&Error> {
        self.problems.iter().find(|p| !p.warning).map(|p| &p.error)
    }
}

fn push(
    problems: &mut Vec<Problem>,
    cipher_key: String,
    plain: Option<PathBuf>,
    error: Error,
    warning: bool,
) {
    problems.push(Problem {
        cipher_key,
        plain,
        error,
        warning,
    });
}

/// The plaintext size a listed ciphertext size implies; impossible sizes are corruption.
fn plain_size(dir: &CipherDir, size: u64) -> Result<u64, CorruptError> {
    let geo = dir.content().geometry();
    match geo.check_cipher_size(size) {
        SizeCheck::Empty | SizeCheck::HeaderOnly => Ok(0),
        SizeCheck::ShortHeader => Err(CorruptError::Header(HeaderError::Short(size))),
        SizeCheck::Truncated => Err(CorruptError::Size {
            cipher_size: size,
            overhead: geo.overhead(),
        }),
        SizeCheck::Valid { plain } if plain > MAX_PLAIN_SIZE => {
            Err(CorruptError::Absurd { size: plain })
        }
        SizeCheck::Valid { plain } => Ok(plain),
    }
}

/// Groups listed keys into directories. A name that is both an object and a key prefix,
/// or a key with an empty, `.` or `..` segment, is refused: no local tree can look like
/// that. Empty objects whose key ends in `/` are directory markers (s3fs, ossfs and the
/// consoles' "create folder" write them): they make their directory exist, nothing more.
pub(crate) fn build_dirs(listed: &[Listed]) -> Result<BTreeMap<String, DirNode>, S3Error> {
    let mut dirs: BTreeMap<String, DirNode> = BTreeMap::new();
    dirs.insert(String::new(), DirNode::default());
    // Every proper key prefix is a directory. The S3 client drops a key's trailing `/`, so a
    // marker arrives as an empty object named like a directory.
    let prefixes: HashSet<&str> = listed
        .iter()
        .flat_map(|l| l.rel.match_indices('/').map(|(at, _)| &l.rel[..at]))
        .collect();
    for (i, l) in listed.iter().enumerate() {
        let (rel, marker) = match l.rel.strip_suffix('/') {
            Some(r) if l.size == 0 => (r, true),
            _ if l.size == 0 && (l.rel.is_empty() || prefixes.contains(l.rel.as_str())) => {
                (l.rel.as_str(), true)
            }
            _ => (l.rel.as_str(), false),
        };
        if marker && rel.is_empty() {
            continue; // the prefix's own marker
        }
        let segs: Vec<&str> = rel.split('/').collect();
        if segs.iter().any(|s| s.is_empty() || *s == "." || *s == "..")
            || rel.len() > 4096
            || segs.iter().any(|s| s.len() > nametransform::NAME_MAX)
        {
            return Err(S3Error::Refused {
                key: if l.rel.is_empty() {
                    "(the prefix itself)".into()
                } else {
                    l.rel.clone()
                },
                reason: "an object key with an empty, '.', '..' or over-long segment cannot belong to a gocryptfs tree".into(),
            });
        }
        let mut parent = String::new();
        for (depth, seg) in segs.iter().enumerate() {
            let last = depth + 1 == segs.len() && !marker;
            let node = dirs.entry(parent.clone()).or_default();
            let slot = node.names.entry((*seg).to_owned()).or_insert(None);
            let conflict = match (last, *slot) {
                (true, None) if dirs_has_child(&parent, seg, listed, i) => true,
                (true, None) => {
                    *slot = Some(i);
                    false
                }
                (_, Some(_)) => true,
                (false, None) => false,
            };
            if conflict {
                return Err(S3Error::Refused {
                    key: l.rel.clone(),
                    reason: "the name is both an object and a directory prefix".into(),
                });
            }
            parent = if parent.is_empty() {
                (*seg).to_owned()
            } else {
                format!("{parent}/{seg}")
            };
        }
        if marker {
            dirs.entry(parent).or_default();
        }
    }
    Ok(dirs)
}

/// Whether an earlier key already used `parent/seg` as a directory prefix.
fn dirs_has_child(parent: &str, seg: &str, listed: &[Listed], upto: usize) -> bool {
    let p = if parent.is_empty() {
        format!("{seg}/")
    } else {
        format!("{parent}/{seg}/")
    };
    listed.iter().take(upto).any(|l| l.rel.starts_with(&p))
}

/// Fetches the listed objects `wanted` (dirivs, `.name` files) in parallel.
pub(crate) fn fetch_small(
    bucket: &Bucket,
    listed: &[Listed],
    wanted: &[usize],
) -> Result<HashMap<usize, bytes::Bytes>, S3Error> {
    let mut jobs = Vec::with_capacity(wanted.len());
    for &i in wanted {
        let l = &listed[i];
        let max = if l.rel.ends_with(DIRIV_NAME) {
            16
        } else {
            MAX_LONGNAME_FILE
        };
        jobs.push((i, bucket.path(&l.rel)?, l.clone(), max));
    }
    let store = Arc::clone(&bucket.store);
    let n = bucket.opts.concurrency;
    bucket.rt.block_on(async move {
        futures::stream::iter(jobs.into_iter().map(|(i, path, l, max)| {
            let store = Arc::clone(&store);
            async move {
                let b = Bucket::get_small(store, path, l.rel, l.size, max, l.etag).await?;
                Ok::<_, S3Error>((i, b))
            }
        }))
        .buffer_unordered(n)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect()
    })
}
