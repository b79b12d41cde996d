//! The fast AES-256-GCM backend: aws-lc's `EVP_AEAD` API through `aws-lc-sys`, with the
//! 128-bit nonce gocryptfs uses (`EVP_aead_aes_256_gcm` accepts any non-zero nonce length).
//!
//! Spec: `../shared/specs/crate-stack.md` §1 (measured ~12 GB/s/core vs ~2.8 for RustCrypto).
//! One `EVP_AEAD_CTX` per key is shared by all threads: for the plain (non-TLS) GCM AEAD the
//! context is read-only after `EVP_AEAD_CTX_new`, and `open_gather`/`seal_scatter` take it
//! by `const` pointer. aws-lc's `OPENSSL_free` cleanses the key schedule when the context is
//! freed.
//!
//! This is the crate's only module with `unsafe` code; every block says why it is sound.
//! Without the `aws-lc` feature it compiles to a stub whose constructor always fails.

#[cfg(feature = "aws-lc")]
pub(crate) use imp::*;
#[cfg(not(feature = "aws-lc"))]
pub(crate) use stub::*;

#[cfg(feature = "aws-lc")]
#[allow(unsafe_code, reason = "FFI to aws-lc; each block has a SAFETY comment")]
mod imp {
    use std::ptr::NonNull;

    use aws_lc_sys::{
        EVP_AEAD_CTX, EVP_AEAD_CTX_free, EVP_AEAD_CTX_new, EVP_AEAD_CTX_open_gather,
        EVP_AEAD_CTX_seal_scatter, EVP_aead_aes_256_gcm,
    };

    use crate::cryptocore::{AeadFailed, KEY_LEN, TAG_LEN};

    /// aws-lc is compiled in.
    pub(crate) const AVAILABLE: bool = true;

    /// An initialised `EVP_AEAD_CTX` for AES-256-GCM with a 16-byte tag.
    pub(crate) struct GcmKey {
        ctx: NonNull<EVP_AEAD_CTX>,
    }

    // SAFETY: the context is immutable after creation; aws-lc documents EVP_AEAD_CTX as safe
    // to use from several threads at once for the non-TLS AEADs (open/seal take it `const`).
    unsafe impl Send for GcmKey {}
    // SAFETY: as above; every method takes `&self` and aws-lc never mutates the context.
    unsafe impl Sync for GcmKey {}

    impl GcmKey {
        pub(crate) fn new(key: &[u8; KEY_LEN]) -> Result<Self, AeadFailed> {
            // SAFETY: `EVP_aead_aes_256_gcm` returns a pointer to a static descriptor; `key`
            // is a valid 32-byte buffer for the duration of the call (aws-lc copies it into
            // the new context). A null return means allocation failure, handled below.
            let ctx =
                unsafe { EVP_AEAD_CTX_new(EVP_aead_aes_256_gcm(), key.as_ptr(), KEY_LEN, TAG_LEN) };
            NonNull::new(ctx)
                .map(|ctx| GcmKey { ctx })
                .ok_or(AeadFailed)
        }

        pub(crate) fn open(
            &self,
            nonce: &[u8],
            ct: &[u8],
            tag: &[u8],
            aad: &[u8],
            out: &mut [u8],
        ) -> Result<(), AeadFailed> {
            if out.len() != ct.len() || tag.len() != TAG_LEN || nonce.is_empty() {
                return Err(AeadFailed);
            }
            // SAFETY: every pointer comes from a live slice and is paired with that slice's
            // length; `out` has exactly `ct.len()` writable bytes (checked above), which is all
            // aws-lc writes for GCM; `out` is a `&mut` so it cannot overlap any input; the
            // context is valid until `Drop`.
            let ok = unsafe {
                EVP_AEAD_CTX_open_gather(
                    self.ctx.as_ptr(),
                    out.as_mut_ptr(),
                    nonce.as_ptr(),
                    nonce.len(),
                    ct.as_ptr(),
                    ct.len(),
                    tag.as_ptr(),
                    tag.len(),
                    aad.as_ptr(),
                    aad.len(),
                )
            };
            if ok == 1 { Ok(()) } else { Err(AeadFailed) }
        }

