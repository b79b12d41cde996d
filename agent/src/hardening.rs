//! Process hardening for a program that holds keys: no core dumps, and key pages locked in
//! RAM where the kernel lets us.
//!
//! Product rule (`../shared/design/product.md`, "Security rules"): "The daemon disables core
//! dumps and locks key pages in memory." [`disable_core_dumps`] runs first thing in `main`,
//! before any secret is read: `prctl(PR_SET_DUMPABLE, 0)` (no core file, no ptrace attach by
//! same-uid processes, `/proc/<pid>/{mem,environ}` owned by root) and `RLIMIT_CORE = 0` (no
//! core file even if something re-enables dumpable, e.g. an `execve`). [`lock`] pins the
//! pages of one secret buffer with `mlock(2)`; it is best effort (the default
//! `RLIMIT_MEMLOCK` is small and containers often lack `CAP_IPC_LOCK`), so a failure is logged
//! at debug and ignored. Derived keys inside the cipher contexts of the libraries are not
//! locked individually; with core dumps off, what remains is swap, which a confidential VM
//! should not have (docs/threat-model.md).
//!
//! [`fixed_mmap_threshold`] keeps the heap from holding on to freed segment buffers (see
//! there).
//!
//! The only `unsafe` in the agent is the `mlock` and `mallopt` calls below.

/// What [`disable_core_dumps`] managed to do, logged once logging is set up.
#[derive(Debug)]
pub(crate) struct Report {
    dumpable_off: Result<(), String>,
    core_limit_zero: Result<(), String>,
}

impl Report {
    /// Logs the outcome: debug when all went well, warn for each step that failed.
    pub(crate) fn log(&self) {
        match &self.dumpable_off {
            Ok(()) => tracing::debug!("core dumps disabled (PR_SET_DUMPABLE 0)"),
            Err(e) => tracing::warn!("could not clear the dumpable flag: {e}"),
        }
        match &self.core_limit_zero {
            Ok(()) => tracing::debug!("RLIMIT_CORE set to 0"),
            Err(e) => tracing::warn!("could not set RLIMIT_CORE to 0: {e}"),
        }
    }
}

/// Turns core dumps off for this process (both ways; see the module docs).
pub(crate) fn disable_core_dumps() -> Report {
    let dumpable_off = nix::sys::prctl::set_dumpable(false).map_err(|e| e.to_string());
    let core_limit_zero =
        nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_CORE, 0, 0)
            .map_err(|e| e.to_string());
    Report {
        dumpable_off,
        core_limit_zero,
    }
}

/// Locks the pages holding `secret` in RAM (best effort; see the module docs). The lock
/// lasts until the pages are unmapped or the process exits; a zeroizing buffer is wiped on
/// drop either way.
pub(crate) fn lock(secret: &[u8], what: &str) {
    lock_raw(secret.as_ptr(), secret.len(), what);
}

/// Like [`lock`], for the whole allocation of `buf` (its spare capacity too), so a buffer
/// can be locked before the secret is read into it.
pub(crate) fn lock_capacity(buf: &Vec<u8>, what: &str) {
    lock_raw(buf.as_ptr(), buf.capacity(), what);
}

fn lock_raw(ptr: *const u8, len: usize, what: &str) {
    let Some(ptr) = std::ptr::NonNull::new(ptr.cast_mut()) else {
        return;
    };
    if len == 0 {
        return;
    }
    // SAFETY: mlock(2) only changes the residency of the pages covering [ptr, ptr+len), which
    // the caller's live allocation covers; it reads and writes no memory, so it cannot break
    // Rust's aliasing or validity rules. The kernel rounds the range to whole pages itself.
    #[allow(unsafe_code)]
    let r = unsafe { nix::sys::mman::mlock(ptr.cast(), len) };
    match r {
        Ok(()) => tracing::debug!("{what}: key pages locked in memory"),
        Err(e) => tracing::debug!("{what}: could not lock key pages in memory ({e}); continuing"),
    }
}

/// Buffers of 1 MiB and more get their own mappings, returned to the kernel when freed.
///
/// glibc raises its mmap threshold each time a mapped buffer is freed (up to 32 MiB), after
/// which the object-storage reader's 8 MiB segments come from per-thread arenas that keep
/// their pages: the mount daemon's peak RSS measured 250-290 MiB against s3s-fs at the
/// default cache, 164-168 MiB with the threshold fixed (docs/benchmarks.md). A fixed
/// threshold also means a freed key buffer's pages leave the process at once.
pub(crate) fn fixed_mmap_threshold() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt(3) only changes the allocator's tuning; it touches no Rust-visible
        // memory. Called at the start of main, before other threads exist.
        #[allow(unsafe_code)]
        let ok = unsafe { nix::libc::mallopt(nix::libc::M_MMAP_THRESHOLD, 1 << 20) };
        if ok != 1 {
            tracing::debug!("mallopt(M_MMAP_THRESHOLD) refused; keeping the default");
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn core_dumps_are_off_after_disable() {
        let r = disable_core_dumps();
        assert!(r.dumpable_off.is_ok() && r.core_limit_zero.is_ok(), "{r:?}");
        assert!(!nix::sys::prctl::get_dumpable().unwrap());
        let (soft, hard) =
            nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_CORE).unwrap();
        assert_eq!((soft, hard), (0, 0));
    }

    #[test]
    fn lock_is_best_effort_and_never_fails() {
        let buf = zeroize::Zeroizing::new(vec![7u8; 100]);
        lock(&buf, "test");
        lock(&[], "empty");
        lock_capacity(&Vec::with_capacity(4096), "capacity");
        lock_capacity(&Vec::new(), "unallocated");
    }
}
