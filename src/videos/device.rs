//! [`OnDemand`]: the one owner of whether the [`Generator`] (GPU device, kernels, cached
//! looks, probed encoder) is open. It opens on the first job and closes once no job has held
//! it for `DEVICE_IDLE_RELEASE`; then the freed heap goes back to the system and so do the
//! code pages of the device's libraries (LLVM stays mapped for good once lavapipe loaded it:
//! ~45 MB resident). A quiet server keeps no device memory, no compiled kernels and no
//! render buffers resident. The next job opens it again (well under a second on lavapipe;
//! the looks are rendered again on first use).
//!
//! Jobs hold a [`Lease`] while they render; a background thread closes the generator when the
//! last lease has been gone for the idle period. Opening happens under the slot's lock, so
//! two jobs starting together open one device, not two.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Condvar, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::render::media::LiveChunk;
use crate::render::pipeline::{GenerateError, Generator, JobHandle, JobSpec, Progress};

type Open = dyn Fn() -> Result<Generator, GenerateError> + Send + Sync;

pub struct OnDemand {
    inner: Arc<Inner>,
}

struct Inner {
    open: Box<Open>,
    slot: Mutex<Slot>,
    changed: Condvar,
    /// `None`: never closed.
    idle: Option<Duration>,
}

struct Slot {
    generator: Option<Arc<Generator>>,
    leases: usize,
    /// When the last lease ended (or the generator opened).
    since: Instant,
    opened: u64,
}

/// A job's hold on the open generator; dropping it starts the idle clock once it was the last.
pub struct Lease {
    generator: Arc<Generator>,
    inner: Arc<Inner>,
}

impl std::ops::Deref for Lease {
    type Target = Generator;
    fn deref(&self) -> &Generator {
        &self.generator
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.inner.slot.lock() {
            slot.leases = slot.leases.saturating_sub(1);
            slot.since = Instant::now();
        }
        self.inner.changed.notify_all();
    }
}

impl OnDemand {
    /// `open` makes a generator; `idle` (zero: never) is how long it stays open unused.
    pub fn new(
        open: impl Fn() -> Result<Generator, GenerateError> + Send + Sync + 'static,
        idle: Duration,
    ) -> Self {
        let inner = Arc::new(Inner {
            open: Box::new(open),
            slot: Mutex::new(Slot {
                generator: None,
                leases: 0,
                since: Instant::now(),
                opened: 0,
            }),
            changed: Condvar::new(),
            idle: (!idle.is_zero()).then_some(idle),
        });
        if let Some(idle) = inner.idle {
            let weak = Arc::downgrade(&inner);
            let spawned = std::thread::Builder::new()
                .name("reelgen-device-idle".into())
                .spawn(move || close_when_idle(&weak, idle));
            if let Err(e) = spawned {
                tracing::warn!(error = %e, "no idle-release thread: the device stays open");
            }
        }
        Self { inner }
    }

    /// The generator, opened now if it is closed (blocking: call it off the async workers).
    pub fn acquire(&self) -> Result<Lease, GenerateError> {
        let mut slot = self
            .inner
            .slot
            .lock()
            .map_err(|_| GenerateError::Thread("the device slot is poisoned".into()))?;
        let generator = match &slot.generator {
            Some(g) => g.clone(),
            None => {
                let g = Arc::new((self.inner.open)()?);
                slot.generator = Some(g.clone());
                slot.opened += 1;
                tracing::info!(device = %g.gpu().describe(), "render device opened");
                g
            }
        };
        slot.leases += 1;
        Ok(Lease {
            generator,
            inner: self.inner.clone(),
        })
    }

    /// Whether the generator is open now.
    pub fn is_open(&self) -> bool {
        self.inner.slot.lock().is_ok_and(|s| s.generator.is_some())
    }

    /// How many times the generator has been opened.
    pub fn times_opened(&self) -> u64 {
        self.inner.slot.lock().map_or(0, |s| s.opened)
    }

    /// Runs a job on its own thread: the generator is acquired there (opened if need be), so
    /// a failure to open fails the job like any render error.
    pub fn spawn_with(
        &self,
        spec: JobSpec,
        cancel: Arc<AtomicBool>,
        mut on_progress: impl FnMut(&Progress) + Send + 'static,
        mut on_live: impl FnMut(LiveChunk) + Send + 'static,
    ) -> JobHandle {
        let me = Self {
            inner: self.inner.clone(),
        };
        JobHandle::spawn(cancel, move |flag| {
            let lease = me.acquire()?;
            lease.run(&spec, flag, &mut on_progress, &mut on_live)
        })
    }
}

/// The idle-release loop: wakes when a lease ends (or every second) and closes the
/// generator once it has gone unused for `idle`; ends with the [`OnDemand`].
fn close_when_idle(inner: &Weak<Inner>, idle: Duration) {
    // The device's last handles go with threads that end just after the close: trim once
    // more on the next wake-up for what they free.
    let mut trim_again = false;
    loop {
        let Some(inner) = inner.upgrade() else { return };
        let closing = {
            let Ok(slot) = inner.slot.lock() else { return };
            let Ok((mut slot, _)) = inner.changed.wait_timeout(slot, Duration::from_secs(1)) else {
                return;
            };
            if slot.leases == 0 && slot.generator.is_some() && slot.since.elapsed() >= idle {
                slot.generator.take()
            } else {
                None
            }
        };
        if std::mem::take(&mut trim_again) {
            crate::platform::memory::release_free_memory();
            crate::platform::memory::page_out_libraries(crate::platform::memory::RENDER_LIBRARIES);
        }
        if let Some(generator) = closing {
            trim_again = true;
            // The scheduler thread is stopped and joined: the device is closed on return.
            drop(generator);
            crate::platform::memory::release_free_memory();
            tracing::info!(
                idle_s = idle.as_secs_f64(),
                "render device closed after the idle period"
            );
        }
    }
}
