//! Rate limiter: GCRA (generic cell rate algorithm) per API key, or per client IP in open mode.
//!
//! The state is a [`GcraTable`]: one theoretical arrival time (TAT) per key, in 64 lock-striped
//! shards. The [`RateLimiter`] actor owns it: it purges idle keys on a timer and answers
//! [`Check`] and [`GetStats`] through its mailbox. The HTTP hot path calls
//! [`GcraTable::check`] directly instead of sending `Check`: measured with
//! `reelgen bench ratelimit`, one mailbox round trip per request costs several times the check
//! itself and serialises every worker on one thread, while the striped table scales with the
//! workers. The actor still owns the table's lifecycle and statistics.
//!
//! GCRA with limit `L` per minute: emission interval `T = 60 s / L`, burst `L`. A request at
//! `now` is allowed when `max(tat, now) + T - now <= L·T`; then `tat = max(tat, now) + T`.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use parking_lot::Mutex;

const SHARDS: usize = 64;

/// The verdict for one request, with what the `RateLimit-*` headers report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Seconds until the full burst is available again.
    pub reset_s: u64,
    /// Seconds to wait before a retry can succeed (0 when allowed).
    pub retry_after_s: u64,
}

/// One shard: key → theoretical arrival time (ns since the table's origin).
type Shard = Mutex<HashMap<Box<str>, u64>>;

pub struct GcraTable {
    shards: Box<[Shard]>,
    hasher: RandomState,
    origin: Instant,
    limit: u32,
    interval_ns: u64,
    allowed: AtomicU64,
    rejected: AtomicU64,
}

impl GcraTable {
    pub fn new(limit_per_minute: u32) -> Self {
        let limit = limit_per_minute.max(1);
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
            origin: Instant::now(),
            limit,
            interval_ns: 60_000_000_000 / u64::from(limit),
            allowed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    pub fn check(&self, key: &str) -> Decision {
        self.check_at(key, self.now_ns())
    }

    /// [`check`](Self::check) at a given time (nanoseconds since the table's origin).
    pub fn check_at(&self, key: &str, now: u64) -> Decision {
        let burst_ns = self.interval_ns * u64::from(self.limit);
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = shard.lock();
        let tat = map.get(key).copied().unwrap_or(0).max(now);
        let new_tat = tat + self.interval_ns;
        let ahead = new_tat - now;
        if ahead > burst_ns {
            drop(map);
            self.rejected.fetch_add(1, Ordering::Relaxed);
            let wait = ahead - burst_ns;
            return Decision {
                allowed: false,
                limit: self.limit,
                remaining: 0,
                reset_s: (tat - now).div_ceil(1_000_000_000),
                retry_after_s: wait.div_ceil(1_000_000_000).max(1),
            };
        }
        match map.get_mut(key) {
            Some(slot) => *slot = new_tat,
            None => {
                map.insert(key.into(), new_tat);
            }
        }
        drop(map);
        self.allowed.fetch_add(1, Ordering::Relaxed);
        Decision {
            allowed: true,
            limit: self.limit,
            remaining: u32::try_from((burst_ns - ahead) / self.interval_ns).unwrap_or(u32::MAX),
            reset_s: ahead.div_ceil(1_000_000_000),
            retry_after_s: 0,
        }
    }

    /// Drops keys whose bucket is full again (their TAT is in the past); returns how many.
    pub fn purge(&self) -> usize {
        let now = self.now_ns();
        self.shards
            .iter()
            .map(|s| {
                let mut map = s.lock();
                let before = map.len();
                map.retain(|_, tat| *tat > now);
                before - map.len()
            })
            .sum()
    }

    pub fn stats(&self) -> RateLimitStats {
        RateLimitStats {
            keys: self.shards.iter().map(|s| s.lock().len()).sum(),
            allowed: self.allowed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            limit_per_minute: self.limit,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct RateLimitStats {
    pub keys: usize,
    pub allowed: u64,
    pub rejected: u64,
    pub limit_per_minute: u32,
}

/// The actor owning the table.
pub struct RateLimiter {
    table: Arc<GcraTable>,
    purge_every: Duration,
}

impl RateLimiter {
    pub fn new(table: Arc<GcraTable>) -> Self {
        Self {
            table,
            purge_every: Duration::from_secs(30),
        }
    }
}

impl Actor for RateLimiter {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(self.purge_every, |act, _| {
            let purged = act.table.purge();
            tracing::trace!(purged, "rate limiter purge");
        });
    }
}

impl Supervised for RateLimiter {}

/// Asks for a verdict on one request by `key` (mailbox path; the hot path uses the table).
#[derive(Message)]
#[rtype(result = "Decision")]
pub struct Check(pub String);

impl Handler<Check> for RateLimiter {
    type Result = MessageResult<Check>;
    fn handle(&mut self, msg: Check, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.table.check(&msg.0))
    }
}

/// Counters and number of tracked keys.
#[derive(Message)]
#[rtype(result = "RateLimitStats")]
pub struct GetStats;

impl Handler<GetStats> for RateLimiter {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.table.stats())
    }
}

/// Purges idle keys now; replies with how many were dropped.
#[derive(Message)]
#[rtype(result = "usize")]
pub struct Purge;

impl Handler<Purge> for RateLimiter {
    type Result = usize;
    fn handle(&mut self, _: Purge, _: &mut Self::Context) -> usize {
        self.table.purge()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEC: u64 = 1_000_000_000;

    #[test]
    fn allows_a_burst_of_the_limit_then_rejects_with_retry_after() {
        let t = GcraTable::new(60); // one per second, burst 60
        for i in 0..60 {
            let d = t.check_at("k", 0);
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 59 - i);
        }
        let d = t.check_at("k", 0);
        assert!(!d.allowed);
        assert_eq!(d.retry_after_s, 1);
        assert_eq!(d.reset_s, 60);
        // One interval later exactly one more is allowed.
        assert!(t.check_at("k", SEC).allowed);
        assert!(!t.check_at("k", SEC).allowed);
        // Other keys are independent.
        assert!(t.check_at("other", SEC).allowed);
        assert_eq!(t.stats().rejected, 2);
    }

    #[test]
    fn a_full_bucket_is_purged() {
        let t = GcraTable::new(600_000);
        t.check("a");
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(t.purge(), 1);
        assert_eq!(t.stats().keys, 0);
    }
}

/// Requests in flight, for admission control (the HTTP edge counts them).
#[derive(Default)]
pub struct InFlight(pub std::sync::atomic::AtomicUsize);
