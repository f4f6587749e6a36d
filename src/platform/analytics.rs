//! Performance analytics: what the process measures about itself, kept as rolling HDR
//! histograms (1, 5 and 15 minute windows) per route, per pipeline stage and per database
//! statement.
//!
//! Recording happens on the hot path (every request, every database statement), so it goes
//! into [`Analytics`] — a shared table behind short locks, like the rate limiter's — rather
//! than through an actor's mailbox; HTTP requests, the hottest, into a shard per HTTP worker
//! that readers merge ([`requests`]), which is also where Prometheus reads them from. The [`actor::AnalyticsActor`] owns everything periodic:
//! sampling GPU busy time, disk and queue, the Holt forecasts, and the alert rule engine.

pub mod requests;
pub mod window;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;

use window::{Series, Summary};

/// Pipeline stages timed per job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Accepted → claimed by the dispatcher.
    QueueWait,
    /// Script → phonemes, speech audio and per-frame parameters.
    Timeline,
    /// Kernel submission (the avatar, background and caption passes).
    Render,
    /// Waiting for finished frames to come back from the device.
    Readback,
    /// Handing frames to the encoder (blocks when the encoder is behind).
    Encode,
    /// Draining the encoder and writing the MP4 (fast-start rewrite, rename).
    Mux,
    /// One webhook delivery attempt.
    Webhook,
}

impl Stage {
    pub const ALL: [Stage; 7] = [
        Stage::QueueWait,
        Stage::Timeline,
        Stage::Render,
        Stage::Readback,
        Stage::Encode,
        Stage::Mux,
        Stage::Webhook,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Stage::QueueWait => "queue_wait",
            Stage::Timeline => "timeline",
            Stage::Render => "render",
            Stage::Readback => "readback",
            Stage::Encode => "encode",
            Stage::Mux => "mux",
            Stage::Webhook => "webhook",
        }
    }
}

/// A database statement's aggregate.
struct StatementStats {
    series: Series,
    failed: u64,
}

/// One slow statement, as it ran.
#[derive(Debug, Clone, Serialize)]
pub struct SlowStatement {
    pub statement: String,
    pub ms: f64,
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Statements slower than this go to the slow list.
pub const SLOW_STATEMENT: Duration = Duration::from_millis(100);
const SLOW_KEPT: usize = 20;
const MAX_STATEMENTS: usize = 200;

/// The shared measurement table.
#[derive(Clone)]
pub struct Analytics {
    inner: Arc<Inner>,
}

struct Inner {
    epoch: Instant,
    /// Every HTTP request, recorded per worker (see [`requests`]).
    requests: Arc<requests::RequestLog>,
    stages: Mutex<HashMap<Stage, Series>>,
    /// Per-frame render + readback time, weighted by frames (the "inference" time).
    frame_ms: Mutex<Series>,
    statements: Mutex<HashMap<String, StatementStats>>,
    slow: Mutex<Vec<SlowStatement>>,
    /// Nanoseconds the GPU worker spent busy (render + readback), all jobs together.
    gpu_busy_ns: Arc<AtomicU64>,
    /// The GPU scheduler's counters, once the worker has a device.
    scheduler: parking_lot::RwLock<Option<Arc<crate::render::gpu::scheduler::SchedulerStats>>>,
    jobs_completed: Mutex<Series>,
}

impl Default for Analytics {
    fn default() -> Self {
        Self::new()
    }
}

/// A statement's text with literals and whitespace normalised, so that its runs aggregate;
/// a plain column list (`SELECT "t"."a", "t"."b" FROM`) reads `SELECT … FROM`, so what is
/// kept of a long statement is its tables and conditions.
pub fn normalise_statement(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len().min(512));
    let mut chars = sql.chars().peekable();
    let mut last_space = false;
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                // A string literal: replace with a placeholder.
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                }
                out.push('?');
                last_space = false;
            }
            c if c.is_whitespace() => {
                if !last_space {
                    out.push(' ');
                }
                last_space = true;
            }
            '$' if chars.peek().is_some_and(char::is_ascii_digit) => {
                while chars.peek().is_some_and(char::is_ascii_digit) {
                    chars.next();
                }
                out.push('?');
                last_space = false;
            }
            c => {
                out.push(c);
                last_space = false;
            }
        }
        if out.len() > 8192 {
            break;
        }
    }
    // Collapse placeholder lists such as `IN (?, ?, ?)`.
    while out.contains("?, ?") {
        out = out.replace("?, ?", "?");
    }
    let mut out = collapse_select_lists(out.trim());
    if out.len() > 400 {
        let mut cut = 400;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push('…');
    }
    out
}

/// `SELECT <columns> FROM` → `SELECT … FROM` where the columns are a plain list (no
/// parentheses: an aggregate or subquery stays as written).
fn collapse_select_lists(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut rest = sql;
    while let Some(i) = rest.find("SELECT ") {
        let after = &rest[i + 7..];
        out.push_str(&rest[..i + 7]);
        match after.find(" FROM ") {
            Some(j) if !after[..j].contains('(') && after[..j].contains(',') => {
                out.push('…');
                rest = &after[j..];
            }
            _ => rest = after,
        }
    }
    out.push_str(rest);
    out
}

