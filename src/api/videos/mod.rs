//! Videos (SPEC §3): create, batch, list, get, cancel, delete, file and thumbnail.
//! Every handler acts for the request's [`Principal`]; another tenant's id is 404.
//! GETs go through the response cache (ETag, 304); every write invalidates what it changes.
//! The idempotency of creates and the list's query are in their own files.

mod download;
mod idempotency;
mod query;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use entity::video;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::api::edge::{json_body, json_with_etag, to_cached, with_etag};
use crate::context::Context;
use crate::platform::auth::Principal;
use crate::platform::cache::Cached;
use crate::platform::db::StoreError;
use crate::platform::error::{ApiError, FieldError, Problem};
use crate::platform::storage::Object;
use crate::render::params::VideoParams;
use crate::render::timeline::transcript::{Transcript, TranscriptWord};
use crate::videos::model::{VideoStatus, VideoView};
use crate::videos::request::{self, BATCH_MAX};
use crate::videos::store::{self, CancelOutcome, InsertOutcome, StoredResponse};
use crate::videos::{avatars, recordings};

use idempotency::{idempotency_key, replay, request_hash};
use query::{encode_cursor, parse_list_query};

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Db(sea_orm::DbErr::ConnectionAcquire(_)) => {
                ApiError::Unavailable("database pool exhausted".into())
            }
            other => ApiError::internal(other),
        }
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VideoList {
    pub data: Vec<VideoView>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct VideoBatch {
    pub data: Vec<VideoView>,
}

/// The create body in the OpenAPI document. Its schema is generated from the validator's
/// own limits ([`crate::videos::request::request_schema`]) when the document is built.
#[derive(utoipa::ToSchema)]
pub struct CreateVideo {}

/// The batch body in the OpenAPI document ([`crate::videos::request::batch_schema`]).
#[derive(utoipa::ToSchema)]
pub struct CreateBatch {}

/// Inserts accepted videos (with the idempotency record when keyed) and builds the 202.
/// The answer is built before the transaction and stored in it, so a retry always replays
/// exactly what the first request answered. New videos join the end of the queue: their
/// positions are the current queue length plus their index.
async fn accept(
    state: &Context,
    req: &HttpRequest,
    who: &Principal,
    raw: &[u8],
    rows: Vec<video::Model>,
    single: bool,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(req)?;
    let hash = request_hash(req, raw);
    if let Some(k) = &key
        && let Some(stored) = store::find_idempotent(&state.db, &who.tenant, k).await?
    {
        return replay(&stored, &hash);
    }
    let location = single.then(|| {
        format!(
            "/api/v1/videos/{}",
            rows.first().map(|r| r.id).unwrap_or_default()
        )
    });
    let queued = store::count_queued(&state.db).await?;
    let views: Vec<VideoView> = rows
        .iter()
        .enumerate()
        .map(|(i, m)| VideoView::from_model(m.clone(), Some(queued + i as u64 + 1)))
        .collect();
    let body = if single {
        serde_json::to_string(&views.first())
    } else {
        serde_json::to_string(&VideoBatch { data: views })
    }
    .map_err(ApiError::internal)?;
    let stored = StoredResponse {
        request_hash: hash.clone(),
        status: 202,
        location: location.clone(),
        body: body.clone(),
    };
    let idem = key.as_deref().map(|k| (k, stored));
    if let InsertOutcome::Replay(prev) = state.lifecycle.accepted(&who.tenant, rows, idem).await? {
        return replay(&prev, &hash);
    }
    let mut res = HttpResponse::Accepted();
    res.insert_header((header::CONTENT_TYPE, "application/json"));
    if let Some(loc) = location {
        res.insert_header((header::LOCATION, loc));
    }
    Ok(res.body(body))
}

async fn fetch_views(
    state: &Context,
    tenant: &str,
    ids: &[Uuid],
) -> Result<Vec<VideoView>, ApiError> {
    let mut rows = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(m) = store::get_video(&state.db, tenant, *id).await? {
            rows.push(m);
        }
    }
    let positions = store::queue_positions(&state.db, &rows).await?;
    Ok(rows
        .into_iter()
        .zip(positions)
        .map(|(m, p)| VideoView::from_model(m, p))
        .collect())
}

