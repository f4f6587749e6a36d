//! Performance analytics (SPEC §5): figures that match an independent measurement, alerts
//! that fire and resolve over the WebSocket, and bottlenecks triggered by real traffic.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{Backend, TestApp, spawn_app, spawn_app_with};
use crate::on_both_backends;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[actix_web::test]
async fn metrics_and_stats_match_what_the_client_measured() {
    let app = spawn_app().await;
    // Every request the server will count is timed here too (the creates as well), so each
    // server-side duration has its client-side one, which contains it.
    let mut client_ms = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        app.create_script(&format!("Video number {i}.")).await;
        client_ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    // A known mix: 200 list reads and 50 reads of a missing video (404).
    for i in 0..250 {
        let path = if i % 5 == 4 {
            "/api/v1/videos/00000000-0000-7000-8000-000000000000".to_string()
        } else {
            format!("/api/v1/videos?limit={}", 1 + i % 7)
        };
        let t = Instant::now();
        let res = app.get(&path).await;
        client_ms.push(t.elapsed().as_secs_f64() * 1e3);
        assert!(res.status() == 200 || res.status() == 404);
    }
    client_ms.sort_by(f64::total_cmp);

    let stats: Value = app
        .get("/api/v1/performance/stats")
        .await
        .json()
        .await
        .expect("json");
    let routes = stats["windows"]["1m"]["routes"].as_array().expect("routes");
    let route = |method: &str, path: &str| {
        routes
            .iter()
            .find(|r| r["method"] == method && r["route"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("{method} {path} missing from {routes:?}"))
    };
    let list = route("GET", "/api/v1/videos");
    let get = route("GET", "/api/v1/videos/{id}");
    assert_eq!(list["count"], 200);
    assert_eq!(get["count"], 50);
    assert_eq!(route("POST", "/api/v1/videos")["count"], 5);
    // Prometheus counts the same requests.
    let prom = app
        .metric("http_requests_total{method=\"GET\",route=\"/api/v1/videos\",status=\"200\"}")
        .await;
    assert_eq!(prom, Some(200.0));

    // Server time is part of client time: the server's percentiles cannot exceed the
    // client's (plus histogram precision), and the client adds only loopback overhead.
    let all = &stats["windows"]["1m"]["requests"];
    let server_p95 = all["p95_ms"].as_f64().expect("p95");
    let server_p50 = all["p50_ms"].as_f64().expect("p50");
    let client_p95 = percentile(&client_ms, 0.95);
    let client_p50 = percentile(&client_ms, 0.50);
    assert!(server_p95 > 0.0 && server_p50 > 0.0, "{all}");
    assert!(
        server_p95 <= client_p95 * 1.02 + 0.1,
        "server p95 {server_p95} > client p95 {client_p95}"
    );
    assert!(
        server_p50 <= client_p50 * 1.02 + 0.1,
        "server p50 {server_p50} > client p50 {client_p50}"
    );
    assert!(
        server_p50 >= client_p50 * 0.05,
        "server p50 {server_p50} implausibly below client {client_p50}"
    );

    let m: Value = app
        .get("/api/v1/performance/metrics")
        .await
        .json()
        .await
        .expect("json");
    // The stats request itself and the creates are in the window too.
    let count = m["requests"].as_u64().expect("requests");
    assert!((255..=257).contains(&count), "{m}");
    let p95 = m["response_times"]["p95"].as_f64().expect("p95");
    assert!(p95 > 0.0 && p95 <= client_p95 * 1.02 + 5.0, "{m}");
    assert!(m["throughput"]["rps"].as_f64().expect("rps") > 0.0, "{m}");
    assert_eq!(
        m["throughput"]["concurrent"], 1,
        "this request is the one in flight"
    );
    assert!(
        m["resource_usage"]["memory_percent"].as_f64().expect("mem") > 0.0,
        "{m}"
    );
    assert_eq!(
        m["resource_usage"]["gpu_percent"], 0.0,
        "no worker, no GPU time"
    );
    // No frame rendered: nothing to report rather than an invented number.
    assert!(m["ai_performance"]["avg_inference_ms"].is_null(), "{m}");

    // Database statements were timed through sea-orm's metric callback.
    let statements = stats["database"]["statements"]
        .as_array()
        .expect("statements");
    assert!(
        statements.iter().any(|s| s["statement"]
            .as_str()
            .is_some_and(|t| t.contains("FROM \"videos\""))
            && s["count"].as_u64().unwrap_or(0) >= 10),
        "{statements:?}"
    );
    // The alias answers the same shape.
    let alias: Value = app
        .get("/performance/metrics")
        .await
        .json()
        .await
        .expect("json");
    assert!(alias["response_times"]["p99"].is_number());
    assert!(
        stats["forecast"]["queue_depth"]["samples"]
            .as_u64()
            .is_some()
    );
}

async fn alerts_socket(
    app: &TestApp,
) -> tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>> {
    let url = app
        .url("/api/v1/performance/alerts")
        .replace("http://", "ws://");
    let (ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    ws
}

async fn next_alert(
    ws: &mut tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    within: Duration,
) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).expect("json"),
            Ok(Some(Ok(_))) => continue,
            other => panic!("no alert within {within:?}: {other:?}"),
        }
    }
}

