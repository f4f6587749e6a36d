//! `reelgen-bench`: the benchmarks, outside the product. They print their figures; they
//! assert nothing. The server under test is the real `reelgen` binary (built next to this one,
//! or `REELGEN_BIN`); nothing in it exists for the benchmarks.
//!
//! * `http`: starts `reelgen serve` on a fresh SQLite `DATA_DIR`, seeds videos through the
//!   API, measures idle RSS, then runs `wrk` against `GET /api/v1/videos` and against a
//!   ceiling — a fixed JSON body of the same size behind the same edge and `/api` guard,
//!   served by this process from a `Context` configured like the server — interleaved, at
//!   each connection count.
//! * `ratelimit`: GCRA checks per second through the rate-limiter actor's mailbox versus the
//!   shared table the hot path uses.
//! * `generate`: end-to-end generation versus the floor (x264 alone on I420 frames from
//!   memory), CPU per frame of each stage, whole-frame conversion costs, PSNR; 1080p RSS.
//!
//! * `sessions`: live sessions over WebRTC with a real peer (aiortc, `tests/sessions/peer.py`
//!   from the test tools' virtualenv) on loopback: speak → first decoded frame whose mouth
//!   differs from the idle mouth, p50/p95 over `--utterances`; then N sessions at once, each
//!   with its own peer speaking sentence after sentence, with the server's late and dropped
//!   frames and its CPU per session-second.
//!
//! `cargo bench -p reelgen-bench --bench live|soak` runs the live-path and soak benchmarks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use reelgen::platform::limiter::{Check, GcraTable, RateLimiter};
use reelgen::render::assets::Catalog;
use reelgen::videos::request;

#[derive(Parser, Debug)]
#[command(
    name = "reelgen-bench",
    about = "reelgen's benchmarks; figures are printed for the record"
)]
struct Cli {
    #[command(subcommand)]
    which: Which,
}

#[derive(Subcommand, Debug)]
enum Which {
    /// wrk against GET /api/v1/videos and a trivial route of the same size, interleaved
    Http(HttpBenchArgs),
    /// GCRA check through the actor mailbox versus the shared table
    Ratelimit,
    /// End-to-end generation versus the encode-only floor; render cost; 1080p peak RSS
    Generate(GenerateBenchArgs),
    /// `serve`'s resident memory: idle, 4 concurrent 720p jobs, a minute after them, one
    /// 1080p job
    Memory(MemoryBenchArgs),
    /// Live sessions over WebRTC: speak → first decoded mouth frame; sessions at once
    Sessions(SessionsBenchArgs),
    /// The HTTP benchmark's baseline alone, for profiling: a bare actix-web server on `port`
    /// answering `GET /api/v1/videos` with the bytes a running `serve` on `from` answers it with
    Bare {
        #[arg(long)]
        port: u16,
        #[arg(long)]
        from: u16,
    },
}

