//! HTTP request measurements: each request is recorded once, by the worker thread that
//! answered it, into that worker's own [`Shard`], and merged only when somebody reads —
//! the Prometheus families `http_requests_total`, `http_request_duration_seconds` and
//! `http_requests_in_flight` ([`RequestMetrics`], at each scrape) and the analytics windows
//! (`Analytics::routes`, `Analytics::requests`, the 429/503 counts).
//!
//! Before, every request updated a Prometheus counter and histogram (two label lookups under
//! the vectors' locks) and the shared analytics table under one process-wide mutex: three
//! records of one fact, and the HTTP workers taking turns on the same locks and cache lines.
//! Now the only lock a request takes is its worker's shard, which no other thread touches
//! except a reader merging it. The edge takes a shard per worker ([`RequestLog::shard`]);
//! anything else records through [`RequestLog::record`] (a shard of its own).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};

use super::window::{Series, Summary};

/// Upper bounds (seconds) of `http_request_duration_seconds`.
pub const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Everything measured about one (method, route pattern).
struct RouteStats {
    /// Responses by status, since start.
    statuses: Vec<(u16, u64)>,
    /// Non-cumulative counts per [`LATENCY_BUCKETS`] bound (the last: above every bound).
    buckets: [u64; LATENCY_BUCKETS.len() + 1],
    sum_s: f64,
    count: u64,
    /// The rolling windows the performance API and the alert rules read.
    series: Series,
}

impl RouteStats {
    fn new(epoch: Instant) -> Self {
        Self {
            statuses: Vec::with_capacity(2),
            buckets: [0; LATENCY_BUCKETS.len() + 1],
            sum_s: 0.0,
            count: 0,
            series: Series::new(epoch),
        }
    }

    fn record(&mut self, now: Instant, status: u16, took: Duration) {
        match self.statuses.iter_mut().find(|(s, _)| *s == status) {
            Some((_, n)) => *n += 1,
            None => self.statuses.push((status, 1)),
        }
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&bound| secs <= bound)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.buckets[bucket] += 1;
        self.sum_s += secs;
        self.count += 1;
        self.series.record(now, took, status >= 500);
    }

    /// Adds another shard's stats of the same (method, route).
    fn add(&mut self, other: &RouteStats) {
        for &(status, n) in &other.statuses {
            match self.statuses.iter_mut().find(|(s, _)| *s == status) {
                Some((_, mine)) => *mine += n,
                None => self.statuses.push((status, n)),
            }
        }
        for (mine, theirs) in self.buckets.iter_mut().zip(other.buckets) {
            *mine += theirs;
        }
        self.sum_s += other.sum_s;
        self.count += other.count;
        self.series.merge_from(&other.series);
    }
}

/// One worker's measurements: method → route pattern → stats.
pub struct Shard {
    epoch: Instant,
    routes: foldhash::HashMap<&'static str, foldhash::HashMap<Box<str>, RouteStats>>,
}

impl Shard {
    fn record(
        &mut self,
        now: Instant,
        method: &'static str,
        route: &str,
        status: u16,
        took: Duration,
    ) {
        let by_route = self.routes.entry(method).or_default();
        match by_route.get_mut(route) {
            Some(stats) => stats.record(now, status, took),
            None => {
                let mut stats = RouteStats::new(self.epoch);
                stats.record(now, status, took);
                by_route.insert(route.into(), stats);
            }
        }
    }
}

/// A worker's handle on its shard.
#[derive(Clone)]
pub struct ShardHandle(Arc<Mutex<Shard>>);

impl ShardHandle {
    /// One answered request: `route` is the matched pattern (bounded cardinality).
    pub fn record(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        self.0
            .lock()
            .record(Instant::now(), method, route, status, took);
    }

    /// One answered request that began at `started` (one clock read for both its duration
    /// and its time); how long it took.
    pub fn record_since(
        &self,
        method: &'static str,
        route: &str,
        status: u16,
        started: Instant,
    ) -> Duration {
        let now = Instant::now();
        let took = now.saturating_duration_since(started);
        self.0.lock().record(now, method, route, status, took);
        took
    }
}

/// Every shard of one process, and the requests in flight.
pub struct RequestLog {
    epoch: Instant,
    shards: Mutex<Vec<ShardHandle>>,
    /// For recorders that are not an HTTP worker (tests, tools).
    common: ShardHandle,
    in_flight: AtomicUsize,
}

