//! The CUDA copy target (feature `gpu`), on cudarc 0.19's safe driver API with the driver
//! library loaded at run time (`../shared/specs/crate-stack.md` §3).
//!
//! Rules this module keeps, from reading cudarc 0.19.10:
//! - Without `libcuda`, cudarc's first driver call *panics*; [`CudaTarget::new`] checks
//!   `is_culib_present()` first and runs every driver call under `catch_unwind` (a symbol
//!   missing from an old driver also panics), mapping both to typed [`GpuError`]s.
//! - `alloc_pinned` gives WRITECOMBINED memory, which the CPU must never read: the workers
//!   hash the plaintext in the staging buffer and `verify` reads back into it, so staging
//!   is allocated with `cuMemHostAlloc` flags 0 (cached, page-locked). When pinning is
//!   refused (confidential-computing releases, memory limits) it falls back to pageable
//!   memory; copies then still overlap decryption because they run on their own thread.
//! - Copies go on one non-blocking stream; a `CU_EVENT_BLOCKING_SYNC` event recorded after
//!   each copy is its ticket (the reaper sleeps instead of spinning a core). The ticket owns
//!   the staging buffer; if waiting fails the buffer is leaked rather than freed under a DMA.
//! - Device memory comes from `alloc_zeros` (no uninitialised device memory) and is freed
//!   on drop in stream order, after the copies into it.
//!
//! The only `unsafe` of the GPU loader is here: the library probe, the pinned allocation
//! (uninitialised host memory, zeroed at once) and the driver-version query.

#![allow(unsafe_code)]

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::Mutex;

use cudarc::driver::{
    CudaContext, CudaEvent, CudaSlice, CudaStream, DriverError, PinnedHostSlice, sys,
};

use super::{CopyTarget, GpuError, Staging, TargetInfo};

/// Whether the CUDA driver library can be loaded (no driver call is made).
#[must_use]
pub fn driver_present() -> bool {
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate library names and
    // closes what it opened; loading libcuda runs the driver's own initialisers, as in any
    // CUDA program. No Rust-side invariant is involved.
    unsafe { sys::is_culib_present() }
}

fn panic_text(p: &(dyn Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
        .replace('\n', " ")
}

/// Runs a driver-calling closure, turning a cudarc panic into [`GpuError::DriverPanicked`].
/// The panics we guard against (missing library or symbol, size assertions) happen before
/// any state changes, so nothing is left half-updated.
fn guard<R>(op: &'static str, f: impl FnOnce() -> Result<R, GpuError>) -> Result<R, GpuError> {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(GpuError::DriverPanicked {
            op,
            detail: panic_text(p.as_ref()),
        })
    })
}

/// The driver's name for an error code (`CUDA_ERROR_NO_DEVICE`), without a driver call.
fn code(e: DriverError) -> String {
    format!("{:?}", e.0)
}

fn drv(op: &'static str) -> impl Fn(DriverError) -> GpuError {
    move |e| GpuError::Driver { op, code: code(e) }
}

/// Options of [`CudaTarget::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CudaOptions {
    /// Try page-locked staging buffers (falls back to pageable when refused).
    pub pinned: bool,
}

impl Default for CudaOptions {
    fn default() -> Self {
        CudaOptions { pinned: true }
    }
}

/// A CUDA device and the stream the loader copies on.
#[derive(Debug)]
pub struct CudaTarget {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    info: TargetInfo,
    opts: CudaOptions,
    pinned_refused: Mutex<Option<String>>,
}

impl CudaTarget {
    /// Opens device `ordinal` (its primary context) and a non-blocking stream.
    ///
    /// # Errors
    /// [`GpuError::NoDriver`] without `libcuda`; [`GpuError::NoDevice`] when the driver
    /// reports no such usable device; [`GpuError::DriverPanicked`]; [`GpuError::Driver`].
    pub fn new(ordinal: usize, opts: CudaOptions) -> Result<Self, GpuError> {
        if !driver_present() {
            return Err(GpuError::NoDriver);
        }
        guard("initialising the CUDA driver", || {
            let no_device = |e: DriverError| GpuError::NoDevice {
                ordinal,
                reason: code(e),
            };
            let count = CudaContext::device_count().map_err(no_device)?;
            if count <= 0 || ordinal >= usize::try_from(count).unwrap_or(0) {
                return Err(GpuError::NoDevice {
                    ordinal,
                    reason: format!("the driver sees {count} device(s)"),
                });
            }
            let ctx = CudaContext::new(ordinal).map_err(no_device)?;
            let stream = ctx.new_stream().map_err(drv("creating a stream"))?;
            let mut version = 0i32;
            // SAFETY: `cuDriverGetVersion` writes one int through a valid, exclusive pointer
            // to a live local; the library is present (checked above) and initialised.
            let v = unsafe { sys::cuDriverGetVersion(&raw mut version) };
            let driver = (v == sys::CUresult::CUDA_SUCCESS)
                .then(|| format!("{}.{}", version / 1000, (version % 1000) / 10));
            let info = TargetInfo {
                kind: "cuda",
                name: ctx.name().unwrap_or_else(|_| "unknown CUDA device".into()),
                ordinal,
                total_mem: ctx.total_mem().ok().map(|m| m as u64),
                driver,
            };
            Ok(CudaTarget {
                ctx,
                stream,
                info,
                opts,
                pinned_refused: Mutex::new(None),
            })
        })
    }

