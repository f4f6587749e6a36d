//! The GPU scheduler: the one owner of the device's work queue.
//!
//! It is an actor in the hub style (a thread owning its state behind a command channel with
//! one-shot replies), not an actix actor: it must run without an actix system for `reelgen
//! generate`, and GPU submission belongs on its own thread, never on an HTTP worker.
//! Messages ([`Command`]):
//! - `Open` — a job's look and size: the static layers come from the LRU model cache
//!   (`MODEL_CACHE_SIZE` looks resident; a hit skips rendering them), the job gets a
//!   [`Target`] of its own; replies with the job's handle.
//! - `Render` — a batch of a job's frames and the buffers to read their patches into (only
//!   the head and caption boxes change between frames); replies with the filled buffers
//!   once the device is done. The job applies each patch to a copy of the static frame.
//! - `Close` — the job ended (sent when its [`JobRenderer`] drops); its buffers are freed.
//!
//! Scheduling: requests wait per job; each round takes the oldest batch of every job that has
//! one (round-robin, so a long job cannot starve a short one), records all of them into one
//! command buffer, submits once, waits, and hands each job its frames. So concurrent jobs
//! share submissions (cross-job batching) and a job never has more than its batch in device
//! memory. Frames per batch are auto-tuned (`BATCH_SIZE_AUTO_TUNE`): doubled from 1 while
//! the measured device time per frame falls by at least 3 %, never past what
//! `GPU_MEMORY_FRACTION` of the device memory allows for the running jobs; otherwise fixed.
//! [`SchedulerStats`] reports utilisation (busy time), batch efficiency (frames per
//! submission against what the running jobs could have filled) and the model cache hit rate.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::target::Rendered;
use super::{FrameRequest, Gpu, GpuError, Layout, Model, ModelKey, PatchGeometry, Style, Target};
use crate::render::media::PooledFrame;
use crate::render::timeline::script::FrameParams;

/// The most frames one job puts in one submission.
pub const MAX_BATCH: usize = 8;
/// The most bytes of patches (staging and job buffers together) one job's batch holds.
pub const BATCH_BYTES: u64 = 16 * 1024 * 1024;
/// Rounds measured at one batch size before the tuner compares.
const TUNE_ROUNDS: u32 = 6;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// Bytes of device memory the scheduler may fill with job buffers and cached models.
    pub memory_budget: u64,
    /// Looks (static layers) kept resident.
    pub model_cache_size: usize,
    pub auto_tune: bool,
    /// Frames per batch when not tuning (and the ceiling when tuning).
    pub batch_size: usize,
    /// Draw eyes and mouth over their whole boxes instead of where they can touch (the
    /// same pixels, more work: the reference a test checks the extents against).
    pub whole_feature_boxes: bool,
}

impl SchedulerConfig {
    /// `fraction` of the device's memory: on a CPU device (lavapipe) that memory is the
    /// machine's, so the budget is a share of `host_memory`; a real GPU's is not exposed
    /// portably by wgpu, so its budget is the share of the largest buffer it allows times 4.
    pub fn new(
        gpu: &Gpu,
        fraction: f64,
        model_cache_size: usize,
        auto_tune: bool,
        host_memory: u64,
    ) -> Self {
        let device_memory = if gpu.is_cpu() {
            host_memory
        } else {
            gpu.device.limits().max_buffer_size.saturating_mul(4)
        };
        Self {
            memory_budget: (device_memory as f64 * fraction.clamp(0.0, 1.0)) as u64,
            model_cache_size: model_cache_size.max(1),
            auto_tune,
            batch_size: MAX_BATCH,
            whole_feature_boxes: false,
        }
    }
}

