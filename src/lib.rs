//! reelgen: a self-hosted AI avatar video generation server.
//!
//! This crate holds everything; `main.rs` only parses the command line. [`Application::build`]
//! assembles the service from a [`config::Config`]: database (migrated before any traffic),
//! subsystem actors under their supervisor, and the actix-web server bound to its port
//! (port 0 picks a free one; [`Application::port`] tells which).

pub mod actors;
pub mod analytics;
pub mod api;
pub mod assets;
pub mod auth;
pub mod bench;
pub mod cli;
pub mod config;
pub mod domain;
pub mod error;
pub mod events;
pub mod generate;
pub mod generate_cmd;
pub mod gpu;
pub mod http;
pub mod media;
pub mod memory;
pub mod priority;
pub mod shutdown;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod webhooks;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{App, HttpServer, middleware, web};
use parking_lot::RwLock;

use actors::cache_manager::CacheHandle;
use actors::health_checker::{
    CacheCheck, DatabaseCheck, DiskCheck, HealthCheck, QueueCheck, RunNow,
};
use actors::rate_limiter::GcraTable;
use actors::{ActorSeeds, Actors};
use assets::Catalog;
use config::{Config, Environment};
use state::{AppState, Listings};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::db::StoreError),
    #[error(transparent)]
    Catalog(#[from] assets::CatalogError),
    #[error(transparent)]
    Metrics(#[from] telemetry::MetricsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

/// Free space below which the disk check fails.
const MIN_FREE_DISK: u64 = 256 * 1024 * 1024;

pub struct Application {
    port: u16,
    server: Server,
    state: web::Data<AppState>,
}

impl Application {
    /// Connects, migrates, starts the actors and binds the server. Needs the actix runtime.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        let metrics = Arc::new(telemetry::Metrics::new()?);
        let analytics = analytics::Analytics::new();
        let mut db = store::db::connect(&config).await?;
        store::db::migrate(&db).await?;
        {
            let (a, m) = (analytics.clone(), metrics.clone());
            db.set_metric_callback(move |info| {
                let sql = info.statement.sql.as_str();
                a.record_statement(sql, info.elapsed, info.failed);
                m.db_statement_duration_seconds
                    .with_label_values(&[analytics::statement_kind(sql)])
                    .observe(info.elapsed.as_secs_f64());
            });
        }
        let catalog = Arc::new(Catalog::embedded()?);
        let files = store::files::Files::new(&config.data_dir);
        std::fs::create_dir_all(files.root()).map_err(|e| {
            StartError::Other(format!("cannot create {}: {e}", files.root().display()))
        })?;

        let cache = CacheHandle::new(
            config.memory_cache_size_mb,
            config.cache_ttl,
            metrics.clone(),
        );
        let limiter = Arc::new(GcraTable::new(config.rate_limit_per_minute));
        let latest_sample = Arc::new(RwLock::new(None));
        let checks: Vec<Arc<dyn HealthCheck>> = vec![
            Arc::new(DatabaseCheck(db.clone())),
            Arc::new(QueueCheck {
                db: db.clone(),
                metrics: metrics.clone(),
            }),
            Arc::new(CacheCheck(cache.clone())),
            Arc::new(DiskCheck {
                dir: config.data_dir.clone(),
                min_free_bytes: MIN_FREE_DISK,
            }),
        ];
        let actors = Actors::start(ActorSeeds {
            limiter: limiter.clone(),
            cache: cache.clone(),
            latest_sample: latest_sample.clone(),
            checks,
            metrics_interval: config.metrics_interval,
            health_interval: config
                .metrics_interval
                .clamp(Duration::from_millis(500), Duration::from_secs(10)),
            metrics: metrics.clone(),
        });
        actors.watch(Duration::from_secs(1));
        if let Err(e) = actors.health_checker().send(RunNow).await {
            tracing::warn!(error = %e, "initial health checks did not run");
        }
        spawn_janitor(db.clone());
        let perf =
            analytics::actor::AnalyticsHub::new(analytics.clone(), config.alert_rules.clone());
        let analytics_actor = {
            let (hub, db, actors, latest, metrics) = (
                perf.clone(),
                db.clone(),
                actors.clone(),
                latest_sample.clone(),
                metrics.clone(),
            );
            let (data_dir, limit, clear_for) = (
                config.data_dir.clone(),
                config.memory_limit_mb,
                config.alert_clear_for,
            );
            actix::Supervisor::start(move |_| {
                analytics::actor::AnalyticsActor::new(
                    hub.clone(),
                    db.clone(),
                    actors.clone(),
                    latest.clone(),
                    metrics.clone(),
                    data_dir.clone(),
                    limit,
                    clear_for,
                )
            })
        };
        let webhooks = webhooks::Deliverer::new(
            db.clone(),
            webhooks::SenderConfig {
                secret: config.webhook_secret.clone(),
                allow_private: config.webhook_allow_private,
                retry_base: config.webhook_retry_base,
            },
            analytics.clone(),
            metrics.clone(),
        );
        {
            let deliverer = webhooks.clone();
            actix::Supervisor::start(move |_| webhooks::WebhookSender::new(deliverer.clone()));
        }
        let hub = events::Hub::default();
        let dispatcher = if config.embedded_worker {
            start_worker(
                &config, &db, &files, &cache, &metrics, &catalog, &actors, &hub, &analytics,
            )
            .await
        } else {
            None
        };

        let listings = Listings {
            avatars: http::to_cached(&api::catalog::CatalogList {
                data: catalog.avatars.clone(),
            })
            .map_err(|e| StartError::Other(e.to_string()))?,
            voices: http::to_cached(&api::catalog::CatalogList {
                data: catalog.voices.clone(),
            })
            .map_err(|e| StartError::Other(e.to_string()))?,
            backgrounds: http::to_cached(&api::catalog::CatalogList {
                data: catalog.backgrounds.clone(),
            })
            .map_err(|e| StartError::Other(e.to_string()))?,
        };
        let bench_body = config.bench_routes.then(bench::ceiling_body);

        let addr = format!("{}:{}", config.host, config.port);
        let listener = TcpListener::bind(&addr).map_err(|source| StartError::Bind {
            addr: addr.clone(),
            source,
        })?;
        let port = listener
            .local_addr()
            .map_err(|source| StartError::Bind { addr, source })?
            .port();

        let auth = auth::Authenticator::new(&config, db.clone());
        let state = web::Data::new(AppState {
            config: config.clone(),
            db,
            cache,
            limiter,
            actors,
            auth,
            catalog,
            files,
            metrics,
            latest_sample,
            in_flight: http::InFlight::default(),
            listings,
            bench_body,
            dispatcher,
            hub,
            perf,
            analytics_actor,
            webhooks,
            shutdown: shutdown::Shutdown::default(),
        });

        let test_hooks = config.environment == Environment::Test;
        let bench = config.bench_routes;
        let static_dir = config.static_dir.clone();
        let app_state = state.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .app_data(web::PathConfig::default().error_handler(error::extractors::path))
                .app_data(web::QueryConfig::default().error_handler(error::extractors::query))
                .app_data(web::JsonConfig::default().error_handler(error::extractors::json))
                .wrap(middleware::from_fn(http::edge))
                .wrap(middleware::Compress::default())
                .configure(|cfg| api::configure(cfg, test_hooks, bench, &static_dir))
                .default_service(web::to(api::not_found))
        })
        .workers(config.workers)
        .backlog(4096)
        .max_connections(config.max_concurrent_requests.max(1024))
        .shutdown_timeout(10)
        // SIGTERM/SIGINT are ours: see `run_until_stopped` and `shutdown`.
        .disable_signals()
        .listen(listener)
        .map_err(|e| StartError::Other(e.to_string()))?
        .run();
        tracing::info!(port, auth = ?config.auth_mode, db = if config.is_sqlite() { "sqlite" } else { "postgres" }, "reelgen listening");
        Ok(Self {
            port,
            server,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests and benchmarks read metrics and actors through it).
    pub fn state(&self) -> web::Data<AppState> {
        self.state.clone()
    }

    /// Serves until SIGTERM/SIGINT, then shuts down gracefully (see [`shutdown`]).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let mut server = actix_web::rt::spawn(self.server);
        tokio::select! {
            res = &mut server => return res.map_err(std::io::Error::other)?,
            () = shutdown::signal() => {}
        }
        tokio::select! {
            () = shutdown::run(&self.state, handle) => {}
            // A second SIGTERM/SIGINT: stop now (renders left running are recovered at the
            // next start, as after a crash).
            () = shutdown::signal() => {
                tracing::warn!("second signal: stopping without waiting for renders");
                return Err(std::io::Error::other("stopped by a second signal during shutdown"));
            }
        }
        server.await.map_err(std::io::Error::other)?
    }

    /// A handle to stop the server.
    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }
}

