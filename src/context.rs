//! The one value every handler, actor and command is handed: [`Context`], built once by
//! [`Context::start`] from a [`Config`] — database (migrated), file storage, the video
//! lifecycle and its event hub, response cache, rate limiter, metrics and analytics, catalog,
//! the subsystem actors, webhook delivery, the live sessions and the shutdown signal. Handlers take
//! `web::Data<Context>`; everything in it is a handle or an `Arc`, so it is cheap to share.
//!
//! It sits above the capabilities (`platform`, `render`, `videos`, `ops`) and below the HTTP
//! surface (`api`) and the commands (`cli`): it may call down, never up. The embedded worker
//! is not part of it; `Application::build` starts it from the context and records its
//! address in [`Context::worker`].

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::RwLock;

use crate::ops::analytics::{AnalyticsActor, AnalyticsHub};
use crate::ops::health::{
    CacheCheck, DatabaseCheck, DiskCheck, HealthCheck, QueueCheck, RedisCheck, RunNow,
};
use crate::ops::resources::LatestSample;
use crate::ops::supervisor::{ActorSeeds, Actors};
use crate::platform::analytics::Analytics;
use crate::platform::auth::Authenticator;
use crate::platform::cache::CacheHandle;
use crate::platform::config::Config;
use crate::platform::db::{self, Db, StoreError};
use crate::platform::limiter::{GcraTable, Limiter};
use crate::platform::redis::Redis;
use crate::platform::shutdown::Shutdown;
use crate::platform::storage::BlobStore;
use crate::platform::task::Task;
use crate::platform::telemetry::{Metrics, MetricsError, Recorder};
use crate::render::assets::{Catalog, CatalogError};
use crate::render::pipeline::{Generator, GeneratorOptions};
use crate::videos::device::OnDemand;
use crate::videos::dispatcher::JobDispatcher;
use crate::videos::events::EventBus;
use crate::videos::lifecycle::{self, Lifecycle, Signals};
use crate::videos::queue::JobQueue;
use crate::videos::store;
use crate::videos::webhooks::{self, Deliverer, SenderConfig};

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::platform::storage::StorageError),
    #[error("{0}")]
    Other(String),
}

/// Free space below which the disk check fails.
const MIN_FREE_DISK: u64 = 256 * 1024 * 1024;

pub struct Context {
    pub config: Config,
    pub db: Db,
    /// The cluster's Redis, when `REDIS_URL` is set (see `platform::redis`).
    pub redis: Option<Redis>,
    /// The videos' files (the blob store seam).
    pub blobs: BlobStore,
    pub catalog: Arc<Catalog>,
    /// The only way to change a video's state (see `videos::lifecycle`).
    pub lifecycle: Lifecycle,
    /// Per-video events for the WebSocket sessions (published by the lifecycle).
    pub events: EventBus,
    pub cache: CacheHandle,
    pub limiter: Limiter,
    pub auth: Authenticator,
    pub metrics: Arc<Metrics>,
    /// Records each measurement into Prometheus and the analytics windows at once.
    pub recorder: Recorder,
    pub actors: Actors,
    pub latest_sample: LatestSample,
    /// Performance analytics, the live view and the alert stream.
    pub perf: AnalyticsHub,
    pub analytics_actor: actix::Addr<AnalyticsActor>,
    /// Sends webhook deliveries (the sender actor's rounds and the shutdown flush).
    pub webhooks: Deliverer,
    /// Fires when the process starts to stop (WebSocket sessions close with 1001).
    pub shutdown: Shutdown,
    /// The loops that run for as long as the context lives (aborted when it drops): the
    /// idempotency janitor, the webhook sender, the actors' watchdog.
    pub tasks: Vec<Task>,
    /// The embedded worker, once it runs.
    pub worker: OnceLock<actix::Addr<JobDispatcher>>,
    /// A render device for avatar previews, opened on the first one and closed after
    /// `DEVICE_IDLE_RELEASE` without any (an API-only replica has no other).
    pub previews: Arc<OnDemand>,
    /// Live avatar sessions (SPEC §10), on a device of their own at normal priority.
    pub sessions: crate::sessions::Sessions,
}

