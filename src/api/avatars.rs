//! Avatars (SPEC §3, §3b): `GET /api/v1/avatars` lists the built-in ones and the tenant's
//! custom ones; `POST` makes a custom one (201), `GET /{id}` and `DELETE /{id}` (204) act on
//! the tenant's own, and `GET /{id}/preview` is a PNG portrait of any avatar the tenant may
//! use, rendered by the video kernels on the preview device. The rows are
//! [`crate::videos::avatars`]'; another tenant's avatar is 404.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api::edge::json_body;
use crate::context::Context;
use crate::platform::auth::Principal;
use crate::platform::error::{ApiError, Problem};
use crate::render::params::AvatarParams;
use crate::videos::avatars;

/// Preview portraits are 16:9 at this width.
const PREVIEW_WIDTH: u32 = 480;
const PREVIEW_HEIGHT: u32 = 270;

/// Avatars a video can use
///
/// The built-in avatars (`"custom": false`), then the tenant's custom ones (`"custom": true`,
/// with their base and look).
#[utoipa::path(get, path = "/api/v1/avatars", tag = "catalog", responses((status = 200, body = crate::api::catalog::CatalogList)))]
pub async fn list(state: web::Data<Context>, who: Principal) -> Result<HttpResponse, ApiError> {
    let mut data = avatars::builtin_views(&state.catalog);
    data.extend(
        avatars::list(&state.db, &who.tenant)
            .await?
            .iter()
            .map(avatars::view),
    );
    Ok(HttpResponse::Ok().json(json!({ "data": data })))
}

/// Make a custom avatar
///
/// `{"name", "skin_tone", "hair": {"style", "color"}, "eye_color", "outfit_color", "base"}`:
/// a built-in `base` (default the first) with its own colours (`#rrggbb`) and hair style
/// (`bob`, `short`, `long`, `swept`); what is left out is the base's. Use its `id` as
/// `avatar.id` in a video request.
#[utoipa::path(post, path = "/api/v1/avatars", tag = "catalog",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 201, description = "the custom avatar", content_type = "application/json"),
        (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    state: web::Data<Context>,
    req: HttpRequest,
    who: Principal,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (value, _) = json_body(&req, payload, state.config.max_body_bytes).await?;
    let (name, look) = avatars::parse_new(&value, &state.catalog).map_err(ApiError::Validation)?;
    let row = avatars::create(&state.db, &who.tenant, name, &look).await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/api/v1/avatars/{}", row.id)))
        .json(avatars::view(&row)))
}

/// The avatar `id` names, as the tenant may use it: a built-in one, or one of its custom ones.
async fn usable(state: &Context, who: &Principal, id: &str) -> Result<AvatarParams, ApiError> {
    let mut avatar = AvatarParams {
        id: id.to_string(),
        expression: "friendly".into(),
        look: None,
    };
    if state.catalog.avatar(id).is_some() {
        return Ok(avatar);
    }
    let uuid = Uuid::parse_str(id).map_err(|_| ApiError::NotFound("avatar"))?;
    let row = avatars::find(&state.db, &who.tenant, uuid)
        .await?
        .ok_or(ApiError::NotFound("avatar"))?;
    avatar.look = serde_json::from_value(row.look).ok();
    Ok(avatar)
}

/// One custom avatar
#[utoipa::path(get, path = "/api/v1/avatars/{id}", tag = "catalog",
    params(("id" = String, Path)),
    responses((status = 200, description = "the avatar", content_type = "application/json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if let Some(a) = state.catalog.avatar(&id) {
        let mut v = serde_json::to_value(a).map_err(ApiError::internal)?;
        v["custom"] = Value::Bool(false);
        return Ok(HttpResponse::Ok().json(v));
    }
    let uuid = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("avatar"))?;
    let row = avatars::find(&state.db, &who.tenant, uuid)
        .await?
        .ok_or(ApiError::NotFound("avatar"))?;
    Ok(HttpResponse::Ok().json(avatars::view(&row)))
}

