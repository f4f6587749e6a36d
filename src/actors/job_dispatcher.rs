//! Job dispatcher: turns queued videos into files.
//!
//! The database is the queue and the source of truth. On start, videos left `rendering` by a
//! crash are re-queued (or failed after [`MAX_ATTEMPTS`]). Then, on every [`Wake`] and once a
//! second, the dispatcher claims the oldest queued video while fewer than
//! `MAX_CONCURRENT_JOBS` run, and drives each through [`Generator`] on its own thread. Progress
//! goes to the database at most once a second and never backwards; a video cancelled or
//! deleted meanwhile (by this process via [`CancelJob`], or by another, seen at the next
//! progress write) stops within a frame. Finished videos get their exact frame count, length
//! and size; failures carry a stable `error.code`.
//!
//! Shutdown ([`Drain`], then [`HandBack`]): the dispatcher stops claiming, running jobs go on
//! while the caller waits on the in-flight count it hands out, and whatever is still running
//! when the grace ends is stopped within a frame and handed back to the queue (`queued`
//! again, the attempt not counted), so it finishes after a restart or on another worker.
//!
//! Messages: [`Wake`] (a video was queued), [`CancelJob`] (stop one now), [`Drain`],
//! [`HandBack`], [`GetStats`].
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

use super::cache_manager::CacheHandle;
use crate::analytics::{Analytics, Stage};
use crate::api::videos::VideoView;
use crate::domain::VideoParams;
use crate::events::{Hub, VideoEvent};
use crate::generate::{GenerateError, Generator, JobSpec, Progress};
use crate::store::db::{self, Db};
use crate::store::files::Files;
use crate::telemetry::Metrics;

/// The body of a webhook: `{"event", "video"}` with the video as the API shows it.
fn webhook_payload(event: &str, model: entity::video::Model) -> String {
    serde_json::json!({"event": event, "video": VideoView::from_model(model, None)}).to_string()
}

/// A video interrupted this many times fails instead of being retried again.
pub const MAX_ATTEMPTS: i32 = 3;
const PROGRESS_WRITE_EVERY: Duration = Duration::from_secs(1);

pub struct JobDispatcher {
    db: Db,
    generator: Arc<Generator>,
    files: Files,
    cache: CacheHandle,
    metrics: Arc<Metrics>,
    max_jobs: usize,
    running: HashMap<Uuid, Arc<AtomicBool>>,
    claiming: bool,
    hub: Hub,
    analytics: Analytics,
    /// Shutting down: claim nothing more (claims already on their way go back).
    draining: Arc<AtomicBool>,
    /// Jobs stopped now go back to the queue instead of being treated as cancelled.
    handing_back: Arc<AtomicBool>,
    /// The number of running jobs, for whoever waits for them to end.
    in_flight: tokio::sync::watch::Sender<usize>,
    /// The test hook's file (only with `ENVIRONMENT=test`).
    hold: Option<std::path::PathBuf>,
}

impl JobDispatcher {
    #[allow(clippy::too_many_arguments)] // the pieces the server already holds
    pub fn new(
        db: Db,
        generator: Arc<Generator>,
        files: Files,
        cache: CacheHandle,
        metrics: Arc<Metrics>,
        max_jobs: usize,
        hub: Hub,
        analytics: Analytics,
        hold: Option<std::path::PathBuf>,
    ) -> Self {
        Self {
            db,
            generator,
            files,
            cache,
            metrics,
            max_jobs: max_jobs.max(1),
            running: HashMap::new(),
            claiming: false,
            hub,
            analytics,
            draining: Arc::default(),
            handing_back: Arc::default(),
            in_flight: tokio::sync::watch::channel(0).0,
            hold,
        }
    }

    fn running_changed(&self) {
        self.metrics.jobs_in_flight.set(self.running.len() as i64);
        // A claim on its way counts: the drain waits for it to start or go back.
        self.in_flight
            .send_replace(self.running.len() + usize::from(self.claiming));
    }

    /// Claims and starts videos while there is a free slot.
    fn fill(&mut self, ctx: &mut Context<Self>) {
        if self.draining.load(Ordering::Relaxed)
            || self.claiming
            || self.running.len() >= self.max_jobs
        {
            return;
        }
        self.claiming = true;
        self.running_changed();
        let db = self.db.clone();
        let draining = self.draining.clone();
        ctx.spawn(
            async move {
                let claimed = db::claim_next(&db).await;
                // Claimed just as the drain began: give it straight back, before the claim
                // stops counting as in flight.
                if let Ok(Some(video)) = &claimed
                    && draining.load(Ordering::Relaxed)
                {
                    if let Err(e) = with_retries(|| db::requeue_video(&db, video.id)).await {
                        tracing::warn!(id = %video.id, error = %e, "could not hand a video back; it is recovered at the next start");
                    }
                    return Ok(None);
                }
                claimed
            }
            .into_actor(self)
            .map(|claimed, act, ctx| {
                act.claiming = false;
                act.running_changed();
                match claimed {
                    Ok(Some(video)) => {
                            act.start(video, ctx);
                            act.fill(ctx);
                        }
                        Ok(None) => {}
                        Err(e) => tracing::warn!(error = %e, "claiming a queued video failed"),
                    }
                }),
        );
    }