        pub(crate) fn seal(
            &self,
            nonce: &[u8],
            pt: &[u8],
            aad: &[u8],
            out: &mut [u8],
            tag_out: &mut [u8],
        ) -> Result<(), AeadFailed> {
            if out.len() != pt.len() || tag_out.len() != TAG_LEN || nonce.is_empty() {
                return Err(AeadFailed);
            }
            let mut tag_len: usize = 0;
            // SAFETY: as in `open`; `tag_out` has `TAG_LEN` writable bytes and we pass that as
            // the maximum; no extra input (null, 0); `tag_len` is a valid out-pointer.
            let ok = unsafe {
                EVP_AEAD_CTX_seal_scatter(
                    self.ctx.as_ptr(),
                    out.as_mut_ptr(),
                    tag_out.as_mut_ptr(),
                    &raw mut tag_len,
                    tag_out.len(),
                    nonce.as_ptr(),
                    nonce.len(),
                    pt.as_ptr(),
                    pt.len(),
                    std::ptr::null(),
                    0,
                    aad.as_ptr(),
                    aad.len(),
                )
            };
            if ok == 1 && tag_len == TAG_LEN {
                Ok(())
            } else {
                Err(AeadFailed)
            }
        }
    }

    impl Drop for GcmKey {
        fn drop(&mut self) {
            // SAFETY: the pointer came from `EVP_AEAD_CTX_new`, is freed exactly once here, and
            // no borrow of `self` outlives the drop.
            unsafe { EVP_AEAD_CTX_free(self.ctx.as_ptr()) }
        }
    }

    /// Opens every `block_len`-byte block of `blocks` (16-byte nonce ‖ ct ‖ 16-byte tag, AAD =
    /// block number ‖ file ID) with bare `EVP_AEAD_CTX_open_gather` calls; returns the
    /// number of plaintext bytes, or `None` on the first failure. The benchmark baseline.
    pub(crate) fn bench_raw_open(
        key: &[u8; KEY_LEN],
        file_id: &[u8; 16],
        blocks: &[u8],
        block_len: usize,
    ) -> Option<u64> {
        let k = GcmKey::new(key).ok()?;
        let pt_len = block_len.checked_sub(32)?;
        let mut out = vec![0u8; pt_len];
        let mut total = 0u64;
        let mut aad = [0u8; 24];
        aad[8..].copy_from_slice(file_id);
        for (i, b) in blocks.chunks_exact(block_len).enumerate() {
            aad[..8].copy_from_slice(&(i as u64).to_be_bytes());
            // SAFETY: `b` has `block_len` = 16 + pt_len + 16 bytes, so all three sub-ranges are
            // in bounds; `out` has `pt_len` writable bytes; the context lives in `k`.
            let ok = unsafe {
                EVP_AEAD_CTX_open_gather(
                    k.ctx.as_ptr(),
                    out.as_mut_ptr(),
                    b.as_ptr(),
                    16,
                    b.as_ptr().add(16),
                    pt_len,
                    b.as_ptr().add(16 + pt_len),
                    16,
                    aad.as_ptr(),
                    aad.len(),
                )
            };
            if ok != 1 {
                return None;
            }
            total += pt_len as u64;
        }
        std::hint::black_box(&out);
        Some(total)
    }
}

#[cfg(not(feature = "aws-lc"))]
mod stub {
    use crate::cryptocore::{AeadFailed, KEY_LEN};

    /// aws-lc is not compiled in.
    pub(crate) const AVAILABLE: bool = false;

    /// Never constructed without the `aws-lc` feature.
    pub(crate) struct GcmKey(());

    impl GcmKey {
        pub(crate) fn new(_key: &[u8; KEY_LEN]) -> Result<Self, AeadFailed> {
            Err(AeadFailed)
        }
        pub(crate) fn open(
            &self,
            _: &[u8],
            _: &[u8],
            _: &[u8],
            _: &[u8],
            _: &mut [u8],
        ) -> Result<(), AeadFailed> {
            Err(AeadFailed)
        }
        pub(crate) fn seal(
            &self,
            _: &[u8],
            _: &[u8],
            _: &[u8],
            _: &mut [u8],
            _: &mut [u8],
        ) -> Result<(), AeadFailed> {
            Err(AeadFailed)
        }
    }

    pub(crate) fn bench_raw_open(
        _: &[u8; KEY_LEN],
        _: &[u8; 16],
        _: &[u8],
        _: usize,
    ) -> Option<u64> {
        None
    }
}
