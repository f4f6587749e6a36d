//! Soak: a mixed load on the real release binary for `SOAK_SECONDS` (default 600), then
//! checks that the server drained and leaked nothing (`cargo bench --bench soak`, or
//! `scripts/bench.sh soak`).
//!
//! 1. Capacity: `GET /api/v1/videos` and `GET /api/v1/videos/{id}` as fast as this client can
//!    drive them for 10 s (no job running) — the rate the soak paces its reads against.
//! 2. The soak, all at once: reads paced at 80 % of that capacity; a stream of short videos
//!    (one every `SOAK_VIDEO_EVERY` seconds, default 2); 200 WebSocket subscribers, each
//!    following the newest video and moving on when it ends; a cancel every 5 s and a delete
//!    every 7 s of a random earlier video.
//! 3. The end: load stops, the queue must drain, and the figures are printed: every status
//!    seen, server RSS at the half-way mark and at the end (growth over the second half), open
//!    file descriptors after warm-up and at the end, temporary files left in `DATA_DIR`, and
//!    how long the queue took to drain. It exits 1 on a 5xx, RSS growth of 5 % or more over
//!    the second half, a leaked descriptor or temporary file, or a queue that did not drain.
//!
//! Loopback only; every loop is bounded by the duration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use parking_lot::Mutex;
use serde_json::{Value, json};

const SUBSCRIBERS: usize = 200;
const READERS: usize = 32;

mod support;

use support::{Server, start};

