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

#[allow(dead_code)]
pub type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `n` subscriptions to one video, 100 at a time; each, once its snapshot has come,
/// goes to `take`.
#[allow(dead_code)]
pub async fn connect_many<T>(
    base: &str,
    id: &str,
    n: usize,
    mut take: impl FnMut(Ws) -> T,
) -> Vec<T> {
    use futures_util::StreamExt;
    let url = format!("{}/api/v1/videos/{id}/ws", base.replace("http://", "ws://"));
    let mut out = Vec::with_capacity(n);
    for chunk in (0..n).collect::<Vec<_>>().chunks(100) {
        let conns = futures_util::future::join_all(
            chunk
                .iter()
                .map(|_| tokio_tungstenite::connect_async(url.clone())),
        )
        .await;
        for c in conns {
            let (mut ws, _) = c.expect("websocket");
            // The snapshot.
            let _ = ws.next().await;
            out.push(take(ws));
        }
    }
    out
}

/// Reads one subscription until its terminal message: for each `progress` event, when it was
/// emitted (unix ms) and how long after that this client could read it (ms). Starts at once,
/// so an event is timed from its emission to the first moment it could be read.
#[allow(dead_code)]
pub fn progress_delays(mut ws: Ws) -> tokio::task::JoinHandle<Vec<(i64, f64)>> {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::spawn(async move {
        let mut delays = Vec::new();
        while let Some(Ok(msg)) = ws.next().await {
            if let Message::Text(t) = msg {
                let now = chrono::Utc::now().timestamp_millis();
                let v: serde_json::Value = serde_json::from_str(&t).unwrap_or_default();
                if let Some(at) = v["emitted_at_ms"].as_i64() {
                    delays.push((at, (now - at) as f64));
                }
                if matches!(
                    v["type"].as_str(),
                    Some("completed" | "failed" | "cancelled")
                ) {
                    break;
                }
            }
        }
        delays
    })
}
