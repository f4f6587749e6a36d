//! reelgen: a self-hosted AI avatar video generation server.
//!
//! This crate holds everything; `main.rs` only calls [`cli::main`]. [`Application::build`]
//! assembles the service from a [`Config`] in three steps: the [`Context`] (database migrated
//! before any traffic, actors under their supervisor), the embedded worker, and the actix-web
//! server bound to its port (port 0 picks a free one; [`Application::port`] tells which).
//! [`Application::run_until_stopped`] owns the order of a graceful shutdown.
//!
//! Layers, lowest first (an import only ever points down; `scripts/imports.py` checks):
//! `render` → `platform` → `videos` → `sessions` → `ops` → `context` → `api` → `cli` → this
//! file.

pub mod api;
pub mod cli;
pub mod context;
pub mod ops;
pub mod platform;
pub mod render;
pub mod sessions;
pub mod videos;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};

pub use context::{Context, StartError};
use ops::health::{RegisterCheck, StaticCheck};
use platform::config::{Config, Environment};
use platform::error;
use render::pipeline::{Generator, GeneratorOptions};
use videos::device::OnDemand;
use videos::dispatcher::{Drain, HandBack, JobDispatcher, Worker};

/// How long handed-back jobs get to stop and record themselves (they stop within a frame).
const HAND_BACK_WAIT: Duration = Duration::from_secs(15);
/// How long the final webhook round may take.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<Context>,
}

/// What a process does (SPEC §8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `reelgen serve`: the API, with the embedded worker unless `EMBEDDED_WORKER=false`.
    Serve,
    /// `reelgen worker`: renders queued videos; serves only the probes and `/metrics`.
    Worker,
}

impl Application {
    /// Context, worker, server (`serve`'s role). Needs the actix runtime.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_as(config, Role::Serve).await
    }

    /// Context, worker, server for `role`. A worker's configuration must name a cluster
    /// (PostgreSQL and Redis).
    pub async fn build_as(config: Config, role: Role) -> Result<Self, StartError> {
        if role == Role::Worker {
            config
                .require_cluster()
                .map_err(|e| StartError::Other(format!("configuration error: {e}")))?;
        }
        let ctx = web::Data::new(Context::start(config).await?);
        if (role == Role::Worker || ctx.config.embedded_worker)
            && let Some(worker) = start_worker(&ctx).await
        {
            let _ = ctx.worker.set(worker);
        }
        let (server, port) = serve(&ctx, role)?;
        tracing::info!(port, ?role, auth = ?ctx.config.auth_mode, db = if ctx.config.is_sqlite() { "sqlite" } else { "postgres" }, redis = ctx.redis.is_some(), "reelgen listening");
        Ok(Self {
            port,
            server,
            state: ctx,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared context (tests and benchmarks read metrics and actors through it).
    pub fn state(&self) -> web::Data<Context> {
        self.state.clone()
    }

    /// Serves until SIGTERM/SIGINT, then shuts down gracefully (see [`shut_down`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = actix_web::rt::spawn(self.server);
        tokio::select! {
            res = &mut server => return res.map_err(std::io::Error::other)?,
            () = platform::shutdown::signal() => {}
        }
        tokio::select! {
            () = shut_down(&self.state, handle) => {}
            // A second SIGTERM/SIGINT: stop now (renders left running are recovered at the
            // next start, as after a crash).
            () = platform::shutdown::signal() => {
                tracing::warn!("second signal: stopping without waiting for renders");
                return Err(std::io::Error::other("stopped by a second signal during shutdown"));
            }
        }
        server.await.map_err(std::io::Error::other)?
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }
}

/// The actix-web server on `HOST:PORT`, every response through the edge (a worker's: the
/// probes and `/metrics`).
fn serve(ctx: &web::Data<Context>, role: Role) -> Result<(Server, u16), StartError> {
    let config = &ctx.config;
    let addr = format!("{}:{}", config.host, config.port);
    let listener = TcpListener::bind(&addr).map_err(|source| StartError::Bind {
        addr: addr.clone(),
        source,
    })?;
    let port = listener
        .local_addr()
        .map_err(|source| StartError::Bind { addr, source })?
        .port();
    let test_hooks = config.environment == Environment::Test;
    let static_dir = config.static_dir.clone();
    let app_state = ctx.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_state.clone())
            .app_data(web::PathConfig::default().error_handler(error::extractors::path))
            .wrap(api::edge::Edge::new(&app_state))
            .configure(|cfg| match role {
                Role::Serve => api::configure(cfg, test_hooks, &static_dir),
                Role::Worker => api::configure_worker(cfg),
            })
            .default_service(web::to(api::not_found))
    })
    .workers(config.workers)
    .backlog(4096)
    .max_connections(config.max_concurrent_requests.max(1024))
    .shutdown_timeout(10)
    // SIGTERM/SIGINT are ours: see `run_until_stopped`.
    .disable_signals()
    .listen(listener)
    .map_err(|e| StartError::Other(e.to_string()))?
    .run();
    Ok((server, port))
}

