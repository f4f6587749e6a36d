//! Rate limiter: GCRA (generic cell rate algorithm) per API key, or per client IP in open mode,
//! with `governor`'s keyed limiter over [`Cells`] (a theoretical arrival time per key, which
//! each worker thread finds again without a shared lock).
//!
//! [`Limiter`] is the seam the HTTP edge calls ([`Limiter::check`]). Alone, it is this
//! process's [`GcraTable`]. In a cluster ([`Limiter::Shared`]) the same algorithm runs as one
//! atomic script in Redis (`platform::redis`), so every replica spends one budget per key;
//! when Redis does not answer, the process falls back to its own table (a budget per
//! replica, never no limit) and counts it in `reelgen_rate_limit_fallback_total`. The [`RateLimiter`] actor owns the table's upkeep: it purges idle keys on a timer
//! and answers [`Check`] and [`GetStats`] through its mailbox. The hot path calls the table
//! directly instead of sending `Check`: measured with `reelgen-bench ratelimit`, one mailbox
//! round trip per request costs several times the check itself and serialises every worker on
//! one thread, while the table scales with the workers.
//!
//! With limit `L` per minute: emission interval `T = 60 s / L`, burst `L`.

use std::cell::RefCell;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use actix::prelude::*;
use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter as Gcra};
use parking_lot::RwLock;

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

/// The seam the HTTP edge asks for a verdict (see the module doc).
#[derive(Clone)]
pub enum Limiter {
    /// This process's table.
    Local(Arc<GcraTable>),
    /// The cluster's budget in Redis; the local table when Redis does not answer.
    Shared {
        redis: crate::platform::redis::Redis,
        local: Arc<GcraTable>,
        fallbacks: prometheus::IntCounter,
    },
}

impl Limiter {
    /// The verdict when it needs no I/O (this process's table); `None` in a cluster, where
    /// [`Limiter::check`] asks Redis.
    pub fn check_now(&self, key: &Arc<str>) -> Option<Decision> {
        match self {
            Self::Local(table) => Some(table.check(key)),
            Self::Shared { .. } => None,
        }
    }

    /// The cluster's round trip is boxed, so that the local check — every request's — keeps a
    /// small future.
    pub async fn check(&self, key: &Arc<str>) -> Decision {
        match self {
            Self::Local(table) => table.check(key),
            Self::Shared {
                redis,
                local,
                fallbacks,
            } => match Box::pin(redis.gcra(key, local.interval, local.limit)).await {
                Some(v) => local.counted(Decision {
                    allowed: v.allowed,
                    limit: local.limit,
                    remaining: v.remaining.min(local.limit),
                    reset_s: v.reset_ms.div_ceil(1000),
                    retry_after_s: if v.allowed {
                        0
                    } else {
                        v.retry_after_ms.div_ceil(1000).max(1)
                    },
                }),
                None => {
                    fallbacks.inc();
                    local.check(key)
                }
            },
        }
    }
}

/// Per-key GCRA state with counters; `C` is the clock (a fake one in tests).
pub struct GcraTable<C: Clock = DefaultClock> {
    gcra: Gcra<Arc<str>, Cells, C, StateInformationMiddleware>,
    clock: C,
    limit: u32,
    interval: Duration,
    allowed: AtomicU64,
    rejected: AtomicU64,
}

impl GcraTable {
    pub fn new(limit_per_minute: u32) -> Self {
        Self::with_clock(limit_per_minute, DefaultClock::default())
    }
}

fn ceil_s(d: Duration) -> u64 {
    d.as_nanos().div_ceil(1_000_000_000) as u64
}

impl<C: Clock + Clone> GcraTable<C> {
    pub fn with_clock(limit_per_minute: u32, clock: C) -> Self {
        let limit = NonZeroU32::new(limit_per_minute).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_minute(limit);
        Self {
            gcra: Gcra::new(quota, Cells::default(), clock.clone()),
            clock,
            limit: limit.get(),
            interval: Duration::from_secs(60) / limit.get(),
            allowed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
        }
    }

    /// Counts a verdict made elsewhere (the cluster's budget) in this table's statistics.
    fn counted(&self, d: Decision) -> Decision {
        let counter = if d.allowed {
            &self.allowed
        } else {
            &self.rejected
        };
        counter.fetch_add(1, Ordering::Relaxed);
        d
    }

    /// The verdict on one request by `key` (shared, so that a known key costs no allocation).
    pub fn check(&self, key: &Arc<str>) -> Decision {
        match self.gcra.check_key(key) {
            Ok(state) => {
                self.allowed.fetch_add(1, Ordering::Relaxed);
                let remaining = state.remaining_burst_capacity();
                Decision {
                    allowed: true,
                    limit: self.limit,
                    remaining,
                    reset_s: ceil_s(self.interval * (self.limit - remaining)),
                    retry_after_s: 0,
                }
            }
            Err(not_until) => {
                self.rejected.fetch_add(1, Ordering::Relaxed);
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    allowed: false,
                    limit: self.limit,
                    remaining: 0,
                    // The burst is full again once this wait and L-1 more intervals pass.
                    reset_s: ceil_s(wait + self.interval * (self.limit - 1)),
                    retry_after_s: ceil_s(wait).max(1),
                }
            }
        }
    }

    /// Drops keys whose bucket is full again; returns how many.
    pub fn purge(&self) -> usize {
        let before = self.gcra.len();
        self.gcra.retain_recent();
        self.gcra.shrink_to_fit();
        before.saturating_sub(self.gcra.len())
    }

    pub fn stats(&self) -> RateLimitStats {
        RateLimitStats {
            keys: self.gcra.len(),
            allowed: self.allowed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            limit_per_minute: self.limit,
        }
    }
}

