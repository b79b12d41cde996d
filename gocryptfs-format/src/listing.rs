//! One classifier for a raw cipher-directory listing, shared by the keyed reader
//! ([`crate::cipherdir::CipherDir::read_dir`]) and the no-key checker
//! ([`crate::verify::verify_no_key`]), so the two can never again disagree about which names
//! are control files, leftovers or long names.
//!
//! Mirrors the name filtering of gocryptfs `internal/fusefrontend/node_dir_ops.go`
//! (`Readdir`: `gocryptfs.conf` in the root, `gocryptfs.diriv`, `.name` side files and
//! `gocryptfs.diriv.rmdir.*` leftovers are hidden) and `fsck.go`; spec §3.1, §3.5.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::configfile::{CONF_NAME, NameLayout};
use crate::error::{Error, LongNameError};
use crate::nametransform::{EntryClass, LONGNAME_SUFFIX, classify};

/// What one on-disk name of a listing is.
#[derive(Debug)]
pub enum Item<'a> {
    /// A name to decrypt (with plaintext names: the name itself).
    Name(&'a OsStr),
    /// A `gocryptfs.longname.*` entry; its real name is in the `.name` side file.
    LongName(&'a OsStr),
    /// A harmless oddity (an rmdir leftover, an orphan `.name` file): a warning naming it.
    Oddity(&'a OsStr, Error),
}

/// The names of directory `abs`, sorted bytewise. Unreadable entries fail the listing: a
/// listing with holes could hide a file.
///
/// # Errors
/// [`Error::Io`].
pub(crate) fn read_names(abs: &Path) -> Result<Vec<OsString>, Error> {
    let mut names = Vec::new();
    for de in fs::read_dir(abs).map_err(|e| Error::io("listing", abs, e))? {
        names.push(de.map_err(|e| Error::io("listing", abs, e))?.file_name());
    }
    names.sort();
    Ok(names)
}

/// Classifies every name of one directory (`dir_rel`, relative to the cipher root) under
/// `layout`. Control files are dropped: `gocryptfs.conf` in the root, `gocryptfs.diriv` when
/// the layout has per-directory IVs, and `.name` side files whose entry exists.
pub fn classify_listing<'a>(
    dir_rel: &Path,
    names: &'a [OsString],
    layout: NameLayout,
) -> Vec<Item<'a>> {
    let is_root = dir_rel.as_os_str().is_empty();
    let (encrypted, dir_iv) = match layout {
        NameLayout::Plaintext => (false, false),
        NameLayout::Encrypted { dir_iv, .. } => (true, dir_iv),
    };
    let present: HashSet<&OsStr> = names.iter().map(OsString::as_os_str).collect();
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let name = name.as_os_str();
        if is_root && name.as_bytes() == CONF_NAME.as_bytes() {
            continue;
        }
        if !encrypted {
            out.push(Item::Name(name));
            continue;
        }
        let rel = dir_rel.join(name);
        match classify(name) {
            EntryClass::Conf => out.push(Item::Name(name)),
            EntryClass::DirIv if dir_iv => {}
            EntryClass::RmdirLeftover => out.push(Item::Oddity(
                name,
                Error::refused(
                    &rel,
                    "leftover of an interrupted gocryptfs rmdir; safe to delete",
                ),
            )),
            EntryClass::LongNameFile => {
                let entry = name
                    .as_bytes()
                    .strip_suffix(LONGNAME_SUFFIX.as_bytes())
                    .map(OsStr::from_bytes);
                if !entry.is_some_and(|e| present.contains(e)) {
                    out.push(Item::Oddity(
                        name,
                        Error::corrupt(&rel, LongNameError::Orphan),
                    ));
                }
            }
            EntryClass::LongName => out.push(Item::LongName(name)),
            EntryClass::DirIv | EntryClass::Regular => out.push(Item::Name(name)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    fn kinds(layout: NameLayout, dir: &str, names: &[&str]) -> Vec<String> {
        let names: Vec<OsString> = names.iter().map(OsString::from).collect();
        classify_listing(Path::new(dir), &names, layout)
            .into_iter()
            .map(|i| match i {
                Item::Name(n) => format!("name:{}", n.to_string_lossy()),
                Item::LongName(n) => format!("long:{}", n.to_string_lossy()),
                Item::Oddity(n, _) => format!("odd:{}", n.to_string_lossy()),
            })
            .collect()
    }

    const ENC: NameLayout = NameLayout::Encrypted {
        dir_iv: true,
        raw64: true,
        long_name_max: 255,
    };

    #[test]
    fn control_files_and_oddities() {
        let got = kinds(
            ENC,
            "",
            &[
                "gocryptfs.conf",
                "gocryptfs.diriv",
                "gocryptfs.diriv.rmdir.1",
                "gocryptfs.longname.A",
                "gocryptfs.longname.A.name",
                "gocryptfs.longname.B.name",
                "abc",
            ],
        );
        assert_eq!(
            got,
            [
                "odd:gocryptfs.diriv.rmdir.1",
                "long:gocryptfs.longname.A",
                "odd:gocryptfs.longname.B.name",
                "name:abc"
            ]
        );
        // Outside the root, a `gocryptfs.conf` is just a (bad) name to decrypt.
        assert_eq!(
            kinds(ENC, "d", &["gocryptfs.conf"]),
            ["name:gocryptfs.conf"]
        );
        // Without per-directory IVs a diriv file is not a control file.
        let det = NameLayout::Encrypted {
            dir_iv: false,
            raw64: true,
            long_name_max: 255,
        };
        assert_eq!(
            kinds(det, "", &["gocryptfs.diriv"]),
            ["name:gocryptfs.diriv"]
        );
        // Plaintext names: only the root config is hidden.
        assert_eq!(
            kinds(
                NameLayout::Plaintext,
                "",
                &["gocryptfs.conf", "gocryptfs.diriv", "x"]
            ),
            ["name:gocryptfs.diriv", "name:x"]
        );
    }
}
