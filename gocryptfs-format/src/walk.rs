//! A full walk of the plaintext view of a cipher directory: every entry, in a stable
//! pre-order (directories before their children, siblings sorted by plaintext name), plus
//! every problem met on the way.
//!
//! Shared by `decrypt`, `verify` and (later) manifests; gocryptfs' `fsck.go` walks the same
//! way through a mount. Iterative, so deep trees cannot overflow the stack.

use crate::cipherdir::{CipherDir, Entry, FileKind, Problem};
use crate::error::Result;

/// The result of [`walk`].
#[derive(Debug, Default)]
pub struct Walk {
    /// Every entry except the root, parents before children.
    pub entries: Vec<Entry>,
    /// Everything that could not be listed or decrypted (those entries are skipped).
    pub problems: Vec<Problem>,
}

/// Walks the whole tree.
///
/// # Errors
/// Only if the root itself cannot be listed; everything below becomes a [`Problem`].
pub fn walk(dir: &CipherDir) -> Result<Walk> {
    let root = dir.root_entry()?;
    let first = dir.read_dir(&root)?;
    let mut out = Walk::default();
    out.problems.extend(first.problems);
    // Stack of pending children, reversed so that pops come out in sorted order.
    let mut stack: Vec<Entry> = first.entries.into_iter().rev().collect();
    while let Some(e) = stack.pop() {
        if e.kind == FileKind::Dir {
            match dir.read_dir(&e) {
                Ok(listing) => {
                    out.problems.extend(listing.problems);
                    stack.extend(listing.entries.into_iter().rev());
                }
                Err(error) => out.problems.push(Problem {
                    cipher_path: e.cipher_path.clone(),
                    plain_dir: e.plain_path.clone(),
                    error,
                    warning: false,
                }),
            }
        }
        out.entries.push(e);
    }
    Ok(out)
}
