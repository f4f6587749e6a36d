//! The embedded worker end to end: a submitted video renders on this machine's device,
//! progresses monotonically, completes, and downloads with Range, HEAD and ETag; a cancel
//! mid-render stops it and leaves no file.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{Backend, TestApp, spawn_app_with};

async fn worker_app() -> TestApp {
    spawn_app_with(
        Backend::Sqlite,
        &[
            ("EMBEDDED_WORKER", "true"),
            ("MAX_CONCURRENT_JOBS", "2"),
            ("CACHE_TTL", "0"),
        ],
    )
    .await
}

#[actix_web::test]
async fn a_submitted_video_renders_completes_and_downloads() {
    let app = worker_app().await;
    let ready: Value = app.get("/health/ready").await.json().await.expect("json");
    let names: Vec<&str> = ready["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert!(
        names.contains(&"gpu") && names.contains(&"encoder"),
        "{ready}"
    );

    let v = app
        .create_video(json!({"script": "Hello from the worker. This clip renders for real.", "dimension": {"width": 320, "height": 180}, "fps": 12, "quality": "draft"}))
        .await;
    let id = v["id"].as_str().expect("id").to_string();
    let states = app
        .wait_for(&id, Duration::from_secs(60), |v| {
            v["status"] == "completed" || v["status"] == "failed"
        })
        .await;
    let last = states.last().expect("state");
    assert_eq!(last["status"], "completed", "{last}");
    let progress: Vec<f64> = states
        .iter()
        .filter_map(|s| s["progress"].as_f64())
        .collect();
    assert!(
        progress.windows(2).all(|w| w[1] >= w[0]),
        "progress never goes back: {progress:?}"
    );
    assert_eq!(last["progress"], 1.0);
    assert_eq!(last["frames_done"], last["frames_total"]);
    let frames = last["frames_total"].as_f64().expect("frames");
    assert!((frames - last["duration_s"].as_f64().expect("duration") * 12.0).abs() <= 1.0);
    assert_eq!(last["video_url"], format!("/api/v1/videos/{id}/file"));
    let size = last["size_bytes"].as_u64().expect("size");

    let file = app.get(&format!("/api/v1/videos/{id}/file")).await;
    assert_eq!(file.status(), 200);
    assert_eq!(file.headers()["content-type"], "video/mp4");
    let etag = file.headers()["etag"].to_str().expect("etag").to_string();
    let body = file.bytes().await.expect("body");
    assert_eq!(body.len() as u64, size);
    assert_eq!(&body[4..8], b"ftyp");
    let ranged = app
        .client
        .get(app.url(&format!("/api/v1/videos/{id}/file")))
        .header("Range", "bytes=0-99")
        .send()
        .await
        .expect("range");
    assert_eq!(ranged.status(), 206);
    assert_eq!(
        ranged.headers()["content-range"],
        format!("bytes 0-99/{size}")
    );
    assert_eq!(ranged.bytes().await.expect("bytes").as_ref(), &body[..100]);
    let head = app
        .client
        .head(app.url(&format!("/api/v1/videos/{id}/file")))
        .send()
        .await
        .expect("head");
    assert_eq!(head.status(), 200);
    let cached = app
        .client
        .get(app.url(&format!("/api/v1/videos/{id}/file")))
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("get");
    assert_eq!(cached.status(), 304);
    let past = app
        .client
        .get(app.url(&format!("/api/v1/videos/{id}/file")))
        .header("Range", format!("bytes={}-", size + 10))
        .send()
        .await
        .expect("range");
    assert_eq!(past.status(), 416);
    let thumb = app.get(&format!("/api/v1/videos/{id}/thumbnail")).await;
    assert_eq!(thumb.status(), 200);
    assert_eq!(&thumb.bytes().await.expect("jpeg")[..2], &[0xff, 0xd8]);
    assert_eq!(
        app.metric("reelgen_jobs_total{status=\"completed\"}").await,
        Some(1.0)
    );
}

