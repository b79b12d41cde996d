//! The CPU copy target: a `Vec<u8>` stands in for device memory and "DMA engines" are
//! threads, so copies really run concurrently with decryption and with each other. It lets
//! CI test the pipeline's ordering, overlap and error paths without a GPU (`ccmount
//! load-gpu --target cpu`), and gives a pipeline-overhead figure in the benchmark.
//!
//! Test hooks ([`CpuOptions`]): per-copy delays (seeded, reproducible), gates that force a
//! copy to stay in flight until the next one is submitted (proves overlap) or to complete
//! after its successor (out-of-order completion), an injected copy failure, and a device
//! memory limit. Gate waits are bounded (10 s) and counted, so a broken pipeline fails a
//! test instead of hanging it.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{CopyTarget, GpuError, Staging, TargetInfo};

/// How long a gated copy waits for its condition before giving up (and counting it).
const GATE_TIMEOUT: Duration = Duration::from_secs(10);

/// Ordering constraints the CPU target can impose on copy completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Gate {
    /// Copies complete as soon as their engine gets to them.
    #[default]
    None,
    /// Copy `s` completes only once copy `s + 1` was submitted (or `s` ends its device
    /// buffer): a pipeline that waits for each copy before preparing the next stalls.
    NextSubmitted,
    /// Copy `2k` completes only after copy `2k + 1` completed (unless `2k` ends its device
    /// buffer): completions are out of order. Needs at least two engines.
    ReversePairs,
}

/// Behaviour of a [`CpuTarget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuOptions {
    /// Copy threads ("DMA engines"); at least 1.
    pub engines: usize,
    /// Each copy sleeps a delay drawn uniformly from this range (milliseconds) first.
    pub delay_ms: Option<(u64, u64)>,
    /// Seed of the delays.
    pub seed: u64,
    /// Fail the copy with this sequence number (0-based, counted over the target's life).
    pub fail_copy: Option<u64>,
    /// Device allocations larger than this fail with [`GpuError::OutOfMemory`].
    pub device_limit: Option<u64>,
    /// Completion-order constraint.
    pub gate: Gate,
}

impl Default for CpuOptions {
    fn default() -> Self {
        CpuOptions {
            engines: 2,
            delay_ms: None,
            seed: 1,
            fail_copy: None,
            device_limit: None,
            gate: Gate::None,
        }
    }
}

/// What the target observed (for tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Copies submitted.
    pub copies: u64,
    /// Most copies submitted and not yet completed at once.
    pub max_in_flight: u64,
    /// Whether some copy completed before an earlier-submitted one.
    pub out_of_order: bool,
    /// Gated copies that gave up waiting (a pipeline that does not overlap).
    pub gate_timeouts: u64,
    /// Device bytes currently allocated.
    pub live_device_bytes: u64,
    /// The highest device offset any successful copy wrote up to (end of its range), over
    /// the target's life: a test's check that no byte past a point was ever sent.
    pub max_copied_end: u64,
}

#[derive(Debug, Default)]
struct State {
    submitted: u64,
    in_flight: u64,
    max_in_flight: u64,
    completed: BTreeSet<u64>,
    max_completed: Option<u64>,
    out_of_order: bool,
    gate_timeouts: u64,
    max_copied_end: u64,
}

#[derive(Debug)]
struct Shared {
    opts: CpuOptions,
    state: Mutex<State>,
    cv: Condvar,
    live: AtomicU64,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means an engine panicked mid-update; the counters are still
        // meaningful for a test.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Simulated device memory of one allocation; its size leaves the live count on drop.
#[derive(Debug)]
struct DevMem {
    bytes: Mutex<Vec<u8>>,
    shared: Arc<Shared>,
}

impl Drop for DevMem {
    fn drop(&mut self) {
        let n = self.bytes.get_mut().map_or(0, |v| v.len() as u64);
        self.shared.live.fetch_sub(n, Ordering::SeqCst);
    }
}

/// One "device" allocation of the CPU target.
#[derive(Debug)]
pub struct CpuDevice {
    mem: Arc<DevMem>,
    len: u64,
}

impl CpuDevice {
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

    /// A copy of the whole contents (waits for nothing: call after the load returned).
    #[must_use]
    pub fn to_vec(&self) -> Vec<u8> {
        self.mem.bytes.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Flips one byte (tests of the device-copy check).
    pub fn corrupt(&self, offset: u64) {
        if let Ok(mut v) = self.mem.bytes.lock()
            && let Some(b) = usize::try_from(offset).ok().and_then(|o| v.get_mut(o))
        {
            *b ^= 0xff;
        }
    }
}

/// A pageable host buffer of the CPU target.
#[derive(Debug)]
pub struct CpuStaging(Vec<u8>);

impl Staging for CpuStaging {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn bytes_mut(&mut self) -> Result<&mut [u8], GpuError> {
        Ok(&mut self.0)
    }

