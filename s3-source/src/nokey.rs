//! `verify --no-key` of a tree in a bucket: structure only, without any secret, in the
//! core's no-key report (`gocryptfs_format::verify::verify_no_key` does the same for a local
//! tree; spec §5): the config parses and the policy accepts it, every directory has a valid
//! `gocryptfs.diriv`, names are canonical base64 of a possible length, long names match
//! their `.name` objects, sizes are possible and headers valid (their 18 bytes fetched in
//! parallel). Authenticates nothing.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use futures::StreamExt as _;
use gocryptfs_format::configfile::{CONF_NAME, MAX_CONF_LEN, NameLayout};
use gocryptfs_format::contentenc::{Geometry, HEADER_LEN, SizeCheck};
use gocryptfs_format::listing::{Item, classify_listing};
use gocryptfs_format::nametransform::{self, DIRIV_NAME, DirIv, LONGNAME_SUFFIX};
use gocryptfs_format::reader::{MAX_PLAIN_SIZE, check_header};
use gocryptfs_format::verify::{FileRecord, Finding, Mode, Report};
use gocryptfs_format::{Config, ConfigError, CorruptError, DirIvError, Error, HeaderError, Policy};

use crate::error::S3Error;
use crate::store::Bucket;
use crate::tree::{build_dirs, fetch_small};