/// Counters the scheduler keeps; read by the analytics and the benchmarks.
#[derive(Debug, Default)]
pub struct SchedulerStats {
    pub submissions: AtomicU64,
    /// Submissions that held batches of more than one job.
    pub shared_submissions: AtomicU64,
    pub frames: AtomicU64,
    /// Frames the rounds could have held: Σ over rounds of the running jobs' batch sizes.
    pub capacity: AtomicU64,
    pub busy_ns: AtomicU64,
    pub model_hits: AtomicU64,
    pub model_misses: AtomicU64,
    pub jobs_open: AtomicUsize,
    pub models_resident: AtomicUsize,
    /// Frames per batch the tuner settled on (or is trying).
    pub batch_size: AtomicUsize,
    /// Bytes of device memory in job buffers and cached models.
    pub device_bytes: AtomicU64,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct StatsSnapshot {
    pub submissions: u64,
    pub shared_submissions: u64,
    pub frames: u64,
    pub frames_per_submission: f64,
    /// Frames submitted ÷ frames the running jobs could have submitted in those rounds.
    pub batch_efficiency: Option<f64>,
    pub busy_s: f64,
    pub model_cache_hit_rate: Option<f64>,
    pub model_hits: u64,
    pub model_misses: u64,
    pub jobs_open: usize,
    pub models_resident: usize,
    pub batch_size: usize,
    pub device_bytes: u64,
}

impl SchedulerStats {
    pub fn snapshot(&self) -> StatsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let (subs, frames, cap) = (l(&self.submissions), l(&self.frames), l(&self.capacity));
        let (hits, misses) = (l(&self.model_hits), l(&self.model_misses));
        StatsSnapshot {
            submissions: subs,
            shared_submissions: l(&self.shared_submissions),
            frames,
            frames_per_submission: if subs == 0 {
                0.0
            } else {
                frames as f64 / subs as f64
            },
            batch_efficiency: (cap > 0).then(|| frames as f64 / cap as f64),
            busy_s: l(&self.busy_ns) as f64 / 1e9,
            model_cache_hit_rate: (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64),
            model_hits: hits,
            model_misses: misses,
            jobs_open: self.jobs_open.load(Ordering::Relaxed),
            models_resident: self.models_resident.load(Ordering::Relaxed),
            batch_size: self.batch_size.load(Ordering::Relaxed),
            device_bytes: l(&self.device_bytes),
        }
    }
}

/// What a job renders: its look, size, rest pose and caption box.
#[derive(Debug, Clone)]
pub struct OpenJob {
    pub style: Style,
    pub width: u32,
    pub height: u32,
    pub rest: FrameParams,
    pub captions: Option<[u32; 4]>,
}

type Reply<T> = mpsc::SyncSender<T>;

/// The scheduler's answer to `Open`.
pub struct Opened {
    id: u64,
    layout: Layout,
    geometry: PatchGeometry,
    static_frame: Arc<[u8]>,
    batch: Arc<AtomicUsize>,
}
type Frames = Result<Vec<Rendered>, GpuError>;

/// The scheduler's messages.
pub enum Command {
    Open(Box<OpenJob>, Reply<Opened>),
    Render {
        job: u64,
        frames: Vec<FrameRequest>,
        out: Vec<PooledFrame>,
        reply: Reply<Frames>,
    },
    Close(u64),
    /// The last [`GpuScheduler`] handle is gone: drop every job and the device, then end.
    Stop,
}

/// The handle jobs use; cheap to clone.
#[derive(Clone)]
pub struct GpuScheduler {
    tx: mpsc::Sender<Command>,
    stats: Arc<SchedulerStats>,
    gpu: Arc<Gpu>,
    _thread: Arc<Joined>,
}

