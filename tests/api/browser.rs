//! The browser app in a real browser: `tests/browser/watch.mjs` drives headless Chromium
//! (Debian's package, through playwright-core) against a live server with the embedded
//! worker: create a video in the form, watch the progress bar and the live MSE preview play
//! while it renders, download the finished MP4, find it in the library. The screenshot of
//! the watch page mid-generation is kept at `target/browser/watch.png`.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Backend, spawn_app_with};

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
    assert!(
        repo.join("tests/browser/node_modules/playwright-core")
            .is_dir(),
        "run `npm ci` in tests/browser (scripts/test.sh does)"
    );
    let recording = shots.join("recording.wav");
    crate::helpers::espeak_wav(&recording, "A recording made for the browser test.");
    let run = tokio::process::Command::new("node")
        .arg(repo.join("tests/browser/watch.mjs"))
        .env("BASE_URL", &app.address)
        .env("AUDIO_FILE", &recording)
        .env("SCREENSHOT", &screenshot)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(240), run)
        .await
        .expect("the browser run finishes within 4 minutes")
        .expect("node runs (Node.js is on the machine)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "watch.mjs failed:\n{stdout}\n{stderr}"
    );
    let summary: Value = stdout
        .lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .expect("a JSON summary line");
    assert_eq!(summary["ok"], true, "{summary}");
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
