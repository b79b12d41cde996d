//! A Trustee-compatible KBS for tests and `ccmount demo`: real HTTP(S) on 127.0.0.1.
//! Spec: `../shared/specs/kbs-protocol.md` (what Trustee does, §1 and §6.7).
