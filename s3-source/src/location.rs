//! `s3://BUCKET/PREFIX`: the one way a user names a tree in object storage. Parsed once,
//! strictly: a bucket name as S3 allows it, a prefix of plain segments (no empty, `.` or
//! `..` segment, no control characters), so no key we derive can leave the prefix.

use std::fmt;

use crate::error::S3Error;

/// Longest object key S3 allows.
const MAX_KEY: usize = 1024;

/// A bucket and a key prefix (without leading or trailing `/`; empty: the whole bucket).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    bucket: String,
    prefix: String,
}

impl S3Location {
    /// Whether `arg` names object storage (an `s3://` URL) rather than a local path.
    #[must_use]
    pub fn is_s3(arg: &std::ffi::OsStr) -> bool {
        arg.as_encoded_bytes().starts_with(b"s3://")
    }

    /// Parses `s3://BUCKET[/PREFIX][/]`.
    ///
    /// # Errors
    /// [`S3Error::Usage`] naming what is wrong.
    pub fn parse(url: &str) -> Result<Self, S3Error> {
        let bad = |why: &str| S3Error::Usage(format!("{}: {why}", escape(url)));
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("not an s3:// URL (give s3://BUCKET/PREFIX)"))?;
        if rest.contains(['?', '#']) {
            return Err(bad(
                "query strings and fragments are not part of an s3:// URL",
            ));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        check_bucket(bucket).map_err(|w| bad(&w))?;
        let prefix = prefix.strip_suffix('/').unwrap_or(prefix);
        if !prefix.is_empty() {
            for seg in prefix.split('/') {
                if seg.is_empty() || seg == "." || seg == ".." {
                    return Err(bad(
                        "the prefix has an empty, '.' or '..' segment; give a plain path",
                    ));
                }
                if seg.chars().any(char::is_control) || seg.contains('\\') {
                    return Err(bad("the prefix has control characters or backslashes"));
                }
            }
        }
        if prefix.len() > MAX_KEY / 2 {
            return Err(bad("the prefix is longer than 512 bytes"));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    /// The bucket name.
    #[must_use]
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The key prefix (no leading or trailing `/`).
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The full key of `rel` (a key relative to the prefix).
    #[must_use]
    pub fn key(&self, rel: &str) -> String {
        if self.prefix.is_empty() {
            rel.to_owned()
        } else if rel.is_empty() {
            self.prefix.clone()
        } else {
            format!("{}/{rel}", self.prefix)
        }
    }

    /// The location of a subdirectory (`rel` relative to this prefix).
    #[must_use]
    pub fn join(&self, rel: &str) -> S3Location {
        S3Location {
            bucket: self.bucket.clone(),
            prefix: self.key(rel.trim_matches('/')),
        }
    }
}

impl fmt::Display for S3Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix.is_empty() {
            write!(f, "s3://{}", self.bucket)
        } else {
            write!(f, "s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// S3's bucket naming rules (3–63 of `a-z 0-9 . -`, starting and ending with a letter or
/// digit); OSS and GCS are stricter subsets.
fn check_bucket(b: &str) -> Result<(), String> {
    if b.is_empty() {
        return Err("no bucket name".into());
    }
    if !(3..=63).contains(&b.len()) {
        return Err("a bucket name has 3 to 63 characters".into());
    }
    if !b
        .bytes()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-')
    {
        return Err("a bucket name has only lowercase letters, digits, '.' and '-'".into());
    }
    let ends_ok = |c: Option<u8>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !ends_ok(b.bytes().next()) || !ends_ok(b.bytes().last()) || b.contains("..") {
        return Err("a bucket name starts and ends with a letter or digit and has no '..'".into());
    }
    Ok(())
}

/// Printable form of user input in messages.
fn escape(s: &str) -> String {
    s.chars().flat_map(char::escape_debug).take(300).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_bucket_and_prefix() {
        let l = S3Location::parse("s3://models/llama/v1/").unwrap();
        assert_eq!((l.bucket(), l.prefix()), ("models", "llama/v1"));
        assert_eq!(l.key("gocryptfs.conf"), "llama/v1/gocryptfs.conf");
        assert_eq!(l.to_string(), "s3://models/llama/v1");
        let l = S3Location::parse("s3://models").unwrap();
        assert_eq!((l.prefix(), l.key("a")), ("", "a".into()));
        assert_eq!(l.join("x/").to_string(), "s3://models/x");
    }

    #[test]
    fn refuses_what_could_leave_the_prefix_or_is_not_s3() {
        for bad in [
            "s3:/models/x",
            "http://models/x",
            "s3://",
            "s3://Models/x",
            "s3://ab/x",
            "s3://-models/x",
            "s3://mo..dels/x",
            "s3://models/a/../b",
            "s3://models/a//b",
            "s3://models/./a",
            "s3://models/a\nb",
            "s3://models/a?versionId=1",
            "s3://models/a\\b",
            "s3://user:pw@models/a",
        ] {
            assert!(S3Location::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    proptest! {
        #[test]
        fn never_panics_and_keys_stay_under_the_prefix(s in "\\PC{0,80}", rel in "[a-z]{1,8}") {
            let url = format!("s3://{s}");
            if let Ok(l) = S3Location::parse(&url) {
                let key = l.key(&rel);
                prop_assert!(key.starts_with(l.prefix()));
                prop_assert!(!key.split('/').any(|p| p == ".." || p.is_empty()));
                prop_assert_eq!(S3Location::parse(&l.to_string()).unwrap(), l);
            }
        }
    }
}
