//! The buffers tensors are decrypted into: a new Python `bytearray`, filled from Rust with the
//! GIL released, without the single-threaded zero-fill `PyByteArray::new_with` does first.
//!
//! Why: a model load is bound by memory bandwidth and page faults on this kind of machine.
//! `new_with` writes every byte once with the GIL held (and takes every page fault on that one
//! thread) before the parallel decryption writes it again; here each 1 MiB piece is cleared
//! by the worker that decrypts it, right before, while it is in cache. The only `unsafe` of
//! the crate lives here (two FFI calls and one cast), each with its SAFETY argument; mirrors
//! what `pyo3::types::PyByteArray::new_with` does internally, minus the memset.

#![allow(
    unsafe_code,
    reason = "uninitialised bytearray storage; see the module docs"
)]

use std::mem::MaybeUninit;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyByteArray;

/// A new `bytearray` of `len` bytes whose storage `fill` initialises, with the GIL released.
/// `fill` must write every byte (or fail); on failure the object is dropped unseen.
///
/// # Errors
/// A Python `MemoryError` (allocation), or what `fill` returns.
pub(crate) fn filled_bytearray<'py, E>(
    py: Python<'py>,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<(), E> + Send,
) -> PyResult<Bound<'py, PyByteArray>>
where
    E: Into<PyErr> + Send,
{
    if len == 0 {
        return Ok(PyByteArray::new(py, &[]));
    }
    let n = ffi::Py_ssize_t::try_from(len)
        .map_err(|_| pyo3::exceptions::PyMemoryError::new_err("buffer too large"))?;
    // SAFETY: with a NULL source, CPython allocates `n` uninitialised bytes (plus its own
    // trailing NUL) and returns a new reference, or NULL with an exception set, which
    // `from_owned_ptr_or_err` fetches. Holding `py` proves we hold the GIL the call needs.
    let obj = unsafe {
        Bound::from_owned_ptr_or_err(py, ffi::PyByteArray_FromStringAndSize(std::ptr::null(), n))?
    };
    let obj = obj.cast_into::<PyByteArray>()?;
    // SAFETY: `PyByteArray_AsString` returns the object's storage, valid for `len` bytes while
    // the object lives and is not resized. The object is new: no other reference to it exists,
    // so no Python code (in any thread, with or without the GIL) can resize, free, read or
    // write it until we return it, and our strong reference `obj` outlives `buf`. The bytes
    // are uninitialised, which `MaybeUninit<u8>` claims nothing about.
    let buf = unsafe {
        std::slice::from_raw_parts_mut(
            ffi::PyByteArray_AsString(obj.as_ptr()).cast::<MaybeUninit<u8>>(),
            len,
        )
    };
    py.detach(move || fill(buf)).map_err(Into::into)?;
    Ok(obj)
}

/// Clears `chunk` and returns it as initialised bytes (the clearing compiles to a memset).
pub(crate) fn cleared(chunk: &mut [MaybeUninit<u8>]) -> &mut [u8] {
    for b in chunk.iter_mut() {
        b.write(0);
    }
    // SAFETY: every element was written just above; `[MaybeUninit<u8>]` and `[u8]` have the
    // same layout, and the borrow is carried over unchanged.
    unsafe { &mut *(std::ptr::from_mut(chunk) as *mut [u8]) }
}
