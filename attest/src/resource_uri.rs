//! Resource URIs: `kbs:///<repository>/<type>/<tag>`.
//!
//! Mirrors `../shared/specs/kbs-protocol.md` §4 (CoCo resource URI grammar) and §1.5 (Trustee's
//! path rule: exactly three segments matching `[A-Za-z0-9_-][A-Za-z0-9_.-]*`). As in CoCo, a
//! host in `kbs://host/...` is ignored (the request goes to the configured KBS) and we warn
//! about it. Unlike CoCo's parser we reject, at parse time, everything the KBS would reject and
//! everything that could escape a path: empty segments, `.`, `..`, percent escapes, other
//! plugins (`kbs+<plugin>://`), query strings and fragments.

#![warn(clippy::indexing_slicing)]

use std::fmt;
use std::str::FromStr;

/// Longest accepted segment; Trustee has no limit, but file systems and policies do.
const MAX_SEGMENT_LEN: usize = 255;

/// Why a resource URI was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UriError {
    /// The scheme is not `kbs://`.
    #[error("resource URI must start with kbs:// (e.g. kbs:///default/key/model)")]
    Scheme,
    /// A `kbs+<plugin>://` URI: only the `resource` plugin is supported.
    #[error("only the KBS resource plugin (kbs://) is supported, not kbs+{plugin}://")]
    Plugin {
        /// The plugin named in the scheme.
        plugin: String,
    },
    /// Query strings and fragments are not supported.
    #[error("resource URI must not contain '?' or '#': use kbs:///REPO/TYPE/TAG")]
    QueryOrFragment,
    /// Not exactly three path segments.
    #[error("resource URI needs exactly three segments REPO/TYPE/TAG, found {found}")]
    SegmentCount {
        /// Number of segments found.
        found: usize,
    },
    /// A segment is empty, `.`/`..`, too long, or has a character outside
    /// `[A-Za-z0-9_.-]` (or starts with `.`).
    #[error(
        "invalid segment {index} of the resource URI: use letters, digits, '_', '-', '.' (not first), at most 255 characters"
    )]
    Segment {
        /// 1-based position of the bad segment.
        index: usize,
    },
}

/// A validated KBS resource locator: `repository/type/tag`, each segment safe to use as a
/// path component.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceUri {
    repository: String,
    kind: String,
    tag: String,
    ignored_host: Option<String>,
}

impl ResourceUri {
    /// Builds a URI from its three segments.
    ///
    /// # Errors
    /// [`UriError::Segment`] when a segment does not match Trustee's rule.
    pub fn new(repository: &str, kind: &str, tag: &str) -> Result<Self, UriError> {
        for (i, s) in [repository, kind, tag].into_iter().enumerate() {
            if !valid_segment(s) {
                return Err(UriError::Segment { index: i + 1 });
            }
        }
        Ok(Self {
            repository: repository.to_owned(),
            kind: kind.to_owned(),
            tag: tag.to_owned(),
            ignored_host: None,
        })
    }

    /// Parses `kbs:///repo/type/tag` or `kbs://host[:port]/repo/type/tag` (host ignored).
    ///
    /// # Errors
    /// A [`UriError`] naming what is wrong.
    pub fn parse(s: &str) -> Result<Self, UriError> {
        let rest = match s.split_once("://") {
            Some(("kbs", rest)) => rest,
            Some((scheme, _)) => {
                return Err(match scheme.strip_prefix("kbs+") {
                    Some(p) => UriError::Plugin {
                        plugin: sanitize(p).chars().take(32).collect(),
                    },
                    None => UriError::Scheme,
                });
            }
            None => return Err(UriError::Scheme),
        };
        if rest.contains(['?', '#']) {
            return Err(UriError::QueryOrFragment);
        }
        let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
        let segments: Vec<&str> = path.split('/').collect();
        let &[repository, kind, tag] = segments.as_slice() else {
            return Err(UriError::SegmentCount {
                found: if path.is_empty() { 0 } else { segments.len() },
            });
        };
        let mut uri = Self::new(repository, kind, tag)?;
        if !host.is_empty() {
            tracing::warn!(
                host = %sanitize(host),
                "ignoring the host in the resource URI: resources are always fetched from the configured KBS"
            );
            uri.ignored_host = Some(sanitize(host));
        }
        Ok(uri)
    }

    /// The repository segment.
    #[must_use]
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The type segment.
    #[must_use]
    pub fn kind(&self) -> &str {
        &self.kind
    }

    /// The tag segment.
    #[must_use]
    pub fn tag(&self) -> &str {
        &self.tag
    }

    /// `repo/type/tag`, as used after `/kbs/v0/resource/`.
    #[must_use]
    pub fn path(&self) -> String {
        format!("{}/{}/{}", self.repository, self.kind, self.tag)
    }

