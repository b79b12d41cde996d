//! `Secret`: bytes that must never be printed and are wiped on drop.
//!
//! Mirrors `../shared/design/style-anchors.md` §7.5 (secrets). A KBS resource leaves this
//! crate only as a [`Secret`]; the agent decides what the bytes mean.

use std::fmt;

use zeroize::Zeroizing;

/// A secret byte string (a KBS resource, a password, a key). Zeroized on drop; its `Debug`
/// prints `Secret(..)` and it has no `Display`, so it cannot end up in a log or an error.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    /// Wraps bytes that are already in a zeroizing buffer (no copy).
    #[must_use]
    pub fn new(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(bytes)
    }

    /// Copies `bytes` into a new secret. The caller remains responsible for wiping its copy.
    #[must_use]
    pub fn from_slice(bytes: &[u8]) -> Self {
        Self(Zeroizing::new(bytes.to_vec()))
    }

    /// The secret bytes. Keep the borrow short and never log it.
    #[must_use]
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Number of bytes (safe to print).
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the secret is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Gives up the wrapper, keeping the zeroizing buffer.
    #[must_use]
    pub fn into_zeroizing(self) -> Zeroizing<Vec<u8>> {
        self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_bytes() {
        let s = Secret::from_slice(b"hunter2");
        assert_eq!(format!("{s:?}"), "Secret(..)");
        assert_eq!(format!("{:#?}", Some(&s)), "Some(\n    Secret(..),\n)");
        assert_eq!(s.expose(), b"hunter2");
        assert_eq!(s.len(), 7);
    }
}
