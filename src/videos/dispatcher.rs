//! Job dispatcher: turns queued videos into files.
//!
//! Scheduling only: every state change goes through [`Lifecycle`]. The database is the queue
//! and the source of truth. On start, videos left `rendering` by a crash are recovered, and
//! on a shared (PostgreSQL) queue, once a second, the videos whose lease lapsed (another
//! worker died) go back to the queue.
//! Whenever the lifecycle signals a queued video (from this process or, in a cluster, any)
//! and once a second, the dispatcher claims the oldest queued video while fewer than
//! `MAX_CONCURRENT_JOBS` run, and drives each through the generator ([`OnDemand`]: opened
//! while jobs use it) on its own thread.
//! Progress is published at once and written at most once a second; the lease is renewed a
//! third of `JOB_LEASE` apart even while no frame comes (a held or slow render). A video
//! cancelled or deleted meanwhile (signalled by the lifecycle, or seen at the next progress
//! write or renewal when the signal was lost) stops within a frame.
//!
//! Shutdown ([`Drain`], then [`HandBack`]): the dispatcher stops claiming, running jobs go on
//! while the caller waits on the in-flight count it hands out, and whatever is still running
//! when the grace ends is stopped within a frame and handed back to the queue (`queued`
//! again, the attempt not counted), so it finishes after a restart or on another worker.
//!
//! Messages: [`Wake`] (a video was queued), [`CancelJob`] (stop one now) — both forwarded
//! from the lifecycle's [`Signals`](super::lifecycle::Signals) — [`Drain`], [`HandBack`],
//! [`GetStats`].
//!
//! Test hook (`ENVIRONMENT=test` only): while the file `$DATA_DIR/hold-renders` exists, every
//! job waits at its first progress report with frames done (until the file goes or the job
//! is stopped), so a test can hold a video mid-render by construction — waiting for
//! `frames_done > 0` tells it the hold has taken — instead of hoping it is slow.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use uuid::Uuid;

use super::lifecycle::{Lifecycle, Progressed};
use super::queue::{Lease, Orphans};
use crate::platform::storage::{BlobStore, Object};
use crate::platform::telemetry::Metrics;
use crate::render::params::VideoParams;
use crate::render::pipeline::{GenerateError, JobSpec, Progress};
use crate::videos::device::OnDemand;

const PROGRESS_WRITE_EVERY: Duration = Duration::from_secs(1);
/// A video's recording, fetched into its scratch before the render starts.
const RECORDING_FILE: &str = "recording";

/// Clears what a crashed earlier attempt left in the video's scratch, and fetches the
/// recording of a video with `audio` there (a missing one fails the render as
/// `invalid_audio`).
async fn prepare_scratch(blobs: &BlobStore, video: &entity::video::Model) {
    blobs.clear_scratch(video.id);
    let audio = video.params.get("audio").and_then(|a| a.get("id"));
    let Some(Ok(audio)) = audio.and_then(|a| a.as_str()).map(Uuid::parse_str) else {
        return;
    };
    let to = blobs.scratch_dir(video.id).join(RECORDING_FILE);
    match blobs.recording_to_file(audio, &to).await {
        Ok(true) => {}
        Ok(false) => {
            tracing::warn!(video = %video.id, recording = %audio, "the video's recording is gone")
        }
        Err(e) => {
            tracing::warn!(video = %video.id, error = %e, "fetching the video's recording failed")
        }
    }
}
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// What the dispatcher needs besides the lifecycle.
pub struct Worker {
    /// The generator, opened while jobs use it.
    pub device: Arc<OnDemand>,
    pub blobs: BlobStore,
    pub metrics: Arc<Metrics>,
    pub max_jobs: usize,
    /// The test hook's file (only with `ENVIRONMENT=test`).
    pub hold: Option<std::path::PathBuf>,
}

pub struct JobDispatcher {
    lifecycle: Lifecycle,
    worker: Arc<Worker>,
    running: HashMap<Uuid, Arc<AtomicBool>>,
    claiming: bool,
    /// Shutting down: claim nothing more (claims already on their way go back).
    draining: Arc<AtomicBool>,
    /// Jobs stopped now go back to the queue instead of being treated as cancelled.
    handing_back: Arc<AtomicBool>,
    /// The number of running jobs, for whoever waits for them to end.
    in_flight: tokio::sync::watch::Sender<usize>,
}

impl JobDispatcher {
    pub fn new(lifecycle: Lifecycle, worker: Arc<Worker>) -> Self {
        Self {
            lifecycle,
            worker,
            running: HashMap::new(),
            claiming: false,
            draining: Arc::default(),
            handing_back: Arc::default(),
            in_flight: tokio::sync::watch::channel(0).0,
        }
    }

