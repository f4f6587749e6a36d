//! Performance endpoints (SPEC §5), under `/api/v1/performance/` and `/performance/`:
//! `metrics`, `stats`, `bottlenecks`, `recommendations` and `alerts` (JSON, or a WebSocket
//! stream of alert state changes on the same path). Every figure comes from
//! [`crate::platform::analytics`]: the request and stage histograms, the analytics actor's live view,
//! the resource monitor's sample and the Prometheus counters.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::api::socket::{Socket, Upkeep};
use crate::context::Context;
use crate::ops::alerts::Alert;
use crate::ops::report::{self, Evidence};
use crate::platform::analytics::window::WINDOWS;
use crate::platform::analytics::{Stage, is_streaming_route};
use crate::platform::error::ApiError;

/// The window `metrics` reports over.
const METRICS_WINDOW_S: u64 = 60;

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ResponseTimes {
    pub avg: f64,
    pub p95: f64,
    pub p99: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct Throughput {
    pub rps: f64,
    pub concurrent: i64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ResourceUsage {
    pub cpu_percent: f64,
    pub memory_percent: f64,
    pub gpu_percent: f64,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct AiPerformance {
    /// Mean device time (kernel submission + readback) per frame, ms; null before any frame.
    pub avg_inference_ms: Option<f64>,
    /// Share of jobs whose avatar layers were resident in the GPU scheduler's model cache
    /// (`MODEL_CACHE_SIZE`); null while no job has opened.
    pub model_cache_hit_rate: Option<f64>,
    /// Frames the GPU scheduler put in its submissions ÷ frames the running jobs' batches
    /// could have held in those rounds (1.0: every submission full); null before any frame.
    pub batch_efficiency: Option<f64>,
    /// Mean frames per GPU submission, all jobs together (cross-job batching).
    pub frames_per_submission: Option<f64>,
    /// Frames per job batch now (auto-tuned when `BATCH_SIZE_AUTO_TUNE`).
    pub batch_size: Option<usize>,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct PerformanceMetrics {
    pub response_times: ResponseTimes,
    pub throughput: Throughput,
    pub resource_usage: ResourceUsage,
    pub ai_performance: AiPerformance,
    /// Seconds the figures cover.
    pub window_s: u64,
    pub requests: u64,
}

/// Headline figures, measured over the last minute
///
/// Times in ms. `cpu_percent` is this process (percent of one core), `memory_percent` the
/// process's resident memory against the machine's, `gpu_percent` the renderer's busy time.
#[utoipa::path(get, path = "/api/v1/performance/metrics", tag = "performance",
    responses((status = 200, body = PerformanceMetrics)))]
pub async fn metrics(state: web::Data<Context>) -> HttpResponse {
    let a = &state.perf.analytics;
    let req = a.requests(METRICS_WINDOW_S);
    let view = state.perf.view.read().clone();
    let sample = *state.latest_sample.read();
    let frames = a.frames(900);
    let sch = a.scheduler();
    let body = PerformanceMetrics {
        response_times: ResponseTimes {
            avg: round3(req.mean_ms),
            p95: round3(req.p95_ms),
            p99: round3(req.p99_ms),
        },
        throughput: Throughput {
            rps: round3(req.rate),
            concurrent: state.recorder.analytics().requests_log().in_flight() as i64,
        },
        resource_usage: ResourceUsage {
            cpu_percent: round3(sample.map_or(0.0, |s| s.process_cpu_percent)),
            memory_percent: round3(sample.map_or(0.0, |s| {
                if s.system_memory_total_bytes == 0 {
                    0.0
                } else {
                    s.process_rss_bytes as f64 * 100.0 / s.system_memory_total_bytes as f64
                }
            })),
            gpu_percent: round3(view.gpu_utilization * 100.0),
        },
        ai_performance: AiPerformance {
            avg_inference_ms: (frames.count > 0).then(|| round3(frames.mean_ms)),
            model_cache_hit_rate: sch.and_then(|s| s.model_cache_hit_rate).map(round3),
            batch_efficiency: sch.and_then(|s| s.batch_efficiency).map(round3),
            frames_per_submission: sch
                .filter(|s| s.submissions > 0)
                .map(|s| round3(s.frames_per_submission)),
            batch_size: sch.map(|s| s.batch_size),
        },
        window_s: METRICS_WINDOW_S,
        requests: req.count,
    };
    HttpResponse::Ok().json(body)
}

/// Per-route and per-stage statistics over 1, 5 and 15 minutes, with forecasts
///
/// `windows.{1m,5m,15m}.routes[]` and `.stages[]` hold count, errors, rate (per second),
/// error_rate and mean/p50/p95/p99/max in ms. `database` lists statement timings (normalised
/// text) and the slowest recent statements; `forecast` holds Holt linear-trend forecasts of
/// queue depth and resident memory.
#[utoipa::path(get, path = "/api/v1/performance/stats", tag = "performance",
    responses((status = 200, description = "statistics", content_type = "application/json")))]