impl Server {
    fn rss_mib(&self) -> f64 {
        self.rss_kib("VmRSS:") as f64 / 1024.0
    }

    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id())).map_or(0, |d| d.count())
    }

    /// Files a render leaves while it works: dot-files and `*.tmp`, the blob store's staging
    /// files (`name#n`), and anything in a render's scratch folder.
    fn temp_files(&self) -> Vec<String> {
        fn walk(dir: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().to_string();
                if p.is_dir() {
                    walk(&p, out);
                } else if (name.starts_with('.')
                    || name.ends_with(".tmp")
                    || name.contains('#')
                    || p.components().any(|c| c.as_os_str() == "scratch"))
                    && !name.starts_with("reelgen.db")
                {
                    out.push(p.display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir, &mut out);
        out
    }
}

fn short_video(n: u64) -> Value {
    json!({
        "script": format!("Soak video number {n}. It is short, so many of them go by."),
        "dimension": {"width": 320, "height": 180}, "fps": 12, "quality": "draft", "seed": n,
    })
}

#[derive(Default)]
struct Tally {
    statuses: Mutex<BTreeMap<u16, u64>>,
    transport_errors: AtomicU64,
}

impl Tally {
    fn count(&self, res: &Result<reqwest::Response, reqwest::Error>) {
        match res {
            Ok(r) => *self.statuses.lock().entry(r.status().as_u16()).or_default() += 1,
            Err(_) => {
                self.transport_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    fn server_errors(&self) -> u64 {
        self.statuses
            .lock()
            .iter()
            .filter(|(s, _)| **s >= 500)
            .map(|(_, n)| n)
            .sum()
    }
    fn total(&self) -> u64 {
        self.statuses.lock().values().sum()
    }
}

/// `READERS` tasks alternating list and get; paced to `rate` requests/s in total when given.
async fn read_load(
    client: &reqwest::Client,
    base: &str,
    ids: &Arc<Mutex<Vec<String>>>,
    tally: &Arc<Tally>,
    until: Instant,
    rate: Option<f64>,
) {
    let tasks = (0..READERS).map(|i| {
        let (client, base, ids, tally) =
            (client.clone(), base.to_string(), ids.clone(), tally.clone());
        async move {
            let gap = rate.map(|r| Duration::from_secs_f64(READERS as f64 / r));
            let mut next = Instant::now() + Duration::from_micros(i as u64 * 997);
            let mut n = i as u64;
            while Instant::now() < until {
                if let Some(gap) = gap {
                    tokio::time::sleep_until(next.into()).await;
                    next += gap;
                }
                n += 1;
                let url = if n.is_multiple_of(2) {
                    format!("{base}/api/v1/videos?limit=20")
                } else {
                    let id = {
                        let ids = ids.lock();
                        ids.get(n as usize % ids.len().max(1)).cloned()
                    };
                    match id {
                        Some(id) => format!("{base}/api/v1/videos/{id}"),
                        None => format!("{base}/api/v1/videos?limit=5"),
                    }
                };
                let res = client.get(url).send().await;
                tally.count(&res);
                if let Ok(r) = res {
                    let _ = r.bytes().await;
                }
            }
        }
    });
    futures_util::future::join_all(tasks).await;
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let seconds: u64 = std::env::var("SOAK_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(600);
    let video_every: f64 = std::env::var("SOAK_VIDEO_EVERY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2.0);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(READERS * 2)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    let s = start(&[("MAX_CONCURRENT_JOBS", "2")]).await;
    let base = s.base.clone();
    let ids: Arc<Mutex<Vec<String>>> = Arc::default();
    // Something to read: 200 short videos, rendered before capacity is measured.
    for n in 0..20u64 {
        let v: Value = client
            .post(format!("{base}/api/v1/videos/batch"))
            .json(&json!({"videos": (0..10).map(|k| short_video(1_000_000 + n * 10 + k)).collect::<Vec<_>>()}))
            .send()
            .await
            .expect("seed")
            .json()
            .await
            .expect("json");
        for v in v["data"].as_array().into_iter().flatten() {
            ids.lock()
                .push(v["id"].as_str().unwrap_or_default().to_string());
        }
    }
    // Let the seeded videos render before measuring an idle server.
    let drain = |client: reqwest::Client, base: String| async move {
        let t = Instant::now();
        let deadline = t + Duration::from_secs(600);
        loop {
            let mut busy = 0;
            for st in ["queued", "rendering"] {
                let v: Value = client
                    .get(format!("{base}/api/v1/videos?status={st}&limit=1"))
                    .send()
                    .await
                    .expect("list")
                    .json()
                    .await
                    .expect("json");
                busy += v["data"].as_array().map_or(0, Vec::len);
            }
            if busy == 0 || Instant::now() > deadline {
                return (busy == 0, t.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let (seeded, took) = drain(client.clone(), base.clone()).await;
    println!(
        "seed: 200 short videos rendered in {:.1} s (drained: {seeded})",
        took.as_secs_f64()
    );

    // 1. Capacity.
    let cap_tally = Arc::new(Tally::default());
    let t = Instant::now();
    read_load(
        &client,
        &base,
        &ids,
        &cap_tally,
        t + Duration::from_secs(10),
        None,
    )
    .await;
    let capacity = cap_tally.total() as f64 / t.elapsed().as_secs_f64();
    let target = capacity * 0.8;
    println!(
        "capacity: {capacity:.0} req/s (list + get, {READERS} connections, this client on the same 2 cores); soak reads paced at {target:.0} req/s"
    );

    // 2. The soak.
    let tally = Arc::new(Tally::default());
    let t0 = Instant::now();
    let until = t0 + Duration::from_secs(seconds);
    let created = Arc::new(AtomicU64::new(0));
    let newest: Arc<Mutex<Option<String>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let ws_events = Arc::new(AtomicU64::new(0));
    let ws_errors = Arc::new(AtomicU64::new(0));
    let ws_sessions = Arc::new(AtomicU64::new(0));

    let reads = read_load(&client, &base, &ids, &tally, until, Some(target));
    let producer = {
        let (client, base, tally, ids, created, newest) = (
            client.clone(),
            base.clone(),
            tally.clone(),
            ids.clone(),
            created.clone(),
            newest.clone(),
        );
        async move {
            let mut n = 0u64;
            while Instant::now() < until {
                n += 1;
                let res = client
                    .post(format!("{base}/api/v1/videos"))
                    .json(&short_video(n))
                    .send()
                    .await;
                tally.count(&res);
                if let Ok(r) = res
                    && let Ok(v) = r.json::<Value>().await
                    && let Some(id) = v["id"].as_str()
                {
                    created.fetch_add(1, Ordering::Relaxed);
                    ids.lock().push(id.to_string());
                    *newest.lock() = Some(id.to_string());
                }
                tokio::time::sleep(Duration::from_secs_f64(video_every)).await;
            }
        }
    };
    let subscribers = (0..SUBSCRIBERS).map(|i| {
        let (base, newest, stop, events, errors, sessions) = (
            base.clone(),
            newest.clone(),
            stop.clone(),
            ws_events.clone(),
            ws_errors.clone(),
            ws_sessions.clone(),
        );
        async move {
            tokio::time::sleep(Duration::from_millis(i as u64 * 10)).await;
            while !stop.load(Ordering::Relaxed) && Instant::now() < until {
                let Some(id) = newest.lock().clone() else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let url = format!("{}/api/v1/videos/{id}/ws", base.replace("http://", "ws://"));
                match tokio_tungstenite::connect_async(url).await {
                    Ok((mut ws, _)) => {
                        sessions.fetch_add(1, Ordering::Relaxed);
                        let left = until.saturating_duration_since(Instant::now());
                        let _ = tokio::time::timeout(left, async {
                            while let Some(Ok(m)) = ws.next().await {
                                if m.is_close() {
                                    break;
                                }
                                events.fetch_add(1, Ordering::Relaxed);
                            }
                        })
                        .await;
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                // The same video again only once a newer one exists.
                while newest.lock().as_deref() == Some(id.as_str()) && Instant::now() < until {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    let churn = {
        let (client, base, tally, ids) = (client.clone(), base.clone(), tally.clone(), ids.clone());
        async move {
            let mut tick = 0u64;
            let (mut cancels, mut deletes) = (0u64, 0u64);
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_secs(1)).await;
                tick += 1;
                let pick = |k: u64| {
                    let ids = ids.lock();
                    // Recent ones: they may still be queued or rendering.
                    let n = ids.len();
                    (n > 0).then(|| ids[n - 1 - (k as usize % n.min(5))].clone())
                };
                if tick.is_multiple_of(5)
                    && let Some(id) = pick(tick)
                {
                    let res = client
                        .post(format!("{base}/api/v1/videos/{id}/cancel"))
                        .send()
                        .await;
                    tally.count(&res);
                    cancels += 1;
                }
                if tick.is_multiple_of(7)
                    && let Some(id) = pick(tick / 7)
                {
                    let res = client
                        .delete(format!("{base}/api/v1/videos/{id}"))
                        .send()
                        .await;
                    tally.count(&res);
                    ids.lock().retain(|x| *x != id);
                    deletes += 1;
                }
            }
            (cancels, deletes)
        }
    };
    let sampler = {
        let s = &s;
        async move {
            let mut samples: Vec<(f64, f64, usize)> = Vec::new();
            while Instant::now() < until {
                tokio::time::sleep(Duration::from_secs(10)).await;
                let at = t0.elapsed().as_secs_f64();
                samples.push((at, s.rss_mib(), s.fds()));
                println!(
                    "  t={at:>4.0}s  RSS {:>6.1} MiB  fds {:>4}",
                    s.rss_mib(),
                    s.fds()
                );
            }
            samples
        }
    };
    let (_, _, _, (cancels, deletes), samples) = futures_util::join!(
        reads,
        producer,
        futures_util::future::join_all(subscribers),
        churn,
        sampler
    );
    stop.store(true, Ordering::Relaxed);
    let elapsed = t0.elapsed().as_secs_f64();

    // 3. The end.
    let (drained, drain_time) = drain(client.clone(), base.clone()).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_end, fds_end, temp) = (s.rss_mib(), s.fds(), s.temp_files());
    let half = samples
        .iter()
        .find(|(at, _, _)| *at >= elapsed / 2.0)
        .copied()
        .unwrap_or((0.0, 0.0, 0));
    let warm = samples.first().copied().unwrap_or((0.0, 0.0, 0));
    let peak = samples.iter().map(|x| x.1).fold(0.0, f64::max);
    let statuses = tally.statuses.lock().clone();
    println!("soak: {elapsed:.0} s");
    println!(
        "  requests: {} ({:.0} req/s of reads paced at {target:.0}); statuses {statuses:?}; transport errors {}",
        tally.total(),
        tally.total() as f64 / elapsed,
        tally.transport_errors.load(Ordering::Relaxed)
    );
    println!("  5xx: {}", tally.server_errors());
    println!(
        "  videos created {}, cancels {cancels}, deletes {deletes}; WebSocket sessions {} ({SUBSCRIBERS} subscribers), messages {}, connect errors {}",
        created.load(Ordering::Relaxed),
        ws_sessions.load(Ordering::Relaxed),
        ws_events.load(Ordering::Relaxed),
        ws_errors.load(Ordering::Relaxed)
    );
    println!(
        "  RSS: {:.1} MiB at t={:.0}s, {:.1} MiB at t={:.0}s (half-way), {rss_end:.1} MiB at the end, peak {peak:.1}; growth over the second half {:+.1} %",
        warm.1,
        warm.0,
        half.1,
        half.0,
        (rss_end - half.1) / half.1.max(1.0) * 100.0
    );
    println!(
        "  file descriptors: {} after warm-up, {} half-way, {fds_end} at the end",
        warm.2, half.2
    );
    println!("  temporary files left: {} {temp:?}", temp.len());
    println!(
        "  queue drained: {drained} in {:.1} s after the load stopped",
        drain_time.as_secs_f64()
    );
    // The figures above are the record; these are the soak's pass conditions.
    let growth = (rss_end - half.1) / half.1.max(1.0) * 100.0;
    let mut failed = Vec::new();
    if tally.server_errors() > 0 {
        failed.push("5xx responses");
    }
    if !temp.is_empty() {
        failed.push("temporary files left");
    }
    if !drained {
        failed.push("the queue did not drain");
    }
    if growth >= 5.0 {
        failed.push("RSS grew 5 % or more over the second half");
    }
    if fds_end > warm.2 + 16 {
        failed.push("file descriptors leaked");
    }
    if failed.is_empty() {
        println!("soak: PASS");
    } else {
        println!("soak: FAIL: {}", failed.join(", "));
        std::process::exit(1);
    }
}