/// What a request names that lives in the tenant's rows: its recording's length and its
/// custom avatars' looks, filled in — or 422 naming each field that is not the tenant's.
async fn resolve(
    state: &Context,
    who: &Principal,
    params: &mut [(String, VideoParams)],
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    if let Err(mut e) = recordings::resolve(&state.db, &who.tenant, params).await? {
        errors.append(&mut e);
    }
    if let Err(mut e) = avatars::resolve(&state.db, &who.tenant, &state.catalog, params).await? {
        errors.append(&mut e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

fn random_seed() -> u64 {
    rand::random::<u64>()
}

// ---- handlers ---------------------------------------------------------------------------------

/// Create a video
///
/// Accepts a script and queues a talking-avatar video. Only `script` is required.
#[utoipa::path(post, path = "/api/v1/videos", tag = "videos",
    request_body = CreateVideo,
    params(("Idempotency-Key" = Option<String>, Header, description = "replays the first response for the same body")),
    responses(
        (status = 202, description = "accepted and queued", body = VideoView, headers(("Location" = String))),
        (status = 400, description = "malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "invalid fields", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (value, raw) = json_body(&req, payload, state.config.max_body_bytes).await?;
    let params = request::parse_video_request(&value, &state.catalog, "", random_seed())
        .map_err(ApiError::Validation)?;
    let mut params = [(String::new(), params)];
    resolve(&state, &who, &mut params).await?;
    let row = store::new_video(&who.tenant, &params[0].1)?;
    accept(&state, &req, &who, &raw, vec![row], true).await
}

/// Create up to 50 videos at once
///
/// All-or-nothing: if any item is invalid, none is accepted and every error is reported
/// with its `videos[i].` path.
#[utoipa::path(post, path = "/api/v1/videos/batch", tag = "videos",
    request_body = CreateBatch,
    params(("Idempotency-Key" = Option<String>, Header)),
    responses(
        (status = 202, body = VideoBatch),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency-Key reused with another body", body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn batch(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (value, raw) = json_body(&req, payload, state.config.max_body_bytes).await?;
    let items = match &value {
        Value::Object(o) => {
            let mut errors: Vec<FieldError> = o
                .keys()
                .filter(|k| *k != "videos")
                .map(|k| {
                    FieldError::new(k.clone(), "unknown_field", "unknown field; allowed: videos")
                })
                .collect();
            match o.get("videos") {
                Some(Value::Array(a))
                    if (1..=BATCH_MAX).contains(&a.len()) && errors.is_empty() =>
                {
                    a
                }
                Some(Value::Array(a)) if !(1..=BATCH_MAX).contains(&a.len()) => {
                    errors.push(FieldError::new(
                        "videos",
                        "invalid_batch",
                        format!("must hold 1 to {BATCH_MAX} videos (got {})", a.len()),
                    ));
                    return Err(ApiError::Validation(errors));
                }
                Some(Value::Array(_)) => return Err(ApiError::Validation(errors)),
                _ => {
                    errors.push(FieldError::new(
                        "videos",
                        "invalid_batch",
                        "must be an array of video requests",
                    ));
                    return Err(ApiError::Validation(errors));
                }
            }
        }
        _ => {
            return Err(ApiError::Validation(vec![FieldError::new(
                "body",
                "invalid_body",
                "must be a JSON object {\"videos\": [...]}",
            )]));
        }
    };
    let mut all_errors = Vec::new();
    let mut params: Vec<(String, VideoParams)> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let prefix = format!("videos[{i}].");
        match request::parse_video_request(item, &state.catalog, &prefix, random_seed()) {
            Ok(p) => params.push((prefix, p)),
            Err(mut e) => all_errors.append(&mut e),
        }
    }
    if !all_errors.is_empty() {
        return Err(ApiError::Validation(all_errors));
    }
    resolve(&state, &who, &mut params).await?;
    let rows = params
        .iter()
        .map(|(_, p)| store::new_video(&who.tenant, p))
        .collect::<Result<Vec<_>, _>>()?;
    accept(&state, &req, &who, &raw, rows, false).await
}

/// List videos, newest first
#[utoipa::path(get, path = "/api/v1/videos", tag = "videos",
    params(
        ("status" = Option<VideoStatus>, Query, description = "only videos in this state"),
        ("limit" = Option<u32>, Query, minimum = 1, maximum = 100, description = "1–100, default 20"),
        ("cursor" = Option<String>, Query, description = "next_cursor of the previous page"),
    ),
    responses((status = 200, body = VideoList), (status = 304, description = "If-None-Match matched"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
) -> Result<HttpResponse, ApiError> {
    let q = parse_list_query(req.query_string())?;
    let resource = format!(
        "list?s={}&l={}&c={}",
        q.status.map_or("", VideoStatus::as_str),
        q.limit,
        q.cursor.as_ref().map(encode_cursor).unwrap_or_default()
    );
    let key = state.cache.key(&who.tenant, &resource).await;
    let cached = state
        .cache
        .get_or_compute(key, || async {
            let (rows, next) =
                store::list_videos(&state.db, &who.tenant, q.status, q.cursor, q.limit).await?;
            let positions = store::queue_positions(&state.db, &rows).await?;
            to_cached(&VideoList {
                data: rows
                    .into_iter()
                    .zip(positions)
                    .map(|(m, p)| VideoView::from_model(m, p))
                    .collect(),
                next_cursor: next.as_ref().map(encode_cursor),
            })
        })
        .await?;
    Ok(json_with_etag(&req, &cached))
}

/// Get one video
#[utoipa::path(get, path = "/api/v1/videos/{id}", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = VideoView), (status = 304, description = "If-None-Match matched"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let key = state.cache.key(&who.tenant, &format!("video/{id}")).await;
    let cached = state
        .cache
        .get_or_compute(key, || async {
            let view = fetch_views(&state, &who.tenant, &[id])
                .await?
                .pop()
                .ok_or(ApiError::NotFound("video"))?;
            to_cached(&view)
        })
        .await?;
    Ok(json_with_etag(&req, &cached))
}

/// Cancel a queued or rendering video
#[utoipa::path(post, path = "/api/v1/videos/{id}/cancel", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = VideoView),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "already finished", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    match state.lifecycle.cancelled(&who.tenant, id).await? {
        CancelOutcome::NotFound => Err(ApiError::NotFound("video")),
        CancelOutcome::AlreadyFinished(status) => Err(ApiError::conflict(
            "video_finished",
            format!("the video is already {status}"),
        )),
        CancelOutcome::Cancelled(model) => {
            Ok(HttpResponse::Ok().json(VideoView::from_model(*model, None)))
        }
    }
}

/// Delete a video and its files
#[utoipa::path(delete, path = "/api/v1/videos/{id}", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 204, description = "deleted"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    match state.lifecycle.deleted(&who.tenant, id).await? {
        Some(_) => Ok(HttpResponse::NoContent().finish()),
        None => Err(ApiError::NotFound("video")),
    }
}