/// `select`, `insert`, `update`, `delete` or `other`, from a statement's first keyword.
pub fn statement_kind(sql: &str) -> &'static str {
    let head: String = sql
        .trim_start()
        .chars()
        .take(6)
        .collect::<String>()
        .to_ascii_lowercase();
    match head.as_str() {
        "select" => "select",
        "insert" => "insert",
        "update" => "update",
        "delete" => "delete",
        _ => "other",
    }
}

impl Analytics {
    pub fn new() -> Self {
        let epoch = Instant::now();
        Self {
            inner: Arc::new(Inner {
                epoch,
                requests: Arc::new(requests::RequestLog::new(epoch)),
                stages: Mutex::new(HashMap::new()),
                frame_ms: Mutex::new(Series::new(epoch)),
                statements: Mutex::new(HashMap::new()),
                slow: Mutex::new(Vec::new()),
                gpu_busy_ns: Arc::new(AtomicU64::new(0)),
                scheduler: parking_lot::RwLock::new(None),
                jobs_completed: Mutex::new(Series::new(epoch)),
            }),
        }
    }

    pub fn epoch(&self) -> Instant {
        self.inner.epoch
    }

    /// One HTTP request (5xx counts as an error), from a thread that is not an HTTP worker
    /// (the edge records into its worker's shard: [`Analytics::requests_log`]).
    pub fn record_request(&self, method: &'static str, route: &str, status: u16, d: Duration) {
        self.inner.requests.record(method, route, status, d);
    }

    /// The HTTP requests' log: per-worker shards, requests in flight, the Prometheus view.
    pub fn requests_log(&self) -> &Arc<requests::RequestLog> {
        &self.inner.requests
    }

    /// One stage of one job took `d`.
    pub fn record_stage(&self, stage: Stage, d: Duration, failed: bool) {
        let now = Instant::now();
        self.inner
            .stages
            .lock()
            .entry(stage)
            .or_insert_with(|| Series::new(self.inner.epoch))
            .record(now, d, failed);
    }

    /// A finished job: `frames` frames whose render + readback took `device_s` in all.
    pub fn record_job_frames(&self, frames: u64, device_s: f64) {
        if frames == 0 {
            return;
        }
        let per_frame_us = (device_s * 1e6 / frames as f64).round() as u64;
        let now = Instant::now();
        self.inner
            .frame_ms
            .lock()
            .record_n(now, per_frame_us, frames, false);
        self.inner
            .jobs_completed
            .lock()
            .record(now, Duration::from_secs_f64(device_s), false);
    }

    /// One database statement (from sea-orm's metric callback).
    pub fn record_statement(&self, sql: &str, d: Duration, failed: bool) {
        let now = Instant::now();
        let key = normalise_statement(sql);
        {
            let mut st = self.inner.statements.lock();
            if !st.contains_key(&key) && st.len() >= MAX_STATEMENTS {
                // Forget the statements idle longest rather than grow without bound.
                st.retain(|_, s| !s.series.is_idle(now));
            }
            if st.len() < MAX_STATEMENTS || st.contains_key(&key) {
                let entry = st.entry(key.clone()).or_insert_with(|| StatementStats {
                    series: Series::new(self.inner.epoch),
                    failed: 0,
                });
                entry.series.record(now, d, failed);
                if failed {
                    entry.failed += 1;
                }
            }
        }
        if d >= SLOW_STATEMENT {
            let mut slow = self.inner.slow.lock();
            slow.push(SlowStatement {
                statement: key,
                ms: d.as_secs_f64() * 1e3,
                at: chrono::Utc::now(),
            });
            if slow.len() > SLOW_KEPT {
                let excess = slow.len() - SLOW_KEPT;
                slow.drain(..excess);
            }
        }
    }

    /// The counter the renderer adds its busy time to.
    pub fn gpu_busy_counter(&self) -> Arc<AtomicU64> {
        self.inner.gpu_busy_ns.clone()
    }

    pub fn set_scheduler(&self, stats: Arc<crate::render::gpu::scheduler::SchedulerStats>) {
        *self.inner.scheduler.write() = Some(stats);
    }

    /// The GPU scheduler's batching and model-cache figures (`None` without a worker).
    pub fn scheduler(&self) -> Option<crate::render::gpu::scheduler::StatsSnapshot> {
        self.inner.scheduler.read().as_ref().map(|s| s.snapshot())
    }

    pub fn gpu_busy_ns(&self) -> u64 {
        self.inner.gpu_busy_ns.load(Ordering::Relaxed)
    }

    /// Requests answered 429 / 503 (admission) since start.
    pub fn rejected(&self) -> (u64, u64) {
        let log = &self.inner.requests;
        (log.with_status(429), log.with_status(503))
    }

