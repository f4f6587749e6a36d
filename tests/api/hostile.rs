//! A table of malformed and hostile requests: each gets its documented 4xx problem+json, the
//! server stays healthy, and videos accepted before are intact afterwards.

use serde_json::{Value, json};

use crate::helpers::{Backend, assert_browser_headers, assert_problem, spawn_app_with};

struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    headers: Vec<(&'static str, String)>,
    status: u16,
    code: &'static str,
}

fn post(name: &'static str, body: Value, status: u16, code: &'static str) -> Case {
    raw(
        name,
        "POST",
        "/api/v1/videos",
        Some("application/json"),
        body.to_string().into_bytes(),
        status,
        code,
    )
}

fn raw(
    name: &'static str,
    method: &'static str,
    path: &str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        method,
        path: path.to_string(),
        content_type,
        body,
        headers: Vec::new(),
        status,
        code,
    }
}

fn get(name: &'static str, path: &str, status: u16, code: &'static str) -> Case {
    raw(name, "GET", path, None, Vec::new(), status, code)
}

fn cases(existing: &str) -> Vec<Case> {
    let s = |v: Value| {
        let mut base = json!({"script": "Hello there."});
        if let (Some(b), Some(o)) = (base.as_object_mut(), v.as_object()) {
            b.extend(o.clone());
        }
        base
    };
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let mut c = vec![
        raw(
            "truncated JSON",
            "POST",
            "/api/v1/videos",
            Some("application/json"),
            b"{\"script\":".to_vec(),
            400,
            "malformed_json",
        ),
        raw(
            "empty body",
            "POST",
            "/api/v1/videos",
            Some("application/json"),
            Vec::new(),
            400,
            "malformed_json",
        ),
        raw(
            "trailing garbage",
            "POST",
            "/api/v1/videos",
            Some("application/json"),
            b"{\"script\":\"a\"} x".to_vec(),
            400,
            "malformed_json",
        ),
        raw(
            "invalid UTF-8",
            "POST",
            "/api/v1/videos",
            Some("application/json"),
            b"{\"script\":\"\xff\xfe\"}".to_vec(),
            400,
            "malformed_json",
        ),
        raw(
            "nesting 5000 deep",
            "POST",
            "/api/v1/videos",
            Some("application/json"),
            deep.into_bytes(),
            400,
            "malformed_json",
        ),
        post("null body", Value::Null, 422, "invalid_body"),
        post("array body", json!([]), 422, "invalid_body"),
        post("string body", json!("script"), 422, "invalid_body"),
        post("missing script", json!({}), 422, "invalid_script"),
        post(
            "script is a number",
            json!({"script": 5}),
            422,
            "invalid_script",
        ),
        post("script empty", json!({"script": ""}), 422, "invalid_script"),
        post(
            "script only whitespace",
            json!({"script": " \n\t "}),
            422,
            "invalid_script",
        ),
        post(
            "script 5001 chars",
            json!({"script": "é".repeat(5001)}),
            422,
            "invalid_script",
        ),
        post(
            "script with NUL",
            json!({"script": "a\u{0}b"}),
            422,
            "invalid_script",
        ),
        post(
            "unknown top-level field",
            s(json!({"colour": "red"})),
            422,
            "unknown_field",
        ),
        post(
            "unknown nested field",
            s(json!({"dimension": {"width": 1280, "height": 720, "depth": 3}})),
            422,
            "unknown_field",
        ),
        post(
            "width 126",
            s(json!({"dimension": {"width": 126, "height": 720}})),
            422,
            "invalid_dimension",
        ),
        post(
            "width 3842",
            s(json!({"dimension": {"width": 3842, "height": 720}})),
            422,
            "invalid_dimension",
        ),
        post(
            "height 2162",
            s(json!({"dimension": {"width": 1280, "height": 2162}})),
            422,
            "invalid_dimension",
        ),
        post(
            "odd width",
            s(json!({"dimension": {"width": 641, "height": 360}})),
            422,
            "invalid_dimension",
        ),
        post(
            "width as string",
            s(json!({"dimension": {"width": "1280"}})),
            422,
            "invalid_dimension",
        ),
        post(
            "dimension not an object",
            s(json!({"dimension": [1280, 720]})),
            422,
            "invalid_dimension",
        ),
        post("fps 0", s(json!({"fps": 0})), 422, "invalid_fps"),
        post("fps 61", s(json!({"fps": 61})), 422, "invalid_fps"),
        post(
            "fps fractional",
            s(json!({"fps": 29.97})),
            422,
            "invalid_fps",
        ),
        post("fps negative", s(json!({"fps": -30})), 422, "invalid_fps"),
        post(
            "speed 0.49",
            s(json!({"voice": {"speed": 0.49}})),
            422,
            "invalid_voice",
        ),
        post(
            "pitch 2.01",
            s(json!({"voice": {"pitch": 2.01}})),
            422,
            "invalid_voice",
        ),
        post(
            "unknown voice",
            s(json!({"voice": {"id": "hal-9000"}})),
            422,
            "invalid_voice",
        ),
        post(
            "voice as string",
            s(json!({"voice": "en-us-1"})),
            422,
            "invalid_voice",
        ),
        post(
            "unknown avatar",
            s(json!({"avatar": {"id": "<script>"}})),
            422,
            "invalid_avatar",
        ),
        post(
            "unknown expression",
            s(json!({"avatar": {"id": "ava", "expression": "angry"}})),
            422,
            "invalid_avatar",
        ),
        post(
            "short hex color",
            s(json!({"background": {"type": "color", "value": "#12345"}})),
            422,
            "invalid_background",
        ),
        post(
            "unknown background type",
            s(json!({"background": {"type": "video"}})),
            422,
            "invalid_background",
        ),
        post(
            "gradient angle 361",
            s(
                json!({"background": {"type": "gradient", "from": "#000000", "to": "#ffffff", "angle": 361}}),
            ),
            422,
            "invalid_background",
        ),
        post(
            "image asset traversal",
            s(json!({"background": {"type": "image", "asset_id": "../../etc/passwd"}})),
            422,
            "invalid_background",
        ),
        post(
            "unknown quality",
            s(json!({"quality": "ultra"})),
            422,
            "invalid_quality",
        ),
        post(
            "captions as string",
            s(json!({"captions": "yes"})),
            422,
            "invalid_captions",
        ),
        post(
            "javascript callback",
            s(json!({"callback_url": "javascript:alert(1)"})),
            422,
            "invalid_callback_url",
        ),
        post("negative seed", s(json!({"seed": -1})), 422, "invalid_seed"),
        post("huge seed", s(json!({"seed": 1e300})), 422, "invalid_seed"),
        post(
            "title 201 chars",
            s(json!({"title": "t".repeat(201)})),
            422,
            "invalid_title",
        ),
        raw(
            "body over the limit",
            "POST",
            "/api/v1/videos",
            Some("application/json"),
            json!({"script": "x".repeat(100_000)})
                .to_string()
                .into_bytes(),
            413,
            "payload_too_large",
        ),
        raw(
            "text/plain body",
            "POST",
            "/api/v1/videos",
            Some("text/plain"),
            b"{\"script\":\"a\"}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        raw(
            "no content type",
            "POST",
            "/api/v1/videos",
            None,
            b"{\"script\":\"a\"}".to_vec(),
            415,
            "unsupported_media_type",
        ),
        raw(
            "XML body",
            "POST",
            "/api/v1/videos",
            Some("application/xml"),
            b"<script/>".to_vec(),
            415,
            "unsupported_media_type",
        ),
        raw(
            "PUT on the collection",
            "PUT",
            "/api/v1/videos",
            Some("application/json"),
            b"{}".to_vec(),
            405,
            "method_not_allowed",
        ),
        raw(
            "PATCH a video",
            "PATCH",
            &format!("/api/v1/videos/{existing}"),
            Some("application/json"),
            b"{}".to_vec(),
            405,
            "method_not_allowed",
        ),
        raw(
            "GET on cancel",
            "GET",
            &format!("/api/v1/videos/{existing}/cancel"),
            None,
            Vec::new(),
            405,
            "method_not_allowed",
        ),
        get(
            "id not a UUID",
            "/api/v1/videos/not-a-uuid",
            404,
            "not_found",
        ),
        get(
            "encoded path traversal id",
            "/api/v1/videos/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd",
            404,
            "not_found",
        ),
        get("NUL in id", "/api/v1/videos/%00", 404, "not_found"),
        get(
            "unicode id",
            "/api/v1/videos/%F0%9F%92%A9",
            404,
            "not_found",
        ),
        get(
            "unknown video",
            &format!("/api/v1/videos/{}", uuid::Uuid::now_v7()),
            404,
            "not_found",
        ),
        raw(
            "cancel unknown video",
            "POST",
            &format!("/api/v1/videos/{}/cancel", uuid::Uuid::nil()),
            None,
            Vec::new(),
            404,
            "not_found",
        ),
        raw(
            "delete id not a UUID",
            "DELETE",
            "/api/v1/videos/1%20OR%201=1",
            None,
            Vec::new(),
            404,
            "not_found",
        ),
        get("limit 0", "/api/v1/videos?limit=0", 422, "invalid_limit"),
        get(
            "limit 101",
            "/api/v1/videos?limit=101",
            422,
            "invalid_limit",
        ),
        get(
            "limit negative",
            "/api/v1/videos?limit=-1",
            422,
            "invalid_limit",
        ),
        get(
            "unknown status",
            "/api/v1/videos?status=done",
            422,
            "invalid_status",
        ),
        get(
            "garbage cursor",
            "/api/v1/videos?cursor=%27%3B%20DROP%20TABLE%20videos",
            422,
            "invalid_cursor",
        ),
        get(
            "unknown parameter",
            "/api/v1/videos?sort=asc",
            422,
            "unknown_parameter",
        ),
        get("unknown route", "/api/v1/nope", 404, "route_not_found"),
        get(
            "unknown top-level route",
            "/wp-admin/install.php",
            404,
            "route_not_found",
        ),
        raw(
            "batch videos not an array",
            "POST",
            "/api/v1/videos/batch",
            Some("application/json"),
            json!({"videos": {}}).to_string().into_bytes(),
            422,
            "invalid_batch",
        ),
        raw(
            "batch item not an object",
            "POST",
            "/api/v1/videos/batch",
            Some("application/json"),
            json!({"videos": [1]}).to_string().into_bytes(),
            422,
            "invalid_body",
        ),
    ];
    let mut long_key = post(
        "Idempotency-Key too long",
        json!({"script": "a"}),
        422,
        "invalid_idempotency_key",
    );
    long_key.headers = vec![("Idempotency-Key", "k".repeat(300))];
    c.push(long_key);
    c.push(post(
        "dimension with only a width",
        s(json!({"dimension": {"width": 320}})),
        422,
        "invalid_dimension",
    ));
    c.push(get(
        "plain GET on the video WebSocket",
        &format!("/api/v1/videos/{existing}/ws"),
        426,
        "websocket_required",
    ));
    let mut no_version = get(
        "WebSocket handshake without a version",
        &format!("/api/v1/videos/{existing}/ws"),
        400,
        "invalid_websocket_handshake",
    );
    no_version.headers = vec![
        ("Upgrade", "websocket".into()),
        ("Connection", "upgrade".into()),
    ];
    c.push(no_version);
    c.push(get(
        "WebSocket route of an unknown video is 404 before the upgrade",
        "/api/v1/videos/00000000-0000-0000-0000-000000000000/ws",
        404,
        "not_found",
    ));
    c.push(raw(
        "GET on the batch route is no video",
        "GET",
        "/api/v1/videos/batch",
        None,
        Vec::new(),
        404,
        "not_found",
    ));
    c.push(raw(
        "DELETE on the batch route is no video",
        "DELETE",
        "/api/v1/videos/batch",
        None,
        Vec::new(),
        404,
        "not_found",
    ));
    c
}

