//! Tracing set-up and every Prometheus metric reelgen exports, defined in one place — but
//! the HTTP request families, which `platform::analytics::requests` builds at each scrape from
//! the per-worker request log ([`Recorder::new`] registers them). The registry is per
//! [`Metrics`] instance (not global) so several servers in one test process never share
//! counters.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

pub struct Metrics {
    pub registry: Registry,
    pub jobs_total: IntCounterVec,
    pub jobs_in_flight: IntGauge,
    pub queue_depth: IntGauge,
    pub frames_rendered_total: IntCounter,
    pub render_fps: prometheus::Gauge,
    pub encode_seconds: Histogram,
    pub cache_hits_total: IntCounter,
    pub cache_misses_total: IntCounter,
    pub cache_entries: IntGauge,
    pub rate_limited_total: IntCounter,
    pub actor_restarts_total: IntCounterVec,
    pub health_check_up: IntGaugeVec,
    pub system_memory_used_bytes: IntGauge,
    pub system_memory_total_bytes: IntGauge,
    pub system_cpu_percent: prometheus::Gauge,
    pub process_cpu_percent: prometheus::Gauge,
    pub stage_duration_seconds: HistogramVec,
    pub gpu_utilization_ratio: prometheus::Gauge,
    pub gpu_batch_efficiency_ratio: prometheus::Gauge,
    pub gpu_frames_per_submission: prometheus::Gauge,
    pub gpu_batch_size: IntGauge,
    pub model_cache_hits_total: IntGauge,
    pub model_cache_misses_total: IntGauge,
    pub memory_limit_bytes: IntGauge,
    pub disk_free_bytes: IntGauge,
    pub disk_total_bytes: IntGauge,
    pub queue_drain_eta_seconds: prometheus::Gauge,
    pub alerts_firing: IntGaugeVec,
    pub db_statement_duration_seconds: HistogramVec,
    pub queue_oldest_age_seconds: prometheus::Gauge,
    pub claims_total: IntCounter,
    pub lease_expiries_total: IntCounter,
    pub redis_errors_total: IntCounter,
    pub rate_limit_fallback_total: IntCounter,
    pub storage_seconds: HistogramVec,
    pub sessions_open: IntGauge,
    pub session_speak_latency_seconds: Histogram,
    pub session_frames_total: IntCounter,
    pub session_frames_late_total: IntCounter,
    pub session_frames_dropped_total: IntCounter,
}

