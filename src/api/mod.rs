//! HTTP routes: one module per feature, mounted by [`configure`]. [`ROUTES`] lists every
//! route the server answers (the OpenAPI test checks each one is documented).

pub mod catalog;
pub mod edge;
pub mod live;
pub mod ops;
pub mod performance;
pub mod socket;
pub mod videos;

use actix_web::{HttpResponse, web};
use utoipa::OpenApi;

use crate::platform::error::{ApiError, FieldError, Problem};

pub struct RouteInfo {
    pub method: &'static str,
    pub path: &'static str,
}

macro_rules! routes {
    ($($method:literal $path:literal),* $(,)?) => {
        pub const ROUTES: &[RouteInfo] = &[$(RouteInfo { method: $method, path: $path }),*];
    };
}

routes! {
    "POST" "/api/v1/videos",
    "GET" "/api/v1/videos",
    "POST" "/api/v1/videos/batch",
    "GET" "/api/v1/videos/{id}",
    "DELETE" "/api/v1/videos/{id}",
    "POST" "/api/v1/videos/{id}/cancel",
    "GET" "/api/v1/videos/{id}/file",
    "HEAD" "/api/v1/videos/{id}/file",
    "GET" "/api/v1/videos/{id}/thumbnail",
    "GET" "/api/v1/videos/{id}/ws",
    "GET" "/api/v1/videos/{id}/deliveries",
    "GET" "/api/v1/avatars",
    "GET" "/api/v1/voices",
    "GET" "/api/v1/backgrounds",
    "GET" "/api/v1/performance/metrics",
    "GET" "/api/v1/performance/stats",
    "GET" "/api/v1/performance/bottlenecks",
    "GET" "/api/v1/performance/recommendations",
    "GET" "/api/v1/performance/alerts",
    "GET" "/performance/metrics",
    "GET" "/performance/stats",
    "GET" "/performance/bottlenecks",
    "GET" "/performance/recommendations",
    "GET" "/performance/alerts",
    "GET" "/health",
    "GET" "/health/live",
    "GET" "/health/ready",
    "GET" "/metrics",
    "GET" "/openapi.json",
    "GET" "/docs",
    "GET" "/",
    "HEAD" "/",
}

#[derive(OpenApi)]
#[openapi(
    info(title = "reelgen", description = "Self-hosted AI avatar video generation: submit a script, watch it render, download the MP4."),
    paths(
        videos::create, videos::list, videos::batch, videos::get, videos::delete, videos::cancel,
        videos::file, videos::thumbnail, videos::deliveries, live::ws,
        catalog::avatars, catalog::voices, catalog::backgrounds,
        ops::health, ops::live, ops::ready, ops::metrics, openapi_json, docs, index,
        performance::metrics, performance::stats, performance::bottlenecks,
        performance::recommendations, performance::alerts,
    ),
    components(schemas(Problem, FieldError, crate::ops::alerts::Alert, crate::platform::alert_rules::RuleSpec)),
    tags(
        (name = "videos", description = "Create, list, cancel, delete and download videos"),
        (name = "catalog", description = "Avatars, voices and backgrounds"),
        (name = "ops", description = "Health, metrics and documentation"),
        (name = "performance", description = "Measured performance, bottlenecks, recommendations and alerts (also under /performance/)"),
    )
)]
pub struct ApiDoc;

/// This OpenAPI document
#[utoipa::path(get, path = "/openapi.json", tag = "ops", responses((status = 200, content_type = "application/json", description = "OpenAPI 3.1")))]
pub async fn openapi_json(state: web::Data<crate::context::Context>) -> HttpResponse {
    static DOC: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    let body = DOC.get_or_init(|| {
        bytes::Bytes::from(serde_json::to_vec(&document(&state.catalog)).unwrap_or_default())
    });
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.clone())
}

/// The OpenAPI document: the routes' own annotations, completed from single sources —
/// request bodies from the validator's schema ([`domain::request_schema`]), and the
/// responses the edge and the `/api` guard can give any route stated once here.
pub fn document(catalog: &crate::render::assets::Catalog) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let problem = |description: &str, headers: Value| {
        json!({
            "description": description,
            "headers": headers,
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}},
        })
    };
    let retry_after =
        json!({"Retry-After": {"description": "seconds to wait", "schema": {"type": "integer"}}});
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert(
            "CreateVideo".into(),
            crate::videos::request::request_schema(catalog),
        );
        schemas.insert(
            "CreateBatch".into(),
            crate::videos::request::batch_schema(catalog),
        );
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return doc;
    };
    // `/performance/*` answers the same as `/api/v1/performance/*`: document both.
    let aliases: Vec<(String, Value)> = paths
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("/api/v1")
                .filter(|rest| rest.starts_with("/performance/"))
                .map(|rest| (rest.to_string(), v.clone()))
        })
        .collect();
    paths.extend(aliases);
    for (path, item) in paths.iter_mut() {
        let guarded = path.starts_with("/api/") || path.starts_with("/performance/");
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for (_, op) in ops.iter_mut() {
            let has_body = op.get("requestBody").is_some();
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            let mut add = |status: &str, response: Value| {
                responses.entry(status.to_string()).or_insert(response);
            };
            add(
                "503",
                problem(
                    "overloaded or not ready; retry after the given seconds",
                    retry_after.clone(),
                ),
            );
            if guarded {
                add(
                    "401",
                    problem("a valid API key is required (AUTH_MODE=api_key)", json!({})),
                );
                add(
                    "429",
                    problem("rate limited (RATE_LIMIT_PER_MINUTE)", retry_after.clone()),
                );
            }
            if has_body {
                add("400", problem("malformed JSON", json!({})));
                add("413", problem("body larger than MAX_BODY_BYTES", json!({})));
                add(
                    "415",
                    problem("Content-Type is not application/json", json!({})),
                );
                add(
                    "422",
                    problem("invalid fields, each named in `errors`", json!({})),
                );
            }
        }
    }
    // Links from a created video to what can be done with it (clients and test tools follow
    // them to real ids).
    let by_id = [
        ("GetVideo", "/api/v1/videos/{id}", "get"),
        ("CancelVideo", "/api/v1/videos/{id}/cancel", "post"),
        ("DeleteVideo", "/api/v1/videos/{id}", "delete"),
        ("DownloadVideo", "/api/v1/videos/{id}/file", "get"),
        ("Thumbnail", "/api/v1/videos/{id}/thumbnail", "get"),
        ("Deliveries", "/api/v1/videos/{id}/deliveries", "get"),
        ("Events", "/api/v1/videos/{id}/ws", "get"),
    ];
    let links: serde_json::Map<String, Value> = by_id
        .iter()
        .map(|(name, path, method)| {
            let pointer = path.replace('~', "~0").replace('/', "~1");
            (
                (*name).to_string(),
                json!({"operationRef": format!("#/paths/{pointer}/{method}"), "parameters": {"id": "$response.body#/id"}}),
            )
        })
        .collect();
    if let Some(accepted) = paths
        .get_mut("/api/v1/videos")
        .and_then(|p| p.pointer_mut("/post/responses/202"))
        .and_then(Value::as_object_mut)
    {
        accepted.insert("links".into(), Value::Object(links));
    }
    doc
}

