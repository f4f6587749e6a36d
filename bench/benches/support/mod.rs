//! What the benchmarks share: the real release binary as a child process on a free port,
//! with its own `DATA_DIR`, removed (and the process killed) when dropped.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Server {
    pub child: Child,
    pub base: String,
    pub dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Server {
    /// A `/proc/PID/status` field in KiB (`VmRSS:`, `VmHWM:`).
    pub fn rss_kib(&self, field: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port")
}

/// The `reelgen` binary: `REELGEN_BIN`, else the one cargo built in the same profile
/// (`scripts/bench.sh` builds it first).
pub fn reelgen_bin() -> std::path::PathBuf {
    if let Some(p) = std::env::var_os("REELGEN_BIN") {
        return p.into();
    }
    let exe = std::env::current_exe().expect("current exe");
    exe.ancestors()
        .skip(1)
        .map(|d| d.join("reelgen"))
        .find(|p| p.is_file())
        .expect(
            "no reelgen binary: run `cargo build --release --bin reelgen` (scripts/bench.sh does)",
        )
}

/// Starts `reelgen serve` with a fresh `DATA_DIR`, no rate limit worth the name, and `env`;
/// returns once `/health/ready` answers 200.
#[allow(dead_code)]
pub async fn start(env: &[(&str, &str)]) -> Server {
    start_as(&["serve"], env).await
}

/// Starts `reelgen ARGS…` (`serve --no-worker`, `worker`) like [`start`].
pub async fn start_as(args: &[&str], env: &[(&str, &str)]) -> Server {
    let dir = std::env::temp_dir().join(format!("reelgen-bench-{}", uuid::Uuid::new_v4()));
    let port = free_port();
    let mut cmd = Command::new(reelgen_bin());
    cmd.args(args)
        .env("DATA_DIR", &dir)
        .env("PORT", port.to_string())
        .env("RATE_LIMIT_PER_MINUTE", "1000000000")
        .env("MAX_CONCURRENT_REQUESTS", "8192")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let child = cmd.spawn().expect("spawn reelgen");
    let server = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        dir,
    };
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if client
            .get(format!("{}/health/ready", server.base))
            .send()
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server did not become ready");
}

/// `POST /api/v1/videos`; the new video's id.
#[allow(dead_code)]
pub async fn create(client: &reqwest::Client, base: &str, body: serde_json::Value) -> String {
    let v: serde_json::Value = client
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

/// `GET /api/v1/videos/{id}`.
#[allow(dead_code)]
pub async fn get(client: &reqwest::Client, base: &str, id: &str) -> serde_json::Value {
    client
        .get(format!("{base}/api/v1/videos/{id}"))
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json")
}

/// The `p` quantile of sorted values (NaN when there are none).
#[allow(dead_code)]
pub fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}
