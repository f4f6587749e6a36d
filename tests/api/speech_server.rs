//! Voices from a speech server (SPEC §3b, `TTS_URL`): a small local server speaking the
//! `POST /v1/audio/speech` protocol with real audio (the `espeak-ng` command's WAV), checked
//! for the bearer key; reelgen lists its voices, lip-syncs to what it answers, captions every
//! word, retries a failing server, and fails the video as `tts_unavailable` when it keeps
//! failing — the key never in a response.

use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};

const KEY: &str = "sk-test-0123456789-secret";

#[derive(Default)]
struct Server {
    /// Requests to fail with 503 before answering.
    fail_first: AtomicUsize,
    /// Fail every request (503).
    always_fail: bool,
    calls: AtomicUsize,
    inputs: Mutex<Vec<Value>>,
}

async fn speech(req: HttpRequest, body: web::Json<Value>, s: web::Data<Server>) -> HttpResponse {
    s.calls.fetch_add(1, Ordering::SeqCst);
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok());
    if auth != Some(&format!("Bearer {KEY}")) {
        return HttpResponse::Unauthorized().json(json!({"error": "bad key"}));
    }
    if s.always_fail
        || s.fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    {
        return HttpResponse::ServiceUnavailable().finish();
    }
    s.inputs.lock().expect("lock").push(body.0.clone());
    let input = body["input"].as_str().unwrap_or_default().to_string();
    let voice = if body["voice"] == "nova" {
        "en-us+f3"
    } else {
        "en-us"
    };
    let wav = web::block(move || {
        Command::new("espeak-ng")
            .args(["-v", voice, "--stdout"])
            .arg(input)
            .output()
    })
    .await;
    match wav {
        Ok(Ok(out)) if out.status.success() => HttpResponse::Ok()
            .content_type("audio/wav")
            .body(out.stdout),
        _ => HttpResponse::InternalServerError().finish(),
    }
}

/// Starts the speech server; its base URL and its state.
async fn start(server: Server) -> (String, web::Data<Server>) {
    let state = web::Data::new(server);
    let s = state.clone();
    let http = HttpServer::new(move || {
        App::new()
            .app_data(s.clone())
            .route("/v1/audio/speech", web::post().to(speech))
    })
    .workers(1)
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let port = http.addrs()[0].port();
    actix_web::rt::spawn(http.run());
    (format!("http://127.0.0.1:{port}"), state)
}

async fn reelgen_with(url: &str) -> TestApp {
    spawn_app_with(
        Backend::Sqlite,
        &[
            ("EMBEDDED_WORKER", "true"),
            ("CACHE_TTL", "0"),
            ("TTS_URL", url),
            ("TTS_API_KEY", KEY),
            ("TTS_MODEL", "tts-test"),
            ("TTS_VOICES", "alloy,nova"),
        ],
    )
    .await
}

async fn finished(app: &TestApp, body: Value) -> Value {
    let id = app.create_video(body).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let states = app
        .wait_for(&id, Duration::from_secs(120), |v| {
            matches!(v["status"].as_str(), Some("completed" | "failed"))
        })
        .await;
    states.last().expect("state").clone()
}