    /// The host given in `kbs://host/...`, which was ignored.
    #[must_use]
    pub fn ignored_host(&self) -> Option<&str> {
        self.ignored_host.as_deref()
    }
}

impl FromStr for ResourceUri {
    type Err = UriError;
    fn from_str(s: &str) -> Result<Self, UriError> {
        Self::parse(s)
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kbs:///{}", self.path())
    }
}

/// Trustee's `[A-Za-z0-9_-][A-Za-z0-9_.-]*`, plus a length limit.
fn valid_segment(s: &str) -> bool {
    let ok = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b'-';
    match s.as_bytes().split_first() {
        Some((&first, rest)) => {
            s.len() <= MAX_SEGMENT_LEN && ok(first) && rest.iter().all(|&c| ok(c) || c == b'.')
        }
        None => false,
    }
}

/// Keeps only printable ASCII of an untrusted string, bounded, for logs.
fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(128)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_the_usual_forms() {
        let u = ResourceUri::parse("kbs:///default/key/model-1.pass").unwrap();
        assert_eq!(u.path(), "default/key/model-1.pass");
        assert_eq!(u.to_string(), "kbs:///default/key/model-1.pass");
        assert_eq!(u.ignored_host(), None);
        let u = ResourceUri::parse("kbs:///default/aliyun/model-decryption-key").unwrap();
        assert_eq!(u.kind(), "aliyun");
        let u: ResourceUri = "kbs://kbs.example:8080/a/b/c".parse().unwrap();
        assert_eq!(u.ignored_host(), Some("kbs.example:8080"));
        assert_eq!(u.path(), "a/b/c");
    }

    #[test]
    fn rejects_bad_uris() {
        let bad = [
            ("", UriError::Scheme),
            ("default/key/x", UriError::Scheme),
            ("https:///a/b/c", UriError::Scheme),
            ("KBS:///a/b/c", UriError::Scheme),
            ("kbs:///", UriError::SegmentCount { found: 0 }),
            ("kbs://", UriError::SegmentCount { found: 0 }),
            ("kbs:///a/b", UriError::SegmentCount { found: 2 }),
            ("kbs:///a/b/c/d", UriError::SegmentCount { found: 4 }),
            ("kbs:///a/b/c/", UriError::SegmentCount { found: 4 }),
            ("kbs:///a//c", UriError::Segment { index: 2 }),
            ("kbs:////b/c", UriError::Segment { index: 1 }),
            ("kbs:///a/b/..", UriError::Segment { index: 3 }),
            ("kbs:///a/./c", UriError::Segment { index: 2 }),
            ("kbs:///../b/c", UriError::Segment { index: 1 }),
            ("kbs:///a/b/.hidden", UriError::Segment { index: 3 }),
            ("kbs:///a/b/%2e%2e", UriError::Segment { index: 3 }),
            ("kbs:///a/b/c d", UriError::Segment { index: 3 }),
            ("kbs:///a/b\\c/d", UriError::Segment { index: 2 }),
            ("kbs:///a/b/c\0", UriError::Segment { index: 3 }),
            ("kbs:///a/b/caf\u{e9}", UriError::Segment { index: 3 }),
            ("kbs:///a/b/c?x=1", UriError::QueryOrFragment),
            ("kbs:///a/b/c#f", UriError::QueryOrFragment),
            (
                "kbs+pkcs11:///a/b/c",
                UriError::Plugin {
                    plugin: "pkcs11".into(),
                },
            ),
        ];
        for (s, want) in bad {
            assert_eq!(ResourceUri::parse(s), Err(want), "{s:?}");
        }
        let long = format!("kbs:///a/b/{}", "x".repeat(256));
        assert_eq!(
            ResourceUri::parse(&long),
            Err(UriError::Segment { index: 3 })
        );
    }

    proptest! {
        #[test]
        fn never_panics_and_accepted_is_safe(s in "\\PC{0,64}") {
            if let Ok(u) = ResourceUri::parse(&s) {
                for seg in [u.repository(), u.kind(), u.tag()] {
                    prop_assert!(valid_segment(seg));
                    prop_assert!(seg != "." && seg != ".." && !seg.contains('/'));
                }
            }
        }

        #[test]
        fn valid_segments_round_trip(
            a in "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,20}",
            b in "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,20}",
            c in "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,20}",
        ) {
            let u = ResourceUri::parse(&format!("kbs:///{a}/{b}/{c}")).unwrap();
            prop_assert_eq!(u.path(), format!("{a}/{b}/{c}"));
            prop_assert_eq!(ResourceUri::parse(&u.to_string()).unwrap(), u);
        }
    }
}