#[derive(Debug, thiserror::Error)]
#[error("metric registration failed: {0}")]
pub struct MetricsError(#[from] prometheus::Error);

impl Metrics {
    pub fn new() -> Result<Self, MetricsError> {
        let registry = Registry::new();
        let m = Self {
            jobs_total: IntCounterVec::new(
                Opts::new(
                    "reelgen_jobs_total",
                    "Video jobs by the status they reached",
                ),
                &["status"],
            )?,
            jobs_in_flight: IntGauge::new("reelgen_jobs_in_flight", "Videos rendering now")?,
            queue_depth: IntGauge::new("reelgen_queue_depth", "Videos waiting in the queue")?,
            frames_rendered_total: IntCounter::new(
                "reelgen_frames_rendered_total",
                "Frames rendered",
            )?,
            render_fps: prometheus::Gauge::new(
                "reelgen_render_fps",
                "Frames per second rendered, recent",
            )?,
            encode_seconds: Histogram::with_opts(
                HistogramOpts::new("reelgen_encode_seconds", "Time to encode one video").buckets(
                    vec![0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0],
                ),
            )?,
            cache_hits_total: IntCounter::new("reelgen_cache_hits_total", "Response cache hits")?,
            cache_misses_total: IntCounter::new(
                "reelgen_cache_misses_total",
                "Response cache misses",
            )?,
            cache_entries: IntGauge::new("reelgen_cache_entries", "Entries in the response cache")?,
            rate_limited_total: IntCounter::new(
                "reelgen_rate_limited_total",
                "Requests rejected with 429",
            )?,
            actor_restarts_total: IntCounterVec::new(
                Opts::new(
                    "reelgen_actor_restarts_total",
                    "Subsystem actors restarted by the supervisor",
                ),
                &["actor"],
            )?,
            health_check_up: IntGaugeVec::new(
                Opts::new("reelgen_health_check_up", "1 when a readiness check passes"),
                &["check"],
            )?,
            system_memory_used_bytes: IntGauge::new(
                "reelgen_system_memory_used_bytes",
                "System memory in use",
            )?,
            system_memory_total_bytes: IntGauge::new(
                "reelgen_system_memory_total_bytes",
                "System memory",
            )?,
            system_cpu_percent: prometheus::Gauge::new(
                "reelgen_system_cpu_percent",
                "System CPU use, all cores",
            )?,
            process_cpu_percent: prometheus::Gauge::new(
                "reelgen_process_cpu_percent",
                "This process's CPU use",
            )?,
            stage_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "reelgen_stage_duration_seconds",
                    "Time one job spent in each pipeline stage",
                )
                .buckets(vec![
                    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
                    900.0,
                ]),
                &["stage"],
            )?,
            gpu_utilization_ratio: prometheus::Gauge::new(
                "reelgen_gpu_utilization_ratio",
                "Share of wall time the renderer kept the GPU busy, last second",
            )?,
            gpu_batch_efficiency_ratio: prometheus::Gauge::new(
                "reelgen_gpu_batch_efficiency_ratio",
                "Frames per GPU submission against what the running jobs could have filled",
            )?,
            gpu_frames_per_submission: prometheus::Gauge::new(
                "reelgen_gpu_frames_per_submission",
                "Mean frames the GPU scheduler put in one submission, all jobs together",
            )?,
            gpu_batch_size: IntGauge::new(
                "reelgen_gpu_batch_size",
                "Frames per job batch the GPU scheduler uses now (auto-tuned or configured)",
            )?,
            model_cache_hits_total: IntGauge::new(
                "reelgen_model_cache_hits_total",
                "Jobs whose avatar layers were already resident in the GPU model cache",
            )?,
            model_cache_misses_total: IntGauge::new(
                "reelgen_model_cache_misses_total",
                "Jobs whose avatar layers had to be rendered into the GPU model cache",
            )?,
            memory_limit_bytes: IntGauge::new(
                "reelgen_memory_limit_bytes",
                "MEMORY_LIMIT_MB in bytes",
            )?,
            disk_free_bytes: IntGauge::new(
                "reelgen_disk_free_bytes",
                "Free bytes in DATA_DIR's file system",
            )?,
            disk_total_bytes: IntGauge::new(
                "reelgen_disk_total_bytes",
                "Size of DATA_DIR's file system",
            )?,
            queue_drain_eta_seconds: prometheus::Gauge::new(
                "reelgen_queue_drain_eta_seconds",
                "Estimated seconds to drain the queue (+Inf when it is not draining)",
            )?,
            alerts_firing: IntGaugeVec::new(
                Opts::new(
                    "reelgen_alerts_firing",
                    "1 while the built-in alert rule fires",
                ),
                &["rule", "severity"],
            )?,
            db_statement_duration_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "reelgen_db_statement_duration_seconds",
                    "Database statement latency by kind",
                )
                .buckets(vec![
                    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ]),
                &["kind"],
            )?,
            queue_oldest_age_seconds: prometheus::Gauge::new(
                "reelgen_queue_oldest_age_seconds",
                "Age of the oldest queued video (0 when none waits), cluster-wide",
            )?,
            claims_total: IntCounter::new(
                "reelgen_claims_total",
                "Videos this process's worker claimed from the queue",
            )?,
            lease_expiries_total: IntCounter::new(
                "reelgen_lease_expiries_total",
                "Videos this process found with a lapsed lease and put back in the queue (or failed after the last attempt)",
            )?,
            redis_errors_total: IntCounter::new(
                "reelgen_redis_errors_total",
                "Redis commands that failed or timed out",
            )?,
            rate_limit_fallback_total: IntCounter::new(
                "reelgen_rate_limit_fallback_total",
                "Rate-limit decisions made from this process's own budget because Redis did not answer",
            )?,
            storage_seconds: HistogramVec::new(
                HistogramOpts::new(
                    "reelgen_storage_seconds",
                    "Object storage latency by operation",
                )
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
                ]),
                &["op"],
            )?,
            sessions_open: IntGauge::new(
                "reelgen_sessions_open",
                "Live avatar sessions open in this process",
            )?,
            session_speak_latency_seconds: Histogram::with_opts(
                HistogramOpts::new(
                    "reelgen_session_speak_latency_seconds",
                    "From a speak request to its first frame handed to the session's streams",
                )
                .buckets(vec![
                    0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5,
                ]),
            )?,
            session_frames_total: IntCounter::new(
                "reelgen_session_frames_total",
                "Frames live sessions rendered and streamed",
            )?,
            session_frames_late_total: IntCounter::new(
                "reelgen_session_frames_late_total",
                "Live frames rendered after their time (streamed late)",
            )?,
            session_frames_dropped_total: IntCounter::new(
                "reelgen_session_frames_dropped_total",
                "Live frames skipped because the session had fallen a frame behind (their sound still went)",
            )?,
            registry,
        };
        let r = &m.registry;
        r.register(Box::new(m.sessions_open.clone()))?;
        r.register(Box::new(m.session_speak_latency_seconds.clone()))?;
        r.register(Box::new(m.session_frames_total.clone()))?;
        r.register(Box::new(m.session_frames_late_total.clone()))?;
        r.register(Box::new(m.session_frames_dropped_total.clone()))?;
        r.register(Box::new(m.jobs_total.clone()))?;
        r.register(Box::new(m.jobs_in_flight.clone()))?;
        r.register(Box::new(m.queue_depth.clone()))?;
        r.register(Box::new(m.frames_rendered_total.clone()))?;
        r.register(Box::new(m.render_fps.clone()))?;
        r.register(Box::new(m.encode_seconds.clone()))?;
        r.register(Box::new(m.cache_hits_total.clone()))?;
        r.register(Box::new(m.cache_misses_total.clone()))?;
        r.register(Box::new(m.cache_entries.clone()))?;
        r.register(Box::new(m.rate_limited_total.clone()))?;
        r.register(Box::new(m.actor_restarts_total.clone()))?;
        r.register(Box::new(m.health_check_up.clone()))?;
        r.register(Box::new(m.system_memory_used_bytes.clone()))?;
        r.register(Box::new(m.system_memory_total_bytes.clone()))?;
        r.register(Box::new(m.system_cpu_percent.clone()))?;
        r.register(Box::new(m.process_cpu_percent.clone()))?;
        r.register(Box::new(m.stage_duration_seconds.clone()))?;
        r.register(Box::new(m.gpu_utilization_ratio.clone()))?;
        r.register(Box::new(m.gpu_batch_efficiency_ratio.clone()))?;
        r.register(Box::new(m.gpu_frames_per_submission.clone()))?;
        r.register(Box::new(m.gpu_batch_size.clone()))?;
        r.register(Box::new(m.model_cache_hits_total.clone()))?;
        r.register(Box::new(m.model_cache_misses_total.clone()))?;
        r.register(Box::new(m.memory_limit_bytes.clone()))?;
        r.register(Box::new(m.disk_free_bytes.clone()))?;
        r.register(Box::new(m.disk_total_bytes.clone()))?;
        r.register(Box::new(m.queue_drain_eta_seconds.clone()))?;
        r.register(Box::new(m.alerts_firing.clone()))?;
        r.register(Box::new(m.db_statement_duration_seconds.clone()))?;
        r.register(Box::new(m.queue_oldest_age_seconds.clone()))?;
        r.register(Box::new(m.claims_total.clone()))?;
        r.register(Box::new(m.lease_expiries_total.clone()))?;
        r.register(Box::new(m.redis_errors_total.clone()))?;
        r.register(Box::new(m.rate_limit_fallback_total.clone()))?;
        r.register(Box::new(m.storage_seconds.clone()))?;
        // process_cpu_seconds_total, process_resident_memory_bytes, process_open_fds, …
        r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        for status in entity::video::VideoStatus::ALL {
            m.jobs_total.with_label_values(&[status.as_str()]);
        }
        for stage in crate::platform::analytics::Stage::ALL {
            m.stage_duration_seconds
                .with_label_values(&[stage.as_str()]);
        }
        for actor in [
            "rate_limiter",
            "cache_manager",
            "resource_monitor",
            "health_checker",
        ] {
            m.actor_restarts_total.with_label_values(&[actor]);
        }
        for kind in ["select", "insert", "update", "delete", "other"] {
            m.db_statement_duration_seconds.with_label_values(&[kind]);
        }
        Ok(m)
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            tracing::warn!(error = %e, "metrics encoding failed");
        }
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// One call per measurement: each method feeds the Prometheus metric and the analytics
/// windows (the performance API and the alert engine) together, so the two never disagree.
#[derive(Clone)]
pub struct Recorder {
    metrics: std::sync::Arc<Metrics>,
    analytics: crate::platform::analytics::Analytics,
}