#[actix_web::test]
async fn a_speech_server_voice_is_listed_lip_synced_and_captioned() {
    let (url, server) = start(Server::default()).await;
    let app = reelgen_with(&url).await;

    let voices = app.get_json("/api/v1/voices").await;
    let list = voices["data"].as_array().expect("voices");
    let http: Vec<&Value> = list.iter().filter(|v| v["backend"] == "http").collect();
    assert_eq!(http.len(), 2, "{voices}");
    assert_eq!(http[0]["id"], "http-alloy");
    assert_eq!(http[0]["name"], "alloy");
    assert!(list.iter().any(|v| v["backend"] == "espeak"), "{voices}");
    assert!(!voices.to_string().contains(KEY));

    let script = "Hello from a natural voice. I am speaking for the first time. <break time=\"1s\"/> Goodbye!";
    let v = finished(
        &app,
        json!({"script": script, "voice": {"id": "http-nova"}, "fps": 10,
               "dimension": {"width": 256, "height": 144}, "quality": "draft"}),
    )
    .await;
    assert_eq!(v["status"], "completed", "{v}");
    let id = v["id"].as_str().expect("id");
    // Each run of text between breaks is one request, with the model and voice asked for.
    let inputs = server.inputs.lock().expect("lock").clone();
    assert_eq!(inputs.len(), 2, "{inputs:?}");
    assert_eq!(inputs[0]["model"], "tts-test");
    assert_eq!(inputs[0]["voice"], "nova");
    assert_eq!(inputs[0]["response_format"], "wav");
    assert!(
        inputs[0]["input"]
            .as_str()
            .expect("input")
            .starts_with("Hello from a natural voice.")
    );
    assert_eq!(inputs[1]["input"], "Goodbye!");

    // Every word, timed against the detected speech, in order.
    let t = app
        .get_json(&format!("/api/v1/videos/{id}/transcript"))
        .await;
    let words: Vec<&str> = t["words"]
        .as_array()
        .expect("words")
        .iter()
        .filter_map(|w| w["text"].as_str())
        .collect();
    assert_eq!(
        words,
        [
            "Hello", "from", "a", "natural", "voice.", "I", "am", "speaking", "for", "the",
            "first", "time.", "Goodbye!"
        ]
    );
    let starts: Vec<f64> = t["words"]
        .as_array()
        .expect("words")
        .iter()
        .filter_map(|w| w["start_s"].as_f64())
        .collect();
    assert!(starts.windows(2).all(|p| p[0] <= p[1]), "{starts:?}");
    let last_end = t["words"][12]["end_s"].as_f64().expect("end");
    assert!(last_end <= v["duration_s"].as_f64().expect("duration") + 1e-6);
    assert_eq!(
        app.get(&format!("/api/v1/videos/{id}/file")).await.status(),
        200
    );
}

#[actix_web::test]
async fn a_failing_speech_server_is_retried_then_fails_the_video_as_tts_unavailable() {
    // Two failures, then audio: the retries carry the video through.
    let (url, server) = start(Server {
        fail_first: AtomicUsize::new(2),
        ..Server::default()
    })
    .await;
    let app = reelgen_with(&url).await;
    let v = finished(
        &app,
        json!({"script": "Third time lucky.", "voice": {"id": "http-alloy"}, "fps": 5,
               "dimension": {"width": 256, "height": 144}, "quality": "draft"}),
    )
    .await;
    assert_eq!(v["status"], "completed", "{v}");
    assert_eq!(server.calls.load(Ordering::SeqCst), 3);

    // Always failing: the video fails with tts_unavailable, and the key shows nowhere.
    let (url, server) = start(Server {
        always_fail: true,
        ..Server::default()
    })
    .await;
    let app = reelgen_with(&url).await;
    let v = finished(
        &app,
        json!({"script": "Nobody answers.", "voice": {"id": "http-alloy"}, "fps": 5,
               "dimension": {"width": 256, "height": 144}}),
    )
    .await;
    assert_eq!(v["status"], "failed", "{v}");
    assert_eq!(v["error"]["code"], "tts_unavailable", "{v}");
    assert!(!v.to_string().contains(KEY), "{v}");
    assert!(
        server.calls.load(Ordering::SeqCst) >= 4,
        "first try and three retries"
    );

    // A wrong key is not retried: 401 is the server's answer, not a hiccup.
    let (url, server) = start(Server::default()).await;
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("EMBEDDED_WORKER", "true"),
            ("TTS_URL", url.as_str()),
            ("TTS_API_KEY", "sk-wrong"),
            ("TTS_VOICES", "alloy"),
        ],
    )
    .await;
    let v = finished(
        &app,
        json!({"script": "Let me in.", "voice": {"id": "http-alloy"}, "fps": 5,
        "dimension": {"width": 256, "height": 144}}),
    )
    .await;
    assert_eq!(v["error"]["code"], "tts_unavailable", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .expect("message")
            .contains("401"),
        "{v}"
    );
    assert_eq!(server.calls.load(Ordering::SeqCst), 1);
}
