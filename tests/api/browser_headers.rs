//! Browser-facing defaults (SPEC §2): CORS for the configured origins only, preflights
//! answered before authentication, and the security headers on every response, with a
//! Content-Security-Policy on the app that the Chromium test checks it satisfies.

use crate::helpers::{
    Backend, assert_browser_headers, assert_problem, clients_on_own_connections, spawn_app_with,
};

const FRONT_END: &str = "https://studio.example.com";

#[actix_web::test]
async fn a_listed_origin_gets_cors_and_its_preflight_is_answered_before_authentication() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("AUTH_MODE", "api_key"),
            ("CORS_ALLOWED_ORIGINS", FRONT_END),
        ],
    )
    .await;
    let key = app.api_key("t1").await;
    let preflight = |origin: &'static str| {
        app.client
            .request(reqwest::Method::OPTIONS, app.url("/api/v1/videos"))
            .header("Origin", origin)
            .header("Access-Control-Request-Method", "POST")
            .header("Access-Control-Request-Headers", "content-type, x-api-key")
            .send()
    };
    let res = preflight(FRONT_END).await.expect("preflight");
    assert!(res.status().is_success(), "{}", res.status());
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], FRONT_END);
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .expect("ascii")
        .to_ascii_lowercase();
    assert!(
        allowed.contains("x-api-key") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .expect("ascii")
            .contains("POST")
    );
    assert!(h["vary"].to_str().expect("ascii").contains("Origin"));

    // Another origin's preflight is answered too (never a 401), but grants nothing.
    let res = preflight("https://evil.example").await.expect("preflight");
    assert!(res.status().is_success(), "{}", res.status());
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    // The real request: echoed for the listed origin, with the headers a client reads.
    let res = app
        .client
        .get(app.url("/api/v1/videos"))
        .header("Origin", FRONT_END)
        .header("X-Api-Key", &key)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["access-control-allow-origin"], FRONT_END);
    let exposed = res.headers()["access-control-expose-headers"]
        .to_str()
        .expect("ascii");
    assert!(
        exposed.contains("RateLimit-Remaining") && exposed.contains("Location"),
        "{exposed}"
    );
    assert!(
        res.headers()["vary"]
            .to_str()
            .expect("ascii")
            .contains("Origin")
    );
    assert_browser_headers(&res, "list");

    // Unlisted origin: the response is served, with no permission for the browser to read it.
    let res = app
        .client
        .get(app.url("/api/v1/videos"))
        .header("Origin", "https://evil.example")
        .header("X-Api-Key", &key)
        .send()
        .await
        .expect("get");
    assert!(!res.headers().contains_key("access-control-allow-origin"));

    // A 401 for a listed origin still carries CORS, so the front end can read the problem.
    let res = app
        .client
        .get(app.url("/api/v1/videos"))
        .header("Origin", FRONT_END)
        .send()
        .await
        .expect("get");
    assert_eq!(res.headers()["access-control-allow-origin"], FRONT_END);
    assert_browser_headers(&res, "401");
    assert_problem(res, 401, "unauthorized").await;
}

#[actix_web::test]
async fn without_cors_origins_no_origin_is_granted() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await;
    let res = app
        .client
        .get(app.url("/api/v1/videos"))
        .header("Origin", FRONT_END)
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 200);
    assert!(!res.headers().contains_key("access-control-allow-origin"));
}

#[actix_web::test]
async fn every_response_carries_the_security_headers_and_the_app_a_strict_csp() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await;
    for path in [
        "/",
        "/health",
        "/health/ready",
        "/metrics",
        "/openapi.json",
        "/docs/",
        "/static/app.js",
        "/api/v1/videos",
        "/api/v1/avatars",
        "/nope",
    ] {
        let res = app.get(path).await;
        assert_browser_headers(&res, path);
    }
    let res = app.get("/").await;
    let csp = res.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_string();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(directive), "{directive} missing from {csp}");
    }
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
        "{csp}"
    );
    // The page keeps to it: no inline script or style in the HTML itself.
    let html = res.text().await.expect("html");
    assert!(
        !html.contains("<script>") && !html.contains("<style"),
        "inline code in index.html"
    );
    assert!(
        !html.contains(" style=\"") && !html.contains(" onclick="),
        "inline code in index.html"
    );
}

#[actix_web::test]
async fn a_repeated_read_answered_from_a_worker_copy_keeps_cors_and_the_security_headers() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("AUTH_MODE", "api_key"),
            ("CORS_ALLOWED_ORIGINS", FRONT_END),
        ],
    )
    .await;
    let key = app.api_key("t1").await;
    // One connection per client, so that the repeats reach both workers, each of which
    // answers from its own copy once it has answered the read itself.
    let clients = clients_on_own_connections(4);
    for round in 0..3 {
        for client in &clients {
            let get = |origin: &'static str| {
                client
                    .get(app.url("/api/v1/videos"))
                    .header("Origin", origin)
                    .header("X-Api-Key", &key)
                    .send()
            };
            let what = format!("round {round}");
            let res = get(FRONT_END).await.expect("get");
            assert_eq!(res.status(), 200, "{what}");
            let h = res.headers();
            assert_eq!(h["access-control-allow-origin"], FRONT_END, "{what}");
            assert!(h.contains_key("access-control-expose-headers"), "{what}");
            let vary: Vec<&str> = h
                .get_all("vary")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            assert_eq!(vary, ["X-Api-Key, Authorization, Origin"], "{what}");
            for name in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset"] {
                assert!(h.contains_key(name), "{name} in {what}");
            }
            let etag = h["etag"].to_str().expect("ascii").to_string();
            assert_browser_headers(&res, &what);

            let res = get("https://evil.example").await.expect("get");
            assert_eq!(res.status(), 200, "{what}");
            assert!(!res.headers().contains_key("access-control-allow-origin"));
            assert_browser_headers(&res, &what);

            // Revalidation: 304, with the same headers a browser relies on.
            let res = client
                .get(app.url("/api/v1/videos"))
                .header("Origin", FRONT_END)
                .header("X-Api-Key", &key)
                .header("If-None-Match", &etag)
                .send()
                .await
                .expect("get");
            assert_eq!(res.status(), 304, "{what}");
            assert_eq!(res.headers()["access-control-allow-origin"], FRONT_END);
            assert_eq!(res.headers()["etag"], etag.as_str());
            assert!(res.headers().contains_key("ratelimit-remaining"), "{what}");
            assert_browser_headers(&res, &what);
        }
    }
    // Without its key the same read is refused, copies or not.
    let res = clients[0]
        .get(app.url("/api/v1/videos"))
        .header("Origin", FRONT_END)
        .send()
        .await
        .expect("get");
    assert_eq!(res.headers()["access-control-allow-origin"], FRONT_END);
    assert_problem(res, 401, "unauthorized").await;
}
