//! The HTTP surface. Each feature module registers its own routes (`routes`) and carries its
//! own OpenAPI fragment (`Doc`); [`configure`] mounts them and [`openapi`] merges the
//! fragments into the one document, which is also the route table: the `Allow` header of a
//! 405 comes from it ([`allowed`]), and a test checks that every documented operation is
//! routed. Every GET route also answers HEAD ([`get`]).

pub mod audio;
pub mod avatars;
pub mod catalog;
pub mod edge;
pub mod live;
pub mod ops;
pub mod performance;
pub mod sessions;
pub mod socket;
pub mod videos;

use std::collections::HashMap;
use std::sync::OnceLock;

use actix_web::http::header::HeaderValue;
use actix_web::{FromRequest, Handler, HttpResponse, Resource, Responder, web};
use utoipa::OpenApi;

use crate::platform::error::{ApiError, FieldError, Problem};

/// The document's frame: what every fragment shares.
#[derive(OpenApi)]
#[openapi(
    info(title = "reelgen", description = "Self-hosted AI avatar video generation: submit a script, watch it render, download the MP4."),
    paths(openapi_json, docs, index),
    components(schemas(Problem, FieldError)),
    tags(
        (name = "videos", description = "Create, list, cancel, delete and download videos"),
        (name = "catalog", description = "Avatars, voices and backgrounds"),
        (name = "audio", description = "Recordings a video can lip-sync to"),
        (name = "sessions", description = "Live avatar sessions: send text, watch the avatar say it over WebRTC or a WebSocket"),
        (name = "ops", description = "Health, metrics and documentation"),
        (name = "performance", description = "Measured performance, bottlenecks, recommendations and alerts (also under /performance/)"),
    )
)]
pub struct ApiDoc;

/// The merged document of every feature (before [`document`] completes it).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    for fragment in [
        videos::Doc::openapi(),
        live::Doc::openapi(),
        catalog::Doc::openapi(),
        avatars::Doc::openapi(),
        audio::Doc::openapi(),
        sessions::Doc::openapi(),
        ops::Doc::openapi(),
        performance::Doc::openapi(),
    ] {
        doc.merge(fragment);
    }
    doc
}

/// A resource's GET route and, as HTTP expects of every GET resource, HEAD (actix drops the
/// body of a HEAD response).
pub fn get<F, Args>(path: &str, handler: F) -> Resource
where
    F: Handler<Args> + Clone,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::get().to(handler.clone()))
        .route(web::head().to(handler))
}

/// The `Allow` value of a route pattern, from the document (HEAD wherever GET is).
pub fn allowed(pattern: &str) -> Option<HeaderValue> {
    static TABLE: OnceLock<HashMap<String, HeaderValue>> = OnceLock::new();
    TABLE
        .get_or_init(|| {
            let doc = serde_json::to_value(openapi()).unwrap_or_default();
            let mut paths = doc["paths"].as_object().cloned().unwrap_or_default();
            paths.extend(performance_aliases(&paths));
            paths
                .iter()
                .filter_map(|(path, item)| {
                    let ops = item.as_object()?;
                    let mut methods: Vec<String> =
                        ["get", "head", "post", "put", "patch", "delete"]
                            .iter()
                            .filter(|m| {
                                ops.contains_key(**m) || (**m == "head" && ops.contains_key("get"))
                            })
                            .map(|m| m.to_uppercase())
                            .collect();
                    methods.dedup();
                    let value = HeaderValue::from_str(&methods.join(", ")).ok()?;
                    Some((path.clone(), value))
                })
                .collect()
        })
        .get(pattern)
        .cloned()
}

/// `/performance/*` answers the same as `/api/v1/performance/*`: the aliases' path items.
fn performance_aliases(
    paths: &serde_json::Map<String, serde_json::Value>,
) -> Vec<(String, serde_json::Value)> {
    paths
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("/api/v1")
                .filter(|rest| rest.starts_with("/performance/"))
                .map(|rest| (rest.to_string(), v.clone()))
        })
        .collect()
}

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
/// request bodies from the validator's schema (`videos::request::request_schema`), and the
/// responses the edge and the `/api` guard can give any route stated once here.
pub fn document(catalog: &crate::render::assets::Catalog) -> serde_json::Value {
    use serde_json::{Value, json};
    let mut doc = serde_json::to_value(openapi()).unwrap_or_default();
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
    let aliases = performance_aliases(paths);
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
    // Both scopes are authenticated and rate limited by the edge (`edge::GUARDED`).
    let api = web::scope("/api/v1")
        .configure(videos::routes)
        .configure(live::routes)
        .configure(catalog::routes)
        .configure(avatars::routes)
        .configure(audio::routes)
        .configure(sessions::routes)
        .service(web::scope("/performance").configure(performance::routes))
        .configure(|c| {
            if test_hooks {
                ops::test_hooks(c);
            }
        });
    cfg.service(api)
        .service(web::scope("/performance").configure(performance::routes))
        .configure(ops::routes)
        .service(get("/openapi.json", openapi_json))
        .service(get("/docs", docs))
        .service(
            utoipa_swagger_ui::SwaggerUi::new("/docs/{_:.*}")
                .config(utoipa_swagger_ui::Config::new(["/openapi.json"])),
        )
        .service(get("/", index))
        .service(actix_files::Files::new("/static", static_dir).prefer_utf8(true));
}

/// A `reelgen worker`'s routes: the probes and `/metrics` only (SPEC §8).
pub fn configure_worker(cfg: &mut web::ServiceConfig) {
    cfg.configure(ops::routes);
}

/// Default service: any unmatched path is a problem+json 404.
pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::RouteNotFound)
}