/// The table's keyed state for `governor`: one GCRA cell (an atomic arrival time) per key,
/// shared by reference, and each thread's own map to the cells it has used. A known key's
/// check is then a lookup in the thread's map and a compare-and-swap on its cell, with no lock
/// and no reference count that another worker also writes (what `governor`'s sharded map costs
/// per check). A purge bumps the generation, and each thread forgets its map when it sees that:
/// a check racing the purge may land on a cell just dropped, which was at a full burst anyway.
pub struct Cells {
    /// Tells this table's cells apart from another table's in a thread's map.
    id: usize,
    generation: AtomicU64,
    cells: RwLock<foldhash::HashMap<Arc<str>, Arc<InMemoryState>>>,
}

/// Keys whose cells a thread remembers, at most (then it starts again).
const NEAR_CELLS: usize = 1024;

/// A thread's cells: of the table `id`, as of `generation`.
#[derive(Default)]
struct Near {
    id: usize,
    generation: u64,
    cells: foldhash::HashMap<Arc<str>, Arc<InMemoryState>>,
}

thread_local! {
    static NEAR: RefCell<Near> = RefCell::default();
}

impl Default for Cells {
    fn default() -> Self {
        static IDS: AtomicUsize = AtomicUsize::new(1);
        Self {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            generation: AtomicU64::new(0),
            cells: RwLock::default(),
        }
    }
}

impl Cells {
    fn shared(&self, key: &Arc<str>) -> Arc<InMemoryState> {
        if let Some(cell) = self.cells.read().get(key) {
            return cell.clone();
        }
        self.cells.write().entry(key.clone()).or_default().clone()
    }

    /// The arrival time a cell holds (`None`: never used), read without changing it.
    fn arrival(cell: &InMemoryState) -> Option<Nanos> {
        cell.measure_and_replace(&NotKeyed::NonKey, Err::<((), Nanos), _>)
            .err()
            .flatten()
    }
}

impl StateStore for Cells {
    type Key = Arc<str>;

    fn measure_and_replace<T, F, E>(&self, key: &Arc<str>, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let generation = self.generation.load(Ordering::Acquire);
        NEAR.with_borrow_mut(|near| {
            if near.id != self.id || near.generation != generation {
                near.cells.clear();
                near.id = self.id;
                near.generation = generation;
            }
            if let Some(cell) = near.cells.get(key) {
                return cell.measure_and_replace(&NotKeyed::NonKey, f);
            }
            if near.cells.len() >= NEAR_CELLS {
                near.cells.clear();
            }
            let cell = self.shared(key);
            let verdict = cell.measure_and_replace(&NotKeyed::NonKey, f);
            near.cells.insert(key.clone(), cell);
            verdict
        })
    }
}

impl ShrinkableKeyedStateStore<Arc<str>> for Cells {
    fn retain_recent(&self, drop_below: Nanos) {
        self.cells
            .write()
            .retain(|_, cell| Self::arrival(cell).is_some_and(|t| t > drop_below));
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    fn shrink_to_fit(&self) {
        self.cells.write().shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.cells.read().len()
    }

    fn is_empty(&self) -> bool {
        self.cells.read().is_empty()
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
pub struct Check(pub Arc<str>);

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
    use governor::clock::FakeRelativeClock;

    use super::*;

    #[test]
    fn allows_a_burst_of_the_limit_then_rejects_with_retry_after() {
        let clock = FakeRelativeClock::default();
        let t = GcraTable::with_clock(60, clock.clone()); // one per second, burst 60
        for i in 0..60 {
            let d = t.check(&"k".into());
            assert!(d.allowed, "request {i}");
            assert_eq!(d.remaining, 59 - i);
        }
        let d = t.check(&"k".into());
        assert!(!d.allowed);
        assert_eq!(d.retry_after_s, 1);
        assert_eq!(d.reset_s, 60);
        // One interval later exactly one more is allowed.
        clock.advance(Duration::from_secs(1));
        assert!(t.check(&"k".into()).allowed);
        assert!(!t.check(&"k".into()).allowed);
        // Other keys are independent.
        assert!(t.check(&"other".into()).allowed);
        assert_eq!(t.stats().rejected, 2);
    }

    #[test]
    fn threads_spend_one_budget_per_key_before_and_after_a_purge() {
        let clock = FakeRelativeClock::default();
        let t = GcraTable::with_clock(4, clock.clone());
        let key: Arc<str> = "k".into();
        let elsewhere =
            || std::thread::scope(|s| s.spawn(|| t.check(&key)).join().expect("thread"));
        assert_eq!(t.check(&key).remaining, 3);
        assert_eq!(elsewhere().remaining, 2);
        // Idle for a whole window: the key goes, while this thread still knows its old cell.
        clock.advance(Duration::from_secs(60));
        assert_eq!(t.purge(), 1);
        assert_eq!(t.check(&key).remaining, 3);
        assert_eq!(elsewhere().remaining, 2);
        assert_eq!(t.check(&key).remaining, 1);
        assert_eq!(t.check(&key).remaining, 0);
        assert!(!elsewhere().allowed);
        assert_eq!(t.stats().keys, 1);
    }

    #[test]
    fn a_full_bucket_is_purged() {
        let clock = FakeRelativeClock::default();
        let t = GcraTable::with_clock(600, clock.clone());
        t.check(&"a".into());
        assert_eq!(t.stats().keys, 1);
        clock.advance(Duration::from_secs(1));
        assert_eq!(t.purge(), 1);
        assert_eq!(t.stats().keys, 0);
    }
}
