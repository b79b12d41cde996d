//! Trustee KBS attestation client: proves TEE evidence to a Key Broker Service and returns
//! the requested resource, decrypted with a key that only this process holds.
//!
//! Spec: `../shared/specs/kbs-protocol.md` (RCAR protocol 0.4.0). This crate knows nothing
//! about gocryptfs; a fetched secret leaves it as zeroized bytes.