    /// Why pinned staging was refused, if it was (the load then used pageable memory).
    #[must_use]
    pub fn pinned_refused(&self) -> Option<String> {
        self.pinned_refused.lock().ok().and_then(|g| g.clone())
    }

    fn alloc_pinned(&self, len: usize) -> Result<PinnedHostSlice<u8>, GpuError> {
        guard("allocating pinned host memory", || {
            // SAFETY: the returned memory is uninitialised; it is zeroed below before any
            // slice of it is formed or read. Flags 0: cached page-locked memory (not
            // WRITECOMBINED), because the CPU reads it (hashing, read-back).
            let mut p = unsafe { self.ctx.alloc_pinned_with_flags::<u8>(len, 0) }
                .map_err(drv("allocating pinned host memory"))?;
            let ptr = p
                .as_mut_ptr()
                .map_err(drv("allocating pinned host memory"))?;
            // SAFETY: `ptr` is the start of the `len`-byte allocation made above (cudarc
            // asserts it non-null and aligned); nothing else refers to it yet and no copy
            // uses it.
            unsafe { std::ptr::write_bytes(ptr, 0, len) };
            Ok(p)
        })
    }
}

/// A staging buffer: page-locked when the driver allowed it, else ordinary memory.
#[derive(Debug)]
pub enum CudaStaging {
    /// Page-locked (`cuMemHostAlloc`, cached).
    Pinned(PinnedHostSlice<u8>),
    /// Pageable fallback.
    Pageable(Vec<u8>),
}

impl CudaStaging {
    fn bytes(&self) -> Result<&[u8], GpuError> {
        match self {
            CudaStaging::Pinned(p) => p.as_slice().map_err(drv("reading a staging buffer")),
            CudaStaging::Pageable(v) => Ok(v),
        }
    }
}

impl Staging for CudaStaging {
    fn len(&self) -> usize {
        match self {
            CudaStaging::Pinned(p) => p.len(),
            CudaStaging::Pageable(v) => v.len(),
        }
    }

    fn bytes_mut(&mut self) -> Result<&mut [u8], GpuError> {
        match self {
            CudaStaging::Pinned(p) => guard("writing a staging buffer", || {
                p.as_mut_slice().map_err(drv("writing a staging buffer"))
            }),
            CudaStaging::Pageable(v) => Ok(v),
        }
    }

    fn is_pinned(&self) -> bool {
        matches!(self, CudaStaging::Pinned(_))
    }
}

/// One file's device buffer (`None` for an empty file: CUDA cannot allocate 0 bytes).
#[derive(Debug)]
pub struct CudaDevice {
    slice: Option<CudaSlice<u8>>,
    len: u64,
}

impl CudaDevice {
    /// The device memory (for handing to kernels or other libraries).
    #[must_use]
    pub fn slice(&self) -> Option<&CudaSlice<u8>> {
        self.slice.as_ref()
    }

    /// Takes the device memory out.
    #[must_use]
    pub fn into_slice(self) -> Option<CudaSlice<u8>> {
        self.slice
    }

    /// Length in bytes.
    #[must_use]
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// An in-flight copy: the event recorded after it, and the staging buffer it reads.
#[derive(Debug)]
pub struct CudaTicket {
    event: CudaEvent,
    buf: Option<CudaStaging>,
}

impl Drop for CudaTicket {
    fn drop(&mut self) {
        if let Some(buf) = self.buf.take()
            && guard("waiting for a copy", || {
                self.event.synchronize().map_err(drv("waiting for a copy"))
            })
            .is_err()
        {
            // The copy may still read this memory: leak it rather than free it under DMA.
            std::mem::forget(buf);
        }
    }
}

fn range(offset: u64, len: usize) -> Option<std::ops::Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    Some(start..start.checked_add(len)?)
}

impl CopyTarget for CudaTarget {
    type Staging = CudaStaging;
    type Device = CudaDevice;
    type Ticket = CudaTicket;

    fn info(&self) -> TargetInfo {
        self.info.clone()
    }

