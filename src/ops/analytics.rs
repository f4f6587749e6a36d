//! The analytics actor: once a second it turns raw measurements into the live view the
//! performance endpoints read — GPU utilisation from the renderer's busy time, queue depth
//! and its Holt forecast, memory and disk — evaluates the alert rules, records every alert
//! transition in the database, and pushes it to the alert WebSocket subscribers.
//!
//! Messages: [`EvaluateNow`] (one tick now, replying with the alert changes) and
//! [`GetView`] (the latest [`LiveView`]).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::RwLock;
use serde::Serialize;
use tokio::sync::broadcast;

use super::alerts::{Alert, Engine};
use crate::ops::health;
use crate::ops::resources::LatestSample;
use crate::ops::supervisor::Actors;
use crate::platform::alert_rules::{RuleSpec, Signal};
use crate::platform::analytics::Analytics;
use crate::platform::analytics::window::Holt;
use crate::platform::db::Db;
use crate::platform::telemetry::Metrics;

/// How often the actor ticks.
pub const TICK: Duration = Duration::from_secs(1);
/// Forecasts take a sample every this many ticks.
const FORECAST_EVERY: u64 = 5;

/// A Holt forecast as reported.
#[derive(Debug, Clone, Copy, Default, Serialize, utoipa::ToSchema)]
pub struct Forecast {
    pub now: f64,
    pub level: f64,
    pub trend_per_min: f64,
    pub in_5_min: f64,
    pub in_15_min: f64,
    pub samples: u64,
}

impl Forecast {
    fn from_holt(now: f64, h: &Holt, sample_s: f64) -> Self {
        let per_min = 60.0 / sample_s;
        Self {
            now,
            level: h.level,
            trend_per_min: h.trend * per_min,
            in_5_min: h.forecast(5.0 * per_min).max(0.0),
            in_15_min: h.forecast(15.0 * per_min).max(0.0),
            samples: h.samples(),
        }
    }
}

/// What the actor computed on its latest tick.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LiveView {
    pub gpu_utilization: f64,
    pub queue_depth: u64,
    pub jobs_in_flight: i64,
    /// `None` while the queue cannot drain (nothing completes and it is not shrinking).
    pub queue_drain_eta_s: Option<f64>,
    pub queue_forecast: Forecast,
    pub memory_forecast: Forecast,
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
    pub readiness_failing: Vec<String>,
    /// Latest value of every alert signal (absent: not meaningful now).
    pub signals: HashMap<&'static str, f64>,
}

/// Shared with the HTTP handlers.
#[derive(Clone)]
pub struct AnalyticsHub {
    pub analytics: Analytics,
    pub view: Arc<RwLock<LiveView>>,
    pub firing: Arc<RwLock<Vec<Alert>>>,
    /// The latest state of the most recent alerts, newest first, updated with every
    /// transition as it is broadcast: the REST list overlays it on the database history, so
    /// it agrees with what WebSocket subscribers saw even before the row is written.
    pub recent: Arc<RwLock<VecDeque<Alert>>>,
    pub alerts_tx: broadcast::Sender<Alert>,
    pub rules: Arc<Vec<RuleSpec>>,
}

impl AnalyticsHub {
    pub fn new(analytics: Analytics, rules: Vec<RuleSpec>) -> Self {
        let (alerts_tx, _) = broadcast::channel(256);
        Self {
            analytics,
            view: Arc::default(),
            firing: Arc::default(),
            recent: Arc::default(),
            alerts_tx,
            rules: Arc::new(rules),
        }
    }
}

/// What the analytics actor is made from (kept by its supervisor to restart it).
#[derive(Clone)]
pub struct Seed {
    pub hub: AnalyticsHub,
    pub db: Db,
    pub actors: Actors,
    pub latest: LatestSample,
    pub metrics: Arc<Metrics>,
    pub data_dir: std::path::PathBuf,
    pub memory_limit_mb: u64,
    /// How long a firing alert's value must stay clear before it resolves.
    pub clear_for: Duration,
}

pub struct AnalyticsActor {
    hub: AnalyticsHub,
    engine: Engine,
    db: Db,
    actors: Actors,
    latest: LatestSample,
    metrics: Arc<Metrics>,
    data_dir: std::path::PathBuf,
    memory_limit_bytes: f64,
    ticks: u64,
    last_busy: (Instant, u64),
    queue_holt: Holt,
    memory_holt: Holt,
    /// (when, requests rejected with 429 so far) for the last minute.
    rejections: VecDeque<(Instant, u64)>,
    disk: (u64, u64),
    /// Alert transitions to record, written in order by one task (see `started`).
    persist_tx: Option<tokio::sync::mpsc::UnboundedSender<Alert>>,
}

/// How many recent alerts the hub keeps in memory.
const RECENT_ALERTS: usize = 100;

