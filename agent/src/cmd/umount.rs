//! `ccmount umount MOUNTPOINT [--lazy]`: unmounts a ccmount (or any FUSE) mount, like
//! `fusermount3 -u` (`umount2(2)` as root, `fusermount3` otherwise). Refuses mounts that are
//! not FUSE, so a typo cannot unmount `/home`. The daemon then exits and removes its ready
//! file.

use anyhow::Result;
use fuse_decrypt::{self as fuse, Unmounted};
use tracing::info;

use crate::cli::UmountArgs;
use crate::exit::Exit;

pub(crate) fn run(a: UmountArgs) -> Result<Exit> {
    match fuse::unmount(&a.mountpoint, a.lazy)? {
        Unmounted::Detached => info!(
            "{} detached; it goes away when the last open file is closed",
            a.mountpoint.display()
        ),
        Unmounted::Now | Unmounted::AlreadyGone => {
            info!("unmounted {}", a.mountpoint.display());
        }
    }
    Ok(Exit::Ok)
}
