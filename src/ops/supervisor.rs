//! The subsystem actors and their supervisor.
//!
//! Each actor runs under an actix [`Supervisor`] (which restarts it when it stops itself).
//! A panic inside a handler ends the actor's task instead, which `Supervisor` cannot see, so
//! [`Actors::watch`] also polls every address once a second and starts a fresh actor for any
//! that has disconnected, counting the restart in `reelgen_actor_restarts_total{actor}`.
//! Everyone reaches the actors through [`Actors`], which always hands out the live address.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use parking_lot::RwLock;

use super::health::{HealthCheck, HealthChecker};
use super::resources::{LatestSample, ResourceMonitor};
use crate::platform::cache::{CacheHandle, CacheManager};
use crate::platform::limiter::{GcraTable, RateLimiter};
use crate::platform::task::Task;
use crate::platform::telemetry::Metrics;

/// Everything needed to (re)create the actors.
#[derive(Clone)]
pub struct ActorSeeds {
    pub limiter: Arc<GcraTable>,
    pub cache: CacheHandle,
    pub latest_sample: LatestSample,
    pub checks: Vec<Arc<dyn HealthCheck>>,
    pub metrics_interval: Duration,
    pub health_interval: Duration,
    pub metrics: Arc<Metrics>,
}

struct Slots {
    rate_limiter: Addr<RateLimiter>,
    cache_manager: Addr<CacheManager>,
    resource_monitor: Addr<ResourceMonitor>,
    health_checker: Addr<HealthChecker>,
}

/// Live addresses of the subsystem actors.
#[derive(Clone)]
pub struct Actors {
    slots: Arc<RwLock<Slots>>,
    seeds: ActorSeeds,
}

fn start_rate_limiter(s: &ActorSeeds) -> Addr<RateLimiter> {
    let table = s.limiter.clone();
    Supervisor::start(move |_| RateLimiter::new(table))
}

fn start_cache_manager(s: &ActorSeeds) -> Addr<CacheManager> {
    let cache = s.cache.clone();
    Supervisor::start(move |_| CacheManager::new(cache))
}

fn start_resource_monitor(s: &ActorSeeds) -> Addr<ResourceMonitor> {
    let (interval, latest, metrics) = (
        s.metrics_interval,
        s.latest_sample.clone(),
        s.metrics.clone(),
    );
    Supervisor::start(move |_| ResourceMonitor::new(interval, latest, metrics))
}

fn start_health_checker(s: &ActorSeeds) -> Addr<HealthChecker> {
    let (checks, interval, metrics) = (s.checks.clone(), s.health_interval, s.metrics.clone());
    Supervisor::start(move |_| HealthChecker::new(checks, interval, metrics))
}

impl Actors {
    /// Starts every actor on the current arbiter. Needs the actix runtime.
    pub fn start(seeds: ActorSeeds) -> Self {
        let slots = Slots {
            rate_limiter: start_rate_limiter(&seeds),
            cache_manager: start_cache_manager(&seeds),
            resource_monitor: start_resource_monitor(&seeds),
            health_checker: start_health_checker(&seeds),
        };
        Self {
            slots: Arc::new(RwLock::new(slots)),
            seeds,
        }
    }

    pub fn rate_limiter(&self) -> Addr<RateLimiter> {
        self.slots.read().rate_limiter.clone()
    }

    pub fn cache_manager(&self) -> Addr<CacheManager> {
        self.slots.read().cache_manager.clone()
    }

    pub fn resource_monitor(&self) -> Addr<ResourceMonitor> {
        self.slots.read().resource_monitor.clone()
    }

    pub fn health_checker(&self) -> Addr<HealthChecker> {
        self.slots.read().health_checker.clone()
    }

    /// Restarts any actor whose task has died; returns the names restarted.
    pub fn revive(&self) -> Vec<&'static str> {
        let mut restarted = Vec::new();
        let mut slots = self.slots.write();
        if !slots.rate_limiter.connected() {
            slots.rate_limiter = start_rate_limiter(&self.seeds);
            restarted.push("rate_limiter");
        }
        if !slots.cache_manager.connected() {
            slots.cache_manager = start_cache_manager(&self.seeds);
            restarted.push("cache_manager");
        }
        if !slots.resource_monitor.connected() {
            slots.resource_monitor = start_resource_monitor(&self.seeds);
            restarted.push("resource_monitor");
        }
        if !slots.health_checker.connected() {
            slots.health_checker = start_health_checker(&self.seeds);
            restarted.push("health_checker");
        }
        drop(slots);
        for name in &restarted {
            tracing::error!(actor = name, "actor died; restarted by the supervisor");
            self.seeds
                .metrics
                .actor_restarts_total
                .with_label_values(&[name])
                .inc();
        }
        restarted
    }

    /// Polls the actors every `every` and revives dead ones, on the current arbiter.
    pub fn watch(&self, every: Duration) -> Task {
        let me = self.clone();
        Task::spawn("actor watchdog", async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                me.revive();
            }
        })
    }
}

/// Test hook (served only when `ENVIRONMENT=test`): makes an actor panic inside a handler,
/// to prove the supervisor brings it back.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Crash;

macro_rules! crashable {
    ($($actor:ty),*) => {$(
        impl Handler<Crash> for $actor {
            type Result = ();
            #[allow(clippy::panic)]
            fn handle(&mut self, _: Crash, _: &mut Self::Context) {
                panic!("crash requested for {}", stringify!($actor));
            }
        }
    )*};
}

crashable!(RateLimiter, CacheManager, ResourceMonitor, HealthChecker);

impl Actors {
    /// Sends [`Crash`] to the named actor; `false` for an unknown name.
    pub fn crash(&self, name: &str) -> bool {
        match name {
            "rate_limiter" => self.rate_limiter().do_send(Crash),
            "cache_manager" => self.cache_manager().do_send(Crash),
            "resource_monitor" => self.resource_monitor().do_send(Crash),
            "health_checker" => self.health_checker().do_send(Crash),
            _ => return false,
        }
        true
    }
}
