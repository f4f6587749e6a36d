//! SPEC §3b scenes over HTTP: several scenes — each with its own script, avatar, expression,
//! voice and background — become one MP4 whose scene durations add up to its length within a
//! frame; the Video's `scenes` are estimated while it waits and exact once it is done, and its
//! captions hold every scene's words in order.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{Backend, discovered, spawn_app_with};

#[actix_web::test]
async fn three_scenes_make_one_file_whose_scenes_add_up_to_its_length() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("EMBEDDED_WORKER", "true"), ("CACHE_TTL", "0")],
    )
    .await;
    let fps = 10u32;
    let body = json!({
        "dimension": {"width": 320, "height": 180}, "fps": fps, "quality": "draft", "captions": true,
        "avatar": {"id": "ava"},
        "scenes": [
            {"script": "Welcome to scene one.", "expression": "friendly"},
            {"script": "Scene two has another presenter. <break time=\"500ms\"/> And a pause.",
             "avatar": {"id": "marcus"}, "expression": "serious", "voice": {"id": "en-gb-1"},
             "background": {"type": "color", "value": "#334455"}},
            {"script": "Scene three is silent.", "voice": null},
        ]
    });
    let v = app.create_video(body).await;
    let id = v["id"].as_str().expect("id").to_string();
    let estimated = v["scenes"].as_array().expect("estimated scenes").clone();
    assert_eq!(estimated.len(), 3, "{v}");
    assert_eq!(v["title"], "Welcome to scene one.");

    let states = app
        .wait_for(&id, Duration::from_secs(120), |v| {
            matches!(v["status"].as_str(), Some("completed" | "failed"))
        })
        .await;
    let done = states.last().expect("state");
    assert_eq!(done["status"], "completed", "{done}");
    // Progress spans the whole video: it never goes back across scene boundaries.
    let progress: Vec<f64> = states
        .iter()
        .filter_map(|s| s["progress"].as_f64())
        .collect();
    assert!(progress.windows(2).all(|w| w[1] >= w[0]), "{progress:?}");

    let frame = 1.0 / f64::from(fps);
    let duration = done["duration_s"].as_f64().expect("duration");
    let scenes = done["scenes"].as_array().expect("scenes");
    assert_eq!(scenes.len(), 3);
    let mut at = 0.0;
    for (i, s) in scenes.iter().enumerate() {
        assert_eq!(s["index"], i);
        let start = s["start_s"].as_f64().expect("start");
        assert!(
            (start - at).abs() < 1e-6,
            "scene {i} starts at {start}, not {at}"
        );
        at += s["duration_s"].as_f64().expect("duration");
    }
    assert!(
        (at - duration).abs() <= frame,
        "scenes add up to {at} s of {duration} s"
    );

    let file = app.get(&format!("/api/v1/videos/{id}/file")).await;
    assert_eq!(file.status(), 200);
    let mp4 = app.data_dir.join("scenes.mp4");
    std::fs::write(&mp4, file.bytes().await.expect("body")).expect("write");
    let (played, info) = discovered(&mp4);
    assert!(
        (played - at).abs() <= frame + 0.03,
        "the file plays {played} s, scenes {at} s"
    );
    assert!(
        info.contains("width: 320") || info.contains("Width: 320"),
        "{info}"
    );

    // Every scene's words, in order, on the file's clock.
    let t = app
        .get_json(&format!("/api/v1/videos/{id}/transcript"))
        .await;
    let words = t["words"].as_array().expect("words");
    let texts: Vec<&str> = words.iter().filter_map(|w| w["text"].as_str()).collect();
    assert_eq!(
        texts,
        [
            "Welcome",
            "to",
            "scene",
            "one.",
            "Scene",
            "two",
            "has",
            "another",
            "presenter.",
            "And",
            "a",
            "pause."
        ]
    );
    let second_start = scenes[1]["start_s"].as_f64().expect("start");
    let scene_two = words[4]["start_s"].as_f64().expect("start");
    assert!(
        scene_two >= second_start,
        "{scene_two} before scene two at {second_start}"
    );
}