/// The 409 of a file asked for before its video is completed (404 for no such video).
async fn ensure_completed(
    state: &Context,
    who: &Principal,
    id: Uuid,
    object: Object,
) -> Result<(), ApiError> {
    let model = store::get_video(&state.db, &who.tenant, id)
        .await?
        .ok_or(ApiError::NotFound("video"))?;
    let status: VideoStatus = model.status;
    if status == VideoStatus::Completed {
        return Ok(());
    }
    let (code, what) = match object {
        Object::Video => ("video_not_ready", "file"),
        Object::Thumbnail => ("thumbnail_not_ready", "thumbnail"),
        Object::Transcript => ("captions_not_ready", "transcript and captions"),
    };
    Err(ApiError::conflict(
        code,
        format!("the video is {status}; its {what} exists once it is completed"),
    ))
}

/// Download the finished MP4
///
/// Supports `Range` (206), `HEAD` and `ETag`. 409 while the video is not completed.
#[utoipa::path(get, path = "/api/v1/videos/{id}/file", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "video/mp4", description = "the MP4"),
        (status = 206, description = "a range of it"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 416, body = Problem, content_type = "application/problem+json")))]
pub async fn file(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_completed(&state, &who, id, Object::Video).await?;
    let mut res = download::serve(&state.blobs, &req, id, Object::Video, "video/mp4").await?;
    let disposition = header::ContentDisposition {
        disposition: header::DispositionType::Attachment,
        parameters: vec![header::DispositionParam::Filename(format!("{id}.mp4"))],
    };
    res.headers_mut().insert(
        header::CONTENT_DISPOSITION,
        disposition
            .to_string()
            .parse()
            .map_err(ApiError::internal)?,
    );
    Ok(res)
}

/// The poster frame
#[utoipa::path(get, path = "/api/v1/videos/{id}/thumbnail", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "image/jpeg", description = "poster frame"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn thumbnail(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    ensure_completed(&state, &who, id, Object::Thumbnail).await?;
    download::serve(&state.blobs, &req, id, Object::Thumbnail, "image/jpeg").await
}

/// A completed video's transcript as stored; 404 when the video has no speech.
async fn stored_transcript(
    state: &Context,
    who: &Principal,
    id: Uuid,
) -> Result<bytes::Bytes, ApiError> {
    ensure_completed(state, who, id, Object::Transcript).await?;
    state
        .blobs
        .read(id, Object::Transcript)
        .await
        .map_err(ApiError::internal)?
        .ok_or(ApiError::NotFound("captions"))
}

