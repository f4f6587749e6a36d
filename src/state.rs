//! The state every handler shares (`web::Data<AppState>`): configuration, database, cache,
//! rate-limit table, actors, catalog and metrics. Cloning is cheap (handles and `Arc`s).

use std::sync::Arc;

use bytes::Bytes;

use crate::actors::Actors;
use crate::actors::cache_manager::{CacheHandle, Cached};
use crate::actors::rate_limiter::GcraTable;
use crate::actors::resource_monitor::LatestSample;
use crate::assets::Catalog;
use crate::auth::Authenticator;
use crate::config::Config;
use crate::http::InFlight;
use crate::store::db::Db;
use crate::store::files::Files;
use crate::telemetry::Metrics;

pub struct AppState {
    pub config: Config,
    pub db: Db,
    pub cache: CacheHandle,
    pub limiter: Arc<GcraTable>,
    pub actors: Actors,
    pub auth: Authenticator,
    pub catalog: Arc<Catalog>,
    pub files: Files,
    pub metrics: Arc<Metrics>,
    pub latest_sample: LatestSample,
    pub in_flight: InFlight,
    /// Pre-rendered catalog listings (they never change while the process runs).
    pub listings: Listings,
    /// The fixed body `reelgen bench http` uses as its ceiling route.
    pub bench_body: Option<Bytes>,
    /// The embedded worker, when it runs.
    pub dispatcher: Option<actix::Addr<crate::actors::job_dispatcher::JobDispatcher>>,
    /// Per-video events for the WebSocket sessions.
    pub hub: crate::events::Hub,
    /// Performance analytics, the live view and the alert stream.
    pub perf: crate::analytics::actor::AnalyticsHub,
    pub analytics_actor: actix::Addr<crate::analytics::actor::AnalyticsActor>,
    /// Sends webhook deliveries (the sender actor's rounds and the shutdown flush).
    pub webhooks: crate::webhooks::Deliverer,
    /// Fires when the process starts to stop (WebSocket sessions close with 1001).
    pub shutdown: crate::shutdown::Shutdown,
}

pub struct Listings {
    pub avatars: Arc<Cached>,
    pub voices: Arc<Cached>,
    pub backgrounds: Arc<Cached>,
}