#[actix_web::test]
async fn malformed_and_hostile_requests_get_their_documented_problem() {
    let app = spawn_app_with(Backend::Sqlite, &[("MAX_BODY_BYTES", "65536")]).await;
    let kept = app
        .create_video(json!({"script": "Keep me safe. 👋🏽 שלום مرحبا", "seed": 9}))
        .await;
    let id = kept["id"].as_str().expect("id").to_string();
    let table = cases(&id);
    assert!(table.len() >= 40, "{} cases", table.len());
    for case in table {
        let mut req = app
            .client
            .request(case.method.parse().expect("method"), app.url(&case.path))
            .body(case.body);
        if let Some(ct) = case.content_type {
            req = req.header("Content-Type", ct);
        }
        for (k, v) in case.headers {
            req = req.header(k, v);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        assert!(
            res.status().is_client_error(),
            "{}: {}",
            case.name,
            res.status()
        );
        assert_browser_headers(&res, case.name);
        if case.status == 405 {
            assert!(
                res.headers().contains_key("allow"),
                "{}: no Allow",
                case.name
            );
        }
        let body = assert_problem(res, case.status, case.code).await;
        if case.status == 422 {
            assert!(
                body["errors"].as_array().is_some_and(|e| !e.is_empty()),
                "{}: {body}",
                case.name
            );
        }
    }
    // Limits at the edge are accepted: 5000 characters of emoji, 3840×2160, fps 60.
    let edge = json!({"script": "👋".repeat(5000), "dimension": {"width": 3840, "height": 2160}, "fps": 60,
                      "voice": {"speed": 2.0, "pitch": 0.5}});
    assert_eq!(app.post_json("/api/v1/videos", &edge).await.status(), 202);

    // Still healthy, and the accepted video is intact.
    assert_eq!(app.get("/health/ready").await.status(), 200);
    let after: Value = app
        .get(&format!("/api/v1/videos/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after["status"], "queued");
    assert_eq!(after["params"], kept["params"]);
    let list: Value = app.get("/api/v1/videos").await.json().await.expect("json");
    assert_eq!(list["data"].as_array().expect("data").len(), 2);
    assert_eq!(
        app.metric("http_requests_total{method=\"POST\",route=\"/api/v1/videos\",status=\"500\"}")
            .await,
        None
    );
}

/// A body that arrives in chunks with no length: the limit holds while it streams.
#[actix_web::test]
async fn a_chunked_body_over_the_limit_is_413_problem_json() {
    let app = spawn_app_with(Backend::Sqlite, &[("MAX_BODY_BYTES", "65536")]).await;
    // Just past the limit (17 × 4 KiB against 64 KiB), so the server has read what was sent
    // when it answers and the connection closes cleanly.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..17).map(|_| Ok(vec![b' '; 4096])).collect();
    let res = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "application/json")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("request");
    assert_browser_headers(&res, "chunked 413");
    assert_problem(res, 413, "payload_too_large").await;
    // Middleware refusals and panics speak the same format.
    let res = app
        .client
        .post(app.url("/api/v1/_debug/panic"))
        .send()
        .await
        .expect("request");
    assert_browser_headers(&res, "panic");
    assert_problem(res, 500, "internal_error").await;
}
