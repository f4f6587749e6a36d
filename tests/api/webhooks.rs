//! Webhooks (SPEC §6) against a local receiver: signed deliveries that verify, a retry after
//! a 500 logged per attempt, SSRF refusal of private targets, and (with the real binary) a
//! pending delivery that survives `kill -9` and a restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};

/// One request the receiver got: its signature header and body.
pub type Hit = (Option<String>, String);

#[derive(Clone, Default)]
pub struct Received(Arc<Mutex<Vec<Hit>>>);

impl Received {
    pub fn all(&self) -> Vec<Hit> {
        self.0.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// A receiver on `port` (0: any) answering 500 to the first `fail_first` requests, then 200.
pub fn receiver(port: u16, fail_first: usize) -> (u16, Received, actix_web::dev::ServerHandle) {
    let got = Received::default();
    let seen = got.clone();
    let server = HttpServer::new(move || {
        let seen = seen.clone();
        App::new().route(
            "/hook",
            web::post().to(move |req: HttpRequest, body: String| {
                let seen = seen.clone();
                async move {
                    let sig = req
                        .headers()
                        .get("X-Reelgen-Signature")
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string);
                    let n = {
                        let mut v = seen.0.lock().expect("lock");
                        v.push((sig, body));
                        v.len()
                    };
                    if n <= fail_first {
                        HttpResponse::InternalServerError().finish()
                    } else {
                        HttpResponse::Ok().finish()
                    }
                }
            }),
        )
    })
    .workers(1)
    .bind(("127.0.0.1", port))
    .expect("bind receiver");
    let port = server.addrs()[0].port();
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (port, got, handle)
}

/// Checks `t=…,v1=…` against the body with the shared secret.
pub fn verify(secret: &str, header: &str, body: &str) -> bool {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", x)) => t = x.parse::<i64>().ok(),
            Some(("v1", x)) => v1 = Some(x.to_string()),
            _ => {}
        }
    }
    let (Some(t), Some(v1)) = (t, v1) else {
        return false;
    };
    let fresh = (chrono::Utc::now().timestamp() - t).abs() < 300;
    let expected = hex::encode(reelgen::videos::webhooks::hmac_sha256(
        secret.as_bytes(),
        format!("{t}.{body}").as_bytes(),
    ));
    fresh && expected == v1
}

async fn deliveries(app: &TestApp, id: &str) -> Vec<Value> {
    let body: Value = app
        .get(&format!("/api/v1/videos/{id}/deliveries"))
        .await
        .json()
        .await
        .expect("json");
    body["data"].as_array().cloned().unwrap_or_default()
}

/// Renders a short video whose callback is the local receiver on `port`; returns its id.
async fn render_with_callback(app: &TestApp, port: u16) -> String {
    let v = app
        .create_video(short_video(&format!("http://127.0.0.1:{port}/hook")))
        .await;
    let id = v["id"].as_str().expect("id").to_string();
    app.wait_for(&id, Duration::from_secs(120), |v| {
        v["status"] == "completed"
    })
    .await;
    id
}

fn short_video(callback: &str) -> Value {
    json!({"script": "Hooked.", "dimension": {"width": 640, "height": 360}, "fps": 24,
           "quality": "draft", "callback_url": callback})
}

#[actix_web::test]
async fn a_signed_delivery_is_retried_after_a_500_and_logged() {
    let (port, got, handle) = receiver(0, 1);
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("EMBEDDED_WORKER", "true"),
            ("WEBHOOK_SECRET", "whsec-test"),
            ("WEBHOOK_ALLOW_PRIVATE", "true"),
            ("WEBHOOK_RETRY_BASE", "0.2"),
        ],
    )
    .await;
    let id = render_with_callback(&app, port).await;

    let deadline = Instant::now() + Duration::from_secs(60);
    while got.all().len() < 2 {
        assert!(
            Instant::now() < deadline,
            "2 attempts expected, got {}",
            got.all().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all = got.all();
    for (sig, body) in &all {
        let sig = sig.as_deref().expect("signed");
        assert!(
            verify("whsec-test", sig, body),
            "signature does not verify: {sig}"
        );
        assert!(!verify("another-secret", sig, body));
    }
    assert_eq!(all[0].1, all[1].1, "a retry sends the same body");
    let payload: Value = serde_json::from_str(&all[1].1).expect("json");
    assert_eq!(payload["event"], "video.completed");
    assert_eq!(payload["video"]["id"], id.as_str());
    assert_eq!(payload["video"]["status"], "completed");

    // The delivery log agrees.
    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        let list = deliveries(&app, &id).await;
        if list.first().is_some_and(|d| d["status"] == "delivered") {
            break list[0].clone();
        }
        assert!(Instant::now() < deadline, "not delivered: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(d["attempts"], 2);
    assert_eq!(d["event"], "video.completed");
    assert_eq!(d["log"][0]["status_code"], 500);
    assert_eq!(d["log"][1]["status_code"], 200);
    assert!(d["delivered_at"].is_string());
    // Another tenant's id is not found, like every video route.
    assert_eq!(
        app.get("/api/v1/videos/00000000-0000-7000-8000-000000000000/deliveries")
            .await
            .status(),
        404
    );
    handle.stop(true).await;
}

#[actix_web::test]
async fn private_targets_are_refused_unless_allowed() {
    let (port, got, handle) = receiver(0, 0);
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("EMBEDDED_WORKER", "true"), ("WEBHOOK_RETRY_BASE", "0.2")],
    )
    .await;
    let id = render_with_callback(&app, port).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let d = loop {
        let list = deliveries(&app, &id).await;
        if list
            .first()
            .is_some_and(|d| d["attempts"].as_i64().unwrap_or(0) >= 2)
        {
            break list[0].clone();
        }
        assert!(Instant::now() < deadline, "no attempt: {list:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(d["status"], "pending", "retried, not given up yet");
    assert!(d["last_status_code"].is_null());
    let err = d["last_error"].as_str().expect("error");
    assert!(
        err.contains("non-public") && err.contains("WEBHOOK_ALLOW_PRIVATE"),
        "{err}"
    );
    assert!(got.all().is_empty(), "nothing reached the private receiver");
    handle.stop(true).await;
}
