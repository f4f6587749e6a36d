//! SPEC §3b recordings over HTTP: upload a real recording (`espeak-ng -w`), make a video that
//! lip-syncs to it (its sound track, its length to the frame), keep it to its tenant, and
//! refuse hostile uploads with a 4xx that leaves nothing behind.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, assert_problem, discovered, spawn_app_with};

/// The bytes of a recording made by the `espeak-ng` command.
fn espeak_wav(text: &str) -> Vec<u8> {
    let path = std::env::temp_dir().join(format!("reelgen-audio-{}.wav", uuid::Uuid::new_v4()));
    crate::helpers::espeak_wav(&path, text);
    let bytes = std::fs::read(&path).expect("wav");
    let _ = std::fs::remove_file(path);
    bytes
}

async fn upload(app: &TestApp, key: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = app
        .client
        .post(app.url("/api/v1/audio"))
        .header("Content-Type", "audio/wav")
        .body(body);
    if let Some(k) = key {
        req = req.header("X-Api-Key", k);
    }
    req.send().await.expect("upload")
}

/// Sends only the head of an upload declaring `length` bytes; returns the response head.
async fn declared_upload(app: &TestApp, length: usize) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let host = app.address.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&host)
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/audio HTTP/1.1\r\nHost: {host}\r\nContent-Type: audio/wav\r\nContent-Length: {length}\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), tcp.read(&mut buf))
        .await
        .expect("an answer before the body")
        .expect("read");
    String::from_utf8_lossy(&buf[..n]).to_string()
}

/// Files under the data directory's scratch and stored objects (what an upload may leave).
fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = entry.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.display().to_string());
            }
        }
    }
    out
}

#[actix_web::test]
async fn an_uploaded_recording_becomes_the_sound_track_of_a_lip_synced_video() {
    let app = spawn_app_with(
        Backend::Sqlite,
        &[("EMBEDDED_WORKER", "true"), ("CACHE_TTL", "0")],
    )
    .await;
    let wav = espeak_wav("This is my own voice. The avatar moves its lips with my recording.");
    let wav_s = (wav.len() - 44) as f64 / 2.0 / 22_050.0;
    let res = upload(&app, None, wav).await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    let location = res.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    let rec: Value = res.json().await.expect("json");
    let id = rec["id"].as_str().expect("id").to_string();
    assert_eq!(location, format!("/api/v1/audio/{id}"));
    let duration = rec["duration_s"].as_f64().expect("duration");
    assert!((duration - wav_s).abs() < 0.01, "{duration} vs {wav_s}");
    assert_eq!(app.get_json(&location).await["id"], id.as_str());

    let fps = 25;
    let v = app
        .create_video(json!({"audio": {"id": id}, "fps": fps, "dimension": {"width": 320, "height": 180}, "quality": "draft"}))
        .await;
    assert_eq!(v["params"]["audio"]["id"], id.as_str());
    assert!(v["params"].get("script").is_none() && v["params"]["voice"].is_null());
    assert!((v["duration_s"].as_f64().expect("estimate") - duration).abs() <= 1.0 / f64::from(fps));
    let vid = v["id"].as_str().expect("id").to_string();
    let states = app
        .wait_for(&vid, Duration::from_secs(120), |v| {
            matches!(v["status"].as_str(), Some("completed" | "failed"))
        })
        .await;
    let last = states.last().expect("state");
    assert_eq!(last["status"], "completed", "{last}");
    assert!(
        (last["duration_s"].as_f64().expect("duration") - duration).abs() <= 1.0 / f64::from(fps),
        "{last}"
    );

    let file = app.get(&format!("/api/v1/videos/{vid}/file")).await;
    assert_eq!(file.status(), 200);
    let mp4 = app.data_dir.join("check.mp4");
    std::fs::write(&mp4, file.bytes().await.expect("body")).expect("write");
    let (played, info) = discovered(&mp4);
    assert!(
        (played - duration).abs() <= 1.0 / f64::from(fps) + 0.03,
        "the file plays {played} s for {duration} s of recording"
    );
    assert!(info.contains("audio #") && info.contains("AAC"), "{info}");
    // No script, so no captions.
    assert_problem(
        app.get(&format!("/api/v1/videos/{vid}/captions.vtt")).await,
        404,
        "not_found",
    )
    .await;

    // Deleting the recording: gone for new videos, the video keeps its sound.
    let del = app
        .client
        .delete(app.url(&location))
        .send()
        .await
        .expect("delete");
    assert_eq!(del.status(), 204);
    assert_problem(app.get(&location).await, 404, "not_found").await;
    let p = assert_problem(
        app.post_json("/api/v1/videos", &json!({"audio": {"id": id}}))
            .await,
        422,
        "invalid_audio",
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "audio.id");
    assert_eq!(
        app.get(&format!("/api/v1/videos/{vid}/file"))
            .await
            .status(),
        200
    );
}