#[actix_web::test]
async fn cancelling_mid_render_stops_the_job_and_removes_its_file() {
    let app = worker_app().await;
    // Held mid-render by the test hook: still rendering when the cancel arrives, by
    // construction.
    let _hold = app.hold_renders();
    let script = "This video is long enough to be cancelled while it renders. ".repeat(15);
    let v = app.create_video(json!({"script": script, "dimension": {"width": 640, "height": 360}, "fps": 30, "quality": "draft"})).await;
    let id = v["id"].as_str().expect("id").to_string();
    app.wait_for(&id, Duration::from_secs(120), |v| {
        v["status"] == "rendering" && v["frames_done"].as_u64().unwrap_or(0) > 0
    })
    .await;
    let res = app
        .client
        .post(app.url(&format!("/api/v1/videos/{id}/cancel")))
        .send()
        .await
        .expect("cancel");
    assert_eq!(res.status(), 200);
    let t = Instant::now();
    loop {
        let stats = app
            .state
            .worker
            .get()
            .expect("worker")
            .send(reelgen::videos::dispatcher::GetStats)
            .await
            .expect("stats");
        if stats.running == 0 {
            break;
        }
        // SPEC §7's "within a second" is a property of the loop (the cancel flag is read
        // every frame); generation runs at nice 19, so on a machine busy with other work the
        // teardown may wait for a core. The test asserts the stop, with a generous deadline.
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "still rendering after {:?}",
            t.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let after: Value = app
        .get(&format!("/api/v1/videos/{id}"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(after["status"], "cancelled");
    let uid = uuid::Uuid::parse_str(&id).expect("uuid");
    assert_eq!(
        app.state
            .blobs
            .stat(uid, reelgen::platform::storage::Object::Video)
            .await
            .expect("stat"),
        None,
        "no file stored"
    );
    assert!(
        !app.state.blobs.scratch_dir(uid).exists(),
        "nothing of the render left in its scratch"
    );
    assert_eq!(
        app.get(&format!("/api/v1/videos/{id}/file")).await.status(),
        409
    );
}

async fn ws_messages(app: &TestApp, id: &str) -> (Vec<Value>, Option<u16>) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/videos/{id}/ws",
        app.address.rsplit(':').next().expect("port")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(300);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(120), ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                out.push(serde_json::from_str(&t).expect("json message"))
            }
            Ok(Some(Ok(Message::Close(frame)))) => return (out, frame.map(|f| u16::from(f.code))),
            Ok(Some(Ok(_))) => {}
            _ => break,
        }
    }
    (out, None)
}

