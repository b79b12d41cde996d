//! systemd's readiness protocol (`sd_notify`): `READY=1` once the mount is live (or the first
//! secrets are delivered), `STOPPING=1` when a stop begins, as one datagram to the socket that
//! `NOTIFY_SOCKET` names (a path, or `@name` for an abstract socket). Without the variable
//! nothing is sent, so `Type=notify` units work and everything else is unaffected.

use std::os::linux::net::SocketAddrExt as _;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::path::Path;

/// Sends `state` (e.g. `"READY=1"`) to the service manager, if there is one. Failures are
/// logged at debug level: readiness is best effort and must never stop the work.
pub(crate) fn notify(state: &str) {
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sent = UnixDatagram::unbound().and_then(|sock| {
        let bytes = target.as_bytes();
        match bytes.strip_prefix(b"@") {
            Some(name) => {
                let addr = SocketAddr::from_abstract_name(name)?;
                sock.send_to_addr(state.as_bytes(), &addr)
            }
            None => sock.send_to(state.as_bytes(), Path::new(&target)),
        }
    });
    match sent {
        Ok(_) => tracing::debug!("sd_notify: {state}"),
        Err(e) => tracing::debug!("sd_notify {state} failed: {e}"),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn sends_to_the_named_socket() {
        let d = tempfile::tempdir().unwrap();
        let path = d.path().join("notify");
        let server = UnixDatagram::bind(&path).unwrap();
        // SAFETY of the environment: this test is the only user of NOTIFY_SOCKET here.
        #[allow(unsafe_code, reason = "set_var in a single-threaded test setup")]
        // SAFETY: no other thread of this test binary reads NOTIFY_SOCKET.
        unsafe {
            std::env::set_var("NOTIFY_SOCKET", &path);
        }
        notify("READY=1");
        let mut buf = [0u8; 64];
        let n = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
    }
}