pub async fn stats(state: web::Data<Context>) -> HttpResponse {
    let a = &state.perf.analytics;
    let mut windows = serde_json::Map::new();
    for (name, secs) in WINDOWS {
        let routes: Vec<Value> = a
            .routes(secs)
            .into_iter()
            .map(|r| {
                let mut v = serde_json::to_value(&r).unwrap_or_default();
                v["streaming"] = json!(is_streaming_route(&r.route));
                v
            })
            .collect();
        windows.insert(
            name.to_string(),
            json!({
                "seconds": secs,
                "requests": a.requests(secs),
                "routes": routes,
                "stages": a.stages(secs),
                "frames": a.frames(secs),
            }),
        );
    }
    let view = state.perf.view.read().clone();
    let m = &state.metrics;
    let hits = m.cache_hits_total.get();
    let misses = m.cache_misses_total.get();
    let (rate_limited, overloaded) = a.rejected();
    HttpResponse::Ok().json(json!({
        "windows": windows,
        "database": {
            "statements": a.statements(300).into_iter().take(20).collect::<Vec<_>>(),
            "slow": a.slow_statements(),
            "slow_threshold_ms": crate::platform::analytics::SLOW_STATEMENT.as_millis() as u64,
        },
        "cache": {
            "hits": hits,
            "misses": misses,
            "hit_rate": if hits + misses > 0 { Some(hits as f64 / (hits + misses) as f64) } else { None },
            "entries": m.cache_entries.get(),
        },
        "rejections": {"rate_limited": rate_limited, "overloaded": overloaded},
        "queue": {
            "depth": view.queue_depth,
            "jobs_in_flight": view.jobs_in_flight,
            "drain_eta_s": view.queue_drain_eta_s,
        },
        "gpu": {"utilization": view.gpu_utilization},
        "forecast": {
            "method": "holt_linear",
            "queue_depth": view.queue_forecast,
            "memory_bytes": view.memory_forecast,
        },
        "signals": view.signals,
    }))
}

/// The evidence the bottleneck and recommendation rules read, from live measurements.
pub fn gather(state: &Context) -> Evidence {
    let a = &state.perf.analytics;
    let view = state.perf.view.read().clone();
    let sample = *state.latest_sample.read();
    let c = &state.config;
    let m = &state.metrics;
    Evidence {
        requests: a.requests(300),
        render: a.stage(Stage::Render, 900),
        readback: a.stage(Stage::Readback, 900),
        encode: a.stage(Stage::Encode, 900),
        mux: a.stage(Stage::Mux, 900),
        queue_wait: a.stage(Stage::QueueWait, 900),
        queue_depth: view.queue_depth,
        queue_trend_per_min: view.queue_forecast.trend_per_min,
        jobs_in_flight: view.jobs_in_flight,
        max_concurrent_jobs: c.max_concurrent_jobs,
        gpu_utilization: view.gpu_utilization,
        statements: a.statements(300),
        cache_hits: m.cache_hits_total.get(),
        cache_misses: m.cache_misses_total.get(),
        cache_entries: m.cache_entries.get(),
        cache_capacity_mb: c.memory_cache_size_mb,
        cache_ttl_s: c.cache_ttl.as_secs_f64(),
        rate_limited_ratio: view
            .signals
            .get("rate_limited_ratio")
            .copied()
            .unwrap_or(0.0),
        rate_limit_per_minute: c.rate_limit_per_minute,
        overloaded: a.rejected().1,
        max_concurrent_requests: c.max_concurrent_requests,
        rss_bytes: sample.map_or(0, |s| s.process_rss_bytes),
        memory_limit_bytes: c.memory_limit_mb * 1024 * 1024,
        disk_free_bytes: view.disk_free_bytes,
        disk_total_bytes: view.disk_total_bytes,
        process_cpu_percent: sample.map_or(0.0, |s| s.process_cpu_percent),
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        redis_configured: c.redis_url.is_some(),
    }
}

/// What limits throughput now
///
/// Each bottleneck has a `component`, a `severity` 0–1, the `evidence` (measured numbers that
/// triggered it) and `suggestions`. `optimization_score = round(100 × Π(1 − severity/2))`.
#[utoipa::path(get, path = "/api/v1/performance/bottlenecks", tag = "performance",
    responses((status = 200, description = "bottlenecks and score", content_type = "application/json")))]