impl AnalyticsActor {
    pub fn new(seed: Seed) -> Self {
        let Seed {
            hub,
            db,
            actors,
            latest,
            metrics,
            data_dir,
            memory_limit_mb,
            clear_for,
        } = seed;
        let engine = Engine::new(hub.rules.as_ref().clone(), clear_for);
        let busy = hub.analytics.gpu_busy_ns();
        let limited = hub.analytics.rejected().0;
        Self {
            hub,
            engine,
            db,
            actors,
            latest,
            metrics,
            data_dir,
            memory_limit_bytes: memory_limit_mb as f64 * 1024.0 * 1024.0,
            ticks: 0,
            last_busy: (Instant::now(), busy),
            queue_holt: Holt::new(0.5, 0.3),
            memory_holt: Holt::new(0.5, 0.3),
            // The baseline: rejections counted before the first tick belong to the window.
            rejections: VecDeque::from([(Instant::now(), limited)]),
            disk: (0, 0),
            persist_tx: None,
        }
    }

    /// Gathers what needs I/O (queue depth, readiness), then computes and evaluates.
    fn tick(&mut self) -> impl ActorFuture<Self, Output = Vec<Alert>> + use<> {
        let db = self.db.clone();
        let health = self.actors.health_checker();
        let refresh_disk = self.ticks.is_multiple_of(10);
        let data_dir = self.data_dir.clone();
        let io = async move {
            let depth = crate::videos::store::count_queued(&db).await.ok();
            let report = health.send(health::GetReport).await.ok();
            let disk = if refresh_disk {
                tokio::task::spawn_blocking(move || health::disk_space(&data_dir).ok())
                    .await
                    .ok()
                    .flatten()
            } else {
                None
            };
            (depth, report, disk)
        };
        io.into_actor(self).map(|(depth, report, disk), act, _| {
            act.ticks += 1;
            if let Some(d) = disk {
                act.disk = d;
            }
            let failing = report
                .map(|r| {
                    r.checks
                        .into_iter()
                        .filter(|c| !c.ok)
                        .map(|c| c.name)
                        .collect()
                })
                .unwrap_or_default();
            act.compute(depth, failing)
        })
    }

    fn compute(&mut self, depth: Option<u64>, readiness_failing: Vec<String>) -> Vec<Alert> {
        let now = Instant::now();
        let a = &self.hub.analytics;
        let m = &self.metrics;

        // GPU: the renderer's busy time over wall time since the last tick.
        let busy = a.gpu_busy_ns();
        let (then, then_busy) = self.last_busy;
        let wall = now.duration_since(then).as_nanos().max(1) as f64;
        let gpu = ((busy.saturating_sub(then_busy)) as f64 / wall).clamp(0.0, 1.0);
        self.last_busy = (now, busy);
        m.gpu_utilization_ratio.set(gpu);
        if let Some(sch) = a.scheduler() {
            m.gpu_batch_efficiency_ratio
                .set(sch.batch_efficiency.unwrap_or(0.0));
            m.gpu_frames_per_submission.set(sch.frames_per_submission);
            m.gpu_batch_size
                .set(i64::try_from(sch.batch_size).unwrap_or(i64::MAX));
            m.model_cache_hits_total
                .set(i64::try_from(sch.model_hits).unwrap_or(i64::MAX));
            m.model_cache_misses_total
                .set(i64::try_from(sch.model_misses).unwrap_or(i64::MAX));
        }

        let depth = depth.unwrap_or_else(|| m.queue_depth.get().max(0) as u64);
        m.queue_depth.set(i64::try_from(depth).unwrap_or(i64::MAX));
        let sample = *self.latest.read();
        let rss = sample.map_or(0, |s| s.process_rss_bytes);
        if self.ticks.is_multiple_of(FORECAST_EVERY) || self.queue_holt.samples() == 0 {
            self.queue_holt.update(depth as f64);
            self.memory_holt.update(rss as f64);
        }
        let sample_s = (TICK * FORECAST_EVERY as u32).as_secs_f64();
        let queue_forecast = Forecast::from_holt(depth as f64, &self.queue_holt, sample_s);
        let memory_forecast = Forecast::from_holt(rss as f64, &self.memory_holt, sample_s);

        // Drain: the faster of the completion rate and the queue's own downward trend.
        let completed_per_s = a.jobs_completed(300).rate;
        let shrinking_per_s = (-queue_forecast.trend_per_min / 60.0).max(0.0);
        let drain_per_s = completed_per_s.max(shrinking_per_s);
        let drain_eta = if depth == 0 {
            Some(0.0)
        } else if drain_per_s > 0.0 {
            Some(depth as f64 / drain_per_s)
        } else {
            None
        };
        m.queue_drain_eta_seconds
            .set(drain_eta.unwrap_or(f64::INFINITY));

        let limit = self.memory_limit_bytes;
        m.memory_limit_bytes.set(limit as i64);
        let (free, total) = self.disk;
        m.disk_free_bytes
            .set(i64::try_from(free).unwrap_or(i64::MAX));
        m.disk_total_bytes
            .set(i64::try_from(total).unwrap_or(i64::MAX));

        let requests = a.requests(60);
        let (limited, _) = a.rejected();
        self.rejections.push_back((now, limited));
        while self
            .rejections
            .front()
            .is_some_and(|(t, _)| now.duration_since(*t) > Duration::from_secs(60))
        {
            self.rejections.pop_front();
        }
        let limited_1m = limited - self.rejections.front().map_or(limited, |(_, n)| *n);
        let in_flight = m.jobs_in_flight.get();

        let mut signals: HashMap<&'static str, f64> = HashMap::new();
        let value = |s: Signal| -> Option<f64> {
            match s {
                Signal::HttpP95Ms => (requests.count > 0).then_some(requests.p95_ms),
                Signal::HttpErrorRate => (requests.count > 0).then_some(requests.error_rate),
                Signal::QueueDepth => Some(depth as f64),
                Signal::QueueDrainEtaS => Some(drain_eta.unwrap_or(f64::INFINITY)),
                Signal::RenderFps => {
                    (in_flight > 0 && m.render_fps.get() > 0.0).then(|| m.render_fps.get())
                }
                Signal::MemoryPercentOfLimit => {
                    (rss > 0 && limit > 0.0).then(|| rss as f64 * 100.0 / limit)
                }
                Signal::DiskFreePercent => (total > 0).then(|| free as f64 * 100.0 / total as f64),
                Signal::ReadinessFailing => Some(readiness_failing.len() as f64),
                Signal::CpuPercent => sample.map(|s| s.process_cpu_percent),
                Signal::RateLimitedRatio => {
                    (requests.count > 0).then(|| limited_1m as f64 / requests.count as f64)
                }
            }
        };
        for s in [
            Signal::HttpP95Ms,
            Signal::HttpErrorRate,
            Signal::QueueDepth,
            Signal::QueueDrainEtaS,
            Signal::RenderFps,
            Signal::MemoryPercentOfLimit,
            Signal::DiskFreePercent,
            Signal::ReadinessFailing,
            Signal::CpuPercent,
            Signal::RateLimitedRatio,
        ] {
            if let Some(v) = value(s).filter(|v| v.is_finite()) {
                signals.insert(s.as_str(), v);
            }
        }
        let changes = self.engine.evaluate(now, value);

        *self.hub.view.write() = LiveView {
            gpu_utilization: gpu,
            queue_depth: depth,
            jobs_in_flight: in_flight,
            queue_drain_eta_s: drain_eta,
            queue_forecast,
            memory_forecast,
            disk_free_bytes: free,
            disk_total_bytes: total,
            readiness_failing,
            signals,
        };
        if !changes.is_empty() {
            *self.hub.firing.write() = self.engine.firing();
            {
                let mut recent = self.hub.recent.write();
                for alert in &changes {
                    recent.retain(|a| a.id != alert.id);
                    recent.push_front(alert.clone());
                }
                recent.truncate(RECENT_ALERTS);
            }
            for alert in &changes {
                let firing = i64::from(alert.state == super::alerts::AlertState::Firing);
                m.alerts_firing
                    .with_label_values(&[&alert.rule, &alert.severity])
                    .set(firing);
                tracing::warn!(rule = %alert.rule, state = ?alert.state, value = alert.value, "alert");
                let _ = self.hub.alerts_tx.send(alert.clone());
            }
        }
        changes
    }

