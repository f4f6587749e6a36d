//! Operations (SPEC §5): health, liveness, readiness, Prometheus metrics, and the test and
//! benchmark hooks.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::context::Context;
use crate::ops::{health as health_checker, resources as resource_monitor};
use crate::platform::error::{ApiError, PROBLEM_JSON};
use crate::platform::{cache as cache_manager, limiter as rate_limiter};

const LIVENESS_TIMEOUT: Duration = Duration::from_secs(1);

/// The liveness probe's path (also what `reelgen probe live` asks).
pub const LIVE_PATH: &str = "/health/live";
/// The readiness probe's path (also what `reelgen probe ready` asks).
pub const READY_PATH: &str = "/health/ready";

/// `{"status": "ok"}` while the process serves
#[utoipa::path(get, path = "/health", tag = "ops", responses((status = 200, description = "serving")))]
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// 200 unless the actor system is wedged
///
/// Sends a heartbeat to every subsystem actor; any that does not answer within a second
/// makes this 503.
#[utoipa::path(get, path = "/health/live", tag = "ops",
    responses((status = 200, description = "alive"), (status = 503, description = "an actor did not answer")))]
pub async fn live(state: web::Data<Context>) -> HttpResponse {
    let a = &state.actors;
    let (rl, cm, rm, hc) = futures_util::join!(
        a.rate_limiter()
            .send(rate_limiter::GetStats)
            .timeout(LIVENESS_TIMEOUT),
        a.cache_manager()
            .send(cache_manager::GetStats)
            .timeout(LIVENESS_TIMEOUT),
        a.resource_monitor()
            .send(resource_monitor::GetLatest)
            .timeout(LIVENESS_TIMEOUT),
        a.health_checker()
            .send(health_checker::Ping)
            .timeout(LIVENESS_TIMEOUT),
    );
    let actors = json!({
        "rate_limiter": rl.is_ok(),
        "cache_manager": cm.is_ok(),
        "resource_monitor": rm.is_ok(),
        "health_checker": hc.is_ok(),
    });
    if rl.is_ok() && cm.is_ok() && rm.is_ok() && hc.is_ok() {
        HttpResponse::Ok().json(json!({"status": "ok", "actors": actors}))
    } else {
        let mut body = serde_json::to_value(
            ApiError::Unavailable("an actor did not answer its heartbeat".into()).problem(),
        )
        .unwrap_or_default();
        body["actors"] = actors;
        HttpResponse::ServiceUnavailable()
            .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
            .body(body.to_string())
    }
}

/// The 200 body of `/health/ready`.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Readiness {
    /// Always `ready` on a 200.
    pub status: &'static str,
    /// Always `true` on a 200 (a failing check answers 503).
    pub ready: bool,
    pub checks: Vec<health_checker::CheckStatus>,
}

/// The 503 body of `/health/ready`: a problem naming the failing checks, with every check.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct NotReady {
    #[serde(flatten)]
    pub problem: crate::platform::error::Problem,
    pub checks: Vec<health_checker::CheckStatus>,
}

/// 200 when every readiness check passes, else 503 with per-check detail
#[utoipa::path(get, path = "/health/ready", tag = "ops",
    responses((status = 200, body = Readiness),
        (status = 503, body = NotReady, content_type = "application/problem+json", description = "a check fails", headers(("Retry-After" = u32)))))]
pub async fn ready(state: web::Data<Context>) -> HttpResponse {
    let report = match state
        .actors
        .health_checker()
        .send(health_checker::GetReport)
        .timeout(LIVENESS_TIMEOUT)
        .await
    {
        Ok(r) => r,
        Err(e) => return ApiError::Unavailable(format!("health checker unavailable: {e}")).into(),
    };
    if report.ready {
        HttpResponse::Ok().json(Readiness {
            status: "ready",
            ready: true,
            checks: report.checks,
        })
    } else {
        let failing: Vec<&str> = report
            .checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| c.name.as_str())
            .collect();
        let body = NotReady {
            problem: ApiError::Unavailable(format!("failing checks: {}", failing.join(", ")))
                .problem(),
            checks: report.checks,
        };
        HttpResponse::ServiceUnavailable()
            .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
            .insert_header((header::RETRY_AFTER, "5"))
            .body(serde_json::to_string(&body).unwrap_or_default())
    }
}

/// Prometheus text exposition
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, content_type = "text/plain", description = "metrics")))]
pub async fn metrics(state: web::Data<Context>) -> Result<HttpResponse, ApiError> {
    if !state.config.enable_metrics {
        return Err(ApiError::RouteNotFound);
    }
    Ok(HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        ))
        .body(state.metrics.render()))
}

impl From<ApiError> for HttpResponse {
    fn from(e: ApiError) -> Self {
        actix_web::ResponseError::error_response(&e)
    }
}

/// Test hook (`ENVIRONMENT=test` only): a handler that panics.
#[allow(clippy::panic)]
pub async fn debug_panic() -> HttpResponse {
    panic!("panic requested by the test hook");
}

/// Test hook (`ENVIRONMENT=test` only): makes the named actor panic.
pub async fn debug_crash(
    state: web::Data<Context>,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    if state.actors.crash(&name) {
        Ok(HttpResponse::Accepted().json(json!({"crashed": name.into_inner()})))
    } else {
        Err(ApiError::NotFound("actor"))
    }
}

/// The operations routes, at the root.
pub fn routes(c: &mut web::ServiceConfig) {
    c.service(super::get("/health", health))
        .service(super::get(LIVE_PATH, live))
        .service(super::get(READY_PATH, ready))
        .service(super::get("/metrics", metrics));
}

/// The test hooks, under `/api/v1`, mounted only with `ENVIRONMENT=test` (undocumented).
pub fn test_hooks(api: &mut web::ServiceConfig) {
    api.service(web::resource("/_debug/panic").route(web::post().to(debug_panic)))
        .service(web::resource("/_debug/crash/{actor}").route(web::post().to(debug_crash)));
}

/// The operations OpenAPI fragment.
#[derive(utoipa::OpenApi)]
#[openapi(paths(health, live, ready, metrics))]
pub struct Doc;
