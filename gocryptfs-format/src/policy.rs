//! What the storage host may not choose, by default, and the user's explicit opt-ins.
//!
//! The host holds the cipher tree but not the key. `gocryptfs.conf`'s feature flags, the
//! scrypt cost, file modes and (with plaintext names) names and symlink targets are not
//! authenticated by the key, so the host can rewrite them. ccmount fails closed on each
//! (`docs/threat-model.md`, "Hostile host"): a layout weaker than what ccmount writes, a
//! scrypt cost above a memory bound, a symlink that leaves the tree, setuid/setgid/sticky
//! and group/other-write modes, all-zero (hole) blocks. gocryptfs itself accepts all of them.

use std::ffi::OsStr;
use std::path::{Component, Path};

use crate::configfile::scrypt::DEFAULT_MAX_MEMORY;

/// The policy of one run. `Default` is the fail-closed policy; each field is an opt-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Accept a `PlaintextNames` tree (names and symlink targets outside the key).
    pub allow_plaintext_names: bool,
    /// Serve, write and accept symlinks whose target is absolute or climbs above the root.
    pub allow_outside_symlinks: bool,
    /// Keep setuid/setgid/sticky and group/other write bits from the tree.
    pub preserve_modes: bool,
    /// Read whole all-zero blocks (holes) as zeros, as gocryptfs does, instead of refusing
    /// them: for trees that really hold sparse files. The host can zero any block.
    pub allow_holes: bool,
    /// Largest scrypt memory (and a quarter of the work) a config may ask for, in bytes.
    pub max_scrypt_memory: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow_plaintext_names: false,
            allow_outside_symlinks: false,
            preserve_modes: false,
            allow_holes: false,
            max_scrypt_memory: DEFAULT_MAX_MEMORY,
        }
    }
}

/// The bits kept from a tree's mode by default: owner rwx, group and other r-x.
const SAFE_MODE: u32 = 0o755;

impl Policy {
    /// The permission bits to give a plaintext entry whose backing mode is `raw`: without
    /// [`Policy::preserve_modes`], no setuid, setgid or sticky bit and no group or other
    /// write, so no process in the TEE can rewrite an accepted model or gain privileges
    /// from it.
    #[must_use]
    pub fn mode(&self, raw: u32) -> u32 {
        if self.preserve_modes {
            raw & 0o7777
        } else {
            raw & SAFE_MODE
        }
    }

    /// Whether a symlink at plaintext path `link` (relative to the root) may point at
    /// `target` under this policy.
    #[must_use]
    pub fn symlink_allowed(&self, link: &Path, target: &OsStr) -> bool {
        self.allow_outside_symlinks || stays_inside(link, target)
    }
}

/// True when `target`, resolved from the directory of `link`, names something inside the
/// tree: relative, and never climbing above the root at any step (`a/../../x` leaves even if
/// it comes back).
#[must_use]
pub fn stays_inside(link: &Path, target: &OsStr) -> bool {
    let target = Path::new(target);
    if target.is_absolute() {
        return false;
    }
    let mut depth = link.parent().map_or(0, |p| p.components().count());
    for c in target.components() {
        match c {
            Component::Normal(_) => depth += 1,
            Component::CurDir => {}
            Component::ParentDir => {
                if depth == 0 {
                    return false;
                }
                depth -= 1;
            }
            Component::RootDir | Component::Prefix(_) => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlink_targets() {
        let inside = |l: &str, t: &str| stays_inside(Path::new(l), OsStr::new(t));
        assert!(inside("a", "b"));
        assert!(inside("d/a", "../b"));
        assert!(inside("d/e/a", "../../b"));
        assert!(inside("a", "./b/../c"));
        assert!(inside("a", ""));
        assert!(!inside("a", "/etc/shadow"));
        assert!(!inside("a", "../b"));
        assert!(!inside("d/a", "../../b"));
        assert!(!inside("tokenizer.json", "../../../run/secrets/x"));
        assert!(!inside("d/a", "x/../../../y"));
        assert!(!inside("a", "b/../../a"));
        let p = Policy {
            allow_outside_symlinks: true,
            ..Policy::default()
        };
        assert!(p.symlink_allowed(Path::new("a"), OsStr::new("/etc/shadow")));
    }

    #[test]
    fn modes_are_masked_unless_preserved() {
        let p = Policy::default();
        assert_eq!(p.mode(0o106_777), 0o755);
        assert_eq!(p.mode(0o4755), 0o755);
        assert_eq!(p.mode(0o2775), 0o755);
        assert_eq!(p.mode(0o1777), 0o755);
        assert_eq!(p.mode(0o640), 0o640);
        assert_eq!(p.mode(0o400), 0o400);
        let keep = Policy {
            preserve_modes: true,
            ..Policy::default()
        };
        assert_eq!(keep.mode(0o106_777), 0o6777);
    }
}