    /// Every route's summary over the window.
    pub fn routes(&self, secs: u64) -> Vec<RouteSummary> {
        self.inner
            .requests
            .routes(secs)
            .into_iter()
            .map(|(method, route, summary)| RouteSummary {
                method,
                route,
                summary,
            })
            .collect()
    }

    /// All requests together over the window, excluding long-lived WebSocket routes
    /// (whose "duration" is the connection's lifetime).
    pub fn requests(&self, secs: u64) -> Summary {
        self.inner
            .requests
            .overall(secs, |route| !is_streaming_route(route))
    }

    pub fn stages(&self, secs: u64) -> Vec<StageSummary> {
        let now = Instant::now();
        let stages = self.inner.stages.lock();
        Stage::ALL
            .iter()
            .filter_map(|stage| {
                let s = stages.get(stage)?;
                Some(StageSummary {
                    stage: stage.as_str(),
                    summary: s.summary(now, secs),
                })
            })
            .filter(|s| s.summary.count > 0)
            .collect()
    }

    pub fn stage(&self, stage: Stage, secs: u64) -> Summary {
        let now = Instant::now();
        self.inner
            .stages
            .lock()
            .get(&stage)
            .map(|s| s.summary(now, secs))
            .unwrap_or_default()
    }

    /// Per-frame device time over the window (count = frames).
    pub fn frames(&self, secs: u64) -> Summary {
        self.inner.frame_ms.lock().summary(Instant::now(), secs)
    }

    /// Jobs that finished rendering over the window.
    pub fn jobs_completed(&self, secs: u64) -> Summary {
        self.inner
            .jobs_completed
            .lock()
            .summary(Instant::now(), secs)
    }

    pub fn statements(&self, secs: u64) -> Vec<StatementSummary> {
        let now = Instant::now();
        let st = self.inner.statements.lock();
        let mut out: Vec<StatementSummary> = st
            .iter()
            .map(|(k, s)| StatementSummary {
                statement: k.clone(),
                failed: s.failed,
                summary: s.series.summary(now, secs),
            })
            .filter(|s| s.summary.count > 0)
            .collect();
        out.sort_by(|a, b| {
            (b.summary.mean_ms * b.summary.count as f64)
                .total_cmp(&(a.summary.mean_ms * a.summary.count as f64))
        });
        out
    }

    pub fn slow_statements(&self) -> Vec<SlowStatement> {
        let mut v = self.inner.slow.lock().clone();
        v.reverse();
        v
    }
}

/// WebSocket routes: their recorded duration is a connection's lifetime, not a latency.
pub fn is_streaming_route(route: &str) -> bool {
    route.ends_with("/ws") || route.ends_with("/alerts")
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteSummary {
    pub method: &'static str,
    pub route: String,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct StageSummary {
    pub stage: &'static str,
    #[serde(flatten)]
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct StatementSummary {
    pub statement: String,
    pub failed: u64,
    #[serde(flatten)]
    pub summary: Summary,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_normalise_literals_and_placeholder_lists() {
        assert_eq!(
            normalise_statement(
                "SELECT  *\n FROM \"videos\" WHERE \"tenant\" = $1 AND id IN ($2, $3, $4)"
            ),
            "SELECT * FROM \"videos\" WHERE \"tenant\" = ? AND id IN (?)"
        );
        assert_eq!(
            normalise_statement("UPDATE t SET s = 'it''s' WHERE id = ?"),
            "UPDATE t SET s = ?? WHERE id = ?"
        );
        assert_eq!(
            normalise_statement(
                "SELECT \"videos\".\"id\", \"videos\".\"tenant\" FROM \"videos\" WHERE id = $1"
            ),
            "SELECT … FROM \"videos\" WHERE id = ?"
        );
        assert_eq!(
            normalise_statement("SELECT COUNT(*) AS n FROM (SELECT a, b FROM t) AS s"),
            "SELECT COUNT(*) AS n FROM (SELECT … FROM t) AS s"
        );
        assert_eq!(statement_kind("  select 1"), "select");
        assert_eq!(statement_kind("WITH x AS (…)"), "other");
    }

    #[test]
    fn requests_exclude_websocket_routes_and_count_rejections() {
        let a = Analytics::new();
        a.record_request("GET", "/api/v1/videos", 200, Duration::from_millis(4));
        a.record_request("GET", "/api/v1/videos", 429, Duration::from_millis(1));
        a.record_request(
            "GET",
            "/api/v1/videos/{id}/ws",
            101,
            Duration::from_secs(30),
        );
        a.record_request("POST", "/api/v1/videos", 500, Duration::from_millis(8));
        let all = a.requests(60);
        assert_eq!(all.count, 3);
        assert_eq!(all.errors, 1);
        assert!(all.max_ms < 10.0, "{all:?}");
        assert_eq!(a.rejected(), (1, 0));
        assert_eq!(a.routes(60).len(), 3);
    }
}
