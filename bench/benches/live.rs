//! Live-path benchmark against the real release binary (`cargo bench --bench live`):
//!
//! 1. memory per idle WebSocket subscriber (1,000 on one video, API-only server);
//! 2. 1,000 subscribers on one rendering 720p video: delay from the server's emission of a
//!    `progress` event (`emitted_at_ms`) to its receipt, p50/p99/max once all are connected
//!    (and apart, the events emitted while they were still connecting);
//! 3. time from `POST /api/v1/videos` to the first live-preview media fragment (720p);
//! 4. throughput of 4 concurrent 720p jobs against one job, and the server's peak RSS;
//! 5. a batch of 10 short videos through `/videos/batch` with `MAX_CONCURRENT_JOBS=4` against
//!    the same 10 one at a time.
//!
//! Needs `ulimit -n` ≥ 4096 (scripts/bench.sh sets it). Prints one line per figure.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SUBSCRIBERS: usize = 1000;

mod support;

use support::{connect_many, create, get, pct, progress_delays, start};

async fn wait_status(client: &reqwest::Client, base: &str, id: &str, want: &[&str]) -> Value {
    loop {
        let v = get(client, base, id).await;
        if want.iter().any(|w| v["status"] == *w) {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn script(seconds: usize) -> String {
    // ~2.6 words per second of speech.
    "Our product turns a written script into a presenter who speaks it clearly. "
        .repeat(seconds.div_ceil(5).max(1))
}

fn video_720p(seconds: usize) -> Value {
    json!({"script": script(seconds), "dimension": {"width": 1280, "height": 720}, "fps": 30, "quality": "draft"})
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let client = reqwest::Client::new();

    // 1. Idle subscriber memory: API-only server, a queued video, 1,000 sockets.
    {
        let s = start(&[("EMBEDDED_WORKER", "false")]).await;
        let id = create(&client, &s.base, json!({"script": "Idle."})).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = s.rss_kib("VmRSS:");
        let socks = connect_many(&s.base, &id, SUBSCRIBERS, |ws| ws).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        let after = s.rss_kib("VmRSS:");
        println!(
            "idle subscribers: {} connected; server RSS {:.1} → {:.1} MiB; {:.1} KiB per idle subscriber",
            socks.len(),
            before as f64 / 1024.0,
            after as f64 / 1024.0,
            after.saturating_sub(before) as f64 / SUBSCRIBERS as f64
        );
        drop(socks);
    }

    let s = start(&[("EMBEDDED_WORKER", "true"), ("MAX_CONCURRENT_JOBS", "4")]).await;

    // 3. First preview fragment of a 720p video, from submission.
    {
        let t0 = Instant::now();
        let id = create(&client, &s.base, video_720p(20)).await;
        let url = format!(
            "{}/api/v1/videos/{id}/ws?preview=mse",
            s.base.replace("http://", "ws://")
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.expect("ws");
        let mut binaries = 0;
        let mut first_fragment = None;
        while let Some(Ok(msg)) = ws.next().await {
            match msg {
                Message::Binary(b) => {
                    binaries += 1;
                    if b.len() > 8 && &b[4..8] == b"moof" {
                        first_fragment = Some(t0.elapsed());
                        break;
                    }
                }
                Message::Close(_) => break,
                _ => {}
            }
        }
        println!(
            "first preview fragment (1280x720 draft): {:.2} s after POST ({} binary frames)",
            first_fragment.map_or(f64::NAN, |d| d.as_secs_f64()),
            binaries
        );
        wait_status(&client, &s.base, &id, &["completed", "failed"]).await;
    }

    // 2. 1,000 subscribers on one rendering video: emission → receipt. Events emitted while
    //    the subscribers are still connecting (the server is busy with 1,000 upgrades and
    //    snapshots then) are reported apart from the steady state that follows.
    {
        let id = create(&client, &s.base, video_720p(60)).await;
        // Each socket's reader starts as soon as it is connected, so an event is timed from
        // its emission to the moment this client could first read it.
        let t0 = Instant::now();
        let readers = connect_many(&s.base, &id, SUBSCRIBERS, progress_delays).await;
        let connect_s = t0.elapsed().as_secs_f64();
        let all_connected_ms = chrono::Utc::now().timestamp_millis();
        let all = futures_util::future::join_all(readers).await;
        let (mut steady, mut connecting): (Vec<f64>, Vec<f64>) = (Vec::new(), Vec::new());
        for (at, d) in all.into_iter().flatten().flatten() {
            if at >= all_connected_ms {
                steady.push(d);
            } else {
                connecting.push(d);
            }
        }
        steady.sort_by(f64::total_cmp);
        connecting.sort_by(f64::total_cmp);
        let v = get(&client, &s.base, &id).await;
        println!(
            "{SUBSCRIBERS} subscribers on one rendering 720p video (status {}): all connected in {connect_s:.2} s; \
             steady state {} progress receipts, delay p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; \
             while connecting {} receipts, p99 {:.1} ms",
            v["status"],
            steady.len(),
            pct(&steady, 0.5),
            pct(&steady, 0.99),
            steady.last().copied().unwrap_or(f64::NAN),
            connecting.len(),
            pct(&connecting, 0.99),
        );
    }

    // 4. One 720p job, then four at once.
    {
        let t = Instant::now();
        let id = create(&client, &s.base, video_720p(10)).await;
        let v = wait_status(&client, &s.base, &id, &["completed", "failed"]).await;
        let one_frames = v["frames_total"].as_f64().unwrap_or(0.0);
        let one_fps = one_frames / t.elapsed().as_secs_f64();
        // The peak so far (1,000 sockets, earlier jobs) is reported apart; the kernel resets
        // the high-water mark to the current RSS on "5" > clear_refs.
        let earlier_peak = s.rss_kib("VmHWM:");
        let reset = std::fs::write(format!("/proc/{}/clear_refs", s.child.id()), "5").is_ok();
        let t = Instant::now();
        let mut ids = Vec::new();
        for _ in 0..4 {
            ids.push(create(&client, &s.base, video_720p(10)).await);
        }
        let mut frames = 0.0;
        for id in &ids {
            let v = wait_status(&client, &s.base, id, &["completed", "failed"]).await;
            frames += v["frames_total"].as_f64().unwrap_or(0.0);
        }
        let four_fps = frames / t.elapsed().as_secs_f64();
        println!(
            "720p draft jobs: one alone {one_fps:.1} frames/s; four concurrent {four_fps:.1} frames/s in all ({:.2}x); server peak RSS {} {:.1} MiB (peak before them {:.1} MiB)",
            four_fps / one_fps,
            if reset {
                "during the four"
            } else {
                "over the whole run"
            },
            s.rss_kib("VmHWM:") as f64 / 1024.0,
            earlier_peak as f64 / 1024.0
        );
    }
    drop(s);

    // 5. Batch of 10 short videos (concurrency 4) against the same 10 one at a time.
    {
        let body = |i: usize| {
            json!({"script": format!("Batch item {i}. A short clip for the batch report."),
                   "dimension": {"width": 640, "height": 360}, "fps": 24, "quality": "draft"})
        };
        let s1 = start(&[("EMBEDDED_WORKER", "true"), ("MAX_CONCURRENT_JOBS", "1")]).await;
        let t = Instant::now();
        for i in 0..10 {
            let id = create(&client, &s1.base, body(i)).await;
            wait_status(&client, &s1.base, &id, &["completed", "failed"]).await;
        }
        let sequential = t.elapsed().as_secs_f64();
        drop(s1);
        let s4 = start(&[("EMBEDDED_WORKER", "true"), ("MAX_CONCURRENT_JOBS", "4")]).await;
        let t = Instant::now();
        let res: Value = client
            .post(format!("{}/api/v1/videos/batch", s4.base))
            .json(&json!({"videos": (0..10).map(body).collect::<Vec<_>>()}))
            .send()
            .await
            .expect("batch")
            .json()
            .await
            .expect("json");
        for v in res["data"].as_array().expect("data") {
            let id = v["id"].as_str().expect("id");
            wait_status(&client, &s4.base, id, &["completed", "failed"]).await;
        }
        let batched = t.elapsed().as_secs_f64();
        println!(
            "batch of 10 (640x360 draft): one at a time {sequential:.1} s; batch endpoint with MAX_CONCURRENT_JOBS=4 {batched:.1} s ({:.2}x)",
            sequential / batched
        );
    }
}