impl RequestLog {
    pub fn new(epoch: Instant) -> Self {
        let common = ShardHandle(Arc::new(Mutex::new(Shard {
            epoch,
            routes: Default::default(),
        })));
        Self {
            epoch,
            shards: Mutex::new(vec![common.clone()]),
            common,
            in_flight: AtomicUsize::new(0),
        }
    }

    /// A new shard for one HTTP worker (merged into every reading from now on).
    pub fn shard(&self) -> ShardHandle {
        let shard = ShardHandle(Arc::new(Mutex::new(Shard {
            epoch: self.epoch,
            routes: Default::default(),
        })));
        self.shards.lock().push(shard.clone());
        shard
    }

    /// Records one request from a thread without a shard of its own.
    pub fn record(&self, method: &'static str, route: &str, status: u16, took: Duration) {
        self.common.record(method, route, status, took);
    }

    /// A request starts: the number now in flight (this one included) and the guard that
    /// counts it out when dropped.
    pub fn begin(&self) -> (usize, InFlightGuard<'_>) {
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        (n, InFlightGuard(&self.in_flight))
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Calls `f` with each (method, route) and its stats, merged over the shards.
    fn merged<T>(&self, f: impl FnOnce(&HashMap<(&'static str, Box<str>), RouteStats>) -> T) -> T {
        let mut merged: HashMap<(&'static str, Box<str>), RouteStats> = HashMap::new();
        let shards = self.shards.lock().clone();
        for shard in shards {
            let shard = shard.0.lock();
            for (method, by_route) in &shard.routes {
                for (route, stats) in by_route {
                    merged
                        .entry((*method, route.clone()))
                        .or_insert_with(|| RouteStats::new(self.epoch))
                        .add(stats);
                }
            }
        }
        f(&merged)
    }

    /// Each (method, route)'s summary over the last `secs` seconds, busiest first.
    pub fn routes(&self, secs: u64) -> Vec<(&'static str, String, Summary)> {
        let now = Instant::now();
        let mut out: Vec<_> = self.merged(|m| {
            m.iter()
                .map(|((method, route), stats)| {
                    (*method, route.to_string(), stats.series.summary(now, secs))
                })
                .filter(|(_, _, s)| s.count > 0)
                .collect()
        });
        out.sort_by_key(|(_, _, s)| std::cmp::Reverse(s.count));
        out
    }

    /// All requests on routes `keep` accepts, together, over the last `secs` seconds.
    pub fn overall(&self, secs: u64, keep: impl Fn(&str) -> bool) -> Summary {
        let now = Instant::now();
        self.merged(|m| {
            let mut all = Series::new(self.epoch);
            let mut any = false;
            for ((_, route), stats) in m {
                if keep(route) {
                    all.merge_from(&stats.series);
                    any = true;
                }
            }
            if any {
                all.summary(now, secs)
            } else {
                Summary::default()
            }
        })
    }

    /// Responses with `status` since start, all routes.
    pub fn with_status(&self, status: u16) -> u64 {
        self.merged(|m| {
            m.values()
                .flat_map(|s| &s.statuses)
                .filter(|(s, _)| *s == status)
                .map(|(_, n)| n)
                .sum()
        })
    }
}

/// Counts a request out of [`RequestLog::begin`]'s total when dropped.
pub struct InFlightGuard<'a>(&'a AtomicUsize);

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The request families in the Prometheus registry, built from the shards at each scrape.
pub struct RequestMetrics {
    log: Arc<RequestLog>,
    descs: [Desc; 3],
}

const TOTAL: (&str, &str) = (
    "http_requests_total",
    "HTTP requests by method, route pattern and status",
);
const DURATION: (&str, &str) = (
    "http_request_duration_seconds",
    "HTTP request latency by route pattern",
);
const IN_FLIGHT: (&str, &str) = ("http_requests_in_flight", "HTTP requests being served");

impl RequestMetrics {
    pub fn new(log: Arc<RequestLog>) -> Result<Self, prometheus::Error> {
        let desc = |(name, help): (&str, &str), labels: &[&str]| {
            Desc::new(
                name.into(),
                help.into(),
                labels.iter().map(|l| l.to_string()).collect(),
                HashMap::new(),
            )
        };
        Ok(Self {
            log,
            descs: [
                desc(TOTAL, &["method", "route", "status"])?,
                desc(DURATION, &["method", "route"])?,
                desc(IN_FLIGHT, &[])?,
            ],
        })
    }
}

fn family(
    (name, help): (&str, &str),
    kind: MetricType,
    metrics: Vec<proto::Metric>,
) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.into());
    f.set_help(help.into());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

fn labels(pairs: &[(&str, &str)]) -> Vec<proto::LabelPair> {
    pairs
        .iter()
        .map(|(k, v)| {
            let mut l = proto::LabelPair::default();
            l.set_name((*k).into());
            l.set_value((*v).into());
            l
        })
        .collect()
}

impl Collector for RequestMetrics {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let (totals, durations) = self.log.merged(|m| {
            let mut totals = Vec::new();
            let mut durations = Vec::new();
            for ((method, route), s) in m {
                for (status, n) in &s.statuses {
                    let mut c = proto::Counter::default();
                    c.set_value(*n as f64);
                    let mut metric = proto::Metric::from_label(labels(&[
                        ("method", method),
                        ("route", route),
                        ("status", &status.to_string()),
                    ]));
                    metric.set_counter(c);
                    totals.push(metric);
                }
                let mut h = proto::Histogram::default();
                let mut cumulative = 0;
                h.set_bucket(
                    LATENCY_BUCKETS
                        .iter()
                        .zip(s.buckets)
                        .map(|(bound, n)| {
                            cumulative += n;
                            let mut b = proto::Bucket::default();
                            b.set_upper_bound(*bound);
                            b.set_cumulative_count(cumulative);
                            b
                        })
                        .collect(),
                );
                h.set_sample_count(s.count);
                h.set_sample_sum(s.sum_s);
                let mut metric =
                    proto::Metric::from_label(labels(&[("method", method), ("route", route)]));
                metric.set_histogram(h);
                durations.push(metric);
            }
            (totals, durations)
        });
        let mut gauge = proto::Gauge::default();
        gauge.set_value(self.log.in_flight() as f64);
        vec![
            family(TOTAL, MetricType::COUNTER, totals),
            family(DURATION, MetricType::HISTOGRAM, durations),
            family(
                IN_FLIGHT,
                MetricType::GAUGE,
                vec![proto::Metric::from_gauge(gauge)],
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_merge_into_one_count_per_route_and_status_and_one_histogram_per_route() {
        let log = Arc::new(RequestLog::new(Instant::now()));
        let (a, b) = (log.shard(), log.shard());
        a.record("GET", "/api/v1/videos", 200, Duration::from_micros(300));
        b.record("GET", "/api/v1/videos", 200, Duration::from_millis(3));
        b.record("GET", "/api/v1/videos", 429, Duration::from_micros(100));
        log.record("POST", "/api/v1/videos", 202, Duration::from_secs(20));
        let registry = prometheus::Registry::new();
        registry
            .register(Box::new(RequestMetrics::new(log.clone()).expect("descs")))
            .expect("register");
        let mut text = Vec::new();
        prometheus::Encoder::encode(
            &prometheus::TextEncoder::new(),
            &registry.gather(),
            &mut text,
        )
        .expect("encode");
        let text = String::from_utf8(text).expect("utf-8");
        for line in [
            r#"http_requests_total{method="GET",route="/api/v1/videos",status="200"} 2"#,
            r#"http_requests_total{method="GET",route="/api/v1/videos",status="429"} 1"#,
            r#"http_requests_total{method="POST",route="/api/v1/videos",status="202"} 1"#,
            r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/videos",le="0.0005"} 2"#,
            r#"http_request_duration_seconds_bucket{method="GET",route="/api/v1/videos",le="0.005"} 3"#,
            r#"http_request_duration_seconds_bucket{method="POST",route="/api/v1/videos",le="10"} 0"#,
            r#"http_request_duration_seconds_bucket{method="POST",route="/api/v1/videos",le="+Inf"} 1"#,
            r#"http_request_duration_seconds_count{method="GET",route="/api/v1/videos"} 3"#,
            "http_requests_in_flight 0",
        ] {
            assert!(text.contains(line), "{line} missing from\n{text}");
        }
        let (n, guard) = log.begin();
        assert_eq!((n, log.in_flight()), (1, 1));
        drop(guard);
        assert_eq!(log.in_flight(), 0);
        assert_eq!(log.with_status(429), 1);
        let routes = log.routes(60);
        assert_eq!(routes.len(), 2);
        assert_eq!((routes[0].0, routes[0].2.count), ("GET", 3));
        assert_eq!(log.overall(60, |_| true).count, 4);
    }
}
