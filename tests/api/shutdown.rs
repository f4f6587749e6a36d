//! Graceful shutdown of the real binary: on SIGTERM, `serve` stops accepting, closes
//! WebSocket clients with 1001, lets renders finish within `SHUTDOWN_GRACE` (or hands them
//! back to the queue when it ends), flushes due webhooks and exits 0. Renders are held
//! "still running" by construction through the test hook (`$DATA_DIR/hold-renders`), never
//! by hoping they are slow.

use std::path::Path;
use std::process::{Child, ExitStatus};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{free_port, held_data_dir, reelgen, wait_ready};
use crate::helpers::{get_video, poll_video};

fn serve(dir: &Path, port: u16, env: &[(&str, &str)]) -> Child {
    let mut cmd = reelgen(dir);
    cmd.env("PORT", port.to_string())
        .env("ENVIRONMENT", "test")
        .env("MAX_CONCURRENT_JOBS", "1")
        .env("WEBHOOK_ALLOW_PRIVATE", "true");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.arg("serve").spawn().expect("spawn server")
}

fn sigterm(child: &Child) {
    let ok = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs")
        .success();
    assert!(ok, "SIGTERM delivered");
}

/// Waits for the process to exit, with a generous deadline.
async fn exit_of(child: &mut Child, within: Duration) -> ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the server did not exit within {within:?} of SIGTERM");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the hook holds the render mid-way (frames done, so its encoder is open).
async fn wait_held(client: &reqwest::Client, base: &str, id: &str) {
    poll_video(client, base, id, Duration::from_secs(180), |v| {
        v["status"] == "rendering" && v["frames_done"].as_u64().unwrap_or(0) > 0
    })
    .await;
}

async fn wait_status(client: &reqwest::Client, base: &str, id: &str, want: &[&str]) -> Value {
    poll_video(client, base, id, Duration::from_secs(180), |v| {
        want.iter().any(|s| v["status"] == *s)
    })
    .await
    .pop()
    .unwrap_or_default()
}

async fn create(client: &reqwest::Client, base: &str, extra: Value) -> String {
    let mut body = json!({"script": "Shutting down must never lose this video.",
        "dimension": {"width": 320, "height": 180}, "fps": 12, "quality": "draft"});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let v: Value = client
        .post(format!("{base}/api/v1/videos"))
        .json(&body)
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    v["id"].as_str().expect("id").to_string()
}

#[actix_web::test]
async fn sigterm_lets_a_render_finish_in_the_grace_closes_sockets_1001_and_flushes_its_webhook() {
    let (dir, hold) = held_data_dir();
    let (port, hook_port) = (free_port(), free_port());
    let (_, got, receiver) = crate::webhooks::receiver(hook_port, 0);
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = serve(
        &dir,
        port,
        &[("SHUTDOWN_GRACE", "300"), ("WEBHOOK_RETRY_BASE", "600")],
    );
    wait_ready(&client, &base).await;
    let id = create(
        &client,
        &base,
        json!({"callback_url": format!("http://127.0.0.1:{hook_port}/hook")}),
    )
    .await;
    wait_held(&client, &base, &id).await;

    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/api/v1/videos/{id}/ws"))
            .await
            .expect("websocket");
    let first = tokio::time::timeout(Duration::from_secs(30), ws.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(Message::Text(_))))),
        "snapshot first: {first:?}"
    );

    sigterm(&server);
    // The watcher is told the server is going away.
    let deadline = Instant::now() + Duration::from_secs(60);
    let close = loop {
        match tokio::time::timeout(Duration::from_secs(60), ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.map(|f| u16::from(f.code)),
            Ok(Some(Ok(_))) if Instant::now() < deadline => {}
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    assert_eq!(close, Some(1001));

    // Let the held render go on: it finishes within the grace and the process exits 0.
    std::fs::remove_file(&hold).expect("release");
    let status = exit_of(&mut server, Duration::from_secs(240)).await;
    assert!(status.success(), "exit status {status}");

    // The webhook of the completion went out before the exit.
    let deliveries = got.all();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let payload: Value = serde_json::from_str(&deliveries[0].1).expect("json");
    assert_eq!(payload["event"], "video.completed");
    assert_eq!(payload["video"]["id"], id.as_str());
    receiver.stop(true).await;

    // After a restart (API only) the video is there, completed.
    let mut server = serve(&dir, port, &[("EMBEDDED_WORKER", "false")]);
    wait_ready(&client, &base).await;
    let v = get_video(&client, &base, &id).await;
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(v["status"], "completed", "{v}");
}

#[actix_web::test]
async fn sigterm_hands_a_render_still_running_after_the_grace_back_and_it_finishes_after_restart() {
    let (dir, hold) = held_data_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = serve(&dir, port, &[("SHUTDOWN_GRACE", "0.2")]);
    wait_ready(&client, &base).await;
    let id = create(&client, &base, json!({})).await;
    wait_held(&client, &base, &id).await;

    sigterm(&server);
    let status = exit_of(&mut server, Duration::from_secs(120)).await;
    assert!(status.success(), "exit status {status}");
    // Neither stored objects nor the render's scratch.
    let partial: Vec<_> = ["videos", "scratch"]
        .iter()
        .flat_map(|place| {
            std::fs::read_dir(dir.join(place).join(&id))
                .map(|d| {
                    d.filter_map(Result::ok)
                        .map(|e| e.path())
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        })
        .collect();
    assert!(
        partial.is_empty(),
        "nothing of the stopped render is left: {partial:?}"
    );

    // Handed back, not left `rendering` for crash recovery: an API-only process (which
    // recovers nothing) already sees it queued.
    let mut api = serve(&dir, port, &[("EMBEDDED_WORKER", "false")]);
    wait_ready(&client, &base).await;
    let v = get_video(&client, &base, &id).await;
    assert_eq!(v["status"], "queued", "{v}");
    assert_eq!(v["progress"], 0.0, "{v}");
    sigterm(&api);
    assert!(exit_of(&mut api, Duration::from_secs(60)).await.success());

    // With the worker back, it renders to the end.
    std::fs::remove_file(&hold).expect("release");
    let mut server = serve(&dir, port, &[]);
    wait_ready(&client, &base).await;
    let v = wait_status(&client, &base, &id, &["completed", "failed"]).await;
    sigterm(&server);
    let exited = exit_of(&mut server, Duration::from_secs(60)).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(v["status"], "completed", "{v}");
    assert!(exited.success());
}
