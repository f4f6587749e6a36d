//! Health checker: runs every registered [`HealthCheck`] periodically (each with a time-out),
//! keeps the latest result per check, and answers [`GetReport`] for `/health/ready` and
//! [`Ping`] for `/health/live`. Built-in checks: database round trip, free disk in
//! `DATA_DIR`, cache round trip, and the queue (which also keeps `reelgen_queue_depth`
//! current). The pipeline registers its GPU and encoder checks with [`RegisterCheck`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use chrono::{DateTime, Utc};
use futures_util::future::{BoxFuture, FutureExt, join_all};
use serde::Serialize;

use crate::platform::cache::CacheHandle;
use crate::platform::db::{self, Db};
use crate::platform::telemetry::Metrics;

/// One readiness check. `Ok(detail)` passes; `Err(reason)` fails the readiness probe.
pub trait HealthCheck: Send + Sync + 'static {
    fn name(&self) -> &'static str;
    fn check(&self) -> BoxFuture<'static, Result<String, String>>;
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct CheckStatus {
    pub name: String,
    pub ok: bool,
    pub detail: String,
    pub latency_ms: f64,
    pub checked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReadinessReport {
    pub ready: bool,
    pub checks: Vec<CheckStatus>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

pub struct HealthChecker {
    checks: Vec<Arc<dyn HealthCheck>>,
    results: BTreeMap<&'static str, (CheckStatus, Instant)>,
    interval: Duration,
    metrics: Arc<Metrics>,
}

impl HealthChecker {
    pub fn new(
        checks: Vec<Arc<dyn HealthCheck>>,
        interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            checks,
            results: BTreeMap::new(),
            interval,
            metrics,
        }
    }

    fn run_all(&self) -> impl ActorFuture<Self, Output = ()> + use<> {
        let runs = self.checks.iter().map(|c| {
            let name = c.name();
            let fut = c.check();
            async move {
                let started = Instant::now();
                let res = match tokio::time::timeout(CHECK_TIMEOUT, fut).await {
                    Ok(r) => r,
                    Err(_) => Err(format!("timed out after {} s", CHECK_TIMEOUT.as_secs())),
                };
                (name, res, started.elapsed())
            }
        });
        join_all(runs).into_actor(self).map(|outcomes, act, _| {
            for (name, res, took) in outcomes {
                let ok = res.is_ok();
                if !ok {
                    tracing::warn!(check = name, reason = ?res, "health check failing");
                }
                act.metrics
                    .health_check_up
                    .with_label_values(&[name])
                    .set(i64::from(ok));
                let status = CheckStatus {
                    name: name.to_string(),
                    ok,
                    detail: res.unwrap_or_else(|e| e),
                    latency_ms: took.as_secs_f64() * 1000.0,
                    checked_at: Utc::now(),
                };
                act.results.insert(name, (status, Instant::now()));
            }
        })
    }

    fn report(&self) -> ReadinessReport {
        let stale_after = self.interval * 3 + CHECK_TIMEOUT;
        let mut ready = true;
        let checks = self
            .checks
            .iter()
            .map(|c| match self.results.get(c.name()) {
                Some((status, at)) if at.elapsed() <= stale_after => {
                    ready &= status.ok;
                    status.clone()
                }
                Some((status, _)) => {
                    ready = false;
                    CheckStatus {
                        ok: false,
                        detail: format!(
                            "stale: last run {} ({})",
                            status.checked_at, status.detail
                        ),
                        ..status.clone()
                    }
                }
                None => {
                    ready = false;
                    CheckStatus {
                        name: c.name().to_string(),
                        ok: false,
                        detail: "not run yet".into(),
                        latency_ms: 0.0,
                        checked_at: Utc::now(),
                    }
                }
            })
            .collect();
        ReadinessReport { ready, checks }
    }
}

impl Actor for HealthChecker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.spawn(self.run_all());
        ctx.run_interval(self.interval, |act, ctx| {
            ctx.spawn(act.run_all());
        });
    }
}

impl Supervised for HealthChecker {}

/// Liveness heartbeat: answered as long as the actor system runs.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ping;

impl Handler<Ping> for HealthChecker {
    type Result = ();
    fn handle(&mut self, _: Ping, _: &mut Self::Context) {}
}

/// The latest result of every check.
#[derive(Message)]
#[rtype(result = "ReadinessReport")]
pub struct GetReport;

impl Handler<GetReport> for HealthChecker {
    type Result = MessageResult<GetReport>;
    fn handle(&mut self, _: GetReport, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.report())
    }
}

/// Runs every check now; replies with the fresh report once all have finished.
#[derive(Message)]
#[rtype(result = "ReadinessReport")]
pub struct RunNow;

impl Handler<RunNow> for HealthChecker {
    type Result = ResponseActFuture<Self, ReadinessReport>;
    fn handle(&mut self, _: RunNow, _: &mut Self::Context) -> Self::Result {
        Box::pin(self.run_all().map(|(), act, _| act.report()))
    }
}

/// Adds a check (the pipeline's GPU device and encoder); it runs from the next round on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct RegisterCheck(pub Arc<dyn HealthCheck>);

