//! Catalog listings: avatars, voices and background images (data from `assets/`).

use actix_web::{HttpRequest, HttpResponse, web};

use crate::assets::CatalogItem;
use crate::http::json_with_etag;
use crate::state::AppState;

/// `{"data": [...]}` of a catalog listing.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CatalogList {
    pub data: Vec<CatalogItem>,
}

/// Avatars a video can use
#[utoipa::path(get, path = "/api/v1/avatars", tag = "catalog", responses((status = 200, body = CatalogList)))]
pub async fn avatars(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    json_with_etag(&req, &state.listings.avatars)
}

/// Voices a video can use
#[utoipa::path(get, path = "/api/v1/voices", tag = "catalog", responses((status = 200, body = CatalogList)))]
pub async fn voices(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    json_with_etag(&req, &state.listings.voices)
}

/// Background images (`background.type = image`, `asset_id`)
#[utoipa::path(get, path = "/api/v1/backgrounds", tag = "catalog", responses((status = 200, body = CatalogList)))]
pub async fn backgrounds(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    json_with_etag(&req, &state.listings.backgrounds)
}
