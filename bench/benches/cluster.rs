//! Scale-out benchmark against the real release binary (`scripts/bench.sh cluster`): API
//! replicas (`serve --no-worker`) and `worker`s on one PostgreSQL database made for the run
//! (`BENCH_POSTGRES_URL`, default `postgres://postgres@127.0.0.1:5432/postgres`), a private
//! `redis-server` and shared file storage.
//!
//! a. POST → a worker starts rendering (the video's `started_at` minus the moment the POST
//!    was sent), 200 jobs, one idle worker: each job is cancelled once it started, and the
//!    next is sent when the worker is idle again;
//! b. progress events from a worker to 1,000 WebSocket clients spread over two replicas:
//!    emission (`emitted_at_ms`) → receipt, p50/p99/max, for events emitted once all are
//!    connected;
//! c. 40 short videos with one worker, then with two (one job at a time each): wall time
//!    from the first POST to the last completion, and the ratio;
//! d. resident memory of an idle API replica and of an idle worker.
//!
//! Prints one line per figure; asserts nothing.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

mod support;

use support::{Server, connect_many, create, free_port, get, pct, progress_delays, start_as};

struct Redis(Child);

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A database of the run's own on the PostgreSQL server; dropped at the end.
struct Database {
    admin: String,
    name: String,
}

impl Database {
    fn create() -> Self {
        let admin = std::env::var("BENCH_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
        let name = format!("reelgen_bench_{}", uuid::Uuid::new_v4().simple());
        psql(&admin, &format!("CREATE DATABASE {name}"));
        Self { admin, name }
    }

    fn url(&self) -> String {
        let base = self
            .admin
            .rsplit_once('/')
            .map_or(self.admin.as_str(), |(b, _)| b);
        format!("{base}/{}", self.name)
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        psql(
            &self.admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        );
    }
}

fn psql(url: &str, sql: &str) {
    let ok = Command::new("psql")
        .args([url, "-q", "-c", sql])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "psql {sql}");
}

fn redis() -> (Redis, String) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server");
    std::thread::sleep(Duration::from_millis(300));
    (Redis(child), format!("redis://127.0.0.1:{port}"))
}

/// One cluster: its database, Redis and storage, and the processes started on them.
struct Cluster {
    env: Vec<(String, String)>,
    _db: Database,
    _redis: Redis,
    store: std::path::PathBuf,
}

impl Cluster {
    fn new() -> Self {
        let db = Database::create();
        let (redis, redis_url) = redis();
        let store = std::env::temp_dir().join(format!("reelgen-bench-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&store).expect("store");
        let env = vec![
            ("DATABASE_URL".into(), db.url()),
            ("REDIS_URL".into(), redis_url),
            ("STORAGE_URL".into(), format!("file://{}", store.display())),
            ("MAX_CONCURRENT_JOBS".into(), "1".into()),
        ];
        Self {
            env,
            _db: db,
            _redis: redis,
            store,
        }
    }

    async fn start(&self, args: &[&str]) -> Server {
        let env: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        start_as(args, &env).await
    }

    async fn api(&self) -> Server {
        self.start(&["serve", "--no-worker"]).await
    }

    async fn worker(&self) -> Server {
        self.start(&["worker"]).await
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.store);
    }
}

async fn metric(client: &reqwest::Client, base: &str, name: &str) -> f64 {
    let text = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

fn short(i: usize) -> Value {
    json!({"script": format!("Short video number {i}."), "dimension": {"width": 320, "height": 180}, "fps": 24, "quality": "draft"})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let client = reqwest::Client::new();

    // d. Idle memory, and a. POST → rendering started.
    {
        let c = Cluster::new();
        let api = c.api().await;
        let worker = c.worker().await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!(
            "idle RSS: API replica {:.1} MiB, worker {:.1} MiB",
            api.rss_kib("VmRSS:") as f64 / 1024.0,
            worker.rss_kib("VmRSS:") as f64 / 1024.0
        );
        let mut waits = Vec::new();
        for i in 0..200 {
            let sent = chrono::Utc::now();
            let id = create(&client, &api.base, short(i)).await;
            let started = loop {
                let v = get(&client, &api.base, &id).await;
                if v["status"] != "queued" {
                    break v["started_at"].clone();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            };
            if let Some(at) = started
                .as_str()
                .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
            {
                waits.push((at.with_timezone(&chrono::Utc) - sent).as_seconds_f64() * 1e3);
            }
            let _ = client
                .post(format!("{}/api/v1/videos/{id}/cancel", api.base))
                .send()
                .await;
            while metric(&client, &worker.base, "reelgen_jobs_in_flight").await != 0.0 {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        waits.sort_by(f64::total_cmp);
        println!(
            "POST -> a worker starts rendering (idle worker, {} jobs): p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            waits.len(),
            pct(&waits, 0.50),
            pct(&waits, 0.99),
            waits.last().copied().unwrap_or(f64::NAN)
        );
    }

    // b. Progress fan-out to 1,000 sockets over two replicas.
    {
        let c = Cluster::new();
        let replicas = [c.api().await, c.api().await];
        let _worker = c.worker().await;
        let body = json!({"script": "Our product turns a written script into a presenter who speaks it clearly. ".repeat(12), "dimension": {"width": 1280, "height": 720}, "fps": 30, "quality": "draft"});
        let id = create(&client, &replicas[0].base, body).await;
        let mut readers = Vec::new();
        for r in &replicas {
            readers.extend(connect_many(&r.base, &id, 500, progress_delays).await);
        }
        let all_connected = chrono::Utc::now().timestamp_millis();
        let mut steady: Vec<f64> = futures_util::future::join_all(readers)
            .await
            .into_iter()
            .flatten()
            .flatten()
            .filter(|(at, _)| *at >= all_connected)
            .map(|(_, d)| d)
            .collect();
        steady.sort_by(f64::total_cmp);
        println!(
            "progress worker -> 1,000 sockets on 2 replicas: {} deliveries, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
            steady.len(),
            pct(&steady, 0.50),
            pct(&steady, 0.99),
            steady.last().copied().unwrap_or(f64::NAN)
        );
    }

    // c. 40 short videos, one worker then two.
    let mut walls = Vec::new();
    for workers in [1usize, 2] {
        let c = Cluster::new();
        let api = c.api().await;
        let mut ws = Vec::new();
        for _ in 0..workers {
            ws.push(c.worker().await);
        }
        let t0 = Instant::now();
        let mut ids = Vec::new();
        for i in 0..40 {
            ids.push(create(&client, &api.base, short(i)).await);
        }
        for id in &ids {
            loop {
                let v = get(&client, &api.base, id).await;
                if v["status"] == "completed" || v["status"] == "failed" {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let mut claims = Vec::new();
        for w in &ws {
            claims.push(metric(&client, &w.base, "reelgen_claims_total").await);
        }
        println!(
            "40 short videos (320x180 draft), {workers} worker(s): {wall:.2} s wall; claims per worker {claims:?}"
        );
        walls.push(wall);
    }
    println!(
        "2 workers vs 1 on this machine ({} cores): {:.2}x the throughput",
        std::thread::available_parallelism().map_or(0, usize::from),
        walls[0] / walls[1]
    );
}