    fn is_pinned(&self) -> bool {
        false
    }
}

/// An in-flight copy of the CPU target. Dropping it is safe: the engine owns the buffer
/// until the copy is done and then drops it.
#[derive(Debug)]
pub struct CpuTicket {
    done: Receiver<Result<CpuStaging, GpuError>>,
    offset: u64,
}

struct Job {
    mem: Arc<DevMem>,
    offset: u64,
    len: usize,
    buf: CpuStaging,
    seq: u64,
    last: bool,
    done: SyncSender<Result<CpuStaging, GpuError>>,
}

/// The CPU copy target. Engines stop when it is dropped.
#[derive(Debug)]
pub struct CpuTarget {
    shared: Arc<Shared>,
    jobs: Mutex<Option<Sender<Job>>>,
    engines: Vec<JoinHandle<()>>,
}

impl CpuTarget {
    /// Starts the engines.
    ///
    /// # Errors
    /// [`GpuError::Options`] if a thread cannot be started.
    pub fn new(opts: CpuOptions) -> Result<Self, GpuError> {
        let shared = Arc::new(Shared {
            opts,
            state: Mutex::new(State::default()),
            cv: Condvar::new(),
            live: AtomicU64::new(0),
        });
        let (tx, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let mut engines = Vec::new();
        for i in 0..opts.engines.max(1) {
            let rx = Arc::clone(&rx);
            let sh = Arc::clone(&shared);
            let h = std::thread::Builder::new()
                .name(format!("cpu-dma-{i}"))
                .spawn(move || engine(&sh, &rx))
                .map_err(|e| GpuError::Options(format!("cannot start a copy thread: {e}")))?;
            engines.push(h);
        }
        Ok(CpuTarget {
            shared,
            jobs: Mutex::new(Some(tx)),
            engines,
        })
    }

    /// What the target observed so far.
    #[must_use]
    pub fn stats(&self) -> CpuStats {
        let st = self.shared.state();
        CpuStats {
            copies: st.submitted,
            max_in_flight: st.max_in_flight,
            out_of_order: st.out_of_order,
            gate_timeouts: st.gate_timeouts,
            live_device_bytes: self.shared.live.load(Ordering::SeqCst),
            max_copied_end: st.max_copied_end,
        }
    }

    /// Device bytes currently allocated.
    #[must_use]
    pub fn live_device_bytes(&self) -> u64 {
        self.shared.live.load(Ordering::SeqCst)
    }
}

impl Drop for CpuTarget {
    fn drop(&mut self) {
        if let Ok(mut j) = self.jobs.lock() {
            j.take();
        }
        for h in self.engines.drain(..) {
            let _ = h.join();
        }
    }
}

/// A reproducible delay for copy `seq` (splitmix64 of seed and seq).
fn delay_for(opts: &CpuOptions, seq: u64) -> Option<Duration> {
    let (lo, hi) = opts.delay_ms?;
    let mut z = opts.seed ^ seq.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    let span = hi.saturating_sub(lo) + 1;
    Some(Duration::from_millis(lo + z % span))
}

fn engine(sh: &Shared, rx: &Mutex<Receiver<Job>>) {
    loop {
        let job = match rx.lock() {
            Ok(r) => match r.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if let Some(d) = delay_for(&sh.opts, job.seq) {
            std::thread::sleep(d);
        }
        gate(sh, &job);
        let result = if sh.opts.fail_copy == Some(job.seq) {
            Err(GpuError::Copy {
                offset: job.offset,
                reason: "injected fault (CPU target)".into(),
            })
        } else {
            copy(&job)
        };
        {
            let mut st = sh.state();
            st.in_flight = st.in_flight.saturating_sub(1);
            if st.max_completed.is_some_and(|m| m > job.seq) {
                st.out_of_order = true;
            }
            st.max_completed = Some(st.max_completed.map_or(job.seq, |m| m.max(job.seq)));
            st.completed.insert(job.seq);
            if result.is_ok() {
                st.max_copied_end = st.max_copied_end.max(job.offset + job.len as u64);
            }
        }
        sh.cv.notify_all();
        // Let go of the device memory before reporting completion, as a finished DMA does:
        // a caller that frees the device right after `wait` sees it freed at once.
        let Job { mem, buf, done, .. } = job;
        drop(mem);
        let _ = done.send(result.map(|()| buf));
    }
}

/// Blocks until the gate lets `job` complete, or the timeout passes (counted).
fn gate(sh: &Shared, job: &Job) {
    let ready = |st: &State| match sh.opts.gate {
        Gate::None => true,
        Gate::NextSubmitted => job.last || st.submitted > job.seq + 1,
        Gate::ReversePairs => job.last || job.seq % 2 == 1 || st.completed.contains(&(job.seq + 1)),
    };
    let deadline = Instant::now() + GATE_TIMEOUT;
    let mut st = sh.state();
    while !ready(&st) {
        let now = Instant::now();
        if now >= deadline {
            st.gate_timeouts += 1;
            return;
        }
        st = match sh.cv.wait_timeout(st, deadline - now) {
            Ok((g, _)) => g,
            Err(p) => p.into_inner().0,
        };
    }
}

fn copy(job: &Job) -> Result<(), GpuError> {
    let bad = |reason: &str| GpuError::Copy {
        offset: job.offset,
        reason: reason.into(),
    };
    let src = job
        .buf
        .0
        .get(..job.len)
        .ok_or_else(|| bad("longer than the staging buffer"))?;
    let mut mem = job
        .mem
        .bytes
        .lock()
        .map_err(|_| bad("device lock poisoned"))?;
    let start = usize::try_from(job.offset).map_err(|_| bad("offset out of range"))?;
    let dst = start
        .checked_add(job.len)
        .and_then(|end| mem.get_mut(start..end))
        .ok_or_else(|| bad("past the end of the device buffer"))?;
    dst.copy_from_slice(src);
    Ok(())
}

impl CopyTarget for CpuTarget {
    type Staging = CpuStaging;
    type Device = CpuDevice;
    type Ticket = CpuTicket;

    fn info(&self) -> TargetInfo {
        TargetInfo {
            kind: "cpu",
            name: format!(
                "cpu (simulated device, {} copy thread(s))",
                self.shared.opts.engines.max(1)
            ),
            ordinal: 0,
            total_mem: self.shared.opts.device_limit,
            driver: None,
        }
    }

    fn alloc_staging(&self, len: usize) -> Result<CpuStaging, GpuError> {
        Ok(CpuStaging(vec![0u8; len]))
    }

    fn alloc_device(&self, len: u64) -> Result<CpuDevice, GpuError> {
        if self.shared.opts.device_limit.is_some_and(|l| len > l) {
            return Err(GpuError::OutOfMemory { bytes: len });
        }
        let n = usize::try_from(len).map_err(|_| GpuError::OutOfMemory { bytes: len })?;
        let mut v = Vec::new();
        v.try_reserve_exact(n)
            .map_err(|_| GpuError::OutOfMemory { bytes: len })?;
        v.resize(n, 0);
        self.shared.live.fetch_add(len, Ordering::SeqCst);
        Ok(CpuDevice {
            mem: Arc::new(DevMem {
                bytes: Mutex::new(v),
                shared: Arc::clone(&self.shared),
            }),
            len,
        })
    }

    fn submit_copy(
        &self,
        dev: &mut CpuDevice,
        offset: u64,
        buf: CpuStaging,
        len: usize,
    ) -> Result<CpuTicket, GpuError> {
        let end = offset.checked_add(len as u64);
        if len > buf.0.len() || end.is_none_or(|e| e > dev.len) {
            return Err(GpuError::Copy {
                offset,
                reason: format!("{len} bytes do not fit the staging or device buffer"),
            });
        }
        let seq = {
            let mut st = self.shared.state();
            let seq = st.submitted;
            st.submitted += 1;
            st.in_flight += 1;
            st.max_in_flight = st.max_in_flight.max(st.in_flight);
            seq
        };
        self.shared.cv.notify_all();
        let (done, rx) = mpsc::sync_channel(1);
        let job = Job {
            mem: Arc::clone(&dev.mem),
            offset,
            len,
            buf,
            seq,
            last: end == Some(dev.len),
            done,
        };
        let sent = self
            .jobs
            .lock()
            .ok()
            .and_then(|j| j.as_ref().map(|tx| tx.send(job).is_ok()));
        if sent != Some(true) {
            return Err(GpuError::Copy {
                offset,
                reason: "the copy threads have stopped".into(),
            });
        }
        Ok(CpuTicket { done: rx, offset })
    }

    fn wait(&self, ticket: CpuTicket) -> Result<CpuStaging, GpuError> {
        ticket.done.recv().unwrap_or_else(|_| {
            Err(GpuError::Copy {
                offset: ticket.offset,
                reason: "a copy thread stopped".into(),
            })
        })
    }

    fn read_back(&self, dev: &CpuDevice, offset: u64, out: &mut [u8]) -> Result<(), GpuError> {
        let bad = || GpuError::Copy {
            offset,
            reason: "read back past the end of the device buffer".into(),
        };
        let mem = dev.mem.bytes.lock().map_err(|_| bad())?;
        let start = usize::try_from(offset).map_err(|_| bad())?;
        let src = start
            .checked_add(out.len())
            .and_then(|e| mem.get(start..e))
            .ok_or_else(bad)?;
        out.copy_from_slice(src);
        Ok(())
    }
}