    fn start(&mut self, video: entity::video::Model, ctx: &mut Context<Self>) {
        let id = video.id;
        let tenant = video.tenant.clone();
        let waited = (chrono::Utc::now() - video.created_at)
            .to_std()
            .unwrap_or_default();
        self.analytics.record_stage(Stage::QueueWait, waited, false);
        self.metrics
            .stage_duration_seconds
            .with_label_values(&[Stage::QueueWait.as_str()])
            .observe(waited.as_secs_f64());
        self.cache.invalidate_tenant(&tenant);
        self.cache.invalidate_all();
        let params: VideoParams = match serde_json::from_value(video.params.clone()) {
            Ok(p) => p,
            Err(e) => {
                let (db, cache, hub) = (self.db.clone(), self.cache.clone(), self.hub.clone());
                actix::spawn(async move {
                    let message = format!("stored parameters are unreadable: {e}");
                    if let Err(err) =
                        with_retries(|| db::fail_video(&db, id, "invalid_params", &message, None))
                            .await
                    {
                        tracing::error!(%id, error = %err, "could not record failure");
                    }
                    cache.invalidate_tenant(&tenant);
                    hub.publish(
                        id,
                        VideoEvent::Failed {
                            error: serde_json::json!({"code": "invalid_params", "message": message}),
                        },
                    );
                });
                return;
            }
        };
        // A crashed earlier attempt may have left its temporary file.
        self.files.remove_partials(id);
        let callback_url = params.callback_url.clone();
        let spec = JobSpec {
            params,
            output: self.files.video_file(id),
            thumbnail: Some(self.files.thumbnail_file(id)),
            live: true,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Progress>();
        let live_hub = self.hub.clone();
        let cancel = Arc::new(AtomicBool::new(false));
        let (hold, held) = (self.hold.clone(), cancel.clone());
        let handle = self.generator.spawn_with(
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
            move |chunk| match chunk {
                crate::media::LiveChunk::Init { data, mime } => {
                    live_hub.publish_init(id, data.into(), mime)
                }
                crate::media::LiveChunk::Fragment(data) => {
                    live_hub.publish_fragment(id, data.into())
                }
            },
        );
        self.running.insert(id, cancel.clone());
        self.running_changed();
        self.metrics
            .jobs_total
            .with_label_values(&["rendering"])
            .inc();
        tracing::info!(%id, %tenant, attempt = video.attempts, "rendering started");
        self.hub.publish(
            id,
            VideoEvent::Status {
                status: "rendering".into(),
                queue_position: None,
            },
        );
        let hub = self.hub.clone();

        let db = self.db.clone();
        let cache = self.cache.clone();
        let files = self.files.clone();
        let metrics = self.metrics.clone();
        let analytics = self.analytics.clone();
        let handing_back = self.handing_back.clone();
        let callback = callback_url;
        let fps =
            f64::from(serde_json::from_value::<VideoParams>(video.params).map_or(30, |p| p.fps));
        let job = async move {
            let webhook = callback.as_deref().map(|url| db::WebhookRequest {
                url,
                payload: &webhook_payload,
            });
            let mut join = tokio::task::spawn_blocking(move || handle.join());
            let mut last_write = Instant::now() - PROGRESS_WRITE_EVERY;
            let result = loop {
                let latest: Option<Progress> = tokio::select! {
                    Some(p) = rx.recv() => Some(p),
                    res = &mut join => break res,
                };
                if let Some(p) = latest.filter(|p| p.frames_total > 0) {
                    if p.fps > 0.0 {
                        metrics.render_fps.set(p.fps);
                    }
                    hub.publish(
                        id,
                        VideoEvent::Progress {
                            frames_done: p.frames_done,
                            frames_total: p.frames_total,
                            progress: p.frames_done as f64 / p.frames_total as f64,
                            fps: p.fps,
                            eta_s: p.eta_s,
                            emitted_at_ms: chrono::Utc::now().timestamp_millis(),
                        },
                    );
                    if last_write.elapsed() >= PROGRESS_WRITE_EVERY {
                        last_write = Instant::now();
                        let total = p.frames_total as i64;
                        match db::record_progress(
                            &db,
                            id,
                            p.frames_done as i64,
                            total,
                            total as f64 / fps,
                        )
                        .await
                        {
                            Ok(true) => cache.invalidate_tenant(&tenant),
                            // Cancelled or deleted elsewhere: stop rendering.
                            Ok(false) => cancel.store(true, Ordering::Relaxed),
                            Err(e) => tracing::warn!(%id, error = %e, "progress write failed"),
                        }
                    }
                }
            };
            // The job's frames, patches and pipeline are freed now: give the pages back.
            tokio::task::spawn_blocking(crate::memory::release_free_memory);
            let result = result.unwrap_or_else(|e| {
                Err(GenerateError::Media(crate::media::MediaError::Pipeline(
                    e.to_string(),
                )))
            });
            match result {
                Ok(outcome) => {
                    for (stage, secs) in [
                        (Stage::Timeline, outcome.timeline_s),
                        (Stage::Render, outcome.submit_s),
                        (Stage::Readback, outcome.readback_s),
                        (Stage::Encode, outcome.encode_s),
                        (Stage::Mux, outcome.finish_s),
                    ] {
                        analytics.record_stage(stage, Duration::from_secs_f64(secs), false);
                        metrics
                            .stage_duration_seconds
                            .with_label_values(&[stage.as_str()])
                            .observe(secs);
                    }
                    analytics
                        .record_job_frames(outcome.frames, outcome.submit_s + outcome.readback_s);
                    let size = i64::try_from(outcome.size_bytes).unwrap_or(i64::MAX);
                    let frames = outcome.frames as i64;
                    match with_retries(|| {
                        db::complete_video(
                            &db,
                            id,
                            frames,
                            outcome.duration_s,
                            size,
                            webhook.as_ref(),
                        )
                    })
                    .await
                    {
                        Ok(true) => {
                            metrics.jobs_total.with_label_values(&["completed"]).inc();
                            metrics.frames_rendered_total.inc_by(outcome.frames);
                            if outcome.render_s > 0.0 {
                                metrics
                                    .render_fps
                                    .set(outcome.frames as f64 / outcome.render_s);
                            }
                            metrics
                                .encode_seconds
                                .observe(outcome.render_s + outcome.finish_s);
                            if let Ok(Some(m)) = db::get_video(&db, &tenant, id).await {
                                let video = serde_json::to_value(VideoView::from_model(m, None))
                                    .unwrap_or_default();
                                hub.publish(id, VideoEvent::Completed { video });
                            }
                            tracing::info!(%id, frames = outcome.frames, seconds = outcome.render_s, "rendering completed");
                        }
                        // Cancelled or deleted while finishing: its file must not stay.
                        Ok(false) => {
                            let _ = files.remove_video(id).await;
                        }
                        Err(e) => tracing::error!(%id, error = %e, "could not record completion"),
                    }
                }
                Err(GenerateError::Cancelled) if handing_back.load(Ordering::Relaxed) => {
                    let _ = files.remove_video(id).await;
                    // Conditional on `rendering`: a video cancelled or deleted meanwhile
                    // stays so.
                    match with_retries(|| db::requeue_video(&db, id)).await {
                        Ok(true) => {
                            tracing::info!(%id, "rendering handed back to the queue at shutdown");
                            hub.publish(
                                id,
                                VideoEvent::Status {
                                    status: "queued".into(),
                                    queue_position: None,
                                },
                            );
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::error!(%id, error = %e, "could not hand the video back; it is recovered at the next start")
                        }
                    }
                }
                Err(GenerateError::Cancelled) => {
                    let _ = files.remove_video(id).await;
                    tracing::info!(%id, "rendering stopped: cancelled");
                }
                Err(e) => {
                    metrics.jobs_total.with_label_values(&["failed"]).inc();
                    tracing::warn!(%id, error = %e, "rendering failed");
                    let _ = files.remove_video(id).await;
                    let message = e.to_string();
                    if let Err(err) = with_retries(|| {
                        db::fail_video(&db, id, e.code(), &message, webhook.as_ref())
                    })
                    .await
                    {
                        tracing::error!(%id, error = %err, "could not record failure");
                    }
                    hub.publish(
                        id,
                        VideoEvent::Failed {
                            error: serde_json::json!({"code": e.code(), "message": e.to_string()}),
                        },
                    );
                }
            }
            cache.invalidate_tenant(&tenant);
            // A late init segment may have re-created the live channel after the end.
            hub.release(id);
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
        let db = self.db.clone();
        ctx.wait(
            async move { db::recover_interrupted(&db, MAX_ATTEMPTS).await }
                .into_actor(self)
                .map(|res, _, _| match res {
                    Ok((requeued, failed)) if requeued + failed > 0 => {
                        tracing::warn!(
                            requeued,
                            failed,
                            "recovered videos interrupted by a restart"
                        );
                    }
                    Ok(_) => {}
                    Err(e) => tracing::error!(error = %e, "crash recovery failed"),
                }),
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
            capacity: self.max_jobs,
        })
    }
}

impl Supervised for JobDispatcher {}

/// Retries a terminal database write (pool time-out, SQLite busy) with back-off, so a
/// finished job is not left `rendering`; after the last try the error is returned and the
/// video is recovered at the next start.
async fn with_retries<T, F, Fut>(mut write: F) -> Result<T, db::StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, db::StoreError>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 1;
    loop {
        match write().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt >= 5 => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, attempt, "database write failed; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
                attempt += 1;
            }
        }
    }
}
