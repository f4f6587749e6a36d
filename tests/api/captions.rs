//! SPEC §3b captions and pauses over HTTP: a rendered video's transcript, WebVTT and SubRip
//! carry every word of its script in order, survive a restart of the server, are 409 until
//! completed and 404 without speech or for another tenant; script markup other than
//! `<break/>` is a 422 naming the tag.

use std::time::Duration;

use reelgen::Application;
use reelgen::platform::config::{Config, Sources};
use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_problem, spawn_app_with};

const SCRIPT: &str = "Hi! I am trying reelgen for the first time. <break time=\"1s\"/> It's 3.5 million — café & co.";
const WORDS: [&str; 15] = [
    "Hi!", "I", "am", "trying", "reelgen", "for", "the", "first", "time.", "It's", "3.5",
    "million", "café", "&", "co.",
];

async fn worker_app(extra: &[(&str, &str)]) -> TestApp {
    let mut pairs = vec![("EMBEDDED_WORKER", "true"), ("CACHE_TTL", "0")];
    pairs.extend_from_slice(extra);
    spawn_app_with(Backend::Sqlite, &pairs).await
}

async fn completed(app: &TestApp, body: Value) -> String {
    let id = app.create_video(body).await["id"]
        .as_str()
        .expect("id")
        .to_string();
    let states = app
        .wait_for(&id, Duration::from_secs(120), |v| {
            matches!(v["status"].as_str(), Some("completed" | "failed"))
        })
        .await;
    let last = states.last().expect("state");
    assert_eq!(last["status"], "completed", "{last}");
    id
}

/// The cue text lines of a WebVTT or SubRip file, split into words.
fn cue_words(file: &str) -> Vec<String> {
    file.split("\n\n")
        .filter(|block| block.contains("-->"))
        .flat_map(|block| {
            block
                .lines()
                .skip_while(|l| !l.contains("-->"))
                .skip(1)
                .flat_map(|l| l.split(' ').map(str::to_string).collect::<Vec<_>>())
                .collect::<Vec<_>>()
        })
        .collect()
}

