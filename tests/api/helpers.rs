//! `spawn_app()`: a real reelgen server on port 0 with its own database — a fresh SQLite file
//! in a temporary `DATA_DIR`, or a fresh PostgreSQL database on the server at
//! `TEST_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`), dropped when the
//! test ends (even when it fails).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use reelgen::Application;
use reelgen::context::Context;
use reelgen::platform::config::{Config, Sources};
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use uuid::Uuid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub state: actix_web::web::Data<Context>,
    pub data_dir: PathBuf,
    pg_database: Option<String>,
}

/// A command from the Python test tools' virtualenv (`scripts/pytools.sh`, run by
/// `scripts/test.sh`): `$REELGEN_PYTOOLS_BIN/NAME`, default `~/.cache/reelgen/pytools/bin`.
pub fn pytool(name: &str) -> PathBuf {
    let bin = std::env::var("REELGEN_PYTOOLS_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            PathBuf::from(home).join(".cache/reelgen/pytools/bin")
        });
    let exe = bin.join(name);
    assert!(
        exe.exists(),
        "{} is missing: scripts/test.sh installs it (bash scripts/pytools.sh)",
        exe.display()
    );
    exe
}

pub fn postgres_admin_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn with_database(url: &str, db: &str) -> String {
    match url.rfind('/') {
        Some(i) => format!("{}/{db}", &url[..i]),
        None => format!("{url}/{db}"),
    }
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Backend::Sqlite, &[]).await
}

pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> TestApp {
    let data_dir = std::env::temp_dir().join(format!("reelgen-test-{}", Uuid::new_v4()));
    let data_dir_s = data_dir.display().to_string();
    let mut pairs: Vec<(&str, &str)> = vec![
        ("HOST", "127.0.0.1"),
        ("PORT", "0"),
        ("DATA_DIR", &data_dir_s),
        ("ENVIRONMENT", "test"),
        ("WORKERS", "2"),
        ("METRICS_INTERVAL", "0.5"),
        ("RATE_LIMIT_PER_MINUTE", "100000"),
        // API tests observe queued videos; the worker tests turn it on.
        ("EMBEDDED_WORKER", "false"),
    ];
    let mut pg_database = None;
    let pg_url;
    if backend == Backend::Postgres {
        let (url, name) = create_database().await;
        pg_url = url;
        pairs.push(("DATABASE_URL", &pg_url));
        pg_database = Some(name);
    }
    pairs.extend_from_slice(extra);
    let config = Config::load(&Sources::from_pairs(pairs)).expect("test config is valid");
    let app = Application::build(config)
        .await
        .expect("application starts");
    let port = app.port();
    let state = app.state();
    actix_web::rt::spawn(app.run_until_stopped());
    TestApp {
        address: format!("http://127.0.0.1:{port}"),

        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("client"),
        state,
        data_dir,
        pg_database,
    }
}

/// A new, empty PostgreSQL database of this test's own: `(url, name)`.
pub async fn create_database() -> (String, String) {
    let admin = postgres_admin_url();
    let name = format!("reelgen_t_{}", Uuid::new_v4().simple());
    let conn = Database::connect(&admin).await.unwrap_or_else(|e| {
        panic!("PostgreSQL at {admin} is not reachable (the test command starts it): {e}")
    });
    conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create test database");
    let _ = conn.close().await;
    (with_database(&admin, &name), name)
}

/// Drops a database made by [`create_database`] (callable outside async context).
pub fn drop_database(name: String) {
    // Drop runs outside async context: use a private runtime on its own thread.
    let admin = postgres_admin_url();
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        rt.block_on(async {
            let conn = Database::connect(&admin).await.ok()?;
            conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                .await
                .ok()?;
            conn.close().await.ok()
        })
    })
    .join();
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.data_dir);
        if let Some(name) = self.pg_database.take() {
            drop_database(name);
        }
    }
}

/// `GET {base}/api/v1/videos/{id}` as JSON (for servers that are not a [`TestApp`]).
pub async fn get_video(client: &reqwest::Client, base: &str, id: &str) -> Value {
    client
        .get(format!("{base}/api/v1/videos/{id}"))
        .send()
        .await
        .expect("get video")
        .json()
        .await
        .expect("json")
}

