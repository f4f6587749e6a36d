//! AUTH_MODE=api_key: keys, tenant isolation on every route, and rate limiting.

use serde_json::{Value, json};

use crate::helpers::{Backend, assert_problem, spawn_app, spawn_app_with};
use crate::on_both_backends;

on_both_backends!(another_tenants_video_is_404_on_every_route);

async fn another_tenants_video_is_404_on_every_route(b: Backend) {
    let app = spawn_app_with(b, &[("AUTH_MODE", "api_key")]).await;
    let alice = app.api_key("alice").await;
    let bob = app.api_key("bob").await;

    let res = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("X-Api-Key", &alice)
        .json(&json!({"script": "Alice's secret demo."}))
        .send()
        .await
        .expect("create");
    assert_eq!(res.status(), 202);
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();

    let bob_bearer = format!("Bearer {bob}");
    let routes = [
        ("GET", format!("/api/v1/videos/{id}")),
        ("POST", format!("/api/v1/videos/{id}/cancel")),
        ("GET", format!("/api/v1/videos/{id}/file")),
        ("GET", format!("/api/v1/videos/{id}/thumbnail")),
        ("GET", format!("/api/v1/videos/{id}/transcript")),
        ("GET", format!("/api/v1/videos/{id}/captions.vtt")),
        ("GET", format!("/api/v1/videos/{id}/captions.srt")),
        ("DELETE", format!("/api/v1/videos/{id}")),
    ];
    for (method, path) in &routes {
        let req = app
            .client
            .request(method.parse().expect("method"), app.url(path))
            .header("Authorization", &bob_bearer);
        assert_problem(req.send().await.expect("send"), 404, "not_found").await;
    }
    let bobs_list: Value = app
        .client
        .get(app.url("/api/v1/videos"))
        .header("Authorization", &bob_bearer)
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(bobs_list["data"].as_array().expect("data").len(), 0);

    // Alice still has her video, untouched by Bob's attempts.
    let hers: Value = app
        .client
        .get(app.url(&format!("/api/v1/videos/{id}")))
        .header("X-Api-Key", &alice)
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    assert_eq!(hers["status"], "queued");

    // No key, a wrong key, a malformed header: 401 on every API route.
    for (method, path) in routes
        .iter()
        .chain([("GET", "/api/v1/videos".to_string())].iter())
    {
        let req = app
            .client
            .request(method.parse().expect("method"), app.url(path));
        assert_problem(req.send().await.expect("send"), 401, "unauthorized").await;
    }
    let wrong = app
        .client
        .get(app.url("/api/v1/videos"))
        .header("X-Api-Key", "rg_nope")
        .send()
        .await
        .expect("send");
    assert_problem(wrong, 401, "unauthorized").await;
    let basic = app
        .client
        .get(app.url("/api/v1/videos"))
        .header("Authorization", "Basic abc")
        .send()
        .await
        .expect("send");
    assert_problem(basic, 401, "unauthorized").await;
    // Ops routes need no key.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[actix_web::test]
async fn a_revoked_key_stops_working() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("AUTH_MODE", "api_key"), ("QUERY_CACHE_TTL", "0.2")],
    )
    .await;
    let key = app.api_key("carol").await;
    let ok = app
        .client
        .get(app.url("/api/v1/videos"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .expect("send");
    assert_eq!(ok.status(), 200);
    let keys = reelgen::platform::auth::list_api_keys(&app.state.db)
        .await
        .expect("keys");
    assert!(
        reelgen::platform::auth::revoke_api_key(&app.state.db, keys[0].id)
            .await
            .expect("revoke")
    );
    // The key cache forgets it within QUERY_CACHE_TTL (0.2 s); poll with a generous deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let res = loop {
        let res = app
            .client
            .get(app.url("/api/v1/videos"))
            .header("X-Api-Key", &key)
            .send()
            .await
            .expect("send");
        if res.status() == 401 {
            break res;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "revoked key still works"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_problem(res, 401, "unauthorized").await;
}

#[actix_web::test]
async fn rate_limit_headers_then_429_with_retry_after() {
    let app = spawn_app_with(Backend::Sqlite, &[("RATE_LIMIT_PER_MINUTE", "5")]).await;
    for i in 0..5u32 {
        let res = app.get("/api/v1/avatars").await;
        assert_eq!(res.status(), 200);
        let h = res.headers();
        assert_eq!(h["ratelimit-limit"], "5");
        assert_eq!(
            h["ratelimit-remaining"].to_str().expect("ascii"),
            (4 - i).to_string()
        );
        assert!(
            h["ratelimit-reset"]
                .to_str()
                .expect("ascii")
                .parse::<u64>()
                .expect("int")
                <= 60
        );
    }
    let res = app.get("/api/v1/videos").await;
    let retry: u64 = res.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("int");
    assert!((1..=12).contains(&retry), "{retry}");
    assert_eq!(res.headers()["ratelimit-remaining"], "0");
    assert_problem(res, 429, "rate_limited").await;
    assert_eq!(app.metric("reelgen_rate_limited_total").await, Some(1.0));
    // Ops routes are not rate limited.
    assert_eq!(app.get("/health").await.status(), 200);
}

#[actix_web::test]
async fn open_mode_shares_one_tenant() {
    let app = spawn_app().await;
    app.create_script("Open mode.").await;
    let list: Value = app.get("/api/v1/videos").await.json().await.expect("json");
    assert_eq!(list["data"].as_array().expect("data").len(), 1);
}