/// The transcript: every word with its start and end
///
/// `{"words": [{"text", "start_s", "end_s"}]}`: every word of the script, in order, with its
/// punctuation, timed as the avatar's mouth speaks it. 409 while the video is not completed;
/// 404 when it has no speech.
#[utoipa::path(get, path = "/api/v1/videos/{id}/transcript", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = Transcript, description = "the words with their timings"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn transcript(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let body = stored_transcript(&state, &who, id.into_inner()).await?;
    let cached = Cached::new(body);
    Ok(with_etag(&req, "application/json", &cached))
}

/// A caption file made from the stored transcript.
async fn caption_file(
    state: &Context,
    req: &HttpRequest,
    who: &Principal,
    id: Uuid,
    content_type: &'static str,
    render: fn(&Transcript) -> String,
) -> Result<HttpResponse, ApiError> {
    let stored = stored_transcript(state, who, id).await?;
    let transcript: Transcript = serde_json::from_slice(&stored).map_err(ApiError::internal)?;
    let body = bytes::Bytes::from(render(&transcript));
    let cached = Cached::new(body);
    Ok(with_etag(req, content_type, &cached))
}

/// Captions as WebVTT
///
/// One cue per line of speech (a sentence, or up to 42 characters), every word of the
/// script in order. 409 while the video is not completed; 404 when it has no speech.
#[utoipa::path(get, path = "/api/v1/videos/{id}/captions.vtt", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "text/vtt", description = "WebVTT captions"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn captions_vtt(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    caption_file(&state, &req, &who, id, "text/vtt", Transcript::vtt).await
}

/// Captions as SubRip
///
/// The same cues as the WebVTT file. 409 while the video is not completed; 404 when it has
/// no speech.
#[utoipa::path(get, path = "/api/v1/videos/{id}/captions.srt", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 200, content_type = "application/x-subrip", description = "SubRip captions"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn captions_srt(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let srt = "application/x-subrip";
    caption_file(&state, &req, &who, id, srt, Transcript::srt).await
}

/// Webhook deliveries of a video
///
/// Each delivery of `video.completed` / `video.failed` to the video's `callback_url`: its
/// status (`pending`, `delivered`, `failed`), attempts, next attempt, last HTTP status or
/// error, and the log of every attempt.
#[utoipa::path(get, path = "/api/v1/videos/{id}/deliveries", tag = "videos",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "deliveries", content_type = "application/json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn deliveries(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<Uuid>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if store::get_video(&state.db, &who.tenant, id)
        .await?
        .is_none()
    {
        return Err(ApiError::NotFound("video"));
    }
    let rows = crate::videos::webhooks::list_webhooks(&state.db, &who.tenant, id).await?;
    let data: Vec<serde_json::Value> = rows
        .into_iter()
        .map(|d| {
            serde_json::json!({
                "id": d.id,
                "event": d.event,
                "url": d.url,
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": (d.status == entity::webhook_delivery::DeliveryStatus::Pending).then_some(d.next_attempt_at),
                "last_status_code": d.last_status_code,
                "last_error": d.last_error,
                "created_at": d.created_at,
                "delivered_at": d.delivered_at,
                "log": serde_json::from_str::<serde_json::Value>(&d.log).unwrap_or_default(),
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({"data": data})))
}

/// The videos' routes, under `/api/v1`.
pub fn routes(api: &mut web::ServiceConfig) {
    api.service(super::get("/videos", list).route(web::post().to(create)))
        // `batch` is also what `/videos/{id}` with a non-UUID id looks like: any other method
        // names no video (404), as every non-UUID id does.
        .service(
            web::resource("/videos/batch")
                .route(web::post().to(batch))
                .default_service(web::to(no_such_video)),
        )
        .service(super::get("/videos/{id}", get).route(web::delete().to(delete)))
        .service(web::resource("/videos/{id}/cancel").route(web::post().to(cancel)))
        .service(super::get("/videos/{id}/file", file))
        .service(super::get("/videos/{id}/thumbnail", thumbnail))
        .service(super::get("/videos/{id}/transcript", transcript))
        .service(super::get("/videos/{id}/captions.vtt", captions_vtt))
        .service(super::get("/videos/{id}/captions.srt", captions_srt))
        .service(super::get("/videos/{id}/deliveries", deliveries));
}

async fn no_such_video() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("video"))
}

/// The videos' OpenAPI fragment.
#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        create,
        list,
        batch,
        get,
        delete,
        cancel,
        file,
        thumbnail,
        transcript,
        captions_vtt,
        captions_srt,
        deliveries
    ),
    components(schemas(Transcript, TranscriptWord))
)]
pub struct Doc;