/// Polls `GET {base}/api/v1/videos/{id}` every 50 ms until `done` holds for the Video, and
/// returns every state seen (the last one satisfies `done`). Fails with the last state after
/// `within` — a generous deadline on an event, never a measure of speed.
pub async fn poll_video(
    client: &reqwest::Client,
    base: &str,
    id: &str,
    within: Duration,
    mut done: impl FnMut(&Value) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + within;
    let mut seen = Vec::new();
    loop {
        let v = get_video(client, base, id).await;
        let finished = done(&v);
        seen.push(v);
        if finished {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "video {id}: the awaited state never came within {within:?}; last {}",
            seen.last().map(Value::to_string).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// While alive, every render of the app waits at its next progress report (the dispatcher's
/// `ENVIRONMENT=test` hook); dropping it lets them go on.
pub struct HoldRenders(PathBuf);

impl Drop for HoldRenders {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl TestApp {
    /// Holds renders "still running" by construction (see [`HoldRenders`]).
    pub fn hold_renders(&self) -> HoldRenders {
        let file = self.data_dir.join("hold-renders");
        std::fs::write(&file, b"").expect("hold file");
        HoldRenders(file)
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .send()
            .await
            .expect("request")
    }

    /// Polls the video until `done` holds (see [`poll_video`]).
    pub async fn wait_for(
        &self,
        id: &str,
        within: Duration,
        done: impl FnMut(&Value) -> bool,
    ) -> Vec<Value> {
        poll_video(&self.client, &self.address, id, within, done).await
    }

    /// GETs `path` and returns its JSON body (asserting 200).
    pub async fn get_json(&self, path: &str) -> Value {
        let res = self.get(path).await;
        assert_eq!(res.status(), 200, "GET {path}: {:?}", res.text().await);
        res.json().await.expect("json")
    }

    /// Creates a video from `body` and returns the Video object (asserting 202).
    pub async fn create_video(&self, body: Value) -> Value {
        let res = self.post_json("/api/v1/videos", &body).await;
        assert_eq!(res.status(), 202, "create failed: {:?}", res.text().await);
        res.json().await.expect("json")
    }

    pub async fn create_script(&self, script: &str) -> Value {
        self.create_video(json!({"script": script})).await
    }

    /// Creates an API key for `tenant` straight in the database; returns the plain key.
    pub async fn api_key(&self, tenant: &str) -> String {
        let key = reelgen::platform::auth::generate_key();
        reelgen::platform::auth::create_api_key(
            &self.state.db,
            entity::api_key::Model {
                id: Uuid::now_v7(),
                name: format!("test {tenant}"),
                tenant: tenant.into(),
                key_hash: key.hash,
                prefix: key.prefix,
                created_at: reelgen::platform::db::now(),
                revoked_at: None,
            },
        )
        .await
        .expect("create key");
        key.plain
    }

    /// The value of one Prometheus sample line, e.g. `reelgen_cache_hits_total`.
    pub async fn metric(&self, line_prefix: &str) -> Option<f64> {
        let text = self.get("/metrics").await.text().await.ok()?;
        text.lines()
            .find(|l| l.starts_with(line_prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

/// Asserts a problem+json response with `status` (whatever its code) and returns its body.
pub async fn problem_body(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status().as_u16(), status, "status");
    let ct = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(
        ct.starts_with("application/problem+json"),
        "content-type {ct}"
    );
    let body: Value = res.json().await.expect("problem body is JSON");
    assert_eq!(body["status"], status, "{body}");
    assert!(
        body["type"].is_string() && body["title"].is_string(),
        "{body}"
    );
    body
}

/// Asserts a problem+json response with `status` and `code`, and returns its body.
pub async fn assert_problem(res: reqwest::Response, status: u16, code: &str) -> Value {
    let body = problem_body(res, status).await;
    assert_eq!(body["code"], code, "{body}");
    body
}

/// The headers every response carries (SPEC §2): no sniffing, no framing, no referrer, a CSP.
/// `n` clients, each on one connection of its own: the server spreads connections over its
/// workers, so repeated requests through them reach each worker.
pub fn clients_on_own_connections(n: usize) -> Vec<reqwest::Client> {
    (0..n)
        .map(|_| {
            reqwest::Client::builder()
                .pool_max_idle_per_host(1)
                .build()
                .expect("client")
        })
        .collect()
}

pub fn assert_browser_headers(res: &reqwest::Response, what: &str) {
    let h = res.headers();
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert!(
        get("content-security-policy").contains("frame-ancestors 'none'"),
        "{what}"
    );
}

/// A real recording at `path`, made by the `espeak-ng` command (en-us; installed by
/// `scripts/bootstrap.sh`).
pub fn espeak_wav(path: &std::path::Path, text: &str) {
    let out = std::process::Command::new("espeak-ng")
        .args(["-v", "en-us", "-w"])
        .arg(path)
        .arg(text)
        .output()
        .expect("the espeak-ng command (scripts/bootstrap.sh installs it)");
    assert!(out.status.success(), "espeak-ng: {out:?}");
}

/// What `gst-discoverer-1.0` says of a media file: its duration in seconds and its report.
pub fn discovered(path: &std::path::Path) -> (f64, String) {
    let out = std::process::Command::new("gst-discoverer-1.0")
        .arg(path)
        .output()
        .expect("gst-discoverer-1.0");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with("Duration:"))
        .unwrap_or_else(|| panic!("no duration in {text}"));
    let hms = line.trim().trim_start_matches("Duration:").trim();
    let parts: Vec<f64> = hms.split(':').map(|p| p.parse().expect("number")).collect();
    (parts[0] * 3600.0 + parts[1] * 60.0 + parts[2], text)
}
