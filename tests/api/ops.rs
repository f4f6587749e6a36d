//! SPEC §5 operations: health, readiness, liveness, metrics, OpenAPI and docs; supervision.

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use reelgen::ops::health::{HealthCheck, RegisterCheck};
use serde_json::{Value, json};

use crate::helpers::{assert_problem, spawn_app};

#[actix_web::test]
async fn health_and_readiness_report_every_check() {
    let app = spawn_app().await;
    let h: Value = app.get("/health").await.json().await.expect("json");
    assert_eq!(h["status"], "ok");
    let live = app.get("/health/live").await;
    assert_eq!(live.status(), 200);
    let ready: Value = app.get("/health/ready").await.json().await.expect("json");
    let names: Vec<&str> = ready["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["database", "queue", "cache", "disk"]);
}

struct Failing;

impl HealthCheck for Failing {
    fn name(&self) -> &'static str {
        "encoder"
    }
    fn check(&self) -> BoxFuture<'static, Result<String, String>> {
        async { Err("no H.264 encoder could be instantiated".to_string()) }.boxed()
    }
}

#[actix_web::test]
async fn a_failing_registered_check_makes_ready_503_with_detail() {
    let app = spawn_app().await;
    app.state
        .actors
        .health_checker()
        .send(RegisterCheck(Arc::new(Failing)))
        .await
        .expect("register");
    // The checker runs every check each METRICS_INTERVAL: until the round that includes the
    // new one, it is listed as not checked yet. Wait for its own verdict.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let body = loop {
        let res = app.get("/health/ready").await;
        if res.status() == 503 {
            assert_eq!(res.headers()["retry-after"], "5");
            let body = assert_problem(res, 503, "unavailable").await;
            let enc = body["checks"]
                .as_array()
                .expect("checks")
                .iter()
                .find(|c| c["name"] == "encoder")
                .cloned()
                .expect("encoder");
            assert_eq!(enc["ok"], false);
            if enc["detail"] == "no H.264 encoder could be instantiated" {
                break body;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the failing check never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(body["detail"].as_str().expect("detail").contains("encoder"));
    // Liveness is a different question: the process is not wedged.
    assert_eq!(app.get("/health/live").await.status(), 200);
}

#[actix_web::test]
async fn metrics_use_route_patterns_and_count_cache_and_requests() {
    let app = spawn_app().await;
    let id = app.create_script("Metrics.").await["id"]
        .as_str()
        .expect("id")
        .to_string();
    for _ in 0..3 {
        assert_eq!(app.get(&format!("/api/v1/videos/{id}")).await.status(), 200);
    }
    let text = app.get("/metrics").await.text().await.expect("text");
    for name in [
        "http_requests_total",
        "http_request_duration_seconds_bucket",
        "reelgen_jobs_total",
        "reelgen_jobs_in_flight",
        "reelgen_queue_depth",
        "reelgen_frames_rendered_total",
        "reelgen_render_fps",
        "reelgen_encode_seconds_bucket",
        "reelgen_cache_hits_total",
        "reelgen_cache_misses_total",
        "reelgen_rate_limited_total",
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
    ] {
        assert!(text.contains(name), "missing {name}");
    }
    assert!(text.contains(r#"route="/api/v1/videos/{id}""#));
    assert!(!text.contains(&id), "raw ids never appear as labels");
    assert_eq!(
        app.metric(r#"http_requests_total{method="GET",route="/api/v1/videos/{id}",status="200"}"#)
            .await,
        Some(3.0)
    );
    assert_eq!(app.metric("reelgen_cache_hits_total").await, Some(2.0));
    assert_eq!(
        app.metric(r#"reelgen_jobs_total{status="queued"}"#).await,
        Some(1.0)
    );
    // The queue gauge is sampled by the health checker: wait for its next round.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while app.metric("reelgen_queue_depth").await != Some(1.0) {
        assert!(
            std::time::Instant::now() < deadline,
            "queue depth never showed 1"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn every_documented_operation_is_routed_and_docs_are_served_offline() {
    let app = spawn_app().await;
    let doc: Value = app.get("/openapi.json").await.json().await.expect("json");
    assert!(doc["openapi"].as_str().expect("version").starts_with("3.1"));
    // The document is the route table: every operation in it reaches a handler (never the
    // router's 404 or a 405), and a 405 elsewhere lists the documented methods.
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 25, "only {} paths documented", paths.len());
    let id = uuid::Uuid::new_v4().to_string();
    let mut checked = 0;
    for (path, item) in paths {
        let url = app.url(&path.replace("{id}", &id));
        for method in item.as_object().expect("path item").keys() {
            let req = match method.as_str() {
                "get" => app.client.get(&url),
                "post" => app.client.post(&url).json(&json!({})),
                "delete" => app.client.delete(&url),
                other => panic!("{other} {path}: a method the test does not know"),
            };
            let res = req.send().await.expect("request");
            let status = res.status().as_u16();
            let body: Value = res.json().await.unwrap_or_default();
            assert_ne!(status, 405, "{method} {path} is documented but not routed");
            assert_ne!(
                body["code"], "route_not_found",
                "{method} {path} is documented but not routed"
            );
            checked += 1;
        }
    }
    assert!(checked >= 25, "only {checked} operations checked");
    let res = app
        .client
        .put(app.url(&format!("/api/v1/videos/{id}")))
        .send()
        .await
        .expect("put");
    assert_eq!(res.status(), 405);
    assert_eq!(res.headers()["allow"], "GET, HEAD, DELETE");
    let docs = app.get("/docs").await;
    assert_eq!(docs.status(), 308);
    let ui = app.get("/docs/").await;
    assert_eq!(ui.status(), 200);
    assert!(ui.text().await.expect("html").contains("swagger"));
    let index = app.get("/").await;
    assert_eq!(index.status(), 200);
    assert!(index.text().await.expect("html").contains("reelgen"));
}

#[actix_web::test]
async fn responses_are_compressed_by_accept_encoding() {
    let app = spawn_app().await;
    // Asked for without an encoding first, so the worker holds a copy of the plain answer:
    // a client that asks for one is still answered encoded, the same bytes each time.
    let mut plain = Vec::new();
    for _ in 0..3 {
        let res = app.get("/api/v1/voices").await;
        assert_eq!(res.status(), 200);
        assert!(!res.headers().contains_key("content-encoding"));
        plain = res.bytes().await.expect("body").to_vec();
    }
    for enc in ["gzip", "br", "zstd"] {
        let mut first = None;
        for _ in 0..3 {
            let res = app
                .client
                .get(app.url("/api/v1/voices"))
                .header("Accept-Encoding", enc)
                .send()
                .await
                .expect("get");
            assert_eq!(res.status(), 200);
            assert_eq!(res.headers()["content-encoding"], enc);
            let vary: Vec<_> = res
                .headers()
                .get_all("vary")
                .iter()
                .map(|v| v.to_str().expect("ascii").to_ascii_lowercase())
                .collect();
            assert!(
                vary.iter().any(|v| v.contains("accept-encoding")),
                "{vary:?}"
            );
            let body = res.bytes().await.expect("body").to_vec();
            assert_ne!(body, plain, "{enc}");
            match &first {
                None => first = Some(body),
                Some(first) => assert_eq!(&body, first, "{enc}"),
            }
        }
        if enc == "gzip" {
            use std::io::Read as _;
            let gz = first.expect("answered");
            let mut decoded = Vec::new();
            flate2::read::GzDecoder::new(gz.as_slice())
                .read_to_end(&mut decoded)
                .expect("valid gzip");
            assert_eq!(decoded, plain);
        }
    }
    // Nothing acceptable: the compressor's 406, not a copy.
    let res = app
        .client
        .get(app.url("/api/v1/voices"))
        .header("Accept-Encoding", "identity;q=0, compress")
        .send()
        .await
        .expect("get");
    assert_eq!(res.status(), 406);
}

#[actix_web::test]
async fn a_panicking_handler_gets_500_and_the_server_goes_on() {
    let app = spawn_app().await;
    let kept = app.create_script("Survive.").await;
    for _ in 0..3 {
        let res = app
            .client
            .post(app.url("/api/v1/_debug/panic"))
            .send()
            .await
            .expect("send");
        let body = assert_problem(res, 500, "internal_error").await;
        assert!(
            !body["detail"]
                .as_str()
                .expect("detail")
                .contains("panic requested"),
            "no internals leak"
        );
    }
    assert_eq!(app.get("/health/ready").await.status(), 200);
    let got: Value = app
        .get(&format!(
            "/api/v1/videos/{}",
            kept["id"].as_str().expect("id")
        ))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(got["id"], kept["id"]);
}

#[actix_web::test]
async fn the_supervisor_restarts_a_crashed_actor() {
    let app = spawn_app().await;
    for actor in [
        "health_checker",
        "rate_limiter",
        "cache_manager",
        "resource_monitor",
    ] {
        let res = app
            .client
            .post(app.url(&format!("/api/v1/_debug/crash/{actor}")))
            .send()
            .await
            .expect("send");
        assert_eq!(res.status(), 202);
        let line = format!("reelgen_actor_restarts_total{{actor=\"{actor}\"}}");
        let mut restarted = false;
        // The watchdog looks every second: a generous deadline, not a count of its ticks.
        for _ in 0..300 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if app.metric(&line).await == Some(1.0) {
                restarted = true;
                break;
            }
        }
        assert!(restarted, "{actor} was not restarted");
        assert_eq!(app.get("/health/live").await.status(), 200, "{actor}");
    }
    assert_eq!(app.get("/health/ready").await.status(), 200);
}