#[actix_web::test]
async fn the_websocket_streams_snapshot_progress_and_completion_then_closes_1000() {
    let app = worker_app().await;
    // The render waits until all 50 watchers are subscribed, so each of them sees it go.
    let hold = app.hold_renders();
    let v = app
        .create_video(json!({"script": "Watch me render live over a web socket. This takes a few seconds on a software device, so every watcher sees progress.", "dimension": {"width": 480, "height": 270}, "fps": 24, "quality": "draft"}))
        .await;
    let id = v["id"].as_str().expect("id").to_string();
    let watchers: Vec<_> = (0..50).map(|_| ws_messages(&app, &id)).collect();
    let release = async {
        let uuid = uuid::Uuid::parse_str(&id).expect("uuid");
        let deadline = Instant::now() + Duration::from_secs(60);
        while app.state.events.watchers(uuid) < 50 {
            assert!(Instant::now() < deadline, "watchers did not subscribe");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(hold);
    };
    let (results, ()) = futures_util::join!(futures_util::future::join_all(watchers), release);
    for (messages, close) in &results {
        assert_eq!(
            messages.first().map(|m| m["type"].clone()),
            Some(json!("snapshot")),
            "{messages:?}"
        );
        assert_eq!(
            messages.last().map(|m| m["type"].clone()),
            Some(json!("completed"))
        );
        assert_eq!(*close, Some(1000));
        let progress: Vec<f64> = messages
            .iter()
            .filter(|m| m["type"] == "progress")
            .filter_map(|m| m["progress"].as_f64())
            .collect();
        assert!(
            progress.windows(2).all(|w| w[1] >= w[0]),
            "monotonic: {progress:?}"
        );
        assert_eq!(
            messages.last().expect("last")["video"]["status"],
            "completed"
        );
    }
    assert!(
        results
            .iter()
            .any(|(m, _)| m.iter().any(|x| x["type"] == "progress")),
        "progress was streamed"
    );
    // A late joiner gets the snapshot and the terminal message at once.
    let (late, close) = ws_messages(&app, &id).await;
    let kinds: Vec<&str> = late.iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(kinds, ["snapshot", "completed"]);
    assert_eq!(close, Some(1000));
    // Unknown ids are a 404 before the upgrade.
    let res = app
        .get(&format!("/api/v1/videos/{}/ws", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(res.status(), 404);
    // Nothing stays allocated for finished sessions or refused ids (sessions release their
    // channel as they end, a moment after the close frame).
    let deadline = Instant::now() + Duration::from_secs(30);
    while app.state.events.watched() != 0 {
        assert!(
            Instant::now() < deadline,
            "{} channels left",
            app.state.events.watched()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Text messages and binary frames of one `?preview=mse` connection, until it closes.
/// `on_fragment` fires once, when the second media fragment (after the init segment) arrives.
async fn ws_preview(
    app: &TestApp,
    id: &str,
    mut on_fragment: Option<tokio::sync::oneshot::Sender<()>>,
) -> (Vec<Value>, Vec<Vec<u8>>) {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let url = format!(
        "ws://127.0.0.1:{}/api/v1/videos/{id}/ws?preview=mse",
        app.address.rsplit(':').next().expect("port")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("websocket");
    let (mut texts, mut binaries) = (Vec::new(), Vec::new());
    while let Ok(Some(Ok(msg))) = tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        match msg {
            Message::Text(t) => texts.push(serde_json::from_str(&t).expect("json")),
            Message::Binary(b) => {
                binaries.push(b.to_vec());
                if binaries.len() >= 3
                    && let Some(tx) = on_fragment.take()
                {
                    let _ = tx.send(());
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    (texts, binaries)
}

#[actix_web::test]
async fn preview_mse_streams_an_init_segment_then_key_frame_fragments() {
    let app = worker_app().await;
    // Long enough (about a minute of speech) that rendering is still going when the early
    // viewer has seen two fragments, even on a fast machine.
    let script =
        "This preview streams fragmented video while it renders, one fragment per second. "
            .repeat(14);
    let v = app.create_video(json!({"script": script, "dimension": {"width": 320, "height": 180}, "fps": 24, "quality": "draft"})).await;
    let id = v["id"].as_str().expect("id").to_string();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let early = ws_preview(&app, &id, Some(tx));
    // A late joiner connects as soon as the early viewer has received two fragments: rendering
    // is under way, and its stream must start at a later fragment.
    let late = async {
        rx.await.expect("the early viewer saw two fragments");
        ws_preview(&app, &id, None).await
    };
    let ((texts, bins), (late_texts, late_bins)) = futures_util::join!(early, late);
    assert_eq!(
        late_texts[0]["video"]["status"], "rendering",
        "the late joiner joined mid-render"
    );
    for (texts, bins) in [(&texts, &bins), (&late_texts, &late_bins)] {
        let mime = texts
            .iter()
            .find_map(|t| t["mime"].as_str())
            .unwrap_or_else(|| {
                panic!(
                    "no MIME type; texts {:?}, {} binaries",
                    texts.iter().map(|t| t["type"].clone()).collect::<Vec<_>>(),
                    bins.len()
                )
            });
        assert!(mime.starts_with("video/mp4; codecs=\"avc1."), "{mime}");
        let init = bins.first().expect("init segment");
        assert_eq!(&init[4..8], b"ftyp");
        assert!(init.windows(4).any(|w| w == b"moov"));
        assert!(bins.len() >= 2, "{} binary frames", bins.len());
        for f in &bins[1..] {
            assert_eq!(&f[4..8], b"moof", "every fragment starts with moof");
        }
        assert_eq!(
            texts.last().map(|t| t["type"].clone()),
            Some(json!("completed"))
        );
    }
    assert!(
        bins.len() > late_bins.len(),
        "the late joiner starts at a later fragment"
    );
}