    fn alloc_staging(&self, len: usize) -> Result<CudaStaging, GpuError> {
        let refused = self.pinned_refused.lock().map_or(true, |g| g.is_some());
        if self.opts.pinned && !refused {
            match self.alloc_pinned(len) {
                Ok(p) => return Ok(CudaStaging::Pinned(p)),
                Err(e) => {
                    if let Ok(mut g) = self.pinned_refused.lock() {
                        *g = Some(e.to_string());
                    }
                }
            }
        }
        let mut v = Vec::new();
        v.try_reserve_exact(len).map_err(|_| GpuError::Copy {
            offset: 0,
            reason: format!("cannot allocate a {len}-byte host staging buffer"),
        })?;
        v.resize(len, 0);
        Ok(CudaStaging::Pageable(v))
    }

    fn alloc_device(&self, len: u64) -> Result<CudaDevice, GpuError> {
        if len == 0 {
            return Ok(CudaDevice { slice: None, len });
        }
        let n = usize::try_from(len).map_err(|_| GpuError::OutOfMemory { bytes: len })?;
        guard("allocating device memory", || {
            let slice = self.stream.alloc_zeros::<u8>(n).map_err(|e| {
                if e.0 == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
                    GpuError::OutOfMemory { bytes: len }
                } else {
                    drv("allocating device memory")(e)
                }
            })?;
            Ok(CudaDevice {
                slice: Some(slice),
                len,
            })
        })
    }

    fn submit_copy(
        &self,
        dev: &mut CudaDevice,
        offset: u64,
        buf: CudaStaging,
        len: usize,
    ) -> Result<CudaTicket, GpuError> {
        let bad = |reason: &str| GpuError::Copy {
            offset,
            reason: reason.into(),
        };
        let r = range(offset, len).ok_or_else(|| bad("offset out of range"))?;
        let slice = dev
            .slice
            .as_mut()
            .ok_or_else(|| bad("the device buffer is empty"))?;
        let mut view = slice
            .try_slice_mut(r)
            .ok_or_else(|| bad("past the end of the device buffer"))?;
        let enqueued = guard("copying to the device", || {
            let src = buf
                .bytes()?
                .get(..len)
                .ok_or_else(|| bad("longer than the staging buffer"))?;
            self.stream
                .memcpy_htod(src, &mut view)
                .map_err(drv("copying to the device (cuMemcpyHtoDAsync)"))
        });
        if let Err(e) = enqueued {
            // Nothing was queued, or the stream failed: make sure no copy still reads `buf`.
            let _ = guard("synchronizing", || {
                self.stream.synchronize().map_err(drv("synchronizing"))
            });
            return Err(e);
        }
        let event = guard("recording a copy event", || {
            self.stream
                .record_event(Some(sys::CUevent_flags::CU_EVENT_BLOCKING_SYNC))
                .map_err(drv("recording a copy event"))
        });
        match event {
            Ok(event) => Ok(CudaTicket {
                event,
                buf: Some(buf),
            }),
            Err(e) => {
                // The copy is queued: wait for it before `buf` can be dropped.
                if guard("synchronizing", || {
                    self.stream.synchronize().map_err(drv("synchronizing"))
                })
                .is_err()
                {
                    std::mem::forget(buf);
                }
                Err(e)
            }
        }
    }

    fn wait(&self, mut ticket: CudaTicket) -> Result<CudaStaging, GpuError> {
        guard("waiting for a copy", || {
            ticket
                .event
                .synchronize()
                .map_err(drv("waiting for a copy"))
        })?;
        ticket.buf.take().ok_or(GpuError::Copy {
            offset: 0,
            reason: "invariant: a ticket holds its buffer until waited for".into(),
        })
    }

    fn read_back(&self, dev: &CudaDevice, offset: u64, out: &mut [u8]) -> Result<(), GpuError> {
        if out.is_empty() {
            return Ok(());
        }
        let bad = |reason: &str| GpuError::Copy {
            offset,
            reason: reason.into(),
        };
        let r = range(offset, out.len()).ok_or_else(|| bad("offset out of range"))?;
        let slice = dev
            .slice
            .as_ref()
            .ok_or_else(|| bad("the device buffer is empty"))?;
        let view = slice
            .try_slice(r)
            .ok_or_else(|| bad("read back past the end of the device buffer"))?;
        guard("reading back from the device", || {
            self.stream
                .memcpy_dtoh(&view, out)
                .map_err(drv("reading back from the device (cuMemcpyDtoHAsync)"))?;
            // `out` may be pinned (a truly asynchronous copy): wait before returning it.
            self.stream
                .synchronize()
                .map_err(drv("reading back from the device"))
        })
    }
}