impl Recorder {
    /// Also registers the HTTP request families, which the analytics' request log holds
    /// (recorded once per request, per worker; see `platform::analytics::requests`).
    pub fn new(
        metrics: std::sync::Arc<Metrics>,
        analytics: crate::platform::analytics::Analytics,
    ) -> Result<Self, MetricsError> {
        metrics.registry.register(Box::new(
            crate::platform::analytics::requests::RequestMetrics::new(
                analytics.requests_log().clone(),
            )?,
        ))?;
        Ok(Self { metrics, analytics })
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    pub fn analytics(&self) -> &crate::platform::analytics::Analytics {
        &self.analytics
    }

    /// One stage of a job (queue wait, timeline, render, …, webhook delivery).
    pub fn stage(&self, stage: crate::platform::analytics::Stage, took: Duration, failed: bool) {
        self.metrics
            .stage_duration_seconds
            .with_label_values(&[stage.as_str()])
            .observe(took.as_secs_f64());
        self.analytics.record_stage(stage, took, failed);
    }

    /// One database statement.
    pub fn statement(&self, sql: &str, took: Duration, failed: bool) {
        self.metrics
            .db_statement_duration_seconds
            .with_label_values(&[crate::platform::analytics::statement_kind(sql)])
            .observe(took.as_secs_f64());
        self.analytics.record_statement(sql, took, failed);
    }
}

/// Installs the log subscriber (`RUST_LOG` filter, default `info`). Safe to call twice.
pub fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,sea_orm=warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