/// Opens the GPU and probes the encoder (registering both as readiness checks), then starts
/// the job dispatcher. Without a device or encoder the server still serves; videos wait.
#[allow(clippy::too_many_arguments)] // the pieces Application::build already holds
async fn start_worker(
    config: &Config,
    db: &store::db::Db,
    files: &store::files::Files,
    cache: &CacheHandle,
    metrics: &Arc<telemetry::Metrics>,
    catalog: &Arc<Catalog>,
    actors: &Actors,
    hub: &events::Hub,
    analytics: &analytics::Analytics,
) -> Option<actix::Addr<actors::job_dispatcher::JobDispatcher>> {
    use actors::health_checker::{RegisterCheck, StaticCheck};
    let cat = catalog.clone();
    let options = generate::GeneratorOptions {
        gpu_memory_fraction: config.gpu_memory_fraction,
        model_cache_size: config.model_cache_size,
        batch_size_auto_tune: config.batch_size_auto_tune,
        batch_size: config.optimization_level.batch_size(),
        busy_ns: analytics.gpu_busy_counter(),
        color_path: None,
    };
    let generator =
        tokio::task::spawn_blocking(move || generate::Generator::with_options(cat, options))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
    let (gpu, encoder) = match &generator {
        Ok(g) => (
            Ok(g.gpu().describe()),
            Ok(format!(
                "{} ({}), audio {}, RGBA->I420 by {}",
                g.encoder().element,
                if g.encoder().hardware {
                    "hardware"
                } else {
                    "software"
                },
                g.encoder().audio,
                g.color_path().as_str()
            )),
        ),
        Err(e) => (Err(e.clone()), Err(e.clone())),
    };
    for (name, result) in [("gpu", gpu), ("encoder", encoder)] {
        let _ = actors
            .health_checker()
            .send(RegisterCheck(Arc::new(StaticCheck { name, result })))
            .await;
    }
    match generator {
        Ok(g) => {
            tracing::info!(device = %g.gpu().describe(), encoder = g.encoder().element, "worker ready");
            let (db, files, cache, metrics, hub) = (
                db.clone(),
                files.clone(),
                cache.clone(),
                metrics.clone(),
                hub.clone(),
            );
            analytics.set_scheduler(g.scheduler().stats().clone());
            let g = Arc::new(g);
            let jobs = config.max_concurrent_jobs;
            let analytics = analytics.clone();
            let hold = (config.environment == Environment::Test)
                .then(|| config.data_dir.join("hold-renders"));
            Some(actix::Supervisor::start(move |_| {
                actors::job_dispatcher::JobDispatcher::new(
                    db,
                    g,
                    files,
                    cache,
                    metrics,
                    jobs,
                    hub.clone(),
                    analytics.clone(),
                    hold.clone(),
                )
            }))
        }
        Err(e) => {
            tracing::error!(error = %e, "no worker: videos stay queued until a device and encoder are available");
            None
        }
    }
}

/// Hourly removal of expired idempotency records.
fn spawn_janitor(db: store::db::Db) {
    actix::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match store::db::purge_idempotency(&db).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "expired idempotency records removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
            }
        }
    });
}
