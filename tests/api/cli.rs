//! The real binary: configuration errors, `migrate`, and `apikey` end to end.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app_with};

pub(crate) fn reelgen(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelgen"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("RUST_LOG", "error");
    cmd
}

pub(crate) fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("reelgen-cli-{}", uuid::Uuid::new_v4()))
}

/// A new `DATA_DIR` whose renders are held mid-way by the test hook (`ENVIRONMENT=test`)
/// until the returned file is removed: `(dir, hold file)`.
pub(crate) fn held_data_dir() -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).expect("dir");
    let hold = dir.join("hold-renders");
    std::fs::write(&hold, b"").expect("hold renders");
    (dir, hold)
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let dir = temp_dir();
    for (var, value) in [
        ("PORT", "http"),
        ("AUTH_MODE", "maybe"),
        ("MAX_CONCURRENT_JOBS", "0"),
        ("DATABASE_URL", "mysql://x"),
    ] {
        let out = reelgen(&dir)
            .env(var, value)
            .arg("serve")
            .output()
            .expect("run");
        assert!(!out.status.success(), "{var}={value} should fail");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(var), "{var}: {err}");
    }
    let out = reelgen(&dir)
        .args(["--workers", "zero", "serve"])
        .output()
        .expect("run");
    assert!(String::from_utf8_lossy(&out.stderr).contains("WORKERS"));
}

