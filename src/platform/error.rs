//! One error type for the HTTP edge, [`ApiError`], rendered as RFC 9457 problem+json with a
//! stable `code`. Module errors (`StoreError`, validation) convert into it; errors actix
//! produces itself (JSON/path/query extractors, routing, payload limits) are mapped here too,
//! and [`problem_for_status`] rewrites any remaining non-problem error body in the middleware.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use thiserror::Error;

pub const PROBLEM_JSON: &str = "application/problem+json";

/// One invalid field, by dotted path (`dimension.width`, `videos[3].fps`).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct FieldError {
    pub field: String,
    pub code: &'static str,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            code,
            message: message.into(),
        }
    }
}

/// The problem+json body.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub kind: String,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug, Clone, Error)]
pub enum ApiError {
    /// Valid JSON (or query) with bad values: 422, `code` of the first field error.
    #[error("the request has {} invalid field(s)", .0.len())]
    Validation(Vec<FieldError>),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("no route matches this path")]
    RouteNotFound,
    #[error("this method is not allowed on this route")]
    MethodNotAllowed,
    #[error("the body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("expected Content-Type: application/json")]
    UnsupportedMediaType,
    #[error("a valid API key is required (X-Api-Key or Authorization: Bearer)")]
    Unauthorized,
    #[error("rate limit exceeded; retry in {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("{detail}")]
    Conflict { code: &'static str, detail: String },
    /// A body that is well-formed JSON but not what the route reads (an SDP offer that is not
    /// one): 400 with its own code.
    #[error("{detail}")]
    BadRequest { code: &'static str, detail: String },
    /// A per-process limit reached (`MAX_SESSIONS`): 429 with its own code.
    #[error("{detail}")]
    AtLimit { code: &'static str, detail: String },
    #[error("the server is at its limit of concurrent requests")]
    Overloaded,
    #[error("the service is not ready: {0}")]
    Unavailable(String),
    /// A plain request to a WebSocket route (426, `Upgrade: websocket`).
    #[error("this route speaks WebSocket: {0}")]
    UpgradeRequired(String),
    /// A WebSocket handshake that is malformed (bad key, missing or unsupported version).
    #[error("invalid WebSocket handshake: {0}")]
    BadHandshake(String),
    /// Any other error status produced outside our handlers (e.g. 416 from a file range).
    #[error("{}", .0.canonical_reason().unwrap_or("error"))]
    Http(StatusCode),
    /// Details go to the log, not to the client.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::Validation(errors) => errors.first().map_or("validation_failed", |e| e.code),
            Self::MalformedJson(_) => "malformed_json",
            Self::NotFound(_) => "not_found",
            Self::RouteNotFound => "route_not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge { .. } => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unauthorized => "unauthorized",
            Self::RateLimited { .. } => "rate_limited",
            Self::Conflict { code, .. }
            | Self::BadRequest { code, .. }
            | Self::AtLimit { code, .. } => code,
            Self::Overloaded => "overloaded",
            Self::Unavailable(_) => "unavailable",
            Self::UpgradeRequired(_) => "websocket_required",
            Self::BadHandshake(_) => "invalid_websocket_handshake",
            Self::Http(status) => match status.as_u16() {
                400 => "bad_request",
                406 => "not_acceptable",
                408 => "request_timeout",
                411 => "length_required",
                412 => "precondition_failed",
                414 => "uri_too_long",
                416 => "range_not_satisfiable",
                417 => "expectation_failed",
                431 => "headers_too_large",
                s if s < 500 => "client_error",
                _ => "server_error",
            },
            Self::Internal(_) => "internal_error",
        }
    }

    pub fn problem(&self) -> Problem {
        let status = self.status_code();
        let code = self.code();
        Problem {
            kind: format!("urn:reelgen:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: self.to_string(),
            code,
            errors: match self {
                Self::Validation(errors) => errors.clone(),
                _ => Vec::new(),
            },
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        Self::Internal(err.to_string())
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            Self::Validation(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::MalformedJson(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) | Self::RouteNotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::AtLimit { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded | Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::UpgradeRequired(_) => StatusCode::UPGRADE_REQUIRED,
            Self::BadHandshake(_) => StatusCode::BAD_REQUEST,
            Self::Http(status) => *status,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        if let Self::Internal(cause) = self {
            tracing::error!(%cause, "internal error");
        }
        let mut res = problem_response(&self.problem());
        match self {
            Self::RateLimited { retry_after_s } => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_s));
            }
            Self::Overloaded | Self::Unavailable(_) | Self::AtLimit { .. } => {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            Self::Unauthorized => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"reelgen\""),
                );
            }
            Self::UpgradeRequired(_) | Self::BadHandshake(_) => {
                let h = res.headers_mut();
                h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                h.insert(
                    header::SEC_WEBSOCKET_VERSION,
                    HeaderValue::from_static("13"),
                );
            }
            _ => {}
        }
        res
    }
}