#[allow(unsafe_code)]
fn main() -> std::process::ExitCode {
    for (name, value) in reelgen::render::gpu::HEADLESS_ENV {
        if std::env::var_os(name).is_none() {
            // SAFETY: the first thing `main` does, before any other thread exists.
            unsafe { std::env::set_var(name, value) };
        }
    }
    let cli = Cli::parse();
    let result = match cli.which {
        Which::Http(args) => http(args),
        Which::Ratelimit => actix_web::rt::System::new().block_on(ratelimit()),
        Which::Generate(args) => generate(args),
        Which::Memory(args) => memory(args),
        Which::Sessions(args) => sessions(args),
        Which::Bare { port, from } => bare(port, from),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The `reelgen` binary: `REELGEN_BIN`, else the one built next to this executable.
fn reelgen_bin() -> Result<std::path::PathBuf, String> {
    if let Some(p) = std::env::var_os("REELGEN_BIN") {
        return Ok(p.into());
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    exe.ancestors()
        .skip(1)
        .map(|d| d.join("reelgen"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            "no reelgen binary next to this one: `cargo build --release --bin reelgen`, or set REELGEN_BIN".into()
        })
}

#[derive(clap::Args, Debug)]
pub struct HttpBenchArgs {
    /// Videos to seed
    #[arg(long, default_value_t = 200)]
    pub videos: usize,
    /// Seconds per wrk run
    #[arg(long, default_value_t = 10)]
    pub duration: u64,
    /// Connection counts, comma separated
    #[arg(long, default_value = "100,400", value_delimiter = ',')]
    pub connections: Vec<u32>,
    /// wrk threads
    #[arg(long, default_value_t = 2)]
    pub threads: u32,
    /// Rounds of (list, ceiling) per connection count
    #[arg(long, default_value_t = 2)]
    pub rounds: u32,
}

/// The script every seeded video uses (the ceiling body is built from the same request).
const SEED_SCRIPT: &str = "Welcome to reelgen. This short clip shows how a script becomes a talking avatar video, rendered on the GPU and encoded live.";

fn seed_request(i: usize) -> serde_json::Value {
    serde_json::json!({"title": format!("Benchmark video {i:04}"), "script": SEED_SCRIPT, "seed": i})
}

struct Server {
    child: Child,
    port: u16,
    /// Removed with the server (a caller-owned `DATA_DIR` is not).
    dir: Option<std::path::PathBuf>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    l.local_addr().map(|a| a.port()).map_err(|e| e.to_string())
}

/// One HTTP/1.1 request with `Connection: close`; returns (status, body).
fn request(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|()| s.write_all(body.as_bytes()))
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no HTTP head")?;
    let status = std::str::from_utf8(&raw[..split])
        .ok()
        .and_then(|h| h.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("no status")?;
    Ok((status, raw[split + 4..].to_vec()))
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Starts `reelgen serve` on a fresh `DATA_DIR`; `worker` turns the embedded render worker
/// on or off.
fn start_server_with(worker: bool, env: &[(&str, &str)]) -> Result<Server, String> {
    let dir = std::env::temp_dir().join(format!("reelgen-bench-{}", uuid::Uuid::new_v4()));
    let mut server = start_server_in(&dir, worker, env)?;
    server.dir = Some(dir);
    Ok(server)
}

/// `reelgen serve` on the given `DATA_DIR` (kept when the server goes).
fn start_server_in(
    dir: &std::path::Path,
    worker: bool,
    env: &[(&str, &str)],
) -> Result<Server, String> {
    let exe = reelgen_bin()?;
    let port = free_port()?;
    let child = Command::new(exe)
        .args(["serve"])
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("DATA_DIR", dir)
        .env_remove("DATABASE_URL")
        .env("AUTH_MODE", "open")
        .env("ENVIRONMENT", "development")
        .env("RATE_LIMIT_PER_MINUTE", "1000000000")
        .env("EMBEDDED_WORKER", if worker { "true" } else { "false" })
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let server = Server {
        child,
        port,
        dir: None,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if matches!(request(port, "GET", "/health/ready", None), Ok((200, _))) {
            return Ok(server);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err("server did not become ready in 30 s".into())
}

struct WrkResult {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
}

fn parse_duration_ms(s: &str) -> Option<f64> {
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v / 1000.0,
        "ms" => v,
        "s" => v * 1000.0,
        "m" => v * 60_000.0,
        _ => return None,
    })
}

fn wrk(port: u16, path: &str, conns: u32, threads: u32, secs: u64) -> Result<WrkResult, String> {
    let out = Command::new("wrk")
        .args([
            &format!("-t{}", threads.min(conns)),
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .map_err(|e| format!("cannot run wrk (apt-get install wrk): {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut r = WrkResult {
        rps: 0.0,
        p50_ms: f64::NAN,
        p99_ms: f64::NAN,
        non_2xx: 0,
    };
    for line in text.lines().map(str::trim) {
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("Requests/sec:"), Some(v)) => r.rps = v.parse().unwrap_or(0.0),
            (Some("50%"), Some(v)) => r.p50_ms = parse_duration_ms(v).unwrap_or(f64::NAN),
            (Some("99%"), Some(v)) => r.p99_ms = parse_duration_ms(v).unwrap_or(f64::NAN),
            (Some("Non-2xx"), _) => {
                r.non_2xx = line
                    .rsplit(' ')
                    .next()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            }
            _ => {}
        }
    }
    if r.rps == 0.0 {
        return Err(format!("wrk gave no result: {text}"));
    }
    Ok(r)
}

/// `reelgen-bench http`.
pub fn http(args: HttpBenchArgs) -> Result<(), String> {
    // Seeded through an API-only server and cancelled, so that the full `serve` measured
    // below (embedded worker on) lists them without ever running a job.
    let dir = std::env::temp_dir().join(format!("reelgen-bench-http-{}", uuid::Uuid::new_v4()));
    {
        let seeder = start_server_in(&dir, false, &[])?;
        for i in 0..args.videos {
            let id = create_video(seeder.port, &seed_request(i))?;
            request(
                seeder.port,
                "POST",
                &format!("/api/v1/videos/{id}/cancel"),
                None,
            )?;
        }
    }
    let server = start_server_in(&dir, true, &[])?;
    let pid = server.child.id();
    let started_rss = rss_kib(pid).unwrap_or(0);
    // The device opens at start (the readiness check) and closes after DEVICE_IDLE_RELEASE.
    std::thread::sleep(Duration::from_secs(25));
    let idle_rss = rss_kib(pid).unwrap_or(0);
    let (_, list_body) = request(server.port, "GET", "/api/v1/videos", None)?;
    let workers = num_cpus();

    println!(
        "reelgen-bench http — {} CPUs, wrk -t{} -d{}s, SQLite, {} videos seeded",
        num_cpus(),
        args.threads,
        args.duration,
        args.videos
    );
    println!(
        "GET /api/v1/videos ({} bytes) on `reelgen serve` (embedded worker, no job run since start) against a bare actix-web server returning the same bytes ({workers} workers each)",
        list_body.len()
    );
    println!(
        "serve RSS: {:.1} MiB just after start (device open for the readiness check), {:.1} MiB idle",
        started_rss as f64 / 1024.0,
        idle_rss as f64 / 1024.0
    );
    println!(
        "{:>6} {:>6} {:>6} {:>12} {:>10} {:>10} {:>8}",
        "conns", "round", "server", "req/s", "p50 ms", "p99 ms", "non-2xx"
    );
    let bare = BareServer::start(Bytes::from(list_body), workers, free_port()?)?;
    let mut loaded_peak = 0u64;
    for &c in &args.connections {
        let (mut list_sum, mut bare_sum) = (0.0, 0.0);
        let (mut list_p99, mut bare_p99) = (Vec::new(), Vec::new());
        for round in 1..=args.rounds {
            for name in ["serve", "bare"] {
                let port = if name == "serve" {
                    server.port
                } else {
                    bare.port
                };
                let path = if name == "serve" {
                    "/api/v1/videos"
                } else {
                    BARE_PATH
                };
                let sampling = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
                let sampler = {
                    let sampling = sampling.clone();
                    std::thread::spawn(move || {
                        let mut peak = 0;
                        while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                            peak = peak.max(rss_kib(pid).unwrap_or(0));
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        peak
                    })
                };
                let r = wrk(port, path, c, args.threads, args.duration);
                sampling.store(false, std::sync::atomic::Ordering::Relaxed);
                let peak = sampler.join().unwrap_or(0);
                let r = r?;
                println!(
                    "{c:>6} {round:>6} {name:>6} {:>12.0} {:>10.2} {:>10.2} {:>8}",
                    r.rps, r.p50_ms, r.p99_ms, r.non_2xx
                );
                if name == "serve" {
                    loaded_peak = loaded_peak.max(peak);
                    list_sum += r.rps;
                    list_p99.push(r.p99_ms);
                } else {
                    bare_sum += r.rps;
                    bare_p99.push(r.p99_ms);
                }
            }
        }
        println!(
            "c={c}: serve/bare throughput {:.3} (target >= 0.9); p99 serve {:.2} ms / bare {:.2} ms = {:.2} (median of rounds; target <= 1.2 at 400)",
            list_sum / bare_sum,
            median(list_p99.clone()),
            median(bare_p99.clone()),
            median(list_p99) / median(bare_p99)
        );
    }
    println!(
        "serve RSS under load: peak {:.1} MiB (target <= 80); after: {:.1} MiB",
        loaded_peak as f64 / 1024.0,
        rss_kib(pid).unwrap_or(0) as f64 / 1024.0
    );
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

const BARE_PATH: &str = "/api/v1/videos";

/// The baseline: actix-web with one route returning fixed bytes, no middleware, no state.
struct BareServer {
    port: u16,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl BareServer {
    fn start(body: Bytes, workers: usize, port: u16) -> Result<Self, String> {
        use actix_web::{App, HttpResponse, HttpServer, web};
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let body = body.clone();
                    App::new().route(
                        BARE_PATH,
                        web::get().to(move || {
                            let body = body.clone();
                            async move {
                                HttpResponse::Ok()
                                    .content_type("application/json")
                                    .body(body)
                            }
                        }),
                    )
                })
                .workers(workers)
                .backlog(4096)
                .disable_signals()
                .bind(("127.0.0.1", port));
                match server {
                    Ok(s) => {
                        let s = s.run();
                        let _ = tx.send(Ok(s.handle()));
                        let _ = s.await;
                    }
                    Err(e) => drop(tx.send(Err(e.to_string()))),
                }
            });
        });
        let handle = rx
            .recv_timeout(Duration::from_secs(30))
            .map_err(|e| format!("bare server did not start: {e}"))??;
        Ok(Self {
            port,
            handle,
            thread: Some(thread),
        })
    }
}

impl Drop for BareServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `reelgen-bench bare`: runs until killed.
fn bare(port: u16, from: u16) -> Result<(), String> {
    let (status, body) = request(from, "GET", BARE_PATH, None)?;
    if status != 200 {
        return Err(format!("GET {BARE_PATH} on port {from} answered {status}"));
    }
    let _server = BareServer::start(Bytes::from(body), num_cpus(), port)?;
    println!("bare server on 127.0.0.1:{port}{BARE_PATH}");
    loop {
        std::thread::park();
    }
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// `reelgen-bench ratelimit`.
pub async fn ratelimit() -> Result<(), String> {
    use actix::Actor;
    const N: u64 = 200_000;
    let table = Arc::new(GcraTable::new(1_000_000_000));

    // The table from two OS threads (the two HTTP workers of this machine).
    let started = Instant::now();
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let table = table.clone();
            let (other, own): (Arc<str>, Arc<str>) = ("other".into(), ["a", "b"][t].into());
            std::thread::spawn(move || {
                for i in 0..N / 2 {
                    std::hint::black_box(table.check(if i % 8 == 0 { &other } else { &own }));
                }
            })
        })
        .collect();
    for h in handles {
        h.join().map_err(|_| "bench thread panicked")?;
    }
    let direct = N as f64 / started.elapsed().as_secs_f64();

    // Through the actor's mailbox, 64 requests in flight at a time.
    let addr = RateLimiter::new(table.clone()).start();
    let started = Instant::now();
    let mut done = 0;
    let key: Arc<str> = "a".into();
    while done < N {
        let batch: Vec<_> = (0..64).map(|_| addr.send(Check(key.clone()))).collect();
        for r in futures_util::future::join_all(batch).await {
            r.map_err(|e| e.to_string())?;
        }
        done += 64;
    }
    let mailbox = done as f64 / started.elapsed().as_secs_f64();
    println!("reelgen-bench ratelimit — {N} GCRA checks");
    println!(
        "table, 2 threads:         {direct:>12.0} checks/s ({:.3} µs each)",
        1e6 / direct
    );
    println!(
        "actor mailbox (send+await): {mailbox:>10.0} checks/s ({:.3} µs each)",
        1e6 / mailbox
    );
    println!("table / mailbox: {:.1}x", direct / mailbox);
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct GenerateBenchArgs {
    /// Length of the end-to-end video in seconds
    #[arg(long, default_value_t = 60.0)]
    pub seconds: f64,
    /// Length of the 1080p peak-memory job in seconds
    #[arg(long, default_value_t = 10.0)]
    pub rss_seconds: f64,
    /// Rounds of render-only and of (floor, end-to-end) pairs; medians are reported
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    cpu_seconds_of("self")
}

/// CPU seconds (user + system) process `pid` (or `self`) has used.
fn cpu_seconds_of(pid: &str) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    let after = stat.rsplit(')').next().unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of /proc/PID/stat (11 and 12 after the name).
    (ticks(11) + ticks(12)) / 100.0
}