    fn running_changed(&self) {
        self.worker
            .metrics
            .jobs_in_flight
            .set(self.running.len() as i64);
        // A claim on its way counts: the drain waits for it to start or go back.
        self.in_flight
            .send_replace(self.running.len() + usize::from(self.claiming));
    }

    /// Claims and starts videos while there is a free slot.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if self.draining.load(Ordering::Relaxed)
            || self.claiming
            || self.running.len() >= self.worker.max_jobs.max(1)
        {
            return;
        }
        self.claiming = true;
        self.running_changed();
        let lifecycle = self.lifecycle.clone();
        let draining = self.draining.clone();
        let blobs = self.worker.blobs.clone();
        ctx.spawn(
            async move {
                let claimed = lifecycle.started().await;
                // Claimed just as the drain began: give it straight back, before the claim
                // stops counting as in flight.
                if let Ok(Some((_, lease))) = &claimed
                    && draining.load(Ordering::Relaxed)
                {
                    lifecycle.handed_back(lease).await;
                    return Ok(None);
                }
                if let Ok(Some((video, _))) = &claimed {
                    prepare_scratch(&blobs, video).await;
                }
                claimed
            }
            .into_actor(self)
            .map(|claimed, act, ctx| {
                act.claiming = false;
                act.running_changed();
                match claimed {
                    Ok(Some((video, lease))) => {
                        act.start(video, lease, ctx);
                        act.fill(ctx);
                    }
                    Ok(None) => {}
                    Err(e) => tracing::warn!(error = %e, "claiming a queued video failed"),
                }
            }),
        );
    }

    fn start(&mut self, video: entity::video::Model, lease: Lease, ctx: &mut Context<Self>) {
        let id = video.id;
        let lifecycle = self.lifecycle.clone();
        let params: VideoParams = match serde_json::from_value(video.params.clone()) {
            Ok(p) => p,
            Err(e) => {
                actix::spawn(async move {
                    let message = format!("stored parameters are unreadable: {e}");
                    lifecycle
                        .failed(&video, &lease, "invalid_params", &message)
                        .await;
                });
                return;
            }
        };
        let w = &self.worker;
        let fps = f64::from(params.fps);
        let recording = params
            .audio
            .as_ref()
            .map(|_| w.blobs.scratch_dir(id).join(RECORDING_FILE));
        let spec = JobSpec {
            params,
            output: w.blobs.scratch_file(id, Object::Video),
            thumbnail: Some(w.blobs.scratch_file(id, Object::Thumbnail)),
            transcript: Some(w.blobs.scratch_file(id, Object::Transcript)),
            recording,
            live: true,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let live = lifecycle.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let (hold, held) = (w.hold.clone(), cancel.clone());
        let handle = w.device.spawn_with(
            spec,
            cancel.clone(),
            move |p| {
                let _ = tx.send(p.clone());
                // Held only once frames exist: the encoder and its temporary file are open,
                // so a held job is truly mid-render (and the report is already sent, so its
                // `frames_done` reaches the database).
                if let Some(file) = hold.as_ref().filter(|_| p.frames_done > 0) {
                    while file.exists() && !held.load(Ordering::Relaxed) {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            },
            move |chunk| live.preview(id, chunk),
        );
        self.running.insert(id, cancel.clone());
        self.running_changed();
        let handing_back = self.handing_back.clone();
        let renew_every = lifecycle.lease() / 3;
        let job = async move {
            let mut join = tokio::task::spawn_blocking(move || handle.join());
            let mut last_write = Instant::now() - PROGRESS_WRITE_EVERY;
            let mut renew =
                tokio::time::interval_at(tokio::time::Instant::now() + renew_every, renew_every);
            let result = loop {
                let latest: Option<Progress> = tokio::select! {
                    // Reports first: the thread sends its last ones (the finishing stage)
                    // just before it ends, and an unbiased pick of `join` dropped them.
                    biased;
                    Some(p) = rx.recv() => Some(p),
                    res = &mut join => break res,
                    _ = renew.tick() => {
                        if lifecycle.kept(&lease).await == Progressed::Gone {
                            cancel.store(true, Ordering::Relaxed);
                        }
                        None
                    }
                };
                if let Some(p) = latest.filter(|p| p.frames_total > 0) {
                    let write = last_write.elapsed() >= PROGRESS_WRITE_EVERY;
                    if write {
                        last_write = Instant::now();
                    }
                    if lifecycle.progressed(&lease, &p, fps, write).await == Progressed::Gone {
                        // Cancelled or deleted elsewhere: stop rendering.
                        cancel.store(true, Ordering::Relaxed);
                    }
                }
            };
            // The job's frames, patches and pipeline are freed now: give the pages back.
            tokio::task::spawn_blocking(crate::platform::memory::release_free_memory);
            let result = result.unwrap_or_else(|e| Err(GenerateError::Thread(e.to_string())));
            match result {
                Ok(outcome) => {
                    lifecycle.completed(&video, &lease, &outcome).await;
                }
                Err(GenerateError::Cancelled) if handing_back.load(Ordering::Relaxed) => {
                    // Conditional on `rendering`: a video cancelled or deleted meanwhile
                    // stays so.
                    lifecycle.handed_back(&lease).await;
                }
                Err(GenerateError::Cancelled) => lifecycle.stopped(&lease).await,
                Err(e) => {
                    lifecycle
                        .failed(&video, &lease, e.code(), &e.to_string())
                        .await
                }
            }
            lifecycle.released(id);
            id
        };
        ctx.spawn(job.into_actor(self).map(|id, act, ctx| {
            act.running.remove(&id);
            act.running_changed();
            act.fill(ctx);
        }));
    }
}

impl Actor for JobDispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let lifecycle = self.lifecycle.clone();
        ctx.wait(async move { lifecycle.recovered(Orphans::AtStart).await }.into_actor(self));
        // Other workers' lapsed leases (two statements a second; a lapsed video is claimable
        // within JOB_LEASE + 1 s of its worker's last renewal). Alone on SQLite there are no
        // other workers: the start's recovery is all there is to do.
        if self.lifecycle.shared_queue() {
            ctx.run_interval(SWEEP_EVERY, |act, ctx| {
                let lifecycle = act.lifecycle.clone();
                ctx.spawn(
                    async move { lifecycle.recovered(Orphans::Lapsed).await }.into_actor(act),
                );
            });
        }
        // The lifecycle's signals become messages to this actor (and end with it).
        let (signals, addr) = (self.lifecycle.signals().clone(), ctx.address());
        let mut cancellations = signals.cancellations();
        let wake = addr.clone();
        ctx.spawn(
            async move {
                loop {
                    signals.woken().await;
                    wake.do_send(Wake);
                }
            }
            .into_actor(self),
        );
        ctx.spawn(
            async move {
                loop {
                    match cancellations.recv().await {
                        Ok(id) => addr.do_send(CancelJob(id)),
                        // Missed ones are seen at the job's next progress write.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
            }
            .into_actor(self),
        );
        ctx.run_interval(Duration::from_secs(1), |act, ctx| act.fill(ctx));
        self.fill(ctx);
    }

    fn stopping(&mut self, _: &mut Self::Context) -> Running {
        for flag in self.running.values() {
            flag.store(true, Ordering::Relaxed);
        }
        Running::Stop
    }
}

/// A video was queued: start it if a slot is free.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Wake;

impl Handler<Wake> for JobDispatcher {
    type Result = ();
    fn handle(&mut self, _: Wake, ctx: &mut Self::Context) {
        self.fill(ctx);
    }
}

/// Stop rendering a video now (it was cancelled or deleted). `true` when it was running here.
#[derive(Message)]
#[rtype(result = "bool")]
pub struct CancelJob(pub Uuid);

impl Handler<CancelJob> for JobDispatcher {
    type Result = bool;
    fn handle(&mut self, msg: CancelJob, _: &mut Self::Context) -> bool {
        match self.running.get(&msg.0) {
            Some(flag) => {
                flag.store(true, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }
}

/// Shutdown, first step: claim nothing more. Answers with the count of running jobs, which
/// the caller watches fall to zero (or runs out of patience and sends [`HandBack`]).
#[derive(Message)]
#[rtype(result = "tokio::sync::watch::Receiver<usize>")]
pub struct Drain;

impl Handler<Drain> for JobDispatcher {
    type Result = MessageResult<Drain>;
    fn handle(&mut self, _: Drain, _: &mut Self::Context) -> Self::Result {
        self.draining.store(true, Ordering::Relaxed);
        MessageResult(self.in_flight.subscribe())
    }
}

/// Shutdown, when the grace is over: stop every running job within a frame and put its
/// video back in the queue.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct HandBack;

impl Handler<HandBack> for JobDispatcher {
    type Result = usize;
    fn handle(&mut self, _: HandBack, _: &mut Self::Context) -> usize {
        self.draining.store(true, Ordering::Relaxed);
        self.handing_back.store(true, Ordering::Relaxed);
        for flag in self.running.values() {
            flag.store(true, Ordering::Relaxed);
        }
        self.running.len()
    }
}

#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct DispatcherStats {
    pub running: usize,
    pub capacity: usize,
}

#[derive(Message)]
#[rtype(result = "DispatcherStats")]
pub struct GetStats;

impl Handler<GetStats> for JobDispatcher {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(DispatcherStats {
            running: self.running.len(),
            capacity: self.worker.max_jobs.max(1),
        })
    }
}

impl Supervised for JobDispatcher {}
