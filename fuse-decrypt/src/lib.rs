//! A pure-Rust, byte-compatible implementation of the gocryptfs on-disk format.
//!
//! Spec: `../shared/specs/gocryptfs-format.md`. No networking lives here; keys arrive as
//! zeroized bytes from the caller.