async fn an_alert_fires_and_resolves_over_the_websocket(backend: Backend) {
    let rules = r#"[{"name":"deep_queue","metric":"queue_depth","op":">","threshold":3,"for":1,"severity":"critical","summary":"Too many videos wait"}]"#;
    let app = spawn_app_with(backend, &[("ALERT_RULES", rules), ("ALERT_CLEAR_FOR", "1")]).await;
    let mut ws = alerts_socket(&app).await;

    // A real burst: six queued videos and no worker to take them.
    let videos: Vec<Value> = (0..6)
        .map(|i| json!({"script": format!("Burst {i}.")}))
        .collect();
    let res = app
        .post_json("/api/v1/videos/batch", &json!({"videos": videos}))
        .await;
    assert_eq!(res.status(), 202);
    let batch: Value = res.json().await.expect("json");

    let fired = next_alert(&mut ws, Duration::from_secs(60)).await;
    assert_eq!(
        fired["type"], "alert",
        "alert frames are tagged like video events"
    );
    assert_eq!(fired["rule"], "deep_queue");
    assert_eq!(fired["state"], "firing");
    assert_eq!(fired["severity"], "critical");
    assert_eq!(fired["value"], 6.0);
    assert_eq!(fired["threshold"], 3.0);
    assert!(fired["resolved_at"].is_null());
    assert_eq!(
        app.metric("reelgen_alerts_firing{rule=\"deep_queue\",severity=\"critical\"}")
            .await,
        Some(1.0)
    );

    // A subscriber that joins now gets the firing alert first.
    let mut late = alerts_socket(&app).await;
    let current = next_alert(&mut late, Duration::from_secs(60)).await;
    assert_eq!(current["id"], fired["id"]);

    // Drain the queue: cancel every video.
    for v in batch["data"].as_array().expect("data") {
        let id = v["id"].as_str().expect("id");
        let res = app
            .post_json(&format!("/api/v1/videos/{id}/cancel"), &json!({}))
            .await;
        assert_eq!(res.status(), 200);
    }
    let resolved = next_alert(&mut ws, Duration::from_secs(60)).await;
    assert_eq!(resolved["id"], fired["id"]);
    assert_eq!(resolved["state"], "resolved");
    assert!(resolved["resolved_at"].is_string());
    assert_eq!(
        next_alert(&mut late, Duration::from_secs(60)).await["state"],
        "resolved"
    );

    // The REST list (history in the database) agrees.
    let list: Value = app
        .get("/api/v1/performance/alerts")
        .await
        .json()
        .await
        .expect("json");
    let row = list["data"]
        .as_array()
        .expect("data")
        .iter()
        .find(|a| a["id"] == fired["id"])
        .cloned()
        .expect("alert recorded");
    assert_eq!(row["state"], "resolved");
    assert_eq!(row["rule"], "deep_queue");
    assert_eq!(list["firing"], 0);
    assert_eq!(
        app.metric("reelgen_alerts_firing{rule=\"deep_queue\",severity=\"critical\"}")
            .await,
        Some(0.0)
    );
}

on_both_backends!(an_alert_fires_and_resolves_over_the_websocket);

#[actix_web::test]
async fn rate_limiting_shows_as_a_bottleneck_naming_its_setting() {
    let app = spawn_app_with(Backend::Sqlite, &[("RATE_LIMIT_PER_MINUTE", "20")]).await;
    let mut limited = 0;
    for _ in 0..60 {
        if app.get("/api/v1/voices").await.status() == 429 {
            limited += 1;
        }
    }
    assert!(limited >= 30, "{limited} rejected");
    // Wait for the analytics actor's next tick to see the minute's rejections.
    let deadline = Instant::now() + Duration::from_secs(30);
    let body = loop {
        let res = app.get("/performance/bottlenecks").await;
        // The limiter covers this route too: retry until it lets us through.
        if res.status() == 200 {
            let body: Value = res.json().await.expect("json");
            if body["bottlenecks"]
                .as_array()
                .is_some_and(|b| b.iter().any(|b| b["component"] == "rate_limiting"))
            {
                break body;
            }
        }
        assert!(Instant::now() < deadline, "no rate_limiting bottleneck");
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    let b = body["bottlenecks"]
        .as_array()
        .expect("list")
        .iter()
        .find(|b| b["component"] == "rate_limiting")
        .cloned()
        .expect("rate limiting");
    let severity = b["severity"].as_f64().expect("severity");
    assert!(severity > 0.5 && severity <= 1.0, "{b}");
    assert!(
        b["evidence"]["rate_limited_ratio"].as_f64().expect("ratio") > 0.4,
        "{b}"
    );
    assert!(
        b["suggestions"][0]
            .as_str()
            .expect("text")
            .contains("RATE_LIMIT_PER_MINUTE")
    );
    let score = body["optimization_score"].as_u64().expect("score");
    assert!(score < 75, "score {score} with a severe bottleneck");
}

#[actix_web::test]
async fn performance_routes_need_a_key_in_api_key_mode() {
    let app = spawn_app_with(Backend::Sqlite, &[("AUTH_MODE", "api_key")]).await;
    assert_eq!(app.get("/api/v1/performance/metrics").await.status(), 401);
    assert_eq!(app.get("/performance/alerts").await.status(), 401);
    let key = app.api_key("ops").await;
    let res = app
        .client
        .get(app.url("/performance/recommendations"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.expect("json");
    assert!(body["data"].is_array());
    // Browsers pass the key in the query string on the alerts WebSocket.
    let url = format!(
        "{}?access_token={key}",
        app.url("/api/v1/performance/alerts")
            .replace("http://", "ws://")
    );
    assert!(tokio_tungstenite::connect_async(url).await.is_ok());
}
