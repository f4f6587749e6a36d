//! Recordings (SPEC §3b): `POST /api/v1/audio` takes an audio file as the raw body (at most
//! 25 MB, streamed to scratch, never held whole in memory), `GET /api/v1/audio/{id}` and
//! `DELETE /api/v1/audio/{id}`. Checking, storing and removing them is
//! [`crate::videos::recordings`]'; another tenant's recording is 404.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

use crate::context::Context;
use crate::platform::auth::Principal;
use crate::platform::error::{ApiError, FieldError, Problem};
use crate::videos::recordings::{self, AcceptError, UPLOAD_MAX_BYTES};

/// A recording: `{"id", "duration_s", "size_bytes", "created_at"}`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Recording {
    pub id: Uuid,
    pub duration_s: f64,
    pub size_bytes: i64,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<entity::recording::Model> for Recording {
    fn from(m: entity::recording::Model) -> Self {
        Self {
            id: m.id,
            duration_s: m.duration_s,
            size_bytes: m.size_bytes,
            created_at: m.created_at,
        }
    }
}

impl From<AcceptError> for ApiError {
    fn from(e: AcceptError) -> Self {
        match e {
            AcceptError::Invalid(why) => {
                ApiError::Validation(vec![FieldError::new("body", "invalid_audio", why)])
            }
            other => ApiError::internal(other),
        }
    }
}

/// Streams the body into `path`, at most `limit` bytes; returns its size. On any error the
/// partial file is removed.
async fn receive(
    req: &HttpRequest,
    mut payload: web::Payload,
    path: &std::path::Path,
    limit: usize,
) -> Result<u64, ApiError> {
    crate::api::edge::declared_length(req, limit)?;
    let written = async {
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir)
                .await
                .map_err(ApiError::internal)?;
        }
        let mut file = tokio::fs::File::create(path)
            .await
            .map_err(ApiError::internal)?;
        let mut size = 0usize;
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|e| {
                ApiError::Validation(vec![FieldError::new(
                    "body",
                    "invalid_audio",
                    format!("the body could not be read: {e}"),
                )])
            })?;
            size += chunk.len();
            if size > limit {
                return Err(ApiError::PayloadTooLarge { limit });
            }
            file.write_all(&chunk).await.map_err(ApiError::internal)?;
        }
        file.flush().await.map_err(ApiError::internal)?;
        Ok(size as u64)
    }
    .await;
    if written.is_err() {
        let _ = tokio::fs::remove_file(path).await;
    }
    written
}

/// Upload a recording to lip-sync to
///
/// The body is the audio file itself (WAV, MP3, OGG/Opus, FLAC or M4A; any `Content-Type`),
/// at most 25 MB and 10 minutes. It is decoded to check it: a file that is not decodable
/// audio, holds only silence or is too long is 422 `invalid_audio`, and nothing of it is kept.
/// Use the id as `"audio": {"id"}` in a video request.
#[utoipa::path(post, path = "/api/v1/audio", tag = "audio",
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "the audio file"),
    responses((status = 201, body = Recording),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn upload(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = Uuid::now_v7();
    let path = state.blobs.upload_file(id);
    let size = receive(&req, payload, &path, UPLOAD_MAX_BYTES).await?;
    if size == 0 {
        let _ = tokio::fs::remove_file(&path).await;
        return Err(ApiError::Validation(vec![FieldError::new(
            "body",
            "invalid_audio",
            "the body is empty: send the audio file as the body",
        )]));
    }
    let row = recordings::accept(&state.db, &state.blobs, &who.tenant, id, &path, size).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/audio/{id}")))
        .json(Recording::from(row)))
}

/// One recording
#[utoipa::path(get, path = "/api/v1/audio/{id}", tag = "audio",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Recording),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let row = recordings::find(&state.db, &who.tenant, id.into_inner())
        .await?
        .ok_or(ApiError::NotFound("recording"))?;
    Ok(HttpResponse::Ok().json(Recording::from(row)))
}

/// Delete a recording
///
/// Videos already made keep their sound; a queued video that uses it fails with
/// `invalid_audio`.
#[utoipa::path(delete, path = "/api/v1/audio/{id}", tag = "audio",
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    if recordings::remove(&state.db, &state.blobs, &who.tenant, id.into_inner()).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("recording"))
    }
}

/// The recordings' routes, under `/api/v1`.
pub fn routes(api: &mut web::ServiceConfig) {
    api.service(web::resource("/audio").route(web::post().to(upload)))
        .service(super::get("/audio/{id}", get).route(web::delete().to(delete)));
}

/// The recordings' OpenAPI fragment.
#[derive(utoipa::OpenApi)]
#[openapi(paths(upload, get, delete), components(schemas(Recording)))]
pub struct Doc;
