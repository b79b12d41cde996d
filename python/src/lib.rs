//! The native half of the `ccmount` Python package (`ccmount._native`): an encrypted
//! gocryptfs tree opened in-process, its files read at random offsets and decrypted in
//! parallel, safetensors headers checked, with no FUSE mount and no plaintext on disk.
//!
//! Built by maturin (`pip install ./python`); the Python API (`ccmount.open_dir`,
//! `Dir.safe_open`, mirroring `safetensors.safe_open`) lives in `python/ccmount/`, this crate
//! only exposes the pieces it needs: `Dir` (`dir.rs`), `File` (`file.rs`), key sources
//! (`keys.rs`), the exception mapping (`errors.rs`) and the output buffers (`alloc.rs`, the
//! crate's only `unsafe`). The format is the workspace's
//! `gocryptfs-format` crate, the header parser `gpu_loader::safetensors`, the KBS client
//! `attest`: nothing of the format is implemented here. `docs/python.md` is the user guide.

mod alloc;
mod dir;
mod errors;
mod file;
mod keys;

use pyo3::prelude::*;

/// The module `ccmount._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<dir::NativeDir>()?;
    m.add_class::<file::NativeFile>()?;
    m.add(
        "BACKEND",
        format!("{:?}", gocryptfs_format::Backend::preferred()),
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
