//! SIGINT/SIGTERM during a `decrypt`: the first signal asks the work to stop (no new file or
//! piece starts, files in progress remove their temporary files), then the command exits
//! 128 + the signal number (130, 143) with OUTDIR holding only whole files; a second signal
//! exits at once. Without this, the default action killed the process mid-write and left
//! `.ccmount-*.tmp` files of hundreds of MB in OUTDIR.

// The handler only touches atomics and `_exit`, both async-signal-safe.
#![allow(unsafe_code, reason = "installing a signal handler (sigaction)")]

use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

static STOP: AtomicBool = AtomicBool::new(false);
static SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: nix::libc::c_int) {
    if STOP.swap(true, Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe; a second signal means "stop now".
        unsafe { nix::libc::_exit(128 + sig) };
    }
    SIGNAL.store(sig, Ordering::SeqCst);
}

/// Installs the handlers for SIGINT and SIGTERM; returns the flag the work polls.
pub(crate) fn install() -> &'static AtomicBool {
    let action = SigAction::new(
        SigHandler::Handler(on_signal),
        SaFlags::SA_RESTART,
        SigSet::empty(),
    );
    for sig in [Signal::SIGINT, Signal::SIGTERM] {
        // SAFETY: the handler is async-signal-safe (atomics and `_exit` only).
        if let Err(e) = unsafe { sigaction(sig, &action) } {
            tracing::debug!("cannot handle {sig}: {e}");
        }
    }
    &STOP
}

/// The signal that asked to stop, if one did.
pub(crate) fn received() -> Option<i32> {
    STOP.load(Ordering::SeqCst)
        .then(|| SIGNAL.load(Ordering::SeqCst))
}