impl Context {
    /// Connects and migrates the database, then starts the actors and background tasks.
    /// Needs the actix runtime.
    pub async fn start(config: Config) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new()?);
        let recorder = Recorder::new(metrics.clone(), Analytics::new())?;
        let mut db = db::connect(&config).await?;
        db::migrate(&db).await?;
        {
            let r = recorder.clone();
            db.set_metric_callback(move |info| {
                r.statement(info.statement.sql.as_str(), info.elapsed, info.failed);
            });
        }
        let catalog = Arc::new(match &config.speech_server {
            Some(server) => Catalog::embedded()?.with_http_voices(&server.voices, &server.model),
            None => Catalog::embedded()?,
        });
        let mut tasks = Vec::new();
        let redis = match &config.redis_url {
            Some(url) => Some(
                Redis::connect(url, metrics.redis_errors_total.clone())
                    .await
                    .map_err(StartError::Other)?,
            ),
            None => None,
        };
        let blobs = BlobStore::open(&config.storage, &config.data_dir)
            .await?
            .with_latency(metrics.storage_seconds.clone());

        let (size, ttl) = (config.memory_cache_size_mb, config.cache_ttl);
        let cache = match &redis {
            Some(r) => CacheHandle::clustered(size, ttl, metrics.clone(), r.clone()),
            None => CacheHandle::new(size, ttl, metrics.clone()),
        };
        let table = Arc::new(GcraTable::new(config.rate_limit_per_minute));
        let (events, signals, limiter) = match &redis {
            Some(r) => {
                let (events, event_tasks) = EventBus::cluster(r.clone());
                let (signals, signal_task) = Signals::cluster(r.clone());
                tasks.extend(event_tasks);
                tasks.push(signal_task);
                let limiter = Limiter::Shared {
                    redis: r.clone(),
                    local: table.clone(),
                    fallbacks: metrics.rate_limit_fallback_total.clone(),
                };
                (events, signals, limiter)
            }
            None => (
                EventBus::default(),
                Signals::default(),
                Limiter::Local(table.clone()),
            ),
        };
        let lifecycle = Lifecycle::new(lifecycle::Parts {
            db: db.clone(),
            queue: JobQueue::new(db.clone(), config.job_lease),
            cache: cache.clone(),
            events: events.clone(),
            blobs: blobs.clone(),
            recorder: recorder.clone(),
            signals,
        });
        let latest_sample: LatestSample = Arc::new(RwLock::new(None));
        let mut checks: Vec<Arc<dyn HealthCheck>> = vec![
            Arc::new(DatabaseCheck(db.clone())),
            Arc::new(QueueCheck {
                lifecycle: lifecycle.clone(),
                metrics: metrics.clone(),
            }),
            Arc::new(CacheCheck(cache.clone())),
            Arc::new(DiskCheck {
                dir: config.data_dir.clone(),
                min_free_bytes: MIN_FREE_DISK,
            }),
        ];
        if let Some(r) = &redis {
            checks.push(Arc::new(RedisCheck(r.clone())));
        }
        let actors = Actors::start(ActorSeeds {
            limiter: table.clone(),
            cache: cache.clone(),
            latest_sample: latest_sample.clone(),
            checks,
            metrics_interval: config.metrics_interval,
            health_interval: config
                .metrics_interval
                .clamp(Duration::from_millis(500), Duration::from_secs(10)),
            metrics: metrics.clone(),
        });
        let watchdog = actors.watch(Duration::from_secs(1));
        if let Err(e) = actors.health_checker().send(RunNow).await {
            tracing::warn!(error = %e, "initial health checks did not run");
        }
        let janitor = spawn_janitor(db.clone());
        let perf = AnalyticsHub::new(recorder.analytics().clone(), config.alert_rules.clone());
        let analytics_actor = {
            let seed = crate::ops::analytics::Seed {
                hub: perf.clone(),
                db: db.clone(),
                actors: actors.clone(),
                latest: latest_sample.clone(),
                metrics: metrics.clone(),
                data_dir: config.data_dir.clone(),
                memory_limit_mb: config.memory_limit_mb,
                clear_for: config.alert_clear_for,
            };
            actix::Supervisor::start(move |_| AnalyticsActor::new(seed.clone()))
        };
        let webhooks = Deliverer::new(
            db.clone(),
            SenderConfig {
                secret: config.webhook_secret.clone(),
                allow_private: config.webhook_allow_private,
                retry_base: config.webhook_retry_base,
            },
            recorder.clone(),
        );
        let sender = webhooks::spawn_sender(webhooks.clone());
        let auth = Authenticator::new(&config, db.clone());
        let previews = {
            let catalog = catalog.clone();
            Arc::new(OnDemand::new(
                move || {
                    Generator::with_options(
                        catalog.clone(),
                        GeneratorOptions {
                            model_cache_size: 2,
                            ..GeneratorOptions::default()
                        },
                    )
                },
                config.device_idle_release,
            ))
        };
        let sessions = {
            let catalog = catalog.clone();
            let options = GeneratorOptions {
                model_cache_size: 4,
                speech_server: config.speech_server.clone(),
                lowered: false,
                ..GeneratorOptions::default()
            };
            crate::sessions::Sessions::new(
                Arc::new(OnDemand::new(
                    move || Generator::with_options(catalog.clone(), options.clone()),
                    config.device_idle_release,
                )),
                crate::sessions::Limits {
                    max_sessions: config.max_sessions,
                    idle_timeout: config.session_idle_timeout,
                },
                metrics.clone(),
                crate::render::media::webrtc::IceServers(config.ice_servers.clone()),
            )
        };
        Ok(Self {
            config,
            db,
            redis,
            blobs,
            catalog,
            lifecycle,
            events,
            cache,
            limiter,
            auth,
            metrics,
            recorder,
            actors,
            latest_sample,
            perf,
            analytics_actor,
            webhooks,
            shutdown: Shutdown::default(),
            tasks: {
                tasks.extend([janitor, sender, watchdog]);
                tasks
            },
            worker: OnceLock::new(),
            previews,
            sessions,
        })
    }
}

/// Hourly removal of expired idempotency records.
fn spawn_janitor(db: Db) -> Task {
    Task::spawn("idempotency janitor", async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            match store::purge_idempotency(&db).await {
                Ok(n) if n > 0 => tracing::info!(purged = n, "expired idempotency records removed"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "idempotency purge failed"),
            }
        }
    })
}
