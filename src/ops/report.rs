//! Bottleneck detection, the optimisation score and tuning recommendations, computed from an
//! [`Evidence`] snapshot of measured numbers (so every rule can be tested on constructed
//! evidence).
//!
//! Each bottleneck has a `severity` in 0–1. The score is
//! `optimization_score = round(100 × Π (1 − severity_i / 2))`: no bottleneck scores 100, one
//! at full severity halves it, and several compound.

use serde::Serialize;
use serde_json::{Value, json};

use crate::platform::analytics::StatementSummary;
use crate::platform::analytics::window::Summary;

/// The measured numbers the rules read.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// All HTTP requests (WebSocket routes excluded), last 5 minutes.
    pub requests: Summary,
    /// Per-job stage durations, last 15 minutes.
    pub render: Summary,
    pub readback: Summary,
    pub encode: Summary,
    pub mux: Summary,
    pub queue_wait: Summary,
    pub queue_depth: u64,
    pub queue_trend_per_min: f64,
    pub jobs_in_flight: i64,
    pub max_concurrent_jobs: usize,
    pub gpu_utilization: f64,
    pub statements: Vec<StatementSummary>,
    pub cache_hits: u64,
    pub cache_misses: u64,
    pub cache_entries: i64,
    pub cache_capacity_mb: u64,
    pub cache_ttl_s: f64,
    /// Share of requests answered 429 over the last minute.
    pub rate_limited_ratio: f64,
    pub rate_limit_per_minute: u32,
    /// Requests refused with 503 (admission) since start.
    pub overloaded: u64,
    pub max_concurrent_requests: usize,
    pub rss_bytes: u64,
    pub memory_limit_bytes: u64,
    pub disk_free_bytes: u64,
    pub disk_total_bytes: u64,
    pub process_cpu_percent: f64,
    pub cores: usize,
    pub redis_configured: bool,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Bottleneck {
    pub component: String,
    pub severity: f64,
    pub summary: String,
    #[schema(value_type = Object)]
    pub evidence: Value,
    pub suggestions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Recommendation {
    pub title: String,
    /// The setting to change, when there is one.
    pub setting: Option<String>,
    pub current: Option<String>,
    pub suggested: Option<String>,
    pub detail: String,
    #[schema(value_type = Object)]
    pub evidence: Value,
}

/// Statements slower than this on average (ms, over ≥ 3 runs) count as slow.
pub const SLOW_MEAN_MS: f64 = 20.0;

fn clamp01(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

impl Evidence {
    /// Total mean time per job in the pipeline's device and encoder stages, seconds.
    fn stage_means(&self) -> (f64, f64) {
        let device = (self.render.mean_ms + self.readback.mean_ms) / 1000.0;
        let encoder = (self.encode.mean_ms + self.mux.mean_ms) / 1000.0;
        (device, encoder)
    }

    fn cache_hit_rate(&self) -> Option<f64> {
        let lookups = self.cache_hits + self.cache_misses;
        (lookups > 0).then(|| self.cache_hits as f64 / lookups as f64)
    }

    fn memory_ratio(&self) -> Option<f64> {
        (self.memory_limit_bytes > 0 && self.rss_bytes > 0)
            .then(|| self.rss_bytes as f64 / self.memory_limit_bytes as f64)
    }

    fn disk_free_percent(&self) -> Option<f64> {
        (self.disk_total_bytes > 0)
            .then(|| self.disk_free_bytes as f64 * 100.0 / self.disk_total_bytes as f64)
    }

    fn slow_statements(&self) -> Vec<&StatementSummary> {
        self.statements
            .iter()
            .filter(|s| s.summary.count >= 3 && s.summary.mean_ms >= SLOW_MEAN_MS)
            .collect()
    }
}

/// The index that would serve a statement's filter and order: `CREATE INDEX … ON t (cols)`.
pub fn suggest_index(statement: &str) -> Option<String> {
    let lower = statement.to_ascii_lowercase();
    let table = lower
        .split(" from ")
        .nth(1)?
        .split_whitespace()
        .next()?
        .trim_matches('"')
        .to_string();
    let mut cols: Vec<String> = Vec::new();
    let mut push = |c: &str| {
        let c = c
            .rsplit('.')
            .next()
            .unwrap_or(c)
            .trim_matches(|ch| ch == '"' || ch == '(' || ch == ')');
        if !c.is_empty()
            && c.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
            && !cols.iter().any(|x| x == c)
        {
            cols.push(c.to_string());
        }
    };
    if let Some(where_part) = lower.split(" where ").nth(1) {
        let filter = where_part.split(" order by ").next().unwrap_or(where_part);
        let filter = filter.split(" limit ").next().unwrap_or(filter);
        // Equality columns first (they lead an index), then ranges.
        let mut ranges = Vec::new();
        for cond in filter.split(" and ") {
            let cond = cond.trim().trim_start_matches('(');
            let mut parts = cond.split_whitespace();
            let (Some(col), Some(op)) = (parts.next(), parts.next()) else {
                continue;
            };
            match op {
                "=" | "in" => push(col),
                "<" | ">" | "<=" | ">=" => ranges.push(col.to_string()),
                _ => {}
            }
        }
        for r in ranges {
            push(&r);
        }
    }
    if let Some(order) = lower.split(" order by ").nth(1) {
        let order = order.split(" limit ").next().unwrap_or(order);
        for term in order.split(',') {
            if let Some(col) = term.split_whitespace().next() {
                push(col);
            }
        }
    }
    if cols.is_empty() {
        return None;
    }
    Some(format!(
        "CREATE INDEX idx_{table}_{} ON {table} ({})",
        cols.join("_"),
        cols.join(", ")
    ))
}

/// Every bottleneck the evidence shows, most severe first.
pub fn bottlenecks(e: &Evidence) -> Vec<Bottleneck> {
    let mut out = Vec::new();
    let (device_s, encoder_s) = e.stage_means();
    let pipeline_s = device_s + encoder_s;
    // Pressure: a stage limits throughput only when work is waiting.
    let pressure = if e.queue_depth > 0 { 1.0 } else { 0.5 };
    if e.encode.count > 0 && pipeline_s > 0.0 {
        let share = encoder_s / pipeline_s;
        if share >= 0.5 {
            out.push(Bottleneck {
                component: "encoder".into(),
                severity: round3(clamp01(share * pressure)),
                summary: format!("{:.0} % of a job's pipeline time is spent encoding and muxing", share * 100.0),
                evidence: json!({"encode_share": round3(share), "encode_mean_s": round3(e.encode.mean_ms / 1000.0),
                    "mux_mean_s": round3(e.mux.mean_ms / 1000.0), "render_mean_s": round3(device_s), "jobs": e.encode.count, "queue_depth": e.queue_depth}),
                suggestions: vec![
                    "Use quality \"draft\" (x264 ultrafast) for previews; keep \"high\" for finals".into(),
                    "Run on a machine with a hardware H.264 encoder (NVENC, VA-API, Quick Sync): it is probed first at start".into(),
                    "Lower the output resolution or fps of long videos".into(),
                ],
            });
        } else {
            out.push(Bottleneck {
                component: "render".into(),
                severity: round3(clamp01((1.0 - share) * pressure)),
                summary: format!("{:.0} % of a job's pipeline time is kernel submission and readback", (1.0 - share) * 100.0),
                evidence: json!({"render_share": round3(1.0 - share), "render_mean_s": round3(e.render.mean_ms / 1000.0),
                    "readback_mean_s": round3(e.readback.mean_ms / 1000.0), "encode_mean_s": round3(encoder_s), "gpu_utilization": round3(e.gpu_utilization), "jobs": e.render.count, "queue_depth": e.queue_depth}),
                suggestions: vec![
                    "Render on a real GPU: lavapipe (CPU Vulkan) is the fallback, not the target".into(),
                    "Lower resolution for drafts; 640×360 renders about 4× faster than 1280×720".into(),
                    format!("If the GPU idles (utilisation {:.0} %) while jobs wait, raise MAX_CONCURRENT_JOBS (now {})", e.gpu_utilization * 100.0, e.max_concurrent_jobs),
                ],
            });
        }
    }
    let wait_p95_s = e.queue_wait.p95_ms / 1000.0;
    if e.queue_depth > 0 && (wait_p95_s > 10.0 || e.queue_trend_per_min > 0.1) {
        let severity = clamp01((wait_p95_s / 300.0).max(e.queue_trend_per_min / 10.0)).max(0.1);
        out.push(Bottleneck {
            component: "queue".into(),
            severity: round3(severity),
            summary: "Videos wait longer in the queue and the backlog is not shrinking".into(),
            evidence: json!({"queue_depth": e.queue_depth, "queue_trend_per_min": round3(e.queue_trend_per_min),
                "queue_wait_p95_s": round3(wait_p95_s), "jobs_in_flight": e.jobs_in_flight, "max_concurrent_jobs": e.max_concurrent_jobs,
                "gpu_utilization": round3(e.gpu_utilization)}),
            suggestions: vec![
                format!("Raise MAX_CONCURRENT_JOBS (now {}) while GPU utilisation stays under 80 %", e.max_concurrent_jobs),
                "Add workers: run `reelgen worker` on more machines sharing REDIS_URL".into(),
            ],
        });
    }
    for s in e.slow_statements() {
        let mut suggestions = Vec::new();
        if let Some(idx) = suggest_index(&s.statement) {
            suggestions.push(format!("Add an index that serves this filter: {idx}"));
        }
        suggestions.push("Check MAX_DATABASE_CONNECTIONS and the pool wait; use PostgreSQL rather than SQLite for many writers".to_string());
        out.push(Bottleneck {
            component: "database".into(),
            severity: round3(clamp01(s.summary.mean_ms / 200.0).max(0.1)),
            summary: format!("A statement takes {:.1} ms on average", s.summary.mean_ms),
            evidence: json!({"statement": s.statement, "mean_ms": round3(s.summary.mean_ms), "p95_ms": round3(s.summary.p95_ms), "count": s.summary.count}),
            suggestions,
        });
    }
    if let Some(hit) = e.cache_hit_rate()
        && e.cache_hits + e.cache_misses >= 50
        && hit < 0.5
    {
        out.push(Bottleneck {
            component: "cache".into(),
            severity: round3(clamp01((0.5 - hit) * 2.0).max(0.1)),
            summary: format!("Only {:.0} % of cacheable reads hit the cache", hit * 100.0),
            evidence: json!({"hit_rate": round3(hit), "hits": e.cache_hits, "misses": e.cache_misses, "entries": e.cache_entries,
                "memory_cache_size_mb": e.cache_capacity_mb, "cache_ttl_s": e.cache_ttl_s}),
            suggestions: vec![
                format!("Raise CACHE_TTL (now {} s) if clients poll the same lists", e.cache_ttl_s),
                format!("Raise MEMORY_CACHE_SIZE (now {} MiB) if entries are evicted", e.cache_capacity_mb),
                "Poll less: subscribe to /api/v1/videos/{id}/ws for progress instead".into(),
            ],
        });
    }
    if e.rate_limited_ratio > 0.05 {
        out.push(Bottleneck {
            component: "rate_limiting".into(),
            severity: round3(clamp01(e.rate_limited_ratio * 2.0)),
            summary: format!("{:.0} % of requests were rejected with 429 in the last minute", e.rate_limited_ratio * 100.0),
            evidence: json!({"rate_limited_ratio": round3(e.rate_limited_ratio), "rate_limit_per_minute": e.rate_limit_per_minute}),
            suggestions: vec![
                format!("Raise RATE_LIMIT_PER_MINUTE (now {}) if these clients are legitimate", e.rate_limit_per_minute),
                "Give heavy clients their own API keys (limits are per key)".into(),
            ],
        });
    }
    if let Some(r) = e.memory_ratio()
        && r > 0.8
    {
        out.push(Bottleneck {
            component: "memory".into(),
            severity: round3(clamp01((r - 0.8) / 0.2).max(0.1)),
            summary: format!("Resident memory is {:.0} % of MEMORY_LIMIT_MB", r * 100.0),
            evidence: json!({"rss_bytes": e.rss_bytes, "memory_limit_bytes": e.memory_limit_bytes, "ratio": round3(r), "jobs_in_flight": e.jobs_in_flight}),
            suggestions: vec![
                format!("Lower MAX_CONCURRENT_JOBS (now {}): each 1080p job holds its frame buffers", e.max_concurrent_jobs),
                format!("Lower MEMORY_CACHE_SIZE (now {} MiB)", e.cache_capacity_mb),
                "Raise MEMORY_LIMIT_MB if the machine has room".into(),
            ],
        });
    }
    if let Some(free) = e.disk_free_percent()
        && free < 15.0
    {
        out.push(Bottleneck {
            component: "disk".into(),
            severity: round3(clamp01((15.0 - free) / 15.0).max(0.1)),
            summary: format!("Only {free:.1} % of DATA_DIR's disk is free"),
            evidence: json!({"free_bytes": e.disk_free_bytes, "total_bytes": e.disk_total_bytes, "free_percent": round3(free)}),
            suggestions: vec![
                "Delete old videos (DELETE /api/v1/videos/{id}) or move DATA_DIR to a larger volume".into(),
            ],
        });
    }
    let p95 = e.requests.p95_ms;
    if e.requests.count >= 20 && p95 > 250.0 {
        out.push(Bottleneck {
            component: "http".into(),
            severity: round3(clamp01(p95 / 1000.0)),
            summary: format!("HTTP p95 latency is {p95:.0} ms"),
            evidence: json!({"p95_ms": round3(p95), "p99_ms": round3(e.requests.p99_ms), "rps": round3(e.requests.rate), "process_cpu_percent": round3(e.process_cpu_percent), "cores": e.cores}),
            suggestions: vec![
                "Check the database bottleneck above: slow statements show in every request".into(),
                "Scale out: several replicas behind a load balancer with REDIS_URL so limits and cache are shared".into(),
            ],
        });
    }
    out.sort_by(|a, b| b.severity.total_cmp(&a.severity));
    out
}

/// `round(100 × Π (1 − severity / 2))`.
pub fn optimization_score(bottlenecks: &[Bottleneck]) -> u32 {
    let product: f64 = bottlenecks
        .iter()
        .map(|b| 1.0 - clamp01(b.severity) / 2.0)
        .product();
    (100.0 * product).round() as u32
}

/// Tuning advice with the figure that supports each.
pub fn recommendations(e: &Evidence) -> Vec<Recommendation> {
    let mut out = Vec::new();
    if e.queue_depth > 0
        && e.jobs_in_flight >= e.max_concurrent_jobs as i64
        && e.gpu_utilization < 0.6
    {
        out.push(Recommendation {
            title: "Render more videos at once".into(),
            setting: Some("MAX_CONCURRENT_JOBS".into()),
            current: Some(e.max_concurrent_jobs.to_string()),
            suggested: Some((e.max_concurrent_jobs + 1).max(e.max_concurrent_jobs * 2).to_string()),
            detail: format!("The GPU is busy {:.0} % of the time while {} videos wait: every slot is taken but the device is not.", e.gpu_utilization * 100.0, e.queue_depth),
            evidence: json!({"gpu_utilization": round3(e.gpu_utilization), "queue_depth": e.queue_depth, "jobs_in_flight": e.jobs_in_flight}),
        });
    }
    let (device_s, encoder_s) = e.stage_means();
    if e.encode.count > 0 && encoder_s > device_s && encoder_s > 0.0 {
        out.push(Recommendation {
            title: "Encoding dominates: use a faster quality for drafts".into(),
            setting: Some("quality (per video)".into()),
            current: None,
            suggested: Some("draft".into()),
            detail: format!("Encoding and muxing take {encoder_s:.2} s per job against {device_s:.2} s of rendering; \"draft\" uses x264's ultrafast preset."),
            evidence: json!({"encode_mean_s": round3(encoder_s), "render_mean_s": round3(device_s), "jobs": e.encode.count}),
        });
    }
    if let Some(hit) = e.cache_hit_rate()
        && e.cache_hits + e.cache_misses >= 50
        && hit < 0.5
    {
        out.push(Recommendation {
            title: "Keep cached responses longer".into(),
            setting: Some("CACHE_TTL".into()),
            current: Some(format!("{}", e.cache_ttl_s)),
            suggested: Some(format!("{}", (e.cache_ttl_s * 2.0).max(5.0))),
            detail: format!("The response cache hits {:.0} % of {} lookups.", hit * 100.0, e.cache_hits + e.cache_misses),
            evidence: json!({"hit_rate": round3(hit), "hits": e.cache_hits, "misses": e.cache_misses}),
        });
    }
    if e.rate_limited_ratio > 0.05 {
        out.push(Recommendation {
            title: "Clients hit the rate limit".into(),
            setting: Some("RATE_LIMIT_PER_MINUTE".into()),
            current: Some(e.rate_limit_per_minute.to_string()),
            suggested: Some((e.rate_limit_per_minute * 2).to_string()),
            detail: format!(
                "{:.0} % of requests in the last minute were answered 429.",
                e.rate_limited_ratio * 100.0
            ),
            evidence: json!({"rate_limited_ratio": round3(e.rate_limited_ratio)}),
        });
    }
    if e.overloaded > 0 {
        out.push(Recommendation {
            title: "Requests were refused as overload".into(),
            setting: Some("MAX_CONCURRENT_REQUESTS".into()),
            current: Some(e.max_concurrent_requests.to_string()),
            suggested: Some((e.max_concurrent_requests * 2).to_string()),
            detail: format!(
                "{} requests got 503 because more than MAX_CONCURRENT_REQUESTS were in flight.",
                e.overloaded
            ),
            evidence: json!({"overloaded_total": e.overloaded}),
        });
    }
    if let Some(r) = e.memory_ratio()
        && r > 0.8
        && e.max_concurrent_jobs > 1
    {
        out.push(Recommendation {
            title: "Memory is near its budget".into(),
            setting: Some("MAX_CONCURRENT_JOBS".into()),
            current: Some(e.max_concurrent_jobs.to_string()),
            suggested: Some((e.max_concurrent_jobs - 1).to_string()),
            detail: format!("Resident memory is {:.0} % of MEMORY_LIMIT_MB.", r * 100.0),
            evidence: json!({"rss_bytes": e.rss_bytes, "memory_limit_bytes": e.memory_limit_bytes}),
        });
    }
    if !e.redis_configured && e.process_cpu_percent > 80.0 * e.cores.max(1) as f64 {
        out.push(Recommendation {
            title: "One process is saturated: scale out with Redis".into(),
            setting: Some("REDIS_URL".into()),
            current: None,
            suggested: Some("redis://…".into()),
            detail: format!("This process uses {:.0} % CPU on {} cores. Run several replicas with REDIS_URL so the queue, rate limits and cache are shared.", e.process_cpu_percent, e.cores),
            evidence: json!({"process_cpu_percent": round3(e.process_cpu_percent), "cores": e.cores}),
        });
    }
    for s in e.slow_statements() {
        if let Some(idx) = suggest_index(&s.statement) {
            out.push(Recommendation {
                title: "Index a slow query".into(),
                setting: None,
                current: None,
                suggested: Some(idx),
                detail: format!(
                    "This statement averages {:.1} ms over {} runs.",
                    s.summary.mean_ms, s.summary.count
                ),
                evidence: json!({"statement": s.statement, "mean_ms": round3(s.summary.mean_ms)}),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(count: u64, mean_ms: f64) -> Summary {
        Summary {
            count,
            mean_ms,
            p95_ms: mean_ms * 1.5,
            ..Summary::default()
        }
    }

    #[test]
    fn a_healthy_process_has_no_bottleneck_and_scores_100() {
        let e = Evidence {
            requests: summary(1000, 2.0),
            max_concurrent_jobs: 2,
            ..Evidence::default()
        };
        assert!(bottlenecks(&e).is_empty());
        assert_eq!(optimization_score(&[]), 100);
        assert!(recommendations(&e).is_empty());
    }

    #[test]
    fn encoder_bound_jobs_point_at_quality_and_hardware_encoders() {
        let e = Evidence {
            render: summary(4, 2000.0),
            readback: summary(4, 1000.0),
            encode: summary(4, 8000.0),
            mux: summary(4, 1000.0),
            queue_depth: 3,
            max_concurrent_jobs: 2,
            ..Evidence::default()
        };
        let b = bottlenecks(&e);
        assert_eq!(b[0].component, "encoder");
        assert!((b[0].severity - 0.75).abs() < 1e-9, "{:?}", b[0]);
        assert!(b[0].suggestions[0].contains("draft"));
        assert_eq!(b[0].evidence["encode_share"], 0.75);
        assert_eq!(optimization_score(&b), 63); // 100 × (1 − 0.375)
        let r = recommendations(&e);
        assert!(r.iter().any(|r| r.suggested.as_deref() == Some("draft")));
    }

    #[test]
    fn an_idle_gpu_with_waiting_jobs_recommends_more_concurrent_jobs() {
        let e = Evidence {
            queue_depth: 12,
            queue_trend_per_min: 2.0,
            queue_wait: summary(10, 90_000.0),
            jobs_in_flight: 2,
            max_concurrent_jobs: 2,
            gpu_utilization: 0.3,
            ..Evidence::default()
        };
        let b = bottlenecks(&e);
        assert_eq!(b[0].component, "queue");
        assert!(b[0].suggestions[0].contains("MAX_CONCURRENT_JOBS"));
        let r = recommendations(&e);
        assert_eq!(r[0].setting.as_deref(), Some("MAX_CONCURRENT_JOBS"));
        assert_eq!(r[0].suggested.as_deref(), Some("4"));
    }

    #[test]
    fn a_slow_statement_gets_the_index_that_serves_its_filter() {
        let e = Evidence {
            statements: vec![StatementSummary {
                statement: "SELECT \"videos\".\"id\" FROM \"videos\" WHERE \"videos\".\"tenant\" = ? AND \"videos\".\"status\" = ? ORDER BY \"videos\".\"created_at\" DESC, \"videos\".\"id\" DESC LIMIT ?".into(),
                failed: 0,
                summary: summary(40, 80.0),
            }],
            ..Evidence::default()
        };
        let b = bottlenecks(&e);
        assert_eq!(b[0].component, "database");
        assert!((b[0].severity - 0.4).abs() < 1e-9);
        assert!(
            b[0].suggestions[0].contains("ON videos (tenant, status, created_at, id)"),
            "{:?}",
            b[0].suggestions
        );
    }

    #[test]
    fn cache_rate_limit_memory_and_disk_rules_trigger_on_their_evidence() {
        let e = Evidence {
            cache_hits: 10,
            cache_misses: 90,
            cache_ttl_s: 2.0,
            rate_limited_ratio: 0.3,
            rate_limit_per_minute: 60,
            rss_bytes: 950,
            memory_limit_bytes: 1000,
            disk_free_bytes: 5,
            disk_total_bytes: 100,
            max_concurrent_jobs: 2,
            ..Evidence::default()
        };
        let comps: Vec<String> = bottlenecks(&e).into_iter().map(|b| b.component).collect();
        for c in ["cache", "rate_limiting", "memory", "disk"] {
            assert!(comps.iter().any(|x| x == c), "{c} missing from {comps:?}");
        }
        let settings: Vec<Option<String>> =
            recommendations(&e).into_iter().map(|r| r.setting).collect();
        for s in ["CACHE_TTL", "RATE_LIMIT_PER_MINUTE", "MAX_CONCURRENT_JOBS"] {
            assert!(
                settings.iter().any(|x| x.as_deref() == Some(s)),
                "{s} missing"
            );
        }
    }
}
