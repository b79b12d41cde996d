//! Entry points for the fuzz crate (`fuzz/fuzz_targets/s3_*.rs`) and its corpus replay in
//! `tests/`: each body feeds untrusted bytes to one parser and checks its properties. Not a
//! stable API.

/// Fuzz bodies.
pub mod fuzzing {
    use crate::location::S3Location;
    use crate::options::Credentials;
    use crate::store::Listed;

    /// `s3://` locations (a secure-mount request or a config carries them): never a panic;
    /// an accepted one prints back to itself and its keys stay under its prefix.
    pub fn s3_location(data: &[u8]) {
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };
        if let Ok(l) = S3Location::parse(s) {
            let again = S3Location::parse(&l.to_string());
            assert!(
                again.as_ref().is_ok_and(|a| *a == l),
                "{s:?} does not round-trip"
            );
            let key = l.key("gocryptfs.conf");
            assert!(key.starts_with(l.prefix()));
            assert!(!key.split('/').any(|p| p.is_empty() || p == ".."));
        }
    }

    /// Storage credentials JSON (a KBS resource): never a panic, and an error never
    /// carries the input's text.
    pub fn storage_credentials(data: &[u8]) {
        if let Err(e) = Credentials::from_json(data) {
            let msg = e.to_string();
            if data.len() >= 12
                && let Ok(s) = std::str::from_utf8(data)
            {
                assert!(!msg.contains(s), "the error echoes the input");
            }
        }
    }

    /// A bucket listing (one key per line, the host's choice, every object empty): grouping
    /// into directories never panics and accepts no key with an empty, `.` or `..` segment
    /// (a trailing `/` marks a directory).
    pub fn listing_keys(data: &[u8]) {
        let Ok(s) = std::str::from_utf8(data) else {
            return;
        };
        let listed: Vec<Listed> = s
            .split('\n')
            .take(10_000)
            .map(|k| Listed {
                rel: k.to_owned(),
                size: 0,
                etag: None,
            })
            .collect();
        if crate::tree::build_dirs(&listed).is_ok() {
            for l in &listed {
                // Sizes are 0 here: a trailing `/` (or the empty key) is a directory marker.
                let rel = l.rel.strip_suffix('/').unwrap_or(&l.rel);
                if rel.is_empty() {
                    continue;
                }
                assert!(
                    !rel.split('/')
                        .any(|p| p.is_empty() || p == "." || p == "..")
                );
            }
        }
    }
}
