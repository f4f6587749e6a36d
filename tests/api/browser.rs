//! The browser app in a real browser: `tests/browser/watch.mjs` drives headless Chromium
//! (Debian's package, through playwright-core) against a live server with the embedded
//! worker: create a video in the form, watch the progress bar and the live MSE preview play
//! while it renders, download the finished MP4, find it in the library. The screenshot of
//! the watch page mid-generation is kept at `target/browser/watch.png`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Backend, spawn_app_with};

/// Runs `tests/browser/{script}` with `env` in Node (headless Chromium through
/// playwright-core); asserts it succeeded and returns its JSON summary line.
async fn browse(script: &str, env: &[(&str, &str)]) -> Value {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    assert!(
        repo.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "run `npm ci` in tests/browser (scripts/test.sh does)"
    );
    let run = tokio::process::Command::new("node")
        .arg(repo.join("tests/browser").join(script))
        .envs(env.iter().copied())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("the browser run finishes within 15 minutes")
        .expect("node runs (Node.js is on the machine)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stdout}\n{stderr}");
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a JSON summary line");
    assert_eq!(summary["ok"], true, "{summary}");
    summary
}

#[actix_web::test]
async fn a_user_watches_a_video_generate_live_in_chromium_and_downloads_it() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("EMBEDDED_WORKER", "true"), ("CACHE_TTL", "0")],
    )
    .await;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shots = repo.join("target/browser");
    std::fs::create_dir_all(&shots).expect("target/browser");
    let screenshot = shots.join("watch.png");
    let _ = std::fs::remove_file(&screenshot);
    let recording = shots.join("recording.wav");
    crate::helpers::espeak_wav(&recording, "A recording made for the browser test.");
    let summary = browse(
        "watch.mjs",
        &[
            ("BASE_URL", app.address.as_str()),
            ("AUDIO_FILE", &recording.display().to_string()),
            // Renders run at the lowest priority: on a loaded machine (the live-session tests
            // beside it stream in real time) a video takes longer; wait for it generously.
            ("COMPLETE_TIMEOUT_MS", "480000"),
            ("SCREENSHOT", &screenshot.display().to_string()),
        ],
    )
    .await;
    assert_eq!(
        summary["csp_violations"], 0,
        "the app broke its own CSP: {summary}"
    );
    // The live preview played while the video was still rendering.
    assert!(
        summary["max_live_time"].as_f64().expect("max_live_time") > 0.0,
        "{summary}"
    );
    assert!(
        summary["progress_samples"].as_u64().expect("samples") >= 2,
        "{summary}"
    );
    // The pause inserted through the form reached the script, and every word the captions.
    assert!(
        summary["caption_words"].as_u64().expect("caption_words") >= 60,
        "{summary}"
    );
    // The second video, from the recording uploaded through the form, completed.
    let from_recording = summary["recording_video"]
        .as_str()
        .expect("recording_video");
    let r: Value = app
        .get(&format!("/api/v1/videos/{from_recording}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(r["status"], "completed", "{r}");
    assert!(r["params"]["audio"]["id"].is_string(), "{r}");
    let png = std::fs::read(&screenshot).expect("screenshot written");
    assert_eq!(&png[1..4], b"PNG");
    // The video the browser made is really there and complete.
    let id = summary["id"].as_str().expect("id");
    let v: Value = app
        .get(&format!("/api/v1/videos/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["status"], "completed");
}

/// The Live page: a session over WebRTC in Chromium (`tests/browser/live.mjs`): the browser's
/// own `RTCPeerConnection` decodes the avatar and its voice, the words of what was typed
/// arrive over the data channel, an interrupt cuts a long sentence; then the WebSocket + MSE
/// fallback plays.
#[actix_web::test]
async fn a_user_talks_to_a_live_avatar_over_webrtc_in_chromium() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await;
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shots = repo.join("target/browser");
    std::fs::create_dir_all(&shots).expect("target/browser");
    let screenshot = shots.join("live.png");
    let summary = browse(
        "live.mjs",
        &[
            ("BASE_URL", app.address.as_str()),
            ("SCREENSHOT", &screenshot.display().to_string()),
        ],
    )
    .await;
    assert_eq!(summary["transport"], "webrtc", "{summary}");
    assert!(summary["frames_decoded"].as_u64() > Some(10), "{summary}");
    // The fallback played the WebSocket's fMP4 through MSE.
    assert!(summary["mse_played_s"].as_f64() >= Some(0.5), "{summary}");
    // The session the page ended is gone.
    let left = app.get_json("/api/v1/sessions").await;
    assert_eq!(left["sessions"], serde_json::json!([]), "{left}");
}
