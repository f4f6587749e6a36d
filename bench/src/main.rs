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
//! * `generate`: end-to-end generation versus the encode-only floor; render cost; 1080p RSS.
//!
//! `cargo bench -p reelgen-bench --bench live|soak` runs the live-path and soak benchmarks.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::{Parser, Subcommand};
use reelgen::api::videos::VideoList;
use reelgen::platform::limiter::{Check, GcraTable, RateLimiter};
use reelgen::render::assets::Catalog;
use reelgen::videos::model::VideoView;
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
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.which {
        Which::Http(args) => http(args),
        Which::Ratelimit => actix_web::rt::System::new().block_on(ratelimit()),
        Which::Generate(args) => generate(args),
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

/// A JSON list shaped and sized like a 20-item page of seeded videos.
fn ceiling_body() -> Bytes {
    let Ok(catalog) = Catalog::embedded() else {
        return Bytes::new();
    };
    let data = (0..20)
        .filter_map(|i| {
            let params = request::parse_video_request(&seed_request(i), &catalog, "", 0).ok()?;
            let model = reelgen::videos::store::new_video("public", &params).ok()?;
            Some(VideoView::from_model(model, Some(i as u64 + 1)))
        })
        .collect();
    let page = VideoList {
        data,
        next_cursor: Some(
            "MTc2NDE2NjQwMDAwMDAwMDowMTlhYzFmMC0wMDAwLTcwMDAtODAwMC0wMDAwMDAwMDAwMDA".into(),
        ),
    };
    Bytes::from(serde_json::to_vec(&page).unwrap_or_default())
}

struct Server {
    child: Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
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

/// Starts `reelgen serve`; `worker` turns the embedded render worker on or off.
fn start_server(worker: bool) -> Result<Server, String> {
    let exe = reelgen_bin()?;
    let port = free_port()?;
    let dir = std::env::temp_dir().join(format!("reelgen-bench-{}", uuid::Uuid::new_v4()));
    let child = Command::new(exe)
        .args(["serve"])
        .env("PORT", port.to_string())
        .env("HOST", "127.0.0.1")
        .env("DATA_DIR", &dir)
        .env_remove("DATABASE_URL")
        .env("AUTH_MODE", "open")
        .env("ENVIRONMENT", "development")
        .env("RATE_LIMIT_PER_MINUTE", "1000000000")
        .env("EMBEDDED_WORKER", if worker { "true" } else { "false" })
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let server = Server { child, port, dir };
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
    // Idle memory of a full `serve` (GPU device and GStreamer loaded by the worker).
    let full = start_server(true)?;
    std::thread::sleep(Duration::from_secs(2));
    let full_idle = rss_kib(full.child.id()).unwrap_or(0);
    drop(full);
    // The HTTP measurements run against the API alone, so rendering the seeded videos does
    // not compete for the two cores.
    let server = start_server(false)?;
    let pid = server.child.id();
    std::thread::sleep(Duration::from_secs(2));
    let idle_rss = rss_kib(pid).unwrap_or(0);

    for i in 0..args.videos {
        let (status, body) = request(
            server.port,
            "POST",
            "/api/v1/videos",
            Some(&seed_request(i).to_string()),
        )?;
        if status != 202 {
            return Err(format!(
                "seeding failed with {status}: {}",
                String::from_utf8_lossy(&body)
            ));
        }
    }
    let (_, list_body) = request(server.port, "GET", "/api/v1/videos", None)?;
    let ceiling = {
        let ceiling_server = CeilingServer::start()?;
        request(ceiling_server.port, "GET", CEILING_PATH, None)?.1
    };
    std::thread::sleep(Duration::from_secs(1));
    let seeded_rss = rss_kib(pid).unwrap_or(0);

    println!(
        "reelgen-bench http — {} CPUs, wrk -t{} -d{}s, SQLite, {} videos seeded",
        num_cpus(),
        args.threads,
        args.duration,
        args.videos
    );
    println!(
        "response bytes: list {} / ceiling {}",
        list_body.len(),
        ceiling.len()
    );
    println!(
        "idle RSS, API only (EMBEDDED_WORKER=false): {:.1} MiB after start, {:.1} MiB after seeding; \
         full serve with the render worker: {:.1} MiB",
        idle_rss as f64 / 1024.0,
        seeded_rss as f64 / 1024.0,
        full_idle as f64 / 1024.0
    );
    println!(
        "{:>6} {:>6} {:>9} {:>12} {:>10} {:>10} {:>8}",
        "conns", "round", "route", "req/s", "p50 ms", "p99 ms", "non-2xx"
    );
    for &c in &args.connections {
        let (mut list_sum, mut ceil_sum, mut worst_p99) = (0.0, 0.0, 0.0f64);
        for round in 1..=args.rounds {
            for name in ["list", "ceiling"] {
                // The ceiling's server runs only while it is measured, so its actors never
                // share the cores with a list run.
                let r = if name == "list" {
                    wrk(
                        server.port,
                        "/api/v1/videos",
                        c,
                        args.threads,
                        args.duration,
                    )?
                } else {
                    let ceiling_server = CeilingServer::start()?;
                    wrk(
                        ceiling_server.port,
                        CEILING_PATH,
                        c,
                        args.threads,
                        args.duration,
                    )?
                };
                println!(
                    "{c:>6} {round:>6} {name:>9} {:>12.0} {:>10.2} {:>10.2} {:>8}",
                    r.rps, r.p50_ms, r.p99_ms, r.non_2xx
                );
                if name == "list" {
                    list_sum += r.rps;
                    worst_p99 = worst_p99.max(r.p99_ms);
                } else {
                    ceil_sum += r.rps;
                }
            }
        }
        println!(
            "c={c}: list/ceiling throughput ratio {:.3} (target >= 0.7); worst list p99 {:.2} ms",
            list_sum / ceil_sum,
            worst_p99
        );
    }
    let loaded_rss = rss_kib(pid).unwrap_or(0);
    println!("RSS after load: {:.1} MiB", loaded_rss as f64 / 1024.0);
    let (_, metrics) = request(server.port, "GET", "/metrics", None)?;
    for line in String::from_utf8_lossy(&metrics).lines() {
        if line.starts_with("reelgen_cache_hits_total")
            || line.starts_with("reelgen_cache_misses_total")
        {
            println!("{line}");
        }
    }
    Ok(())
}

const CEILING_PATH: &str = "/api/v1/ceiling";

/// The ceiling: the fixed body behind the server's own edge and `/api` guard, on a
/// `Context` configured like the server under test, with no work behind it.
struct CeilingServer {
    port: u16,
    handle: actix_web::dev::ServerHandle,
    thread: Option<std::thread::JoinHandle<()>>,
    dir: std::path::PathBuf,
}

impl CeilingServer {
    fn start() -> Result<Self, String> {
        use actix_web::{App, HttpResponse, HttpServer, middleware, web};
        use reelgen::platform::config::{Config, Sources};
        let port = free_port()?;
        let dir = std::env::temp_dir().join(format!("reelgen-ceiling-{}", uuid::Uuid::new_v4()));
        let (port_s, dir_s) = (port.to_string(), dir.display().to_string());
        let config = Config::load(&Sources::from_pairs([
            ("HOST", "127.0.0.1"),
            ("PORT", port_s.as_str()),
            ("DATA_DIR", dir_s.as_str()),
            ("AUTH_MODE", "open"),
            ("ENVIRONMENT", "development"),
            ("RATE_LIMIT_PER_MINUTE", "1000000000"),
            ("EMBEDDED_WORKER", "false"),
        ]))
        .map_err(|e| e.to_string())?;
        let body = ceiling_body();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let workers = config.workers;
                let ctx = match reelgen::Context::start(config).await {
                    Ok(c) => web::Data::new(c),
                    Err(e) => return drop(tx.send(Err(e.to_string()))),
                };
                let server = HttpServer::new(move || {
                    let body = body.clone();
                    App::new()
                        .app_data(ctx.clone())
                        .wrap(middleware::from_fn(reelgen::api::edge::edge))
                        .wrap(middleware::Compress::default())
                        .service(
                            web::scope("/api/v1")
                                .wrap(middleware::from_fn(reelgen::api::edge::api_guard))
                                .route(
                                    "/ceiling",
                                    web::get().to(move || {
                                        let body = body.clone();
                                        async move {
                                            HttpResponse::Ok()
                                                .content_type("application/json")
                                                .body(body)
                                        }
                                    }),
                                ),
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
            .map_err(|e| format!("ceiling server did not start: {e}"))??;
        Ok(Self {
            port,
            handle,
            thread: Some(thread),
            dir,
        })
    }
}

impl Drop for CeilingServer {
    fn drop(&mut self) {
        // The stop is sent at once; the thread ends when the server and its actors have.
        drop(self.handle.stop(false));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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

    // Shared striped table from two OS threads (the two HTTP workers of this machine).
    let started = Instant::now();
    let handles: Vec<_> = (0..2)
        .map(|t| {
            let table = table.clone();
            std::thread::spawn(move || {
                for i in 0..N / 2 {
                    std::hint::black_box(table.check(if i % 8 == 0 {
                        "other"
                    } else if t == 0 {
                        "a"
                    } else {
                        "b"
                    }));
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
    while done < N {
        let batch: Vec<_> = (0..64).map(|_| addr.send(Check("a".into()))).collect();
        for r in futures_util::future::join_all(batch).await {
            r.map_err(|e| e.to_string())?;
        }
        done += 64;
    }
    let mailbox = done as f64 / started.elapsed().as_secs_f64();
    println!("reelgen-bench ratelimit — {N} GCRA checks");
    println!(
        "striped table, 2 threads: {direct:>12.0} checks/s ({:.3} µs each)",
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
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
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
    use reelgen::render::pipeline::{Generator, JobSpec};
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

    // 2. Render cost alone (kernels, patch readback, patch applied to a whole frame; no
    //    encoder), CPU time per frame of the whole process.
    let p720 = params(1280, 720, args.seconds)?;
    let timeline = generator.timeline(&p720).map_err(|e| e.to_string())?;
    let n = timeline.frames.len().min(600);
    let indices: Vec<usize> = (0..n).collect();
    let runs = args.runs.max(1);
    let (mut walls, mut cpus) = (Vec::new(), Vec::new());
    for run in 1..=runs {
        let mut seen = 0u64;
        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        generator
            .render_frames(&p720, &timeline, &indices, &mut |frame| {
                seen += u64::from(frame[frame.len() / 2]);
            })
            .map_err(|e| e.to_string())?;
        std::hint::black_box(seen);
        let wall = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;
        let cpu = (cpu_seconds() - cpu0) * 1000.0 / n as f64;
        println!(
            "render only, 720p, {n} frames, run {run}: {wall:.2} ms wall, {cpu:.2} ms CPU per frame (all threads)"
        );
        walls.push(wall);
        cpus.push(cpu);
    }
    println!(
        "render only, 720p, median of {runs}: {:.2} ms wall, {:.2} ms CPU per frame (target <= 3 ms CPU)",
        median(walls),
        median(cpus)
    );

    // 3. Encode-only floor: the same encoder settings on rendered frames from memory.
    let keep = generator
        .still_frames(&p720, &timeline, &indices[..n.min(90)])
        .map_err(|e| e.to_string())?;

    // 2b. The RGBA→I420 path, chosen from measurement: the kernel (frame already on the
    //     device, I420 read back) against videoconvert, per 720p frame.
    if let Some(frame) = keep.first() {
        let gpu = generator.gpu();
        let conv = reelgen::render::gpu::i420::I420Converter::new(gpu, 1280, 720)
            .map_err(|e| e.to_string())?;
        conv.convert(gpu, frame).map_err(|e| e.to_string())?;
        let c0 = cpu_seconds();
        let kernel = conv.time_on_device(gpu, 120).map_err(|e| e.to_string())?;
        let kernel_cpu = cpu_seconds() - c0;
        let c0 = cpu_seconds();
        let vc = reelgen::render::media::time_videoconvert(frame, 1280, 720, 120)
            .map_err(|e| e.to_string())?;
        let vc_cpu = cpu_seconds() - c0;
        let per = |x: f64| x * 1000.0 / 120.0;
        println!(
            "RGBA->I420 per 720p frame: kernel {:.2} ms wall / {:.2} ms CPU (incl. I420 readback), videoconvert {:.2} ms wall / {:.2} ms CPU -> {} costs less CPU (jobs on this device use {})",
            per(kernel.as_secs_f64()),
            per(kernel_cpu),
            per(vc.as_secs_f64()),
            per(vc_cpu),
            if kernel_cpu < vc_cpu {
                "the kernel"
            } else {
                "videoconvert"
            },
            generator.color_path().as_str()
        );
    }
    drop(indices);
    let total = timeline.frames.len() as u64;
    let pool = reelgen::render::media::FramePool::new(1280 * 720 * 4);
    let floor_run = || -> Result<f64, String> {
        let t0 = Instant::now();
        let writer = Mp4Writer::start(
            &EncodeSettings {
                width: 1280,
                height: 720,
                fps: 30,
                quality: p720.quality,
                audio_rate: None,
                live: false,
                i420: false,
            },
            generator.encoder(),
            &dir.join("floor.mp4"),
        )
        .map_err(|e| e.to_string())?;
        for i in 0..total {
            let mut frame = pool.get();
            frame
                .as_mut()
                .copy_from_slice(&keep[(i as usize) % keep.len()]);
            writer.push_frame(frame, i).map_err(|e| e.to_string())?;
        }
        writer.finish().map_err(|e| e.to_string())?;
        Ok(t0.elapsed().as_secs_f64())
    };

    // 4. End to end: timeline + TTS + render + encode + mux, each run right after a floor
    //    run so both see the same machine.
    let mut ratios = Vec::new();
    for run in 1..=runs {
        let floor = floor_run()?;
        let t0 = Instant::now();
        let o = run_job(p720.clone(), "720", false)?;
        let full = t0.elapsed().as_secs_f64();
        println!(
            "720p30 draft, {:.1} s of video ({} frames), run {run}:",
            o.duration_s, o.frames
        );
        println!("  encode-only floor (x264 from memory): {floor:.2} s");
        println!(
            "  end to end: {full:.2} s (timeline+TTS {:.2} s, render+encode {:.2} s, finish {:.2} s)",
            o.timeline_s, o.render_s, o.finish_s
        );
        println!(
            "  ratio end-to-end / floor: {:.2}; {:.1}x real time",
            full / floor,
            o.duration_s / full
        );
        ratios.push(full / floor);
    }
    println!(
        "end-to-end / floor, median of {runs}: {:.2} (target <= 1.5)",
        median(ratios)
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