/// Opens the GPU and probes the encoder once (registering both as readiness checks), then
/// starts the job dispatcher. The device stays open only while jobs use it: it closes after
/// `DEVICE_IDLE_RELEASE` without one and opens again with the next ([`OnDemand`]). Without a
/// device or encoder the server still serves; videos wait.
async fn start_worker(ctx: &Context) -> Option<actix::Addr<JobDispatcher>> {
    let config = &ctx.config;
    let cat = ctx.catalog.clone();
    let stats = Arc::new(render::gpu::scheduler::SchedulerStats::default());
    let options = GeneratorOptions {
        gpu_memory_fraction: config.gpu_memory_fraction,
        model_cache_size: config.model_cache_size,
        batch_size_auto_tune: config.batch_size_auto_tune,
        batch_size: config.optimization_level.batch_size(),
        busy_ns: ctx.perf.analytics.gpu_busy_counter(),
        stats: stats.clone(),
        color_path: None,
        lowered: true,
        speech_server: config.speech_server.clone(),
        whole_feature_boxes: false,
    };
    let device = Arc::new(OnDemand::new(
        move || Generator::with_options(cat.clone(), options.clone()),
        config.device_idle_release,
    ));
    let first = device.clone();
    let opened = tokio::task::spawn_blocking(move || {
        first.acquire().map(|g| {
            let encoder = g.encoder();
            (
                g.gpu().describe(),
                format!(
                    "{} ({}), audio {}, I420 by {}",
                    encoder.element,
                    if encoder.hardware {
                        "hardware"
                    } else {
                        "software"
                    },
                    encoder.audio,
                    g.color_path().as_str()
                ),
            )
        })
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|r| r.map_err(|e| e.to_string()));
    let (gpu, encoder) = match &opened {
        Ok((gpu, encoder)) => (Ok(gpu.clone()), Ok(encoder.clone())),
        Err(e) => (Err(e.clone()), Err(e.clone())),
    };
    for (name, result) in [("gpu", gpu), ("encoder", encoder)] {
        let _ = ctx
            .actors
            .health_checker()
            .send(RegisterCheck(Arc::new(StaticCheck { name, result })))
            .await;
    }
    match opened {
        Ok((gpu, encoder)) => {
            tracing::info!(device = %gpu, encoder = %encoder, "worker ready");
            ctx.perf.analytics.set_scheduler(stats);
            let worker = Arc::new(Worker {
                device,
                blobs: ctx.blobs.clone(),
                metrics: ctx.metrics.clone(),
                max_jobs: config.max_concurrent_jobs,
                hold: (config.environment == Environment::Test)
                    .then(|| config.data_dir.join("hold-renders")),
            });
            let lifecycle = ctx.lifecycle.clone();
            Some(actix::Supervisor::start(move |_| {
                JobDispatcher::new(lifecycle.clone(), worker.clone())
            }))
        }
        Err(e) => {
            tracing::error!(error = %e, "no worker: videos stay queued until a device and encoder are available");
            None
        }
    }
}

/// Graceful shutdown of `serve`, in this order:
///
/// 1. Stop accepting connections; requests in flight finish (actix's graceful stop).
/// 2. Every WebSocket session sees the shutdown signal fire and closes with 1001; every live
///    avatar session closes (`closed`, reason `shutting_down`).
/// 3. The embedded worker claims nothing more; running renders go on for `SHUTDOWN_GRACE`,
///    then whatever still runs is stopped within a frame and handed back to the queue
///    (it finishes after the restart, its attempt not counted).
/// 4. Webhook deliveries that are due are sent once more (bounded); the rest stay in
///    their rows for the next start.
/// 5. The server's future resolves and `reelgen serve` exits 0.
async fn shut_down(ctx: &Context, server: ServerHandle) {
    let stopped = server.stop(true);
    ctx.sessions.close_all("shutting_down");
    ctx.shutdown.trigger();
    if let Some(dispatcher) = ctx.worker.get()
        && let Ok(mut running) = dispatcher.send(Drain).await
    {
        let grace = ctx.config.shutdown_grace;
        let timed_out = tokio::time::timeout(grace, running.wait_for(|n| *n == 0))
            .await
            .is_err();
        if timed_out {
            let n = dispatcher.send(HandBack).await.unwrap_or(0);
            tracing::info!(
                jobs = n,
                grace_s = grace.as_secs_f64(),
                "grace over: handing running renders back to the queue"
            );
            if tokio::time::timeout(HAND_BACK_WAIT, running.wait_for(|n| *n == 0))
                .await
                .is_err()
            {
                tracing::warn!("a render did not stop in time; it is recovered at the next start");
            }
        }
    }
    ctx.webhooks.flush(WEBHOOK_FLUSH).await;
    stopped.await;
    tracing::info!("stopped");
}