fn script_of(seconds: f64) -> String {
    let sentence = "Our product turns a written script into a presenter video in minutes, with natural lip sync and a friendly voice. ";
    let words_needed = (seconds * 165.0 / 60.0).ceil() as usize;
    let per = sentence.split_whitespace().count();
    sentence.repeat(words_needed.div_ceil(per).max(1))
}

/// `reelgen-bench generate`.
pub fn generate(args: GenerateBenchArgs) -> Result<(), String> {
    use reelgen::render::media::{EncodeSettings, Mp4Writer};
    use reelgen::render::pipeline::{Generator, JobSpec, Pixels};

    use std::sync::atomic::AtomicBool;

    let catalog = Arc::new(Catalog::embedded().map_err(|e| e.to_string())?);
    let generator = Generator::new(catalog.clone()).map_err(|e| e.to_string())?;
    let dir = std::env::temp_dir().join(format!("reelgen-bench-gen-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let params = |w: u32, h: u32, seconds: f64| {
        let req = serde_json::json!({"script": script_of(seconds), "dimension": {"width": w, "height": h}, "fps": 30, "quality": "draft", "seed": 11});
        request::parse_video_request(&req, &catalog, "", 11).map_err(|e| format!("{e:?}"))
    };
    println!(
        "reelgen-bench generate — device {}, encoder {} ({} CPUs)",
        generator.gpu().describe(),
        generator.encoder().element,
        num_cpus()
    );

    // 1. Peak RSS of one 1080p job (first, so nothing else has raised the high-water mark).
    let p1080 = params(1920, 1080, args.rss_seconds)?;
    let rss_before = reelgen::platform::memory::proc_status_kib("VmRSS:");
    // One whole job, to `dir/<name>.mp4` with its thumbnail, nobody watching its progress.
    let run_job = |params: reelgen::render::params::VideoParams, name: &str, live: bool| {
        generator
            .run(
                &JobSpec {
                    params,
                    output: dir.join(format!("{name}.mp4")),
                    thumbnail: Some(dir.join(format!("{name}.jpg"))),
                    transcript: None,
                    recording: None,
                    live,
                },
                &AtomicBool::new(false),
                &mut |_| {},
                &mut |_| {},
            )
            .map_err(|e| e.to_string())
    };
    let o = run_job(p1080, "1080", true)?;
    println!(
        "1080p job: {} frames in {:.2} s ({:.1} fps) with live fMP4; peak RSS {:.1} MiB (before {:.1} MiB)",
        o.frames,
        o.render_s,
        o.frames as f64 / o.render_s,
        reelgen::platform::memory::proc_status_kib("VmHWM:") as f64 / 1024.0,
        rss_before as f64 / 1024.0
    );

    // 2. Per-stage CPU on the 720p job's own timeline, each stage alone, whole process
    //    (every thread: lavapipe's, GStreamer's, x264's), per frame.
    let p720 = params(1280, 720, args.seconds)?;
    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    let timeline = generator.timeline(&p720).map_err(|e| e.to_string())?;
    let timeline_cpu = cpu_seconds() - cpu0;
    let timeline_wall = t0.elapsed().as_secs_f64();
    let total = timeline.frames.len();
    let indices: Vec<usize> = (0..total).collect();
    let runs = args.runs.max(1);
    let per_frame = |s: f64| s * 1000.0 / total as f64;
    // One pass of `f` over the job's frames: (wall, CPU) seconds.
    let timed = |f: &mut dyn FnMut() -> Result<(), String>| -> Result<(f64, f64), String> {
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        f()?;
        Ok((t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0))
    };
    let (mut render_cpu, mut made_cpu) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        for (pixels, cpus) in [
            (Pixels::Rgba, &mut render_cpu),
            (Pixels::I420, &mut made_cpu),
        ] {
            let mut seen = 0u64;
            let (_, cpu) = timed(&mut || {
                generator
                    .frames(&p720, &timeline, &indices, pixels, &mut |f| {
                        seen += u64::from(f[f.len() / 2]);
                    })
                    .map_err(|e| e.to_string())
            })?;
            cpus.push(cpu);
            std::hint::black_box(seen);
        }
    }
    let render_cpu = median(render_cpu);
    let convert_cpu = (median(made_cpu) - render_cpu).max(0.0);

    // 3. The floor: the encoder alone, with the job's settings, on the job's first 90 frames
    //    (already I420, from memory) over and over, as long as the job; then the same with
    //    the job's audio track (AAC) muxed in.
    let mut keep = Vec::new();
    generator
        .frames(
            &p720,
            &timeline,
            &indices[..total.min(90)],
            Pixels::I420,
            &mut |f| keep.push(f.to_vec()),
        )
        .map_err(|e| e.to_string())?;
    let pool = reelgen::render::media::FramePool::new(keep[0].len());
    let speech = timeline.speech.clone();
    let encode_run = |audio: bool| -> Result<(f64, f64), String> {
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let writer = Mp4Writer::start(
            &EncodeSettings {
                width: 1280,
                height: 720,
                fps: timeline.fps,
                quality: p720.quality,
                audio_rate: speech.as_ref().filter(|_| audio).map(|s| s.sample_rate),
                live: false,
            },
            generator.encoder(),
            &dir.join("floor.mp4"),
        )
        .map_err(|e| e.to_string())?;
        if let (true, Some(s)) = (audio, &speech) {
            writer
                .push_audio(&s.samples, s.sample_rate)
                .map_err(|e| e.to_string())?;
        }
        for i in 0..total {
            let mut frame = pool.get();
            frame.as_mut().copy_from_slice(&keep[i % keep.len()]);
            writer
                .push_frame(frame, i as u64)
                .map_err(|e| e.to_string())?;
        }
        writer.finish().map_err(|e| e.to_string())?;
        Ok((t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0))
    };

    // 3b. What converting whole frames would cost instead, per 720p frame: videoconvert (how
    //     every frame went before) and the I420 kernel on this device.
    let mut rgba = Vec::new();
    generator
        .render_frames(&p720, &timeline, &indices[..total.min(60)], &mut |f| {
            rgba.push(f.to_vec())
        })
        .map_err(|e| e.to_string())?;
    let (n, first) = (rgba.len(), rgba[0].clone());
    let c0 = cpu_seconds();
    let (before, _) =
        reelgen::render::media::videoconvert_i420(rgba, 1280, 720).map_err(|e| e.to_string())?;
    let vc_cpu = (cpu_seconds() - c0) * 1000.0 / n as f64;
    let mut born = Vec::new();
    generator
        .frames(&p720, &timeline, &indices[..n], Pixels::I420, &mut |f| {
            born.push(f.to_vec())
        })
        .map_err(|e| e.to_string())?;
    let psnr = born
        .iter()
        .zip(&before)
        .map(|(a, b)| reelgen::render::media::i420::psnr(a, b))
        .fold(f64::INFINITY, f64::min);
    let gpu = generator.gpu();
    let conv = reelgen::render::gpu::i420::I420Converter::new(gpu, 1280, 720)
        .map_err(|e| e.to_string())?;
    let on_device = conv.convert(gpu, &first).map_err(|e| e.to_string())?;
    let kernel_diff = on_device
        .iter()
        .zip(&reelgen::render::media::i420::from_rgba(&first, 1280, 720))
        .map(|(a, b)| a.abs_diff(*b))
        .max()
        .unwrap_or(u8::MAX);
    let c0 = cpu_seconds();
    conv.time_on_device(gpu, 60).map_err(|e| e.to_string())?;
    let kernel_cpu = (cpu_seconds() - c0) * 1000.0 / 60.0;
    drop((first, before, born));

    // 4. End to end (timeline + TTS + render + conversion + encode + audio + mux), each run
    //    right after a floor run so both see the same machine.
    let (mut walls, mut cpus, mut floor_walls, mut floor_cpus) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut audio_cpu, mut last) = (Vec::new(), None);
    for run in 1..=runs {
        let (floor_wall, floor_cpu) = encode_run(false)?;
        let (_, with_audio_cpu) = encode_run(true)?;
        audio_cpu.push((with_audio_cpu - floor_cpu).max(0.0));
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let o = run_job(p720.clone(), "720", false)?;
        let (wall, cpu) = (t0.elapsed().as_secs_f64(), cpu_seconds() - cpu0);
        println!(
            "run {run}: end to end {wall:.2} s wall / {cpu:.2} s CPU; floor {floor_wall:.2} s / {floor_cpu:.2} s -> {:.2}x wall, {:.2}x CPU",
            wall / floor_wall,
            cpu / floor_cpu
        );
        walls.push(wall);
        cpus.push(cpu);
        floor_walls.push(floor_wall);
        floor_cpus.push(floor_cpu);
        last = Some(o);
    }
    let o = last.ok_or("no run")?;
    let (wall, cpu) = (median(walls.clone()), median(cpus.clone()));
    let (floor_wall, floor_cpu) = (median(floor_walls.clone()), median(floor_cpus.clone()));
    let wall_ratio = median(walls.iter().zip(&floor_walls).map(|(a, b)| a / b).collect());
    let cpu_ratio = median(cpus.iter().zip(&floor_cpus).map(|(a, b)| a / b).collect());
    let audio_cpu = median(audio_cpu);
    println!(
        "720p{} {:?}, {:.1} s of video ({total} frames), median of {runs}:",
        timeline.fps, p720.quality, o.duration_s
    );
    println!("  CPU per frame by stage, each measured alone (all threads):");
    println!(
        "    timeline (text, speech, visemes): {:>6.3} ms  ({:.2} s wall for the job)",
        per_frame(timeline_cpu),
        timeline_wall
    );
    println!(
        "    render (kernels, patch readback): {:>6.3} ms",
        per_frame(render_cpu)
    );
    println!(
        "    conversion (changed boxes->I420): {:>6.3} ms",
        per_frame(convert_cpu)
    );
    println!(
        "    encode + mux (the floor, {}):  {:>6.3} ms",
        generator.encoder().element,
        per_frame(floor_cpu)
    );
    println!(
        "    audio (AAC of the speech):        {:>6.3} ms",
        per_frame(audio_cpu)
    );
    println!(
        "    sum {:.3} ms; end to end {:.3} ms",
        per_frame(timeline_cpu + render_cpu + convert_cpu + floor_cpu + audio_cpu),
        per_frame(cpu)
    );
    println!(
        "  whole-frame conversion instead: videoconvert {vc_cpu:.2} ms, I420 kernel on this device {kernel_cpu:.2} ms CPU per frame; jobs here use {}",
        generator.color_path().as_str()
    );
    println!(
        "  PSNR of frames born I420 against videoconvert's, worst of 60: {psnr:.1} dB (target >= 45)"
    );
    println!(
        "  I420 kernel vs CPU converter: at most {kernel_diff} level(s) apart on {} ({})",
        generator.gpu().describe(),
        if kernel_diff <= 1 { "ok" } else { "MISMATCH" }
    );
    println!(
        "  floor ({} alone, I420 from memory): {floor_wall:.2} s wall, {floor_cpu:.2} s CPU",
        generator.encoder().element
    );
    println!(
        "  end to end: {wall:.2} s wall, {cpu:.2} s CPU; {:.1}x real time",
        o.duration_s / wall
    );
    println!(
        "  end to end / floor: {wall_ratio:.2}x wall (target <= 2.0), {cpu_ratio:.2}x CPU (target <= 2.5)"
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct MemoryBenchArgs {
    /// Seconds of video per job
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Seconds to wait after the last job before the "back to idle" reading
    #[arg(long, default_value_t = 60)]
    pub after: u64,
}

/// `POST /api/v1/videos` with `body`: the new video's id (an error unless 202).
fn create_video(port: u16, body: &serde_json::Value) -> Result<String, String> {
    let (status, out) = request(port, "POST", "/api/v1/videos", Some(&body.to_string()))?;
    if status != 202 {
        return Err(format!(
            "create failed with {status}: {}",
            String::from_utf8_lossy(&out)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| e.to_string())?;
    Ok(v["id"].as_str().ok_or("no id")?.to_string())
}

/// Submits `n` videos of `w`×`h` at once to `server` and samples its RSS every 20 ms until
/// every one has completed: the peak in KiB.
fn jobs_peak_rss(server: &Server, n: usize, w: u32, h: u32, seconds: f64) -> Result<u64, String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let body = serde_json::json!({"script": script_of(seconds), "quality": "draft",
            "dimension": {"width": w, "height": h}, "fps": 30, "seed": i});
        ids.push(create_video(server.port, &body)?);
    }
    let pid = server.child.id();
    let (mut peak, mut last_poll) = (0u64, Instant::now() - Duration::from_secs(1));
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        peak = peak.max(rss_kib(pid).unwrap_or(0));
        if last_poll.elapsed() >= Duration::from_millis(250) {
            last_poll = Instant::now();
            let mut done = 0;
            for id in &ids {
                let (_, body) = request(server.port, "GET", &format!("/api/v1/videos/{id}"), None)?;
                let v: serde_json::Value =
                    serde_json::from_slice(&body).map_err(|e| e.to_string())?;
                match v["status"].as_str() {
                    Some("completed") => done += 1,
                    Some("failed" | "cancelled") => return Err(format!("video {id}: {v}")),
                    _ => {}
                }
            }
            if done == ids.len() {
                return Ok(peak);
            }
        }
        if Instant::now() > deadline {
            return Err("jobs did not complete in 10 minutes".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lowest RSS over `secs` seconds (KiB): a reading that a passing allocation does not lift.
fn settled_rss(pid: u32, secs: u64) -> u64 {
    let mut low = u64::MAX;
    for _ in 0..secs * 5 {
        low = low.min(rss_kib(pid).unwrap_or(u64::MAX));
        std::thread::sleep(Duration::from_millis(200));
    }
    low
}

/// `reelgen-bench memory`.
pub fn memory(args: MemoryBenchArgs) -> Result<(), String> {
    let mib = |k: u64| k as f64 / 1024.0;
    // The device opens at start (readiness) and closes after DEVICE_IDLE_RELEASE (default
    // 20 s) without a job: idle is read after that.
    let idle_wait = 25;
    println!(
        "reelgen-bench memory — {} CPUs; `reelgen serve` with its embedded worker, SQLite, MAX_CONCURRENT_JOBS=4, draft {:.0} s videos",
        num_cpus(),
        args.seconds
    );
    let server = start_server_with(true, &[("MAX_CONCURRENT_JOBS", "4")])?;
    let pid = server.child.id();
    let started = settled_rss(pid, 1);
    std::thread::sleep(Duration::from_secs(idle_wait));
    let idle = settled_rss(pid, 3);
    println!(
        "idle: {:.1} MiB just after start (device open for the readiness check), {:.1} MiB {idle_wait} s later (target <= 60)",
        mib(started),
        mib(idle)
    );
    let peak = jobs_peak_rss(&server, 4, 1280, 720, args.seconds)?;
    println!(
        "4 concurrent 720p jobs: peak {:.1} MiB (target <= 250)",
        mib(peak)
    );
    std::thread::sleep(Duration::from_secs(args.after.saturating_sub(3)));
    let after = settled_rss(pid, 3);
    println!(
        "{} s after the last job: {:.1} MiB, {:+.1} MiB from idle (target within 30)",
        args.after,
        mib(after),
        mib(after) - mib(idle)
    );
    drop(server);
    let server = start_server_with(true, &[("MAX_CONCURRENT_JOBS", "4")])?;
    std::thread::sleep(Duration::from_secs(idle_wait));
    let peak = jobs_peak_rss(&server, 1, 1920, 1080, args.seconds)?;
    println!("one 1080p job: peak {:.1} MiB (target <= 200)", mib(peak));
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct SessionsBenchArgs {
    /// Utterances timed for the latency figures
    #[arg(long, default_value_t = 30)]
    pub utterances: usize,
    /// Sessions at once, comma separated
    #[arg(long, default_value = "1,2,4", value_delimiter = ',')]
    pub concurrent: Vec<usize>,
    /// Seconds each concurrency level speaks
    #[arg(long, default_value_t = 20.0)]
    pub seconds: f64,
    /// Videos queued (rendering on the embedded worker) during a last one-session row
    #[arg(long, default_value_t = 4)]
    pub backlog: usize,
    /// The aiortc interpreter (default: the test tools' virtualenv)
    #[arg(long)]
    pub python: Option<std::path::PathBuf>,
}

/// The test tools' Python (`REELGEN_PYTOOLS_BIN`, else `~/.cache/reelgen/pytools/bin`).
fn pytools_python() -> std::path::PathBuf {
    std::env::var_os("REELGEN_PYTOOLS_BIN")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
            std::path::PathBuf::from(home).join(".cache/reelgen/pytools/bin")
        })
        .join("python")
}

/// `POST /api/v1/sessions`: the new session's id.
fn create_session(port: u16) -> Result<String, String> {
    let (status, out) = request(port, "POST", "/api/v1/sessions", Some("{}"))?;
    if status != 201 {
        return Err(format!(
            "session create: {status} {}",
            String::from_utf8_lossy(&out)
        ));
    }
    let v: serde_json::Value = serde_json::from_slice(&out).map_err(|e| e.to_string())?;
    v["id"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| "no session id".into())
}

/// Starts the WebRTC peer for a session.
fn peer(
    python: &std::path::Path,
    port: u16,
    session: &str,
    args: &[&str],
) -> Result<Child, String> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/sessions/peer.py");
    Command::new(python)
        .arg(script)
        .args([
            "--base",
            &format!("http://127.0.0.1:{port}"),
            "--session",
            session,
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot start the peer ({}): {e}", python.display()))
}

fn peer_result(child: Child) -> Result<serde_json::Value, String> {
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).map_err(|e| format!("peer printed {text:?}: {e}"))
}

/// A Prometheus sample of the server.
fn metric(port: u16, name: &str) -> f64 {
    request(port, "GET", "/metrics", None)
        .ok()
        .and_then(|(_, body)| {
            String::from_utf8_lossy(&body)
                .lines()
                .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
                .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        })
        .unwrap_or(f64::NAN)
}

/// Waits (at most 30 s) until the server has no session open, so the next row starts clean.
fn sessions_closed(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while metric(port, "reelgen_sessions_open") != 0.0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn sessions(args: SessionsBenchArgs) -> Result<(), String> {
    let python = args.python.clone().unwrap_or_else(pytools_python);
    let max = args.concurrent.iter().copied().max().unwrap_or(1).max(1);
    // The embedded worker is on: the last row renders a backlog of videos meanwhile.
    let server = start_server_with(
        true,
        &[
            ("MAX_SESSIONS", &max.to_string()),
            ("SESSION_IDLE_TIMEOUT", "600"),
        ],
    )?;
    let port = server.port;
    println!(
        "machine: {} CPUs; server: reelgen serve, sessions at 640x360@25",
        num_cpus()
    );

    // Latency: one session, one peer, `utterances` sentences.
    let id = create_session(port)?;
    let n = args.utterances.to_string();
    let r = peer_result(peer(
        &python,
        port,
        &id,
        &["--mode", "bench", "--count", &n],
    )?)?;
    let count = metric(port, "reelgen_session_speak_latency_seconds_count");
    let sum = metric(port, "reelgen_session_speak_latency_seconds_sum");
    println!(
        "\nspeak -> first decoded frame whose mouth differs from the idle mouth (WebRTC, loopback)"
    );
    println!(
        "codec {}  utterances {}  timed {}  p50 {} ms  p95 {} ms",
        r["codec"],
        args.utterances,
        r["latencies_ms"].as_array().map_or(0, Vec::len),
        r["p50_ms"],
        r["p95_ms"]
    );
    println!(
        "server side: speak request -> first frame handed to the stream, mean {:.1} ms over {count}",
        sum / count * 1000.0
    );
    let _ = request(port, "DELETE", &format!("/api/v1/sessions/{id}"), None);
    sessions_closed(port);

    println!(
        "\nsessions at once, each with its own aiortc peer speaking for {} s",
        args.seconds
    );
    println!(
        "| sessions | frames streamed | late | dropped | peer video fps (min) | server CPU s per session-second |"
    );
    println!("|---:|---:|---:|---:|---:|---:|");
    let secs = args.seconds.to_string();
    let levels: Vec<(usize, usize)> = args
        .concurrent
        .iter()
        .map(|n| (*n, 0))
        .chain(std::iter::once((1, args.backlog)))
        .filter(|(n, _)| *n > 0)
        .collect();
    for (n, backlog) in levels {
        // Videos queued behind the session: 720p, long enough to render throughout.
        for i in 0..backlog {
            create_video(
                port,
                &serde_json::json!({
                    "title": format!("backlog {i}"),
                    "script": script_of(args.seconds * 3.0),
                    "dimension": {"width": 1280, "height": 720},
                    "quality": "draft",
                }),
            )?;
        }
        let ids = (0..n)
            .map(|_| create_session(port))
            .collect::<Result<Vec<_>, _>>()?;
        let (f0, l0, d0) = (
            metric(port, "reelgen_session_frames_total"),
            metric(port, "reelgen_session_frames_late_total"),
            metric(port, "reelgen_session_frames_dropped_total"),
        );
        let cpu0 = cpu_seconds_of(&server.child.id().to_string());
        let t0 = Instant::now();
        let peers = ids
            .iter()
            .map(|id| peer(&python, port, id, &["--mode", "soak", "--seconds", &secs]))
            .collect::<Result<Vec<_>, _>>()?;
        let results = peers
            .into_iter()
            .map(peer_result)
            .collect::<Result<Vec<_>, _>>()?;
        let wall = t0.elapsed().as_secs_f64();
        let cpu = cpu_seconds_of(&server.child.id().to_string()) - cpu0;
        let min_fps = results
            .iter()
            .filter_map(|r| r["video_fps"].as_f64())
            .fold(f64::INFINITY, f64::min);
        let label = if backlog > 0 {
            format!("{n}, {backlog} 720p videos rendering")
        } else {
            n.to_string()
        };
        println!(
            "| {label} | {} | {} | {} | {min_fps:.1} | {:.3} |",
            metric(port, "reelgen_session_frames_total") - f0,
            metric(port, "reelgen_session_frames_late_total") - l0,
            metric(port, "reelgen_session_frames_dropped_total") - d0,
            cpu / (n as f64 * wall)
        );
        for id in &ids {
            let _ = request(port, "DELETE", &format!("/api/v1/sessions/{id}"), None);
        }
        sessions_closed(port);
    }
    println!("\n(the peers decode on the same machine: their CPU competes with the server's; the");
    println!(" server's CPU includes the embedded worker's renders in the backlog row)");
    Ok(())
}
