//! `Idempotency-Key` on the create routes: the key's syntax, the hash of the request it
//! guards, and the replay of the stored answer (or 409 for the key reused with another body).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use crate::platform::error::{ApiError, FieldError};
use crate::videos::store::StoredResponse;

pub(super) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    let Some(raw) = req.headers().get("idempotency-key") else {
        return Ok(None);
    };
    match raw.to_str() {
        Ok(k) if !k.trim().is_empty() && k.len() <= 255 => Ok(Some(k.trim().to_string())),
        _ => Err(ApiError::Validation(vec![FieldError::new(
            "Idempotency-Key",
            "invalid_idempotency_key",
            "must be 1 to 255 visible ASCII characters",
        )])),
    }
}

pub(super) fn request_hash(req: &HttpRequest, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(req.method().as_str());
    h.update(b" ");
    h.update(req.path());
    h.update(b"\n");
    h.update(body);
    hex::encode(h.finalize())
}

pub(super) fn replay(stored: &StoredResponse, hash: &str) -> Result<HttpResponse, ApiError> {
    if stored.request_hash != hash {
        return Err(ApiError::conflict(
            "idempotency_key_reused",
            "this Idempotency-Key was used with a different request",
        ));
    }
    let status =
        actix_web::http::StatusCode::from_u16(stored.status).map_err(ApiError::internal)?;
    let mut res = HttpResponse::build(status);
    res.insert_header((header::CONTENT_TYPE, "application/json"))
        .insert_header(("Idempotent-Replayed", "true"));
    if let Some(loc) = &stored.location {
        res.insert_header((header::LOCATION, loc.as_str()));
    }
    Ok(res.body(stored.body.clone()))
}