pub async fn bottlenecks(state: web::Data<Context>) -> HttpResponse {
    let found = report::bottlenecks(&gather(&state));
    let score = report::optimization_score(&found);
    HttpResponse::Ok().json(json!({
        "bottlenecks": found,
        "optimization_score": score,
        "score_formula": "round(100 × Π(1 − severity_i / 2))",
    }))
}

/// Tuning suggestions derived from measured data
#[utoipa::path(get, path = "/api/v1/performance/recommendations", tag = "performance",
    responses((status = 200, description = "recommendations", content_type = "application/json")))]
pub async fn recommendations(state: web::Data<Context>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"data": report::recommendations(&gather(&state))}))
}

const HEARTBEAT: Duration = Duration::from_secs(10);
/// A client silent this long (no pong, no frame) is gone.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// One alert as a WebSocket text frame: the alert object with `"type": "alert"`, tagged like
/// the video socket's messages.
fn alert_frame(alert: &Alert) -> String {
    let mut v = serde_json::to_value(alert).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("type".into(), json!("alert"));
    }
    v.to_string()
}

/// Active and recent alerts; a WebSocket upgrade streams state changes
///
/// Without an upgrade: `{"data": [alert…]}` (firing ones first, then the most recent from
/// the history kept in the database) and `rules`. With `Upgrade: websocket`: the currently
/// firing alerts first, then every `firing`/`resolved` transition as one JSON alert per text
/// frame (with `"type": "alert"`), as it happens. Browsers may pass the API key as `?access_token=`.
#[utoipa::path(get, path = "/api/v1/performance/alerts", tag = "performance",
    responses((status = 200, description = "alerts", content_type = "application/json"),
        (status = 101, description = "switching to WebSocket"),
        (status = 400, description = "a malformed WebSocket handshake", body = crate::platform::error::Problem, content_type = "application/problem+json"),
        (status = 426, description = "an Upgrade header without a WebSocket handshake", body = crate::platform::error::Problem, content_type = "application/problem+json")))]
pub async fn alerts(
    state: web::Data<Context>,
    req: HttpRequest,
    body: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if !upgrade {
        let firing = state.perf.firing.read().clone();
        let mut data: Vec<Alert> = firing.clone();
        // This process's latest transitions win over the history rows, which the writer
        // records a moment after they are broadcast.
        let recent: Vec<Alert> = state.perf.recent.read().iter().cloned().collect();
        for a in recent
            .into_iter()
            .chain(crate::ops::alerts::recent_alerts(&state.db, 100).await?)
        {
            if !data.iter().any(|f| f.id == a.id) {
                data.push(a);
            }
        }
        return Ok(HttpResponse::Ok().json(json!({
            "data": data,
            "firing": firing.len(),
            "rules": state.perf.rules.as_ref(),
        })));
    }
    // Subscribe before reading the firing list: a change in between is sent twice at worst
    // (clients key alerts by id), never lost.
    crate::platform::error::verify_upgrade(&req)?;
    let mut changes = state.perf.alerts_tx.subscribe();
    let firing = state.perf.firing.read().clone();
    let (response, mut socket) = Socket::upgrade(
        &req,
        body,
        state.shutdown.subscribe(),
        HEARTBEAT,
        CLIENT_TIMEOUT,
    )?;
    actix_web::rt::spawn(async move {
        for alert in &firing {
            if !socket.text(alert_frame(alert)).await {
                return;
            }
        }
        loop {
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(alert) => {
                        if !socket.text(alert_frame(&alert)).await {
                            return;
                        }
                    }
                    // Too slow for a burst: resend what fires now, then carry on.
                    Err(RecvError::Lagged(_)) => {
                        let now = state.perf.firing.read().clone();
                        for alert in &now {
                            if !socket.text(alert_frame(alert)).await {
                                return;
                            }
                        }
                    }
                    Err(RecvError::Closed) => break,
                },
                upkeep = socket.upkeep() => if upkeep == Upkeep::Ended {
                    return;
                },
            }
        }
        socket.close().await;
    });
    Ok(response)
}

/// The performance routes, mounted under `/api/v1/performance` and `/performance`.
pub fn routes(c: &mut web::ServiceConfig) {
    c.service(super::get("/metrics", metrics))
        .service(super::get("/stats", stats))
        .service(super::get("/bottlenecks", bottlenecks))
        .service(super::get("/recommendations", recommendations))
        .service(super::get("/alerts", alerts));
}

/// The performance OpenAPI fragment (the `/performance/*` aliases are added to the document).
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(metrics, stats, bottlenecks, recommendations, alerts),
    components(schemas(Alert, crate::platform::alert_rules::RuleSpec))
)]
pub struct Doc;