    /// Queues the transitions for the writer task, which records them one at a time in
    /// the order they happened (a `resolved` update never overtakes its `firing` insert).
    fn persist(&self, changes: Vec<Alert>) {
        let Some(tx) = &self.persist_tx else { return };
        for alert in changes {
            if tx.send(alert).is_err() {
                tracing::warn!("alert writer stopped; transition not recorded");
            }
        }
    }
}

impl Actor for AnalyticsActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<Alert>();
        let db = self.db.clone();
        actix::spawn(async move {
            while let Some(alert) = rx.recv().await {
                if let Err(e) = crate::ops::alerts::save_alert(&db, &alert).await {
                    tracing::warn!(error = %e, rule = %alert.rule, "could not record alert");
                }
            }
        });
        self.persist_tx = Some(tx);
        for rule in self.hub.rules.iter() {
            self.metrics
                .alerts_firing
                .with_label_values(&[&rule.name, rule.severity.as_str()])
                .set(0);
        }
        ctx.run_interval(TICK, |act, ctx| {
            let fut = act.tick().map(|changes, act, _| act.persist(changes));
            ctx.spawn(fut);
        });
    }
}

impl Supervised for AnalyticsActor {}

/// Runs one tick now; replies with the alerts that changed state.
#[derive(Message)]
#[rtype(result = "Vec<Alert>")]
pub struct EvaluateNow;

impl Handler<EvaluateNow> for AnalyticsActor {
    type Result = ResponseActFuture<Self, Vec<Alert>>;
    fn handle(&mut self, _: EvaluateNow, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.tick().map(|changes, act, _| {
            act.persist(changes.clone());
            changes
        }))
    }
}

/// The latest computed view.
#[derive(Message)]
#[rtype(result = "LiveView")]
pub struct GetView;

impl Handler<GetView> for AnalyticsActor {
    type Result = MessageResult<GetView>;
    fn handle(&mut self, _: GetView, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.hub.view.read().clone())
    }
}
