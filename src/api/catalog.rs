//! Catalog listings: voices and background images (data from `assets/`; avatars, which a
//! tenant can add to, are `api::avatars`). The catalog never changes while the process runs,
//! so each listing is serialised once.

use std::sync::{Arc, OnceLock};

use actix_web::{HttpRequest, HttpResponse, web};

use crate::api::edge::{json_with_etag, to_cached};
use crate::context::Context;
use crate::platform::cache::Cached;
use crate::render::assets::CatalogItem;

/// `{"data": [...]}` of a catalog listing.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct CatalogList {
    pub data: Vec<CatalogItem>,
}

fn listing(
    cell: &'static OnceLock<Arc<Cached>>,
    items: impl FnOnce() -> Vec<CatalogItem>,
) -> Arc<Cached> {
    cell.get_or_init(|| {
        // A list of plain structs always serialises; an empty body would be the only fallback.
        to_cached(&CatalogList { data: items() })
            .unwrap_or_else(|_| Arc::new(Cached::new(bytes::Bytes::from_static(b"{\"data\":[]}"))))
    })
    .clone()
}

/// Voices a video can use
#[utoipa::path(get, path = "/api/v1/voices", tag = "catalog", responses((status = 200, body = CatalogList)))]
pub async fn voices(ctx: web::Data<Context>, req: HttpRequest) -> HttpResponse {
    static CELL: OnceLock<Arc<Cached>> = OnceLock::new();
    json_with_etag(&req, &listing(&CELL, || ctx.catalog.voices.clone()))
}

/// Background images (`background.type = image`, `asset_id`)
#[utoipa::path(get, path = "/api/v1/backgrounds", tag = "catalog", responses((status = 200, body = CatalogList)))]
pub async fn backgrounds(ctx: web::Data<Context>, req: HttpRequest) -> HttpResponse {
    static CELL: OnceLock<Arc<Cached>> = OnceLock::new();
    json_with_etag(&req, &listing(&CELL, || ctx.catalog.backgrounds.clone()))
}

/// The catalog's routes, under `/api/v1`.
pub fn routes(api: &mut web::ServiceConfig) {
    api.service(super::get("/voices", voices))
        .service(super::get("/backgrounds", backgrounds));
}

/// The catalog's OpenAPI fragment.
#[derive(utoipa::OpenApi)]
#[openapi(paths(voices, backgrounds), components(schemas(CatalogList)))]
pub struct Doc;
