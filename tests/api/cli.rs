//! The real binary: configuration errors, `migrate`, and `apikey` end to end.

use std::process::Command;

use serde_json::{Value, json};

use crate::helpers::{Backend, spawn_app_with};

fn reelgen(data_dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_reelgen"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATA_DIR", data_dir)
        .env("RUST_LOG", "error");
    cmd
}

fn temp_dir() -> std::path::PathBuf {
    std::env::temp_dir().join(format!("reelgen-cli-{}", uuid::Uuid::new_v4()))
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