#[actix_web::test]
async fn apikey_create_list_revoke_from_the_command_line() {
    let dir = temp_dir();
    let out = reelgen(&dir).arg("migrate").output().expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = reelgen(&dir)
        .args(["apikey", "create", "--name", "ci", "--tenant", "acme"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let key = stdout.lines().last().expect("key line").trim().to_string();
    assert!(key.starts_with("rg_"), "{stdout}");

    let list = reelgen(&dir)
        .args(["apikey", "list"])
        .output()
        .expect("run");
    let listing = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(listing.contains("acme") && listing.contains("active"));
    assert!(!listing.contains(&key), "the key itself is never listed");
    let id = listing
        .lines()
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .expect("id")
        .to_string();

    // The key works against a server on the same DATA_DIR.
    let data_dir = dir.display().to_string();
    let app = spawn_app_with(
        Backend::Sqlite,
        &[
            ("AUTH_MODE", "api_key"),
            ("DATA_DIR", &data_dir),
            ("QUERY_CACHE_TTL", "0"),
        ],
    )
    .await;
    let res = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("X-Api-Key", &key)
        .json(&json!({"script": "CLI key."}))
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 202);
    let _: Value = res.json().await.expect("json");

    let out = reelgen(&dir)
        .args(["apikey", "revoke", &id])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let res = app
        .client
        .get(app.url("/api/v1/videos"))
        .header("X-Api-Key", &key)
        .send()
        .await
        .expect("send");
    assert_eq!(res.status(), 401);
    let again = reelgen(&dir)
        .args(["apikey", "revoke", &id])
        .output()
        .expect("run");
    assert!(!again.status.success());
    let _ = std::fs::remove_dir_all(&dir);
}

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

fn serve(dir: &std::path::Path, port: u16) -> std::process::Child {
    reelgen(dir)
        .env("PORT", port.to_string())
        .env("MAX_CONCURRENT_JOBS", "1")
        .arg("serve")
        .spawn()
        .expect("spawn server")
}

#[test]
fn probe_fails_naming_the_url_when_no_server_answers() {
    let port = free_port();
    let out = reelgen(&temp_dir())
        .env("PORT", port.to_string())
        .env("HOST", "0.0.0.0")
        .args(["probe", "ready"])
        .output()
        .expect("reelgen runs");
    assert!(!out.status.success(), "nothing listens on {port}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("http://127.0.0.1:{port}/health/ready")),
        "a wildcard HOST is probed on loopback, and the message names the URL: {stderr}"
    );
}

#[test]
fn generate_on_a_headless_machine_prints_no_error_line() {
    // No display server, no XDG_RUNTIME_DIR (the environment is cleared): the Vulkan stack
    // must not go looking for one and complain.
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).expect("dir");
    let out = reelgen(&dir)
        .args([
            "generate",
            "--script",
            "A quiet start.",
            "--width",
            "320",
            "--height",
        ])
        .args(["180", "--quality", "draft", "-o"])
        .arg(dir.join("quiet.mp4"))
        .output()
        .expect("reelgen runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "generate failed: {stderr}");
    assert!(dir.join("quiet.mp4").exists(), "the video was written");
    let alarming: Vec<&str> = stderr
        .lines()
        .filter(|l| l.trim_start().to_ascii_lowercase().starts_with("error"))
        .collect();
    assert!(alarming.is_empty(), "stderr has error lines: {alarming:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn generate_writes_captions_files_and_lip_syncs_to_a_recording() {
    let dir = temp_dir();
    std::fs::create_dir_all(&dir).expect("dir");
    let run = |args: &[&str]| {
        let out = reelgen(&dir)
            .current_dir(&dir)
            .args([
                "generate", "--width", "256", "--height", "144", "--fps", "10",
            ])
            .args(["--quality", "draft"])
            .args(args)
            .output()
            .expect("reelgen runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "--script",
        "Hi! I am here <break time=\"1s\"/> for the first time.",
        "-o",
        "a.mp4",
        "--captions-out",
        "a.srt",
    ]);
    let srt = std::fs::read_to_string(dir.join("a.srt")).expect("srt");
    let words: Vec<&str> = srt
        .split("\n\n")
        .flat_map(|cue| cue.lines().skip(2))
        .flat_map(|l| l.split(' '))
        .collect();
    assert_eq!(
        words,
        ["Hi!", "I", "am", "here", "for", "the", "first", "time."],
        "{srt}"
    );

    std::fs::write(
        dir.join("scenes.json"),
        r#"[{"script": "Scene one."}, {"script": "Scene two.", "avatar": {"id": "marcus"}, "expression": "serious"}]"#,
    )
    .expect("scenes.json");
    run(&[
        "--scenes",
        "scenes.json",
        "-o",
        "s.mp4",
        "--captions-out",
        "s.json",
    ]);
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("s.json")).expect("s.json")).expect("json");
    let said: Vec<&str> = t["words"]
        .as_array()
        .expect("words")
        .iter()
        .filter_map(|w| w["text"].as_str())
        .collect();
    assert_eq!(said, ["Scene", "one.", "Scene", "two."]);

    let wav = dir.join("rec.wav");
    crate::helpers::espeak_wav(&wav, "My own recording.");
    run(&["--audio", "rec.wav", "-o", "b.mp4"]);
    assert!(std::fs::metadata(dir.join("b.mp4")).expect("b.mp4").len() > 1000);
    // Not both, and a file that is not audio fails with a clear message.
    let both = reelgen(&dir)
        .current_dir(&dir)
        .args(["generate", "--script", "x", "--audio", "rec.wav"])
        .output()
        .expect("runs");
    assert!(!both.status.success());
    std::fs::write(dir.join("notes.wav"), "words, not sound").expect("write");
    let bad = reelgen(&dir)
        .current_dir(&dir)
        .args(["generate", "--audio", "notes.wav", "-o", "c.mp4"])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && stderr.contains("not decodable audio"),
        "{stderr}"
    );
    assert!(!dir.join("c.mp4").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

pub(crate) async fn wait_ready(client: &reqwest::Client, base: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while std::time::Instant::now() < deadline {
        if client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("server did not become ready");
}

#[actix_web::test]
async fn kill_9_mid_render_loses_nothing_and_the_video_completes_after_restart() {
    // The test hook holds the render mid-way, so the kill lands while it runs by
    // construction, however fast this machine renders.
    let (dir, hold) = held_data_dir();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = reelgen(&dir)
        .env("PORT", port.to_string())
        .env("MAX_CONCURRENT_JOBS", "1")
        .env("ENVIRONMENT", "test")
        .arg("serve")
        .spawn()
        .expect("spawn server");
    wait_ready(&client, &base).await;
    let script = "A video interrupted by a crash must still be delivered. ".repeat(10);
    let v: Value = client
        .post(format!("{base}/api/v1/videos"))
        .json(&json!({"script": script, "dimension": {"width": 480, "height": 270}, "fps": 24, "quality": "draft"}))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = v["id"].as_str().expect("id").to_string();
    let url = format!("{base}/api/v1/videos/{id}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let s: Value = client
            .get(&url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        // Held by the hook once frames exist: mid-render, its temporary file open.
        if s["status"] == "rendering" && s["frames_done"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never started: {s}");
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    server.kill().expect("kill -9");
    let _ = server.wait();
    let final_file = dir.join("videos").join(&id).join("video.mp4");
    assert!(!final_file.exists(), "no half-written MP4 is visible");
    std::fs::remove_file(&hold).expect("release");

    let mut server = serve(&dir, port);
    wait_ready(&client, &base).await;
    let mut last = Value::Null;
    for _ in 0..3600 {
        last = client
            .get(&url)
            .send()
            .await
            .expect("get")
            .json()
            .await
            .expect("json");
        if last["status"] == "completed" || last["status"] == "failed" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    assert_eq!(last["status"], "completed", "{last}");
    assert!(final_file.exists());
    let leftovers: Vec<_> = std::fs::read_dir(final_file.parent().expect("dir"))
        .expect("dir")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().to_string())
        .filter(|n| n.starts_with('.'))
        .collect();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        leftovers.is_empty(),
        "the crashed run's temporary file is cleaned up: {leftovers:?}"
    );
}

fn serve_with_webhooks(dir: &std::path::Path, port: u16) -> std::process::Child {
    reelgen(dir)
        .env("PORT", port.to_string())
        .env("WEBHOOK_SECRET", "restart-secret")
        .env("WEBHOOK_ALLOW_PRIVATE", "true")
        .env("WEBHOOK_RETRY_BASE", "0.3")
        .arg("serve")
        .spawn()
        .expect("spawn server")
}

async fn first_delivery(client: &reqwest::Client, base: &str, id: &str) -> Value {
    let body: Value = client
        .get(format!("{base}/api/v1/videos/{id}/deliveries"))
        .send()
        .await
        .expect("deliveries")
        .json()
        .await
        .expect("json");
    body["data"][0].clone()
}

#[actix_web::test]
async fn a_pending_webhook_survives_kill_9_and_is_delivered_after_restart() {
    let dir = temp_dir();
    let (port, hook_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut server = serve_with_webhooks(&dir, port);
    wait_ready(&client, &base).await;
    let v: Value = client
        .post(format!("{base}/api/v1/videos"))
        .json(
            &json!({"script": "Deliver me.", "dimension": {"width": 480, "height": 270}, "fps": 24,
            "quality": "draft", "callback_url": format!("http://127.0.0.1:{hook_port}/hook")}),
        )
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("json");
    let id = v["id"].as_str().expect("id").to_string();
    // Nobody listens yet: wait for a failed attempt to be recorded.
    let mut d = Value::Null;
    for _ in 0..2400 {
        d = first_delivery(&client, &base, &id).await;
        if d["attempts"].as_i64().unwrap_or(0) >= 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(d["status"], "pending", "{d}");
    assert!(d["last_error"].as_str().is_some(), "{d}");
    server.kill().expect("kill -9");
    let _ = server.wait();

    let (_, got, handle) = crate::webhooks::receiver(hook_port, 0);
    let mut server = serve_with_webhooks(&dir, port);
    wait_ready(&client, &base).await;
    for _ in 0..2400 {
        d = first_delivery(&client, &base, &id).await;
        if d["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let _ = server.kill();
    let _ = server.wait();
    handle.stop(true).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(d["status"], "delivered", "{d}");
    assert!(d["attempts"].as_i64().unwrap_or(0) >= 2, "{d}");
    let all = got.all();
    assert_eq!(all.len(), 1);
    let (sig, body) = &all[0];
    assert!(crate::webhooks::verify(
        "restart-secret",
        sig.as_deref().expect("signed"),
        body
    ));
    let payload: Value = serde_json::from_str(body).expect("json");
    assert_eq!(payload["video"]["id"], id.as_str());
}