impl Bucket {
    /// Checks the structure of the tree under the prefix without a key.
    ///
    /// # Errors
    /// Storage failures (listing, credentials, network), an empty prefix, a refused listing.
    #[allow(
        clippy::too_many_lines,
        reason = "one pass over the tree, as the local checker"
    )]
    pub fn verify_no_key(&self, policy: &Policy) -> Result<Report, S3Error> {
        let listed = self.list()?;
        if listed.is_empty() {
            return Err(S3Error::NotFound {
                what: format!("{}: no objects under the prefix", self.loc),
            });
        }
        let dirs = build_dirs(&listed)?;
        let label = PathBuf::from(self.loc.to_string());
        let mut r = Report::new(Mode::NoKey, &label);
        let add = |r: &mut Report, rel: &Path, e: &Error, warning: bool| {
            r.findings
                .push(Finding::from_error(None, rel.to_path_buf(), e, warning));
        };
        let conf_err = |source| Error::Config {
            path: label.join(CONF_NAME),
            source,
        };
        let config = match dirs.get("").and_then(|d| d.names.get(CONF_NAME)) {
            Some(Some(i)) => {
                let l = &listed[*i];
                let bytes = self.rt.block_on(Bucket::get_small(
                    Arc::clone(&self.store),
                    self.path(&l.rel)?,
                    l.rel.clone(),
                    l.size,
                    MAX_CONF_LEN,
                    l.etag.clone(),
                ));
                match bytes.map(|b| Config::parse(&b)) {
                    Ok(Ok(c)) => c,
                    Ok(Err(e)) => {
                        add(&mut r, Path::new(CONF_NAME), &conf_err(e), false);
                        r.finish();
                        return Ok(r);
                    }
                    Err(S3Error::Refused { reason, .. }) => {
                        add(
                            &mut r,
                            Path::new(CONF_NAME),
                            &Error::refused(label.join(CONF_NAME), reason),
                            false,
                        );
                        r.finish();
                        return Ok(r);
                    }
                    Err(e) => return Err(e),
                }
            }
            _ => {
                add(
                    &mut r,
                    Path::new(CONF_NAME),
                    &conf_err(ConfigError::Missing),
                    false,
                );
                r.finish();
                return Ok(r);
            }
        };
        let layout = config.layout();
        r.layout = Some(layout);
        r.feature_flags = config.flags.iter().map(|f| f.name().to_owned()).collect();
        if layout.names == NameLayout::Plaintext && !policy.allow_plaintext_names {
            add(
                &mut r,
                Path::new(CONF_NAME),
                &conf_err(ConfigError::PlaintextNames),
                false,
            );
        }
        if let Err(e) = config.scrypt.check_cost(policy.max_scrypt_memory) {
            add(&mut r, Path::new(CONF_NAME), &conf_err(e), false);
        }
        let (encrypted, dir_iv, raw64, lnm) = match layout.names {
            NameLayout::Plaintext => (false, false, false, 255),
            NameLayout::Encrypted {
                dir_iv,
                raw64,
                long_name_max,
            } => (true, dir_iv, raw64, usize::from(long_name_max)),
        };
        let geo = Geometry::new(layout.content.nonce_len());

        // Dirivs and long-name side files, then every header, in parallel.
        let mut wanted = Vec::new();
        for node in dirs.values() {
            for (n, idx) in &node.names {
                if let Some(i) = idx
                    && ((dir_iv && n == DIRIV_NAME)
                        || (n.starts_with(nametransform::LONGNAME_PREFIX)
                            && n.ends_with(LONGNAME_SUFFIX)))
                {
                    wanted.push(*i);
                }
            }
        }
        let small = fetch_small(self, &listed, &wanted)?;
        let mut files: Vec<usize> = Vec::new();
        for (d, node) in &dirs {
            let dpath = PathBuf::from(d);
            if dir_iv {
                let rel = dpath.join(DIRIV_NAME);
                match node
                    .names
                    .get(DIRIV_NAME)
                    .copied()
                    .flatten()
                    .map(|i| small.get(&i))
                {
                    Some(Some(b)) => {
                        if let Err(e) = DirIv::parse(b) {
                            add(&mut r, &rel, &Error::corrupt(&rel, e), false);
                        }
                    }
                    _ => add(
                        &mut r,
                        &rel,
                        &Error::corrupt(&rel, DirIvError::Missing),
                        false,
                    ),
                }
            }
            let raw: Vec<OsString> = node.names.keys().map(OsString::from).collect();
            for item in classify_listing(&dpath, &raw, layout.names) {
                let name: &OsStr = match item {
                    Item::Oddity(n, e) => {
                        add(&mut r, &dpath.join(n), &e, true);
                        continue;
                    }
                    Item::LongName(n) => {
                        let rel = dpath.join(n);
                        let side = format!("{}{LONGNAME_SUFFIX}", n.to_string_lossy());
                        let stored = node
                            .names
                            .get(&side)
                            .copied()
                            .flatten()
                            .and_then(|i| small.get(&i));
                        let res = match stored {
                            None => Err(Error::refused(&rel, "long-name side file missing")),
                            Some(s) => nametransform::check_long_name(n, s, raw64, lnm)
                                .map_err(|e| Error::corrupt(&rel, e))
                                .and_then(|c| {
                                    nametransform::check_cipher_name(c, raw64)
                                        .map(|_| ())
                                        .map_err(|source| {
                                            Error::corrupt(
                                                &rel,
                                                CorruptError::Name {
                                                    name: n.to_owned(),
                                                    source,
                                                },
                                            )
                                        })
                                }),
                        };
                        if let Err(e) = res {
                            add(&mut r, &rel, &e, false);
                            continue;
                        }
                        n
                    }
                    Item::Name(n) => {
                        if encrypted
                            && let Err(source) =
                                nametransform::check_cipher_name(n.as_encoded_bytes(), raw64)
                        {
                            let rel = dpath.join(n);
                            let e = Error::corrupt(
                                &rel,
                                CorruptError::Name {
                                    name: n.to_owned(),
                                    source,
                                },
                            );
                            add(&mut r, &rel, &e, false);
                            continue;
                        }
                        n
                    }
                };
                match node
                    .names
                    .get(name.to_string_lossy().as_ref())
                    .copied()
                    .flatten()
                {
                    None => r.stats.dirs += 1,
                    Some(i) => {
                        r.stats.files += 1;
                        files.push(i);
                    }
                }
            }
        }
        // Sizes, then the headers of the files that have one.
        let mut heads = Vec::new();
        for &i in &files {
            let l = &listed[i];
            let rel = PathBuf::from(&l.rel);
            let plain = geo.cipher_to_plain_size(l.size);
            r.files.push(FileRecord {
                path: rel.clone(),
                cipher_path: rel.clone(),
                size: plain,
                cipher_size: l.size,
                file_id: None,
                sha256: None,
                holes: 0,
                hole_ranges: Vec::new(),
                ok: true,
            });
            r.stats.bytes += plain;
            match geo.check_cipher_size(l.size) {
                SizeCheck::Empty | SizeCheck::Valid { .. } => {}
                SizeCheck::HeaderOnly => add(
                    &mut r,
                    &rel,
                    &Error::refused(&rel, "header-only file (18 bytes): reads as empty"),
                    true,
                ),
                SizeCheck::ShortHeader => {
                    add(
                        &mut r,
                        &rel,
                        &Error::corrupt(&rel, HeaderError::Short(l.size)),
                        false,
                    );
                }
                SizeCheck::Truncated => add(
                    &mut r,
                    &rel,
                    &Error::corrupt(
                        &rel,
                        CorruptError::Size {
                            cipher_size: l.size,
                            overhead: geo.overhead(),
                        },
                    ),
                    false,
                ),
            }
            if plain > MAX_PLAIN_SIZE {
                add(
                    &mut r,
                    &rel,
                    &Error::corrupt(&rel, CorruptError::Absurd { size: plain }),
                    false,
                );
            }
            if l.size > HEADER_LEN {
                heads.push((r.files.len() - 1, self.path(&l.rel)?, l.clone()));
            }
        }
        let store = Arc::clone(&self.store);
        let deadline = self.opts.deadline;
        let got: Vec<(usize, String, Result<bytes::Bytes, S3Error>)> = self.rt.block_on(
            futures::stream::iter(heads.into_iter().map(|(fi, path, l)| {
                let store = Arc::clone(&store);
                async move {
                    let b = Bucket::get_range(
                        store,
                        path,
                        l.rel.clone(),
                        0..HEADER_LEN,
                        l.etag,
                        deadline,
                    )
                    .await;
                    (fi, l.rel, b)
                }
            }))
            .buffer_unordered(self.opts.concurrency)
            .collect(),
        );
        let mut ids: HashMap<usize, String> = HashMap::new();
        for (fi, key, b) in got {
            let rel = PathBuf::from(&key);
            match b {
                Ok(b) => match check_header(&b) {
                    Ok(id) => {
                        ids.insert(fi, id.to_hex());
                    }
                    Err(e) => add(&mut r, &rel, &Error::corrupt(&rel, e), false),
                },
                Err(S3Error::Refused { reason, .. }) => {
                    add(&mut r, &rel, &Error::refused(&rel, reason), false);
                }
                Err(e) => return Err(e),
            }
        }
        for (fi, id) in ids {
            if let Some(f) = r.files.get_mut(fi) {
                f.file_id = Some(id);
            }
        }
        r.files.sort_by(|a, b| a.path.cmp(&b.path));
        r.finish();
        Ok(r)
    }
}
