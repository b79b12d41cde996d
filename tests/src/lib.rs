//! Helpers shared by the end-to-end tests: fixture paths, probes for gocryptfs and
//! `/dev/fuse`, and the Trustee-compatible test KBS.
