//! Resource monitor: samples CPU and memory of this process and of the system every
//! `METRICS_INTERVAL`, publishes the latest [`ResourceSample`] in a shared slot (read without a
//! message by the metrics endpoint and others) and in Prometheus gauges, and answers
//! [`GetLatest`].

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use chrono::{DateTime, Utc};
use parking_lot::RwLock;
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System};

use crate::platform::telemetry::Metrics;

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ResourceSample {
    pub at: DateTime<Utc>,
    /// This process, in percent of one core (can exceed 100 on several cores).
    pub process_cpu_percent: f64,
    pub process_rss_bytes: u64,
    /// The whole system, in percent of all cores.
    pub system_cpu_percent: f64,
    pub system_memory_used_bytes: u64,
    pub system_memory_total_bytes: u64,
    pub memory_percent: f64,
}

pub type LatestSample = Arc<RwLock<Option<ResourceSample>>>;

pub struct ResourceMonitor {
    interval: Duration,
    system: Option<System>,
    pid: Option<Pid>,
    latest: LatestSample,
    metrics: Arc<Metrics>,
}

impl ResourceMonitor {
    pub fn new(interval: Duration, latest: LatestSample, metrics: Arc<Metrics>) -> Self {
        Self {
            interval,
            system: None,
            pid: sysinfo::get_current_pid().ok(),
            latest,
            metrics,
        }
    }

    fn sample(&mut self) {
        if self.system.is_none() {
            self.system = System::new().ok();
        }
        let Some(sys) = self.system.as_mut() else {
            return;
        };
        sys.refresh_memory();
        sys.refresh_cpu_usage();
        let (cpu, rss) = match self.pid {
            Some(pid) => {
                sys.refresh_processes_specifics(
                    ProcessesToUpdate::Some(&[pid]),
                    false,
                    ProcessRefreshKind::nothing().with_cpu().with_memory(),
                );
                sys.process(pid)
                    .map_or((0.0, 0), |p| (f64::from(p.cpu_usage()), p.memory()))
            }
            None => (0.0, 0),
        };
        let total = sys.total_memory();
        let used = sys.used_memory();
        let sample = ResourceSample {
            at: Utc::now(),
            process_cpu_percent: cpu,
            process_rss_bytes: rss,
            system_cpu_percent: f64::from(sys.global_cpu_usage()),
            system_memory_used_bytes: used,
            system_memory_total_bytes: total,
            memory_percent: if total == 0 {
                0.0
            } else {
                used as f64 * 100.0 / total as f64
            },
        };
        self.metrics
            .process_cpu_percent
            .set(sample.process_cpu_percent);
        self.metrics
            .system_cpu_percent
            .set(sample.system_cpu_percent);
        self.metrics
            .system_memory_used_bytes
            .set(i64::try_from(used).unwrap_or(i64::MAX));
        self.metrics
            .system_memory_total_bytes
            .set(i64::try_from(total).unwrap_or(i64::MAX));
        *self.latest.write() = Some(sample);
    }
}

impl Actor for ResourceMonitor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.sample();
        ctx.run_interval(self.interval, |act, _| act.sample());
    }
}

impl Supervised for ResourceMonitor {}

/// The most recent sample (`None` before the first).
#[derive(Message)]
#[rtype(result = "Option<ResourceSample>")]
pub struct GetLatest;

impl Handler<GetLatest> for ResourceMonitor {
    type Result = Option<ResourceSample>;
    fn handle(&mut self, _: GetLatest, _: &mut Self::Context) -> Self::Result {
        *self.latest.read()
    }
}

/// Takes a sample now and replies with it.
#[derive(Message)]
#[rtype(result = "Option<ResourceSample>")]
pub struct SampleNow;

impl Handler<SampleNow> for ResourceMonitor {
    type Result = Option<ResourceSample>;
    fn handle(&mut self, _: SampleNow, _: &mut Self::Context) -> Self::Result {
        self.sample();
        *self.latest.read()
    }
}