fn unescape_vtt(w: &str) -> String {
    w.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

#[actix_web::test]
async fn a_rendered_video_has_a_transcript_and_caption_files_with_every_word() {
    let app = worker_app(&[]).await;
    let id = completed(
        &app,
        json!({"script": SCRIPT, "captions": true, "dimension": {"width": 320, "height": 180},
               "fps": 10, "quality": "draft"}),
    )
    .await;

    let transcript = app.get(&format!("/api/v1/videos/{id}/transcript")).await;
    assert_eq!(transcript.status(), 200);
    assert_eq!(transcript.headers()["content-type"], "application/json");
    let etag = transcript.headers()["etag"]
        .to_str()
        .expect("etag")
        .to_string();
    let t: Value = transcript.json().await.expect("json");
    let words = t["words"].as_array().expect("words");
    let texts: Vec<&str> = words.iter().filter_map(|w| w["text"].as_str()).collect();
    assert_eq!(texts, WORDS);
    let mut last_end = 0.0;
    for w in words {
        let (s, e) = (
            w["start_s"].as_f64().expect("start"),
            w["end_s"].as_f64().expect("end"),
        );
        assert!(s >= last_end - 1e-9 && e > s, "{w}");
        last_end = e;
    }
    // The break: at least a second between "time." and "It's".
    let gap =
        words[9]["start_s"].as_f64().expect("start") - words[8]["end_s"].as_f64().expect("end");
    assert!(gap >= 0.95, "gap {gap} s");
    let not_modified = app
        .client
        .get(app.url(&format!("/api/v1/videos/{id}/transcript")))
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("304");
    assert_eq!(not_modified.status(), 304);

    let vtt = app.get(&format!("/api/v1/videos/{id}/captions.vtt")).await;
    assert_eq!(vtt.status(), 200);
    assert_eq!(vtt.headers()["content-type"], "text/vtt");
    let vtt = vtt.text().await.expect("vtt");
    assert!(vtt.starts_with("WEBVTT\n"), "{vtt}");
    let vtt_words: Vec<String> = cue_words(&vtt).iter().map(|w| unescape_vtt(w)).collect();
    assert_eq!(vtt_words, WORDS, "{vtt}");

    let srt = app.get(&format!("/api/v1/videos/{id}/captions.srt")).await;
    assert_eq!(srt.status(), 200);
    assert_eq!(srt.headers()["content-type"], "application/x-subrip");
    let srt = srt.text().await.expect("srt");
    assert!(srt.starts_with("1\n00:00:0"), "{srt}");
    assert_eq!(cue_words(&srt), WORDS, "{srt}");

    // Another server on the same data directory and database (a restart) serves the same files.
    let again = restarted(&app).await;
    let t2: Value = reqwest::get(format!("{again}/api/v1/videos/{id}/transcript"))
        .await
        .expect("transcript after restart")
        .json()
        .await
        .expect("json");
    assert_eq!(t2, t);

    // Deleting the video removes them.
    let deleted = app
        .client
        .delete(app.url(&format!("/api/v1/videos/{id}")))
        .send()
        .await
        .expect("delete");
    assert_eq!(deleted.status(), 204);
    assert_problem(
        app.get(&format!("/api/v1/videos/{id}/captions.vtt")).await,
        404,
        "not_found",
    )
    .await;
    assert!(
        !app.data_dir
            .join("videos")
            .join(&id)
            .join("transcript.json")
            .exists()
    );
}

/// A second server over `app`'s data directory and database (SQLite in the data directory);
/// its base URL.
async fn restarted(app: &TestApp) -> String {
    let data_dir = app.data_dir.display().to_string();
    let config = Config::load(&Sources::from_pairs(vec![
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("DATA_DIR", data_dir.as_str()),
        ("ENVIRONMENT", "test"),
        ("EMBEDDED_WORKER", "false"),
    ]))
    .expect("config");
    let server = Application::build(config).await.expect("second server");
    let port = server.port();
    actix_web::rt::spawn(server.run_until_stopped());
    format!("http://127.0.0.1:{port}")
}

#[actix_web::test]
async fn captions_are_409_until_completed_and_404_without_speech() {
    let app = worker_app(&[]).await;
    let hold = app.hold_renders();
    let held = app
        .create_video(json!({"script": "Held for a while.", "dimension": {"width": 256, "height": 144}, "fps": 5}))
        .await["id"]
        .as_str()
        .expect("id")
        .to_string();
    for route in ["transcript", "captions.vtt", "captions.srt"] {
        assert_problem(
            app.get(&format!("/api/v1/videos/{held}/{route}")).await,
            409,
            "captions_not_ready",
        )
        .await;
    }
    drop(hold);
    let silent = completed(
        &app,
        json!({"script": "Nobody speaks.", "voice": null, "dimension": {"width": 256, "height": 144}, "fps": 5}),
    )
    .await;
    for route in ["transcript", "captions.vtt", "captions.srt"] {
        assert_problem(
            app.get(&format!("/api/v1/videos/{silent}/{route}")).await,
            404,
            "not_found",
        )
        .await;
    }
}

#[actix_web::test]
async fn a_tag_other_than_break_is_refused_naming_it() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await;
    for (script, named) in [
        ("Hello <speak>there</speak>", "<speak>"),
        ("Say <prosody rate=\"slow\">this</prosody>", "<prosody>"),
        ("Wait <break time=\"11s\"/> longer", "longer than 10 s"),
        ("Wait <break time=\"2\"/> for it", "needs a unit"),
    ] {
        let p = assert_problem(
            app.post_json("/api/v1/videos", &json!({"script": script}))
                .await,
            422,
            "invalid_script",
        )
        .await;
        assert_eq!(p["errors"][0]["field"], "script");
        let message = p["errors"][0]["message"].as_str().expect("message");
        assert!(message.contains(named), "{script:?}: {message}");
    }
    // A break is fine, text with a less-than sign too; the title leaves the tag out.
    let v = app
        .create_video(json!({"script": "Hello <break time=\"500ms\"/> world, a < b."}))
        .await;
    assert_eq!(v["title"], "Hello world, a < b.");
}