pub fn problem_response(problem: &Problem) -> HttpResponse {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).unwrap_or_default();
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, PROBLEM_JSON))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(body)
}

/// The problem for an error status produced outside our handlers (routing, actix internals).
pub fn problem_for_status(status: StatusCode) -> ApiError {
    match status.as_u16() {
        401 => ApiError::Unauthorized,
        404 => ApiError::RouteNotFound,
        405 => ApiError::MethodNotAllowed,
        413 => ApiError::PayloadTooLarge { limit: 0 },
        415 => ApiError::UnsupportedMediaType,
        426 => ApiError::UpgradeRequired("use a WebSocket client".into()),
        429 => ApiError::RateLimited { retry_after_s: 1 },
        503 => ApiError::Unavailable("try again shortly".into()),
        _ => ApiError::Http(status),
    }
}

/// Extractor errors rendered as problems. Bodies and queries are read by our own parsers
/// (`api::edge::json_body`, the list query) so that every error names its field; the path
/// extractor is the one actix extractor in use.
pub mod extractors {
    use super::*;
    use actix_web::HttpRequest;
    use actix_web::error::PathError;

    /// A path that does not parse (an id that is not a UUID) names nothing that exists: 404.
    pub fn path(_err: PathError, _req: &HttpRequest) -> actix_web::Error {
        ApiError::NotFound("resource").into()
    }
}

/// A refused WebSocket handshake: a plain request is told to upgrade (426), a malformed
/// handshake is a 400. Both WebSocket routes check the handshake through [`verify_upgrade`]
/// before they subscribe to anything.
pub fn handshake(err: actix_http::ws::HandshakeError) -> ApiError {
    use actix_http::ws::HandshakeError as H;
    match err {
        H::GetMethodRequired | H::NoWebsocketUpgrade | H::NoConnectionUpgrade => {
            ApiError::UpgradeRequired(err.to_string())
        }
        H::NoVersionHeader | H::UnsupportedVersion | H::BadWebsocketKey => {
            ApiError::BadHandshake(err.to_string())
        }
    }
}

/// Checks a WebSocket handshake without answering it yet.
pub fn verify_upgrade(req: &actix_web::HttpRequest) -> Result<(), ApiError> {
    actix_http::ws::verify_handshake(req.head()).map_err(handshake)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_problem_carries_first_code_and_all_fields() {
        let err = ApiError::Validation(vec![
            FieldError::new("dimension.width", "invalid_dimension", "must be even"),
            FieldError::new("fps", "invalid_fps", "too high"),
        ]);
        let p = err.problem();
        assert_eq!(p.status, 422);
        assert_eq!(p.code, "invalid_dimension");
        assert_eq!(p.errors.len(), 2);
        let json = serde_json::to_value(&p).expect("serialises");
        assert_eq!(json["type"], "urn:reelgen:problem:invalid_dimension");
        assert_eq!(json["errors"][1]["field"], "fps");
    }

    #[test]
    fn internal_errors_do_not_leak_their_cause() {
        let p = ApiError::internal("password=hunter2").problem();
        assert_eq!(p.status, 500);
        assert!(!p.detail.contains("hunter2"));
    }
}