/// Delete a custom avatar
///
/// Videos already made (or asked for) keep their look. Built-in avatars cannot be deleted
/// (409 `builtin_avatar`).
#[utoipa::path(delete, path = "/api/v1/avatars/{id}", tag = "catalog",
    params(("id" = String, Path)),
    responses((status = 204, description = "deleted"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    if state.catalog.avatar(&id).is_some() {
        return Err(ApiError::conflict(
            "builtin_avatar",
            "built-in avatars cannot be deleted",
        ));
    }
    let uuid = Uuid::parse_str(&id).map_err(|_| ApiError::NotFound("avatar"))?;
    if avatars::remove(&state.db, &who.tenant, uuid).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::NotFound("avatar"))
    }
}

/// A portrait of an avatar
///
/// A 480×270 PNG of the avatar mid-word, rendered by the same kernels as its videos.
#[utoipa::path(get, path = "/api/v1/avatars/{id}/preview", tag = "catalog",
    params(("id" = String, Path)),
    responses((status = 200, content_type = "image/png", description = "the portrait"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn preview(
    state: web::Data<Context>,
    who: Principal,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let avatar = usable(&state, &who, &id.into_inner()).await?;
    portrait_png(&state, avatar).await
}

/// A portrait of a look before it is saved
///
/// The body of `POST /api/v1/avatars` (checked the same way, `name` optional); answers its
/// 480×270 PNG without saving anything: the editor's live preview.
#[utoipa::path(post, path = "/api/v1/avatars/preview", tag = "catalog",
    request_body(content = Object, content_type = "application/json"),
    responses((status = 200, content_type = "image/png", description = "the portrait"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
        (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn preview_look(
    state: web::Data<Context>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let (mut value, _) = json_body(&req, payload, state.config.max_body_bytes).await?;
    if let Some(obj) = value.as_object_mut() {
        obj.entry("name").or_insert_with(|| Value::from("preview"));
    }
    let (_, look) = avatars::parse_new(&value, &state.catalog).map_err(ApiError::Validation)?;
    let avatar = AvatarParams {
        id: look.base.clone(),
        expression: "friendly".into(),
        look: Some(look),
    };
    portrait_png(&state, avatar).await
}

/// Renders `avatar`'s portrait on the preview device, as a PNG response.
async fn portrait_png(state: &Context, avatar: AvatarParams) -> Result<HttpResponse, ApiError> {
    let previews = state.previews.clone();
    let file = state
        .blobs
        .upload_file(Uuid::now_v7())
        .with_extension("png");
    let out = file.clone();
    let rendered = web::block(move || -> Result<Vec<u8>, String> {
        let g = previews.acquire().map_err(|e| e.to_string())?;
        let rgba = g
            .portrait(&avatar, PREVIEW_WIDTH, PREVIEW_HEIGHT)
            .map_err(|e| e.to_string())?;
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        }
        crate::render::media::write_png(&rgba, PREVIEW_WIDTH, PREVIEW_HEIGHT, &out)
            .map_err(|e| e.to_string())?;
        let png = std::fs::read(&out).map_err(|e| e.to_string());
        let _ = std::fs::remove_file(&out);
        png
    })
    .await
    .map_err(ApiError::internal)?;
    let _ = std::fs::remove_file(&file);
    let png = rendered
        .map_err(|e| ApiError::Unavailable(format!("no render device for previews: {e}")))?;
    Ok(HttpResponse::Ok()
        .insert_header((header::CONTENT_TYPE, "image/png"))
        .insert_header((header::CACHE_CONTROL, "private, max-age=60"))
        .body(png))
}

/// The avatars' routes, under `/api/v1` (`/avatars/preview` before `/avatars/{id}`).
pub fn routes(api: &mut web::ServiceConfig) {
    api.service(super::get("/avatars", list).route(web::post().to(create)))
        .service(web::resource("/avatars/preview").route(web::post().to(preview_look)))
        .service(super::get("/avatars/{id}", get).route(web::delete().to(delete)))
        .service(super::get("/avatars/{id}/preview", preview));
}

/// The avatars' OpenAPI fragment.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, create, preview_look, get, delete, preview))]
pub struct Doc;