/// The scheduler thread, stopped and joined when the last handle is dropped, so the device
/// is destroyed before whoever dropped it goes on. A thread still destroying its Vulkan
/// device while the process exits makes NVIDIA's driver abort (`free(): invalid pointer`
/// in `vkDestroyDevice`, seen on an H200 at the end of every `reelgen-bench generate`).
struct Joined {
    tx: mpsc::Sender<Command>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Joined {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl GpuScheduler {
    /// Starts the scheduler thread; `busy_ns` also receives its device time, and `stats` its
    /// counters (cumulative ones go on from where an earlier scheduler left them).
    pub fn start(
        gpu: Arc<Gpu>,
        config: SchedulerConfig,
        busy_ns: Arc<AtomicU64>,
        stats: Arc<SchedulerStats>,
        lowered: bool,
    ) -> Self {
        let (tx, rx) = mpsc::channel();
        let initial = if config.auto_tune {
            1
        } else {
            config.batch_size.clamp(1, MAX_BATCH)
        };
        stats.batch_size.store(initial, Ordering::Relaxed);
        let mut core = Core {
            gpu: gpu.clone(),
            config,
            stats: stats.clone(),
            busy_ns,
            models: Lru::default(),
            jobs: HashMap::new(),
            order: VecDeque::new(),
            next_id: 1,
            tuner: Tuner::new(initial),
        };
        let spawned = std::thread::Builder::new()
            .name("reelgen-gpu".into())
            .spawn(move || {
                if lowered {
                    crate::render::priority::lower_this_thread();
                }
                core.run(&rx);
                // Every handle is gone: the device closes with the core; nothing is resident.
                for gauge in [&core.stats.jobs_open, &core.stats.models_resident] {
                    gauge.store(0, Ordering::Relaxed);
                }
                core.stats.device_bytes.store(0, Ordering::Relaxed);
            });
        let thread = spawned
            .inspect_err(|e| tracing::error!(error = %e, "cannot start the GPU scheduler thread"))
            .ok();
        let joined = Arc::new(Joined {
            tx: tx.clone(),
            thread,
        });
        Self {
            tx,
            stats,
            gpu,
            _thread: joined,
        }
    }

    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    pub fn stats(&self) -> &Arc<SchedulerStats> {
        &self.stats
    }

    /// Registers a job (blocking until its static layers exist).
    pub fn open(&self, job: OpenJob) -> Result<JobRenderer, GpuError> {
        let frame_bytes = job.width as usize * job.height as usize * 4;
        let (reply, rx) = mpsc::sync_channel(1);
        self.tx
            .send(Command::Open(Box::new(job), reply))
            .map_err(|_| stopped())?;
        let o = rx.recv().map_err(|_| stopped())?;
        Ok(JobRenderer {
            id: o.id,
            tx: self.tx.clone(),
            layout: o.layout,
            geometry: o.geometry,
            static_frame: o.static_frame,
            frame_bytes,
            batch: o.batch,
        })
    }
}

fn stopped() -> GpuError {
    GpuError::Device("the GPU scheduler has stopped".into())
}

/// One job's side of the scheduler. Dropping it frees the job's device buffers.
pub struct JobRenderer {
    id: u64,
    tx: mpsc::Sender<Command>,
    layout: Layout,
    geometry: PatchGeometry,
    static_frame: Arc<[u8]>,
    frame_bytes: usize,
    batch: Arc<AtomicUsize>,
}

/// A batch on its way; [`Ticket::wait`] gives the rendered frames.
pub struct Ticket(mpsc::Receiver<Frames>);

impl Ticket {
    pub fn wait(self) -> Frames {
        self.0.recv().map_err(|_| stopped())?
    }
}

impl JobRenderer {
    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    /// Where a patch goes in a frame.
    pub fn geometry(&self) -> PatchGeometry {
        self.geometry
    }

    pub fn patch_bytes(&self) -> usize {
        self.geometry.bytes()
    }

    /// The look's static frame: new frame buffers start as a copy of it.
    pub fn static_frame(&self) -> Arc<[u8]> {
        self.static_frame.clone()
    }

    /// Frames this job should put in its next batch (tuned and memory-capped).
    pub fn batch_size(&self) -> usize {
        self.batch.load(Ordering::Relaxed).max(1)
    }

    /// Queues a batch (`out` holds one patch buffer per frame); returns at once.
    pub fn submit(&self, frames: Vec<FrameRequest>, out: Vec<PooledFrame>) -> Ticket {
        let (reply, rx) = mpsc::sync_channel(1);
        let sent = self.tx.send(Command::Render {
            job: self.id,
            frames,
            out,
            reply,
        });
        if let Err(mpsc::SendError(Command::Render { reply, .. })) = sent {
            let _ = reply.send(Err(stopped()));
        }
        Ticket(rx)
    }

    /// Renders a batch and waits for it.
    pub fn render(&self, frames: Vec<FrameRequest>, out: Vec<PooledFrame>) -> Frames {
        self.submit(frames, out).wait()
    }
}

impl Drop for JobRenderer {
    fn drop(&mut self) {
        let _ = self.tx.send(Command::Close(self.id));
    }
}

struct Job {
    target: Target,
    pending: VecDeque<(Vec<FrameRequest>, Vec<PooledFrame>, Reply<Frames>)>,
    batch: Arc<AtomicUsize>,
}

struct Core {
    gpu: Arc<Gpu>,
    config: SchedulerConfig,
    stats: Arc<SchedulerStats>,
    busy_ns: Arc<AtomicU64>,
    models: Lru,
    jobs: HashMap<u64, Job>,
    /// Round-robin order of the open jobs.
    order: VecDeque<u64>,
    next_id: u64,
    tuner: Tuner,
}

impl Core {
    /// Serves commands until [`Command::Stop`] (or every sender is gone).
    fn run(&mut self, rx: &mpsc::Receiver<Command>) {
        while let Ok(cmd) = rx.recv() {
            if !self.handle(cmd) {
                return;
            }
            // Take everything that arrived meanwhile, so one round sees every ready job.
            while let Ok(cmd) = rx.try_recv() {
                if !self.handle(cmd) {
                    return;
                }
            }
            while self.jobs.values().any(|j| !j.pending.is_empty()) {
                self.round();
                while let Ok(cmd) = rx.try_recv() {
                    if !self.handle(cmd) {
                        return;
                    }
                }
            }
        }
    }

    /// One command; false on [`Command::Stop`].
    fn handle(&mut self, cmd: Command) -> bool {
        match cmd {
            Command::Stop => return false,
            Command::Open(job, reply) => {
                let t = Instant::now();
                let key = ModelKey::new(&job.style, job.width, job.height, &job.rest);
                let model = match self.models.get(&key) {
                    Some(m) => {
                        self.stats.model_hits.fetch_add(1, Ordering::Relaxed);
                        m
                    }
                    None => {
                        self.stats.model_misses.fetch_add(1, Ordering::Relaxed);
                        let m = Arc::new(Model::build(
                            &self.gpu, job.style, job.width, job.height, &job.rest,
                        ));
                        self.models
                            .put(key, m.clone(), self.config.model_cache_size);
                        m
                    }
                };
                self.stats
                    .models_resident
                    .store(self.models.len(), Ordering::Relaxed);
                let layout = model.layout;
                let static_frame = model.frame.clone();
                let mut target = Target::new(
                    &self.gpu,
                    model,
                    job.style,
                    job.width,
                    job.height,
                    &job.rest,
                    job.captions,
                );
                target.whole_boxes = self.config.whole_feature_boxes;
                let geometry = target.geometry();
                let id = self.next_id;
                self.next_id += 1;
                let batch = Arc::new(AtomicUsize::new(1));
                self.jobs.insert(
                    id,
                    Job {
                        target,
                        pending: VecDeque::new(),
                        batch: batch.clone(),
                    },
                );
                self.order.push_back(id);
                self.add_busy(t.elapsed());
                self.rebalance();
                let _ = reply.send(Opened {
                    id,
                    layout,
                    geometry,
                    static_frame,
                    batch,
                });
            }
            Command::Render {
                job,
                frames,
                out,
                reply,
            } => match self.jobs.get_mut(&job) {
                Some(j) => j.pending.push_back((frames, out, reply)),
                None => {
                    let _ = reply.send(Err(GpuError::Device("job is not open".into())));
                }
            },
            Command::Close(id) => {
                if let Some(j) = self.jobs.remove(&id) {
                    for (_, _, reply) in j.pending {
                        let _ = reply.send(Err(GpuError::Device("job closed".into())));
                    }
                }
                self.order.retain(|&j| j != id);
                self.rebalance();
            }
        }
        true
    }

    /// Batch sizes for the running jobs. The tuner's size is frames per submission; a
    /// round takes a batch from every job, so each of n jobs gets 1/n of it (rounded up):
    /// the submission stays as large and each job holds fewer frames in flight. Each is
    /// also capped by the job's share of the memory budget (after the cached models).
    fn rebalance(&mut self) {
        let models: u64 = self.models.bytes();
        let n = self.jobs.len().max(1);
        let share = self.config.memory_budget.saturating_sub(models) / n as u64;
        let wanted = self
            .tuner
            .size
            .min(self.config.batch_size)
            .clamp(1, MAX_BATCH);
        let per_job = wanted.div_ceil(n);
        let mut bytes = models;
        for j in self.jobs.values_mut() {
            // A batch frame lives twice: its staging buffer here and the job's patch buffer.
            let per_frame = 2 * j.target.patch_bytes() as u64;
            // And a batch never holds more than BATCH_BYTES of patches: larger batches save
            // nothing measurable per frame, and a 1080p job would hold ~45 MB of them at 8.
            let cap = (share.min(BATCH_BYTES) / per_frame.max(1)).max(1) as usize;
            let batch = per_job.min(cap);
            j.batch.store(batch, Ordering::Relaxed);
            j.target.trim(batch);
            bytes += j.target.bytes();
        }
        self.stats.batch_size.store(wanted, Ordering::Relaxed);
        self.stats
            .jobs_open
            .store(self.jobs.len(), Ordering::Relaxed);
        self.stats.device_bytes.store(bytes, Ordering::Relaxed);
    }

    /// One submission: the oldest batch of every job that has one, in round-robin order.
    fn round(&mut self) {
        let t = Instant::now();
        let mut enc = self.gpu.device.create_command_encoder(&Default::default());
        let mut taken = Vec::new();
        let mut capacity = 0u64;
        for _ in 0..self.order.len() {
            let Some(id) = self.order.pop_front() else {
                break;
            };
            self.order.push_back(id);
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            capacity += job.batch.load(Ordering::Relaxed) as u64;
            if let Some((frames, out, reply)) = job.pending.pop_front() {
                let n = frames.len().min(out.len());
                job.target.encode(&self.gpu, &mut enc, &frames[..n]);
                taken.push((id, out, reply, n));
            }
        }
        if taken.is_empty() {
            return;
        }
        let idx = self.gpu.queue.submit([enc.finish()]);
        for (id, ..) in &taken {
            if let Some(j) = self.jobs.get(id) {
                j.target.map();
            }
        }
        let waited = self
            .gpu
            .device
            .poll(wgpu::PollType::Wait {
                submission_index: Some(idx),
                timeout: None,
            })
            .map_err(|e| GpuError::Readback(e.to_string()));
        let mut frames = 0u64;
        let mut replies = Vec::with_capacity(taken.len());
        for (id, mut out, reply, n) in taken {
            let result = match (&waited, self.jobs.get_mut(&id)) {
                (Err(e), job) => {
                    if let Some(j) = job {
                        j.target.abandon();
                    }
                    Err(GpuError::Readback(e.to_string()))
                }
                (Ok(_), Some(j)) => {
                    out.truncate(n);
                    j.target.read(out)
                }
                (Ok(_), None) => Err(GpuError::Device("job closed".into())),
            };
            frames += n as u64;
            replies.push((reply, result));
        }
        let spent = t.elapsed();
        self.add_busy(spent);
        // Counters first, replies after: a job that has its frames sees them counted.
        self.stats.submissions.fetch_add(1, Ordering::Relaxed);
        if replies.len() > 1 {
            self.stats
                .shared_submissions
                .fetch_add(1, Ordering::Relaxed);
        }
        self.stats.frames.fetch_add(frames, Ordering::Relaxed);
        self.stats
            .capacity
            .fetch_add(capacity.max(frames), Ordering::Relaxed);
        for (reply, result) in replies {
            let _ = reply.send(result);
        }
        if self.config.auto_tune && self.tuner.record(spent, frames, capacity) {
            self.rebalance();
        }
    }

    fn add_busy(&self, d: Duration) {
        let ns = d.as_nanos() as u64;
        self.stats.busy_ns.fetch_add(ns, Ordering::Relaxed);
        self.busy_ns.fetch_add(ns, Ordering::Relaxed);
    }
}

/// Hill-climbing batch size: measure device time per frame over a few full rounds at each
/// size; double while it improves by ≥ 3 %, settle on the best once it does not.
struct Tuner {
    size: usize,
    settled: bool,
    rounds: u32,
    spent: Duration,
    frames: u64,
    /// Per-frame cost at the previous size.
    previous: Option<(usize, f64)>,
}

impl Tuner {
    fn new(size: usize) -> Self {
        Self {
            size,
            settled: false,
            rounds: 0,
            spent: Duration::ZERO,
            frames: 0,
            previous: None,
        }
    }

    /// Records a round; `true` when the size changed. Only full rounds count (a job's last
    /// short batch says nothing about the size).
    fn record(&mut self, spent: Duration, frames: u64, capacity: u64) -> bool {
        if self.settled || frames == 0 || frames < capacity {
            return false;
        }
        self.rounds += 1;
        self.spent += spent;
        self.frames += frames;
        if self.rounds < TUNE_ROUNDS {
            return false;
        }
        let cost = self.spent.as_secs_f64() / self.frames as f64;
        let (size, best) = match self.previous {
            Some((s, c)) if cost > c * 0.97 => {
                // No better than half the batch: go back to it and stay.
                self.settled = true;
                (s, c)
            }
            _ if self.size >= MAX_BATCH => {
                self.settled = true;
                (self.size, cost)
            }
            _ => (self.size * 2, cost),
        };
        tracing::debug!(
            from = self.size,
            to = size,
            per_frame_ms = best * 1e3,
            "batch size tuned"
        );
        self.previous = Some((self.size, cost));
        let changed = size != self.size;
        self.size = size;
        self.rounds = 0;
        self.spent = Duration::ZERO;
        self.frames = 0;
        changed
    }
}

/// A small LRU of models by key (the cache holds few, so a list is enough).
#[derive(Default)]
struct Lru {
    entries: VecDeque<(ModelKey, Arc<Model>)>,
}

impl Lru {
    fn get(&mut self, key: &ModelKey) -> Option<Arc<Model>> {
        let at = self.entries.iter().position(|(k, _)| k == key)?;
        let entry = self.entries.remove(at)?;
        let model = entry.1.clone();
        self.entries.push_front(entry);
        Some(model)
    }

    /// Inserts as most recent; evicts the least recent past `capacity` (a job still using an
    /// evicted model keeps its own reference until it closes).
    fn put(&mut self, key: ModelKey, model: Arc<Model>, capacity: usize) {
        self.entries.push_front((key, model));
        self.entries.truncate(capacity);
    }

    fn len(&self) -> usize {
        self.entries.len()
    }

    fn bytes(&self) -> u64 {
        self.entries.iter().map(|(_, m)| m.bytes).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tuner_doubles_while_it_pays_and_settles_on_the_best() {
        let mut t = Tuner::new(1);
        let ms = Duration::from_millis;
        // Size 1: 10 ms per frame.
        for _ in 0..TUNE_ROUNDS {
            t.record(ms(10), 1, 1);
        }
        assert_eq!(t.size, 2);
        // Size 2: 8 ms per frame (better) → 4.
        for _ in 0..TUNE_ROUNDS {
            t.record(ms(16), 2, 2);
        }
        assert_eq!(t.size, 4);
        // Size 4: 7.9 ms per frame (within 3 %) → back to 2, settled.
        for _ in 0..TUNE_ROUNDS {
            t.record(ms(32) - Duration::from_micros(400), 4, 4);
        }
        assert_eq!(t.size, 2);
        assert!(t.settled);
        assert!(!t.record(ms(1), 2, 2));
    }

    #[test]
    fn partial_rounds_do_not_count_towards_tuning() {
        let mut t = Tuner::new(1);
        for _ in 0..10 * TUNE_ROUNDS {
            t.record(Duration::from_millis(5), 1, 2);
        }
        assert_eq!(t.size, 1);
        assert_eq!(t.rounds, 0);
    }
}
