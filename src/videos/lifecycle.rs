//! The one owner of a video's state. Every change — accepted, started, progressed,
//! completed, failed, cancelled, deleted, handed back, recovered — goes through a method
//! here, which does all of its side effects in one place and in one order:
//!
//! 1. the database transition: one conditional UPDATE from the expected state (so a late or
//!    repeated call changes nothing and reports it), with the webhook outbox row in the same
//!    transaction for the terminal states that have a `callback_url`;
//! 2. the response cache: the tenant's entries (and, when queue positions move, everyone's);
//! 3. the typed [`VideoEvent`] on the [`EventBus`] (WebSocket sessions);
//! 4. the metrics and analytics of the transition;
//! 5. the worker signals: [`Signals`] wakes an idle worker when a video is queued and tells the
//!    worker rendering a video that it was cancelled or deleted — in this process, and, in a
//!    cluster, in every process through Redis (the queue is still polled, so a lost wake-up
//!    only delays a claim, and a lost cancel is seen at the render's next lease renewal).
//!
//! Handlers and the dispatcher call these methods and never write a video's row, publish its
//! events or bump its counters themselves. May call `videos::store`, `videos::events`,
//! `platform` and `render`'s result types.

use std::sync::Arc;
use std::time::Duration;

use entity::video;
use tokio::sync::{Notify, broadcast};
use uuid::Uuid;

use super::events::EventBus;
use super::model::{VideoError, VideoEvent, VideoStatus, VideoView};
use super::queue::{Finished, JobQueue, Lease, Orphans};
use super::store::{self, CancelOutcome, InsertOutcome, StoredResponse};
use crate::platform::analytics::Stage;
use crate::platform::cache::CacheHandle;
use crate::platform::db::{Db, StoreError};
use crate::platform::redis::{Redis, channel};
use crate::platform::storage::BlobStore;
use crate::platform::task::Task;
use crate::platform::telemetry::Recorder;
use crate::render::media::LiveChunk;
use crate::render::pipeline::{Outcome, Progress};

/// A video interrupted this many times fails instead of being retried again.
pub const MAX_ATTEMPTS: i32 = 3;

/// What the lifecycle tells the worker: "a video was queued" and "stop rendering this one".
/// In one process these are a [`Notify`] and a broadcast; the worker subscribes to both. In a
/// cluster each signal is also published to Redis, and [`Signals::cluster`]'s task turns the
/// other processes' signals into local ones.
#[derive(Clone)]
pub struct Signals {
    wake: Arc<Notify>,
    cancel: broadcast::Sender<Uuid>,
    redis: Option<Redis>,
}

impl Default for Signals {
    fn default() -> Self {
        Self {
            wake: Arc::default(),
            cancel: broadcast::channel(256).0,
            redis: None,
        }
    }
}

