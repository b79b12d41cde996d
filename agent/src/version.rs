//! The version string `ccmount --version` prints and receipts record: the crate version,
//! the commit and whether this is a reproducible release build (`scripts/release.sh` sets
//! `CCMOUNT_COMMIT` and `CCMOUNT_BUILD=reproducible`; `docs/release.md`). Taken from the
//! build environment with `option_env!`, so a change of either rebuilds the crate and no
//! build-host state (time, path, user) enters the binary.

use std::sync::LazyLock;

/// `0.1.0 (commit 0123456789ab, reproducible release)`, or `0.1.0 (development build)`.
pub(crate) static VERSION: LazyLock<String> = LazyLock::new(|| {
    let version = env!("CARGO_PKG_VERSION");
    let commit = option_env!("CCMOUNT_COMMIT").filter(|c| !c.is_empty());
    let release = option_env!("CCMOUNT_BUILD") == Some("reproducible");
    match (commit, release) {
        (Some(c), true) => format!("{version} (commit {}, reproducible release)", short(c)),
        (Some(c), false) => format!("{version} (commit {}, development build)", short(c)),
        (None, _) => format!("{version} (development build)"),
    }
});

/// The first 12 hex digits of a commit id, as `git log --abbrev=12` shows it.
fn short(commit: &str) -> &str {
    commit.get(..12).unwrap_or(commit)
}

/// The version string as a `&'static str` (for clap).
pub(crate) fn string() -> &'static str {
    VERSION.as_str()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_with_the_crate_version() {
        assert!(string().starts_with(env!("CARGO_PKG_VERSION")));
        assert!(string().ends_with(')'));
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
        assert_eq!(short("abc"), "abc");
    }
}
