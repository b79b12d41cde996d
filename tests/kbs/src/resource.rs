//! Resource store and Trustee's resource path rule.
//!
//! Mirrors `trustee: kbs/src/plugins/implementations/resource/backend.rs` (`ResourceDesc`):
//! exactly three `/`-separated segments, each `[A-Za-z0-9_-][A-Za-z0-9_.-]*`
//! (`../shared/specs/kbs-protocol.md` §1.5). The store is in memory (Trustee's `Memory`
//! kv-storage); values are zeroized when replaced or when the server stops.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

/// Whether `segment` matches `[A-Za-z0-9_-][A-Za-z0-9_.-]*`.
fn valid_segment(segment: &str) -> bool {
    let mut chars = segment.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    (first.is_ascii_alphanumeric() || first == '_' || first == '-')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Whether `path` is a `repo/type/tag` that Trustee's resource plugin accepts.
#[must_use]
pub fn valid_resource_path(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').collect();
    segments.len() == 3 && segments.iter().all(|s| valid_segment(s))
}

/// In-memory resources keyed by `repo/type/tag`.
#[derive(Default)]
pub(crate) struct ResourceStore {
    items: BTreeMap<String, Zeroizing<Vec<u8>>>,
}

impl std::fmt::Debug for ResourceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: values are secrets.
        f.debug_struct("ResourceStore")
            .field("paths", &self.items.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl ResourceStore {
    /// Insert or replace; the caller has validated `path`.
    pub(crate) fn set(&mut self, path: &str, value: Vec<u8>) {
        self.items.insert(path.to_owned(), Zeroizing::new(value));
    }

    pub(crate) fn get(&self, path: &str) -> Option<Zeroizing<Vec<u8>>> {
        self.items.get(path).cloned()
    }

    pub(crate) fn remove(&mut self, path: &str) -> bool {
        self.items.remove(path).is_some()
    }

    pub(crate) fn paths(&self) -> Vec<String> {
        self.items.keys().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::valid_resource_path;

    #[test]
    fn trustee_path_rule() {
        for ok in [
            "default/1/2",
            "repo/type/tag",
            "123--_default/1Abff-_/___-afds44BC",
            "1.ok/2ok./3...",
        ] {
            assert!(valid_resource_path(ok), "{ok}");
        }
        for bad in [
            "/1/2",
            "/repo/type/tag",
            "1/2",
            ".1.ok/2ok./3...",
            "1.ok/.2ok./3...",
            "1.ok/2ok./.3...",
            "a/b/c/d",
            "a//c",
            "a/b/",
            "a/b/c ",
            "a/../c",
            "a/b/%2e",
            "ä/b/c",
            "",
        ] {
            assert!(!valid_resource_path(bad), "{bad}");
        }
    }
}