impl Signals {
    /// Signals shared with the other processes through `redis`, and the task that hears
    /// theirs.
    pub fn cluster(redis: Redis) -> (Self, Task) {
        let signals = Self {
            redis: Some(redis.clone()),
            ..Self::default()
        };
        let local = signals.clone();
        let mut messages = redis.messages();
        let task = Task::spawn("cluster signals", async move {
            loop {
                match messages.recv().await {
                    Ok(m) if m.channel == channel::WAKE => local.wake.notify_one(),
                    Ok(m) if m.channel == channel::CANCEL => {
                        if let Some(id) = std::str::from_utf8(&m.payload)
                            .ok()
                            .and_then(|s| Uuid::parse_str(s).ok())
                        {
                            let _ = local.cancel.send(id);
                        }
                    }
                    Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        (signals, task)
    }

    /// A video is ready to be claimed: wake a worker here and, in a cluster, everywhere.
    async fn wake(&self) {
        self.wake.notify_one();
        if let Some(r) = &self.redis {
            r.publish(channel::WAKE, bytes::Bytes::new()).await;
        }
    }

    /// Whoever renders `id` must stop.
    async fn cancel(&self, id: Uuid) {
        let _ = self.cancel.send(id);
        if let Some(r) = &self.redis {
            r.publish(channel::CANCEL, bytes::Bytes::from(id.to_string()))
                .await;
        }
    }

    /// Resolves when a video has been queued since the last call (or at once if one was).
    pub async fn woken(&self) {
        self.wake.notified().await;
    }

    /// Videos cancelled or deleted from now on.
    pub fn cancellations(&self) -> broadcast::Receiver<Uuid> {
        self.cancel.subscribe()
    }
}

/// The state changes of videos, with their side effects (see the module doc).
#[derive(Clone)]
pub struct Lifecycle {
    db: Db,
    queue: JobQueue,
    cache: CacheHandle,
    events: EventBus,
    blobs: BlobStore,
    recorder: Recorder,
    signals: Signals,
}

/// What a progress report did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progressed {
    /// Published (and written, when asked); the video still renders.
    Rendering,
    /// The video is no longer rendering (cancelled or deleted elsewhere): stop.
    Gone,
}

/// What a [`Lifecycle`] is made of.
pub struct Parts {
    pub db: Db,
    pub queue: JobQueue,
    pub cache: CacheHandle,
    pub events: EventBus,
    pub blobs: BlobStore,
    pub recorder: Recorder,
    pub signals: Signals,
}

impl Lifecycle {
    pub fn new(p: Parts) -> Self {
        Self {
            db: p.db,
            queue: p.queue,
            cache: p.cache,
            events: p.events,
            blobs: p.blobs,
            recorder: p.recorder,
            signals: p.signals,
        }
    }

    pub fn signals(&self) -> &Signals {
        &self.signals
    }

    /// The queue's lease length (`JOB_LEASE`).
    pub fn lease(&self) -> Duration {
        self.queue.lease()
    }

    /// Whether other workers may hold leases (a shared queue): their lapsed leases are swept.
    pub fn shared_queue(&self) -> bool {
        self.queue.shared()
    }

    /// New videos (and the idempotency record of the request, when keyed), inserted together.
    /// A replayed key inserts nothing and returns what the first request stored.
    pub async fn accepted(
        &self,
        tenant: &str,
        rows: Vec<video::Model>,
        idempotency: Option<(&str, StoredResponse)>,
    ) -> Result<InsertOutcome, StoreError> {
        let count = rows.len() as u64;
        let idem = idempotency.map(|(key, stored)| (tenant, key, stored));
        let outcome = store::insert_videos(&self.db, rows, idem).await?;
        if matches!(outcome, InsertOutcome::Inserted) {
            self.cache.invalidate_tenant(tenant).await;
            self.signals.wake().await;
            self.recorder
                .metrics()
                .jobs_total
                .with_label_values(&[VideoStatus::Queued.as_str()])
                .inc_by(count);
            tracing::info!(%tenant, count, "videos accepted");
        }
        Ok(outcome)
    }

    /// Claims the oldest queued video (`queued` → `rendering`, attempt counted) for this
    /// worker; `None` when the queue is empty.
    pub async fn started(&self) -> Result<Option<(video::Model, Lease)>, StoreError> {
        let Some((video, lease)) = self.queue.claim().await? else {
            return Ok(None);
        };
        self.recorder.metrics().claims_total.inc();
        let waited = (chrono::Utc::now() - video.created_at)
            .to_std()
            .unwrap_or_default();
        self.recorder.stage(Stage::QueueWait, waited, false);
        // Everyone's queue positions moved up by one.
        self.cache.invalidate_tenant(&video.tenant).await;
        self.cache.invalidate_all().await;
        self.recorder
            .metrics()
            .jobs_total
            .with_label_values(&[VideoStatus::Rendering.as_str()])
            .inc();
        self.events.publish(
            video.id,
            VideoEvent::Status {
                status: VideoStatus::Rendering,
                queue_position: None,
            },
        );
        tracing::info!(id = %video.id, tenant = %video.tenant, attempt = video.attempts, "rendering started");
        Ok(Some((video, lease)))
    }

    /// A progress report of a rendering video: published at once, written to the database
    /// when `write` (the caller paces writes), never backwards.
    pub async fn progressed(
        &self,
        lease: &Lease,
        p: &Progress,
        fps: f64,
        write: bool,
    ) -> Progressed {
        if p.fps > 0.0 {
            self.recorder.metrics().render_fps.set(p.fps);
        }
        self.events.publish(
            lease.id,
            VideoEvent::Progress {
                frames_done: p.frames_done,
                frames_total: p.frames_total,
                progress: p.frames_done as f64 / p.frames_total as f64,
                fps: p.fps,
                eta_s: p.eta_s,
                emitted_at_ms: chrono::Utc::now().timestamp_millis(),
            },
        );
        if !write {
            return Progressed::Rendering;
        }
        let total = p.frames_total as i64;
        match self
            .queue
            .renew(lease, p.frames_done as i64, total, total as f64 / fps)
            .await
        {
            Ok(true) => {
                self.cache.invalidate_tenant(&lease.tenant).await;
                Progressed::Rendering
            }
            Ok(false) => Progressed::Gone,
            Err(e) => {
                tracing::warn!(id = %lease.id, error = %e, "progress write failed");
                Progressed::Rendering
            }
        }
    }

    /// The worker still holds the video: its lease is extended. `Gone` when it was cancelled,
    /// deleted, or its lease lapsed and another worker took it — the render must stop.
    pub async fn kept(&self, lease: &Lease) -> Progressed {
        match self.queue.keep(lease).await {
            Ok(true) => Progressed::Rendering,
            Ok(false) => Progressed::Gone,
            Err(e) => {
                // The database is unreachable: keep rendering; the completion write retries,
                // and a lapsed lease fences it.
                tracing::warn!(id = %lease.id, error = %e, "lease renewal failed");
                Progressed::Rendering
            }
        }
    }

    /// The file is in place: `rendering` → `completed` with its exact length and size, the
    /// `video.completed` webhook queued with it. `false` when the video was cancelled or
    /// deleted meanwhile; its file is then removed.
    pub async fn completed(&self, video: &video::Model, lease: &Lease, outcome: &Outcome) -> bool {
        let id = lease.id;
        for (stage, secs) in [
            (Stage::Timeline, outcome.timeline_s),
            (Stage::Render, outcome.submit_s),
            (Stage::Readback, outcome.readback_s),
            (Stage::Encode, outcome.encode_s),
            (Stage::Mux, outcome.finish_s),
        ] {
            self.recorder
                .stage(stage, Duration::from_secs_f64(secs.max(0.0)), false);
        }
        self.recorder
            .analytics()
            .record_job_frames(outcome.frames, outcome.submit_s + outcome.readback_s);
        let finished = Finished {
            frames: outcome.frames as i64,
            duration_s: outcome.duration_s,
            size_bytes: i64::try_from(outcome.size_bytes).unwrap_or(i64::MAX),
            scenes: (!outcome.scenes.is_empty())
                .then(|| serde_json::to_value(&outcome.scenes).ok())
                .flatten(),
        };
        // The files are in place before the row says so; a render whose files cannot be
        // stored fails (and is not announced as completed).
        if let Err(e) = self.blobs.publish(id).await {
            self.failed(
                video,
                lease,
                "storage_failed",
                &format!("the video could not be stored: {e}"),
            )
            .await;
            return false;
        }
        let callback = callback_of(video);
        let done = match with_retries(|| {
            self.queue
                .complete(lease, finished.clone(), callback.as_deref())
        })
        .await
        {
            Ok(done) => done,
            Err(e) => {
                tracing::error!(%id, error = %e, "could not record completion");
                return false;
            }
        };
        if !done {
            // Cancelled or deleted while finishing: its file must not stay.
            let _ = self.blobs.remove_video(id).await;
            self.cache.invalidate_tenant(&video.tenant).await;
            return false;
        }
        self.recorder
            .metrics()
            .jobs_total
            .with_label_values(&[VideoStatus::Completed.as_str()])
            .inc();
        self.recorder
            .metrics()
            .frames_rendered_total
            .inc_by(outcome.frames);
        if outcome.render_s > 0.0 {
            self.recorder
                .metrics()
                .render_fps
                .set(outcome.frames as f64 / outcome.render_s);
        }
        self.recorder
            .metrics()
            .encode_seconds
            .observe(outcome.render_s + outcome.finish_s);
        self.cache.invalidate_tenant(&video.tenant).await;
        match store::get_video(&self.db, &video.tenant, id).await {
            Ok(Some(m)) => self.events.publish(
                id,
                VideoEvent::Completed {
                    video: Box::new(VideoView::from_model(m, None)),
                },
            ),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(%id, error = %e, "completed, but the row could not be read back for the event")
            }
        }
        tracing::info!(%id, frames = outcome.frames, seconds = outcome.render_s, "rendering completed");
        true
    }

    /// Rendering failed: `rendering` → `failed` with a stable code and a message a user can
    /// act on, the `video.failed` webhook queued with it; the partial file removed.
    pub async fn failed(&self, video: &video::Model, lease: &Lease, code: &str, message: &str) {
        let id = lease.id;
        let _ = self.blobs.remove_video(id).await;
        let callback = callback_of(video);
        match with_retries(|| self.queue.fail(lease, code, message, callback.as_deref())).await {
            Ok(true) => {
                self.recorder
                    .metrics()
                    .jobs_total
                    .with_label_values(&[VideoStatus::Failed.as_str()])
                    .inc();
                tracing::warn!(%id, code, message, "rendering failed");
            }
            // The lease is gone (cancelled or deleted meanwhile): nothing to announce.
            Ok(false) => return,
            Err(e) => tracing::error!(%id, error = %e, "could not record failure"),
        }
        self.cache.invalidate_tenant(&lease.tenant).await;
        self.events.publish(
            id,
            VideoEvent::Failed {
                error: VideoError {
                    code: code.to_string(),
                    message: message.to_string(),
                },
            },
        );
    }

    /// A tenant cancels a queued or rendering video; its worker is told to stop.
    pub async fn cancelled(&self, tenant: &str, id: Uuid) -> Result<CancelOutcome, StoreError> {
        let outcome = store::cancel_video(&self.db, tenant, id).await?;
        if let CancelOutcome::Cancelled(_) = &outcome {
            self.signals.cancel(id).await;
            self.events.publish(id, VideoEvent::Cancelled);
            self.cache.invalidate_tenant(tenant).await;
            self.cache.invalidate_all().await;
            self.recorder
                .metrics()
                .jobs_total
                .with_label_values(&[VideoStatus::Cancelled.as_str()])
                .inc();
        }
        Ok(outcome)
    }

    /// A tenant deletes a video: its row and files go, a running render stops. Returns its
    /// last status, `None` when there was no such video.
    pub async fn deleted(&self, tenant: &str, id: Uuid) -> Result<Option<VideoStatus>, StoreError> {
        let Some(status) = store::delete_video(&self.db, tenant, id).await? else {
            return Ok(None);
        };
        self.signals.cancel(id).await;
        self.events.publish(id, VideoEvent::Cancelled);
        self.cache.invalidate_tenant(tenant).await;
        if status == VideoStatus::Queued {
            self.cache.invalidate_all().await;
        }
        if let Err(e) = self.blobs.remove_video(id).await {
            tracing::warn!(%id, error = %e, "video files could not be removed");
        }
        Ok(Some(status))
    }

    /// A render stopped because it was cancelled or deleted: only its partial file is left to
    /// remove (the state changed when it was cancelled).
    pub async fn stopped(&self, lease: &Lease) {
        let _ = self.blobs.remove_video(lease.id).await;
        self.cache.invalidate_tenant(&lease.tenant).await;
        tracing::info!(id = %lease.id, "rendering stopped: cancelled");
    }

    /// Shutdown hands a rendering video back: `rendering` → `queued`, the attempt not
    /// counted, its partial file removed. `false` when it was no longer rendering.
    pub async fn handed_back(&self, lease: &Lease) -> bool {
        let id = lease.id;
        let _ = self.blobs.remove_video(id).await;
        match with_retries(|| self.queue.requeue(lease)).await {
            Ok(true) => {
                self.cache.invalidate_tenant(&lease.tenant).await;
                self.cache.invalidate_all().await;
                self.events.publish(
                    id,
                    VideoEvent::Status {
                        status: VideoStatus::Queued,
                        queue_position: None,
                    },
                );
                tracing::info!(%id, "rendering handed back to the queue");
                // Another worker may take it now.
                self.signals.wake().await;
                true
            }
            Ok(false) => false,
            Err(e) => {
                tracing::error!(%id, error = %e, "could not hand the video back; it is recovered at the next start");
                false
            }
        }
    }

    /// Videos whose worker is gone: at a worker's start (with SQLite, every video left
    /// `rendering`), and on the periodic sweep (those whose lease lapsed). They go back to
    /// `queued`, or fail with `too_many_attempts` after [`MAX_ATTEMPTS`]; workers are woken.
    pub async fn recovered(&self, when: Orphans) {
        match self.queue.recover(MAX_ATTEMPTS, when).await {
            Ok((requeued, failed)) if requeued + failed > 0 => {
                self.cache.invalidate_all().await;
                if when == Orphans::Lapsed {
                    self.recorder
                        .metrics()
                        .lease_expiries_total
                        .inc_by(requeued + failed);
                }
                if requeued > 0 {
                    self.signals.wake().await;
                }
                tracing::warn!(
                    requeued,
                    failed,
                    ?when,
                    "recovered videos whose worker is gone"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "recovering orphaned videos failed"),
        }
    }

    /// The cluster-wide queue figures for the gauges: depth, and the oldest video's age.
    pub async fn queue_figures(&self) -> Result<(u64, f64), StoreError> {
        let depth = self.queue.depth().await?;
        let age = self
            .queue
            .oldest_queued()
            .await?
            .map_or(0.0, |t| (chrono::Utc::now() - t).as_seconds_f64().max(0.0));
        Ok((depth, age))
    }

    /// The live preview of a rendering video (called from its generation thread).
    pub fn preview(&self, id: Uuid, chunk: LiveChunk) {
        match chunk {
            LiveChunk::Init { data, mime } => self.events.publish_init(id, data.into(), mime),
            LiveChunk::Fragment(data) => self.events.publish_fragment(id, data.into()),
        }
    }

    /// The render's own job is over (however it ended): nobody will publish for it again.
    pub fn released(&self, id: Uuid) {
        // A late init segment may have re-created the live channel after the end.
        self.events.release(id);
    }
}

/// The `callback_url` a video was created with.
fn callback_of(video: &video::Model) -> Option<String> {
    video
        .params
        .get("callback_url")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
}

/// Retries a terminal database write (pool time-out, SQLite busy) with back-off — 200 ms,
/// doubling, five tries in all — so a finished job is not left `rendering`; after the last
/// try the error is returned and the video is recovered at the next start.
async fn with_retries<T, F, Fut>(write: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    use backon::{ExponentialBuilder, Retryable};
    write
        .retry(
            ExponentialBuilder::default()
                .with_min_delay(Duration::from_millis(200))
                .with_factor(2.0)
                .with_max_times(4),
        )
        .notify(|e: &StoreError, wait: Duration| {
            tracing::warn!(error = %e, retry_in_ms = wait.as_millis(), "database write failed; retrying");
        })
        .await
}