impl Handler<RegisterCheck> for HealthChecker {
    type Result = ();
    fn handle(&mut self, msg: RegisterCheck, ctx: &mut Self::Context) {
        self.checks.retain(|c| c.name() != msg.0.name());
        self.checks.push(msg.0);
        ctx.spawn(self.run_all());
    }
}

// ---- built-in checks ------------------------------------------------------------------------

pub struct DatabaseCheck(pub Db);

impl HealthCheck for DatabaseCheck {
    fn name(&self) -> &'static str {
        "database"
    }
    fn check(&self) -> BoxFuture<'static, Result<String, String>> {
        let db = self.0.clone();
        async move {
            db::ping(&db).await.map_err(|e| e.to_string())?;
            Ok(format!("{:?} round trip ok", db.get_database_backend()))
        }
        .boxed()
    }
}

/// The queue is the set of `queued` rows; counting them proves it is readable and keeps
/// the queue gauges current (cluster-wide: every process reads the same table).
pub struct QueueCheck {
    pub lifecycle: crate::videos::lifecycle::Lifecycle,
    pub metrics: Arc<Metrics>,
}

impl HealthCheck for QueueCheck {
    fn name(&self) -> &'static str {
        "queue"
    }
    fn check(&self) -> BoxFuture<'static, Result<String, String>> {
        let lifecycle = self.lifecycle.clone();
        let metrics = self.metrics.clone();
        async move {
            let (depth, oldest_s) = lifecycle.queue_figures().await.map_err(|e| e.to_string())?;
            metrics
                .queue_depth
                .set(i64::try_from(depth).unwrap_or(i64::MAX));
            metrics.queue_oldest_age_seconds.set(oldest_s);
            Ok(format!("{depth} queued, oldest {oldest_s:.1} s"))
        }
        .boxed()
    }
}

/// The cluster's Redis answers a PING (wake-ups, events, rate limit and cache generations
/// go through it; without it the process degrades as `platform::redis` says).
pub struct RedisCheck(pub crate::platform::redis::Redis);

impl HealthCheck for RedisCheck {
    fn name(&self) -> &'static str {
        "redis"
    }
    fn check(&self) -> BoxFuture<'static, Result<String, String>> {
        let redis = self.0.clone();
        async move {
            redis
                .ping()
                .await
                .map_err(|e| format!("Redis unreachable: {e}"))?;
            if redis.subscribed() {
                Ok("round trip ok, subscribed".into())
            } else {
                Err("round trip ok, subscriptions not yet re-established".into())
            }
        }
        .boxed()
    }
}

pub struct CacheCheck(pub CacheHandle);

impl HealthCheck for CacheCheck {
    fn name(&self) -> &'static str {
        "cache"
    }
    fn check(&self) -> BoxFuture<'static, Result<String, String>> {
        let cache = self.0.clone();
        async move {
            let stats = cache.stats();
            if !cache.probe().await {
                return Err("cache round trip failed".into());
            }
            Ok(format!(
                "in-process, {} entries, hit rate {:.3}",
                stats.entries, stats.hit_rate
            ))
        }
        .boxed()
    }
}

/// A fact established at start (the GPU device opened, the encoder probed): passes or fails
/// with the same detail every round.
pub struct StaticCheck {
    pub name: &'static str,
    pub result: Result<String, String>,
}

impl HealthCheck for StaticCheck {
    fn name(&self) -> &'static str {
        self.name
    }
    fn check(&self) -> BoxFuture<'static, Result<String, String>> {
        let r = self.result.clone();
        async move { r }.boxed()
    }
}

/// Fails when the file system holding `DATA_DIR` has less than `min_free_bytes` free.
pub struct DiskCheck {
    pub dir: PathBuf,
    pub min_free_bytes: u64,
}

impl HealthCheck for DiskCheck {
    fn name(&self) -> &'static str {
        "disk"
    }
    fn check(&self) -> BoxFuture<'static, Result<String, String>> {
        let dir = self.dir.clone();
        let min = self.min_free_bytes;
        async move {
            let free = tokio::task::spawn_blocking(move || free_space(&dir))
                .await
                .map_err(|e| e.to_string())??;
            let mib = free / (1024 * 1024);
            if free < min {
                Err(format!(
                    "{mib} MiB free in DATA_DIR, below {} MiB",
                    min / (1024 * 1024)
                ))
            } else {
                Ok(format!("{mib} MiB free"))
            }
        }
        .boxed()
    }
}

fn free_space(dir: &std::path::Path) -> Result<u64, String> {
    disk_space(dir).map(|(free, _)| free)
}

/// `(available, total)` bytes of the file system holding `dir`.
pub fn disk_space(dir: &std::path::Path) -> Result<(u64, u64), String> {
    let dir = std::fs::canonicalize(dir).map_err(|e| format!("DATA_DIR unreadable: {e}"))?;
    let disks = sysinfo::Disks::new_with_refreshed_list().map_err(|e| e.to_string())?;
    disks
        .iter()
        .filter(|d| dir.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
        .map(|d| (d.available_space(), d.total_space()))
        .ok_or_else(|| "no file system found for DATA_DIR".to_string())
}
