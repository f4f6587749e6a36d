//! Alert rules as configured: what a rule watches ([`Signal`]), how it compares, its severity,
//! the defaults and the `ALERT_RULES` override. Configuration parses them here; the engine
//! that evaluates them is `ops::alerts`.

use serde::{Deserialize, Serialize};

/// What a rule can watch. Every one is computed from measurements (see `actor.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// p95 latency of HTTP requests over the last minute, ms (WebSocket routes excluded).
    HttpP95Ms,
    /// Share of HTTP requests answered 5xx over the last minute, 0–1.
    HttpErrorRate,
    /// Videos waiting in the queue.
    QueueDepth,
    /// Seconds the queue needs to drain at the current completion rate and trend.
    QueueDrainEtaS,
    /// Frames per second of rendering jobs (only while a job renders).
    RenderFps,
    /// Resident memory as a percentage of `MEMORY_LIMIT_MB`.
    MemoryPercentOfLimit,
    /// Free space in `DATA_DIR`'s file system, percent.
    DiskFreePercent,
    /// Readiness checks failing (count).
    ReadinessFailing,
    /// Process CPU, percent of one core.
    CpuPercent,
    /// Share of requests rejected with 429 over the last minute, 0–1.
    RateLimitedRatio,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Signal::HttpP95Ms => "http_p95_ms",
            Signal::HttpErrorRate => "http_error_rate",
            Signal::QueueDepth => "queue_depth",
            Signal::QueueDrainEtaS => "queue_drain_eta_s",
            Signal::RenderFps => "render_fps",
            Signal::MemoryPercentOfLimit => "memory_percent_of_limit",
            Signal::DiskFreePercent => "disk_free_percent",
            Signal::ReadinessFailing => "readiness_failing",
            Signal::CpuPercent => "cpu_percent",
            Signal::RateLimitedRatio => "rate_limited_ratio",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Comparison {
    #[serde(rename = ">")]
    Above,
    #[serde(rename = "<")]
    Below,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// A rule as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub name: String,
    #[schema(value_type = String)]
    pub metric: Signal,
    #[schema(value_type = String)]
    pub op: Comparison,
    pub threshold: f64,
    /// Seconds the condition must hold before the alert fires.
    #[serde(rename = "for", default)]
    pub for_s: f64,
    #[schema(value_type = String)]
    pub severity: Severity,
    /// Human description used in the alert message.
    #[serde(default)]
    pub summary: String,
}

/// The built-in rules (mirrored by `deploy/prometheus/rules.yml`).
pub fn default_rules() -> Vec<RuleSpec> {
    let r = |name: &str, metric, op, threshold, for_s, severity, summary: &str| RuleSpec {
        name: name.into(),
        metric,
        op,
        threshold,
        for_s,
        severity,
        summary: summary.into(),
    };
    use Comparison::*;
    use Severity::*;
    use Signal::*;
    vec![
        r(
            "high_latency_p95",
            HttpP95Ms,
            Above,
            500.0,
            120.0,
            Warning,
            "HTTP p95 latency is high",
        ),
        r(
            "high_error_rate",
            HttpErrorRate,
            Above,
            0.05,
            120.0,
            Critical,
            "Many requests fail with 5xx",
        ),
        r(
            "queue_backlog",
            QueueDepth,
            Above,
            50.0,
            300.0,
            Warning,
            "Many videos are waiting",
        ),
        r(
            "queue_not_draining",
            QueueDrainEtaS,
            Above,
            1800.0,
            300.0,
            Warning,
            "The queue will not drain within 30 minutes",
        ),
        r(
            "low_render_fps",
            RenderFps,
            Below,
            10.0,
            300.0,
            Warning,
            "Rendering is slow",
        ),
        r(
            "memory_high",
            MemoryPercentOfLimit,
            Above,
            90.0,
            120.0,
            Critical,
            "Memory is near MEMORY_LIMIT_MB",
        ),
        r(
            "disk_low",
            DiskFreePercent,
            Below,
            10.0,
            300.0,
            Critical,
            "DATA_DIR's disk is nearly full",
        ),
        r(
            "not_ready",
            ReadinessFailing,
            Above,
            0.0,
            60.0,
            Critical,
            "A readiness check fails",
        ),
    ]
}

#[derive(Debug, thiserror::Error)]
pub enum RuleError {
    #[error("ALERT_RULES is not a JSON array of rules: {0}")]
    Json(#[from] serde_json::Error),
    #[error("ALERT_RULES: rule {0:?}: {1}")]
    Invalid(String, &'static str),
}

/// Defaults, with `ALERT_RULES` (JSON) replacing same-named rules and adding new ones.
pub fn rules_from(config: Option<&str>) -> Result<Vec<RuleSpec>, RuleError> {
    let mut rules = default_rules();
    if let Some(json) = config.filter(|s| !s.trim().is_empty()) {
        let extra: Vec<RuleSpec> = serde_json::from_str(json)?;
        for rule in extra {
            if rule.name.is_empty() || rule.name.len() > 64 {
                return Err(RuleError::Invalid(
                    rule.name,
                    "name must be 1–64 characters",
                ));
            }
            if !rule.threshold.is_finite() || !rule.for_s.is_finite() || rule.for_s < 0.0 {
                return Err(RuleError::Invalid(
                    rule.name,
                    "threshold and for must be finite, for ≥ 0",
                ));
            }
            match rules.iter_mut().find(|r| r.name == rule.name) {
                Some(slot) => *slot = rule,
                None => rules.push(rule),
            }
        }
    }
    Ok(rules)
}