#[actix_web::test]
async fn another_tenant_can_neither_use_nor_see_a_recording() {
    let app = spawn_app_with(Backend::Sqlite, &[("AUTH_MODE", "api_key")]).await;
    let alice = app.api_key("alice").await;
    let bob = app.api_key("bob").await;
    let res = upload(&app, Some(&alice), espeak_wav("Alice speaking.")).await;
    assert_eq!(res.status(), 201);
    let id = res.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let as_bob = |method: reqwest::Method, path: String| {
        app.client
            .request(method, app.url(&path))
            .header("X-Api-Key", &bob)
    };
    for method in [reqwest::Method::GET, reqwest::Method::DELETE] {
        let res = as_bob(method, format!("/api/v1/audio/{id}"))
            .send()
            .await
            .expect("send");
        assert_problem(res, 404, "not_found").await;
    }
    let res = as_bob(reqwest::Method::POST, "/api/v1/videos".into())
        .json(&json!({"audio": {"id": id}}))
        .send()
        .await
        .expect("send");
    let p = assert_problem(res, 422, "invalid_audio").await;
    assert_eq!(p["errors"][0]["field"], "audio.id");
    let res = as_bob(reqwest::Method::POST, "/api/v1/videos/batch".into())
        .json(&json!({"videos": [{"script": "ok"}, {"audio": {"id": id}}]}))
        .send()
        .await
        .expect("send");
    let p = assert_problem(res, 422, "invalid_audio").await;
    assert_eq!(p["errors"][0]["field"], "videos[1].audio.id");
    // Alice can.
    let res = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("X-Api-Key", &alice)
        .json(&json!({"audio": {"id": id}}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 202);
}

#[actix_web::test]
async fn hostile_uploads_get_a_4xx_and_leave_nothing_on_disk() {
    let app = spawn_app_with(Backend::Sqlite, &[]).await;
    let dir = app.data_dir.join("hostile");
    std::fs::create_dir_all(&dir).expect("dir");
    let wav = espeak_wav("A recording to cut short.");
    let wav_path = dir.join("rec.wav");
    std::fs::write(&wav_path, &wav).expect("wav");
    let mp3_path = dir.join("rec.mp3");
    let gst = |args: String| {
        let out = Command::new("gst-launch-1.0")
            .arg("-q")
            .args(args.split_whitespace())
            .output()
            .expect("gst-launch-1.0");
        assert!(out.status.success(), "{out:?}");
    };
    gst(format!(
        "filesrc location={} ! wavparse ! audioconvert ! lamemp3enc ! filesink location={}",
        wav_path.display(),
        mp3_path.display()
    ));
    let mp3 = std::fs::read(&mp3_path).expect("mp3");
    let long_path = dir.join("long.wav");
    gst(format!(
        "audiotestsrc wave=sine num-buffers=660 samplesperbuffer=8000 ! audio/x-raw,rate=8000,channels=1,format=U8 ! wavenc ! filesink location={}",
        long_path.display()
    ));
    let long = std::fs::read(&long_path).expect("long");
    // A WAV header that claims an hour of sound in front of a second of it.
    let mut liar = wav[..44].to_vec();
    liar[40..44].copy_from_slice(&(22_050u32 * 2 * 3600).to_le_bytes());
    liar.extend_from_slice(&wav[44..44 + 22_050 * 2]);
    let _ = std::fs::remove_dir_all(&dir);

    for (what, body, status, code) in [
        ("an empty body", Vec::new(), 422, "invalid_audio"),
        (
            "a text file named .wav",
            b"just words, no sound\n".repeat(100),
            422,
            "invalid_audio",
        ),
        (
            "a truncated MP3",
            mp3[..mp3.len().min(200)].to_vec(),
            422,
            "invalid_audio",
        ),
        ("11 minutes of sound in 5 MB", long, 422, "invalid_audio"),
    ] {
        let res = upload(&app, None, body).await;
        let p = assert_problem(res, status, code).await;
        eprintln!("{what}: {}", p["detail"]);
    }
    // 30 MB declared: refused before a byte of it is read.
    let head = declared_upload(&app, 30 * 1024 * 1024).await;
    assert!(head.starts_with("HTTP/1.1 413"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/problem+json"),
        "{head}"
    );
    // A body with no declared length, streamed just past 25 MB: refused as it streams (just
    // past, so the server has read what was sent when it answers).
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> = (0..(25 * 1024 / 64 + 1))
        .map(|_| Ok(vec![7u8; 64 * 1024]))
        .collect();
    let res = app
        .client
        .post(app.url("/api/v1/audio"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .expect("request");
    assert_problem(res, 413, "payload_too_large").await;
    // The lying header is judged by what decodes: one second of sound.
    let res = upload(&app, None, liar).await;
    assert_eq!(res.status(), 201);
    let duration = res.json::<Value>().await.expect("json")["duration_s"]
        .as_f64()
        .expect("duration");
    assert!((duration - 1.0).abs() < 0.05, "{duration}");

    // Nothing refused was kept: no upload in scratch, only the one accepted recording stored.
    assert_eq!(
        files_under(&app.data_dir.join("scratch")),
        Vec::<String>::new()
    );
    let stored = files_under(&app.data_dir.join("videos").join("recordings"));
    assert_eq!(stored.len(), 1, "{stored:?}");
}