/// Interactive API documentation (Swagger UI, served offline)
#[utoipa::path(get, path = "/docs", tag = "ops", responses((status = 308, description = "redirects to /docs/")))]
pub async fn docs() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/"))
        .finish()
}

/// The browser app
#[utoipa::path(get, path = "/", tag = "ops", responses((status = 200, content_type = "text/html", description = "the app")))]
pub async fn index(
    state: web::Data<crate::context::Context>,
) -> Result<actix_files::NamedFile, ApiError> {
    actix_files::NamedFile::open_async(state.config.static_dir.join("index.html"))
        .await
        .map_err(|_| ApiError::NotFound("page"))
}

pub fn configure(cfg: &mut web::ServiceConfig, test_hooks: bool, static_dir: &std::path::Path) {
    let mut api = web::scope("/api/v1")
        .wrap(actix_web::middleware::from_fn(edge::api_guard))
        .service(
            web::resource("/videos")
                .route(web::post().to(videos::create))
                .route(web::get().to(videos::list)),
        )
        // `batch` is also what `/videos/{id}` with a non-UUID id looks like: any other
        // method names no video (404), as every non-UUID id does.
        .service(
            web::resource("/videos/batch")
                .route(web::post().to(videos::batch))
                .default_service(web::to(no_such_video)),
        )
        .service(
            web::resource("/videos/{id}")
                .route(web::get().to(videos::get))
                .route(web::delete().to(videos::delete)),
        )
        .service(web::resource("/videos/{id}/cancel").route(web::post().to(videos::cancel)))
        .service(
            web::resource("/videos/{id}/file")
                .route(web::get().to(videos::file))
                .route(web::head().to(videos::file)),
        )
        .service(web::resource("/videos/{id}/thumbnail").route(web::get().to(videos::thumbnail)))
        .service(web::resource("/videos/{id}/ws").route(web::get().to(live::ws)))
        .service(web::resource("/videos/{id}/deliveries").route(web::get().to(videos::deliveries)))
        .service(web::resource("/avatars").route(web::get().to(catalog::avatars)))
        .service(web::resource("/voices").route(web::get().to(catalog::voices)))
        .service(web::resource("/backgrounds").route(web::get().to(catalog::backgrounds)))
        .service(web::scope("/performance").configure(performance_resources));
    if test_hooks {
        api = api
            .service(web::resource("/_debug/panic").route(web::post().to(ops::debug_panic)))
            .service(
                web::resource("/_debug/crash/{actor}").route(web::post().to(ops::debug_crash)),
            );
    }
    cfg.service(api)
        .service(
            web::scope("/performance")
                .wrap(actix_web::middleware::from_fn(edge::api_guard))
                .configure(performance_resources),
        )
        .service(web::resource("/health").route(web::get().to(ops::health)))
        .service(web::resource("/health/live").route(web::get().to(ops::live)))
        .service(web::resource("/health/ready").route(web::get().to(ops::ready)))
        .service(web::resource("/metrics").route(web::get().to(ops::metrics)))
        .service(web::resource("/openapi.json").route(web::get().to(openapi_json)))
        .service(web::resource("/docs").route(web::get().to(docs)))
        .service(
            utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                .config(utoipa_swagger_ui::Config::new(["/openapi.json"])),
        )
        .service(
            web::resource("/")
                .route(web::get().to(index))
                .route(web::head().to(index)),
        )
        .service(actix_files::Files::new("/static", static_dir).prefer_utf8(true));
}

/// The performance resources, mounted under `/api/v1/performance` and `/performance`.
fn performance_resources(c: &mut web::ServiceConfig) {
    c.service(web::resource("/metrics").route(web::get().to(performance::metrics)))
        .service(web::resource("/stats").route(web::get().to(performance::stats)))
        .service(web::resource("/bottlenecks").route(web::get().to(performance::bottlenecks)))
        .service(
            web::resource("/recommendations").route(web::get().to(performance::recommendations)),
        )
        .service(web::resource("/alerts").route(web::get().to(performance::alerts)));
}

async fn no_such_video() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("video"))
}

/// Default service: any unmatched path is a problem+json 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}
