//! Cache manager: a moka-backed cache of rendered GET responses (body bytes + ETag), per
//! tenant, bounded by `MEMORY_CACHE_SIZE` MiB and `CACHE_TTL`.
//!
//! Invalidation is by generation: every key embeds the tenant's generation and a global
//! "queue" generation. A write that changes what a tenant's GETs return bumps that tenant's
//! generation ([`CacheHandle::invalidate_tenant`]); a change in queue order (a queued video
//! leaves the queue) bumps the global one, since `queue_position` of every tenant's videos
//! moves. Old entries are never served again and age out by TTL or capacity. Bumps happen
//! before the write's response is sent, so a client never reads its own stale data.
//!
//! Concurrent misses of one key share a single computation (moka's `try_get_with`), so a
//! popular entry that expires costs the database one query, not one per waiting request.
//!
//! Invalidation is a seam: [`CacheHandle::invalidate_tenant`] and
//! [`CacheHandle::invalidate_all`] are the only ways to make entries unreachable, and only the
//! video lifecycle and the API key commands call them. With one process they bump the local
//! generations. In a cluster ([`CacheHandle::clustered`]) the generations live in Redis:
//! a write INCRs them before its response is sent, and every lookup reads them (one MGET,
//! cheaper than the query it saves), so no replica can serve an entry made before a write
//! that another replica has acknowledged — which pub/sub, at-most-once and racing the next
//! request, could not promise. When Redis does not answer, lookups bypass the cache and
//! read the database.
//!
//! In front of it, each HTTP worker keeps its own copies of the responses it served from it
//! ([`WorkerCache`]: no lock, no atomic shared with the other workers), which the edge answers
//! a repeated GET from before routing. They obey the same invalidations through one
//! process-wide epoch that every generation bump also moves ([`CacheHandle::local_epoch`]),
//! and the same TTL, counted from when the response was made. In a cluster there are no
//! worker copies: only Redis knows whether another replica has written.
//!
//! The [`CacheManager`] actor owns the handle: it runs moka's maintenance on a timer, exports
//! the entry gauge, and answers [`GetStats`]. Handlers use the handle directly — moka is
//! concurrent, and a mailbox hop per GET would cost more than the lookup (see
//! `reelgen-bench ratelimit`, which measures the same trade-off).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix::prelude::*;
use actix_web::http::header::{ContentEncoding, HeaderName, HeaderValue};
use bytes::Bytes;
use moka::future::Cache;
use parking_lot::RwLock;

use crate::platform::telemetry::Metrics;

/// A cached response: its body and its strong ETag, kept as the header's value so that
/// serving it parses and allocates nothing.
#[derive(Debug, Clone)]
pub struct Cached {
    pub body: Bytes,
    pub etag: HeaderValue,
    /// When the response was made: a copy of it lives no longer than `CACHE_TTL` from here.
    pub born: Instant,
}

impl Cached {
    pub fn new(body: Bytes) -> Self {
        // Quotes and hex digits: always a valid header value.
        let etag =
            HeaderValue::try_from(etag_of(&body)).unwrap_or(HeaderValue::from_static("\"0\""));
        Self {
            body,
            etag,
            born: Instant::now(),
        }
    }
}

/// A strong ETag of a body.
pub fn etag_of(body: &[u8]) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    format!("\"{:016x}{:08x}\"", h.finish(), body.len())
}

#[derive(Clone)]
pub struct CacheHandle {
    inner: Arc<Inner>,
}

struct Inner {
    cache: Option<Cache<String, Arc<Cached>>>,
    tenant_gen: RwLock<HashMap<String, u64>>,
    queue_gen: AtomicU64,
    /// Moves with every generation bump (after it): the worker copies' one validity check.
    epoch: AtomicU64,
    ttl: Duration,
    metrics: Arc<Metrics>,
    /// The cluster's generations (see the module doc).
    cluster: Option<crate::platform::redis::Redis>,
}

#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub entries: u64,
    pub weighted_bytes: u64,
    pub hit_rate: f64,
}

impl CacheHandle {
    /// A cache of `size_mb` MiB (0 disables caching) whose entries live `ttl`.
    pub fn new(size_mb: u64, ttl: Duration, metrics: Arc<Metrics>) -> Self {
        Self::with_generations(size_mb, ttl, metrics, None)
    }

    /// The same, its generations kept in the cluster's Redis (see the module doc).
    pub fn clustered(
        size_mb: u64,
        ttl: Duration,
        metrics: Arc<Metrics>,
        redis: crate::platform::redis::Redis,
    ) -> Self {
        Self::with_generations(size_mb, ttl, metrics, Some(redis))
    }

    fn with_generations(
        size_mb: u64,
        ttl: Duration,
        metrics: Arc<Metrics>,
        cluster: Option<crate::platform::redis::Redis>,
    ) -> Self {
        let cache = (size_mb > 0 && !ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(size_mb * 1024 * 1024)
                .weigher(|k: &String, v: &Arc<Cached>| {
                    u32::try_from(k.len() + v.body.len() + v.etag.len() + 64).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build()
        });
        Self {
            inner: Arc::new(Inner {
                cache,
                tenant_gen: RwLock::new(HashMap::new()),
                queue_gen: AtomicU64::new(0),
                epoch: AtomicU64::new(0),
                ttl,
                metrics,
                cluster,
            }),
        }
    }

    fn tenant_key(tenant: &str) -> String {
        format!("reelgen:gen:t:{tenant}")
    }

    const QUEUE_KEY: &str = "reelgen:gen:q";
    /// Which life of the cluster's Redis the counters belong to.
    const BOOT_KEY: &str = "reelgen:gen:boot";

    /// The key of `resource` (a normalised path and query) for `tenant`, at the current
    /// generations; `None` when they cannot be known (the cluster's Redis is down): the
    /// caller reads the database.
    pub async fn key(&self, tenant: &str, resource: &str) -> Option<String> {
        match &self.inner.cluster {
            None => {
                let tgen = self
                    .inner
                    .tenant_gen
                    .read()
                    .get(tenant)
                    .copied()
                    .unwrap_or(0);
                let qgen = self.inner.queue_gen.load(Ordering::Acquire);
                Some(format!("{tenant}\u{1f}{tgen}\u{1f}{qgen}\u{1f}{resource}"))
            }
            // Boxed: every cached read awaits `key`, and the Redis round trip's state would
            // otherwise make each of their futures as large as a fred command's.
            Some(redis) => Box::pin(Self::cluster_key(redis, tenant, resource)).await,
        }
    }

    async fn cluster_key(
        redis: &crate::platform::redis::Redis,
        tenant: &str,
        resource: &str,
    ) -> Option<String> {
        let tkey = Self::tenant_key(tenant);
        let got = redis
            .mget(&[Self::BOOT_KEY, &tkey, Self::QUEUE_KEY])
            .await?;
        let Some(boot) = &got[0] else {
            // A Redis that lost its data (restarted empty): its counters start again,
            // so entries keyed by the old ones must never match. A new boot id
            // scopes every key from now on; this lookup reads the database.
            redis
                .set_nx(Self::BOOT_KEY, &uuid::Uuid::new_v4().to_string())
                .await;
            return None;
        };
        let number = |v: &Option<String>| {
            v.as_deref()
                .and_then(|s| s.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Some(format!(
            "{tenant}\u{1f}{boot}.{}\u{1f}{}\u{1f}{resource}",
            number(&got[1]),
            number(&got[2])
        ))
    }

    /// The epoch the worker copies of responses are valid at, read before the request that
    /// may fill them (a bump after the read makes what it stores stale at once); `None` when
    /// workers keep no copies: caching is off, or the generations live in the cluster's Redis.
    pub fn local_epoch(&self) -> Option<u64> {
        (self.inner.cache.is_some() && self.inner.cluster.is_none())
            .then(|| self.inner.epoch.load(Ordering::Acquire))
    }

    /// Whether a response made at `born` may still be served at `now` (`CACHE_TTL`).
    pub fn fresh(&self, cached: &Cached, now: Instant) -> bool {
        now.saturating_duration_since(cached.born) < self.inner.ttl
    }

    /// A response served from a worker's copy: a hit like any other.
    pub fn count_hit(&self) {
        self.count(true);
    }

    /// Counted once, in the Prometheus counters ([`CacheHandle::stats`] reads them back).
    fn count(&self, hit: bool) {
        if hit {
            self.inner.metrics.cache_hits_total.inc();
        } else {
            self.inner.metrics.cache_misses_total.inc();
        }
    }

    pub async fn get(&self, key: &str) -> Option<Arc<Cached>> {
        let found = match &self.inner.cache {
            Some(c) => c.get(key).await,
            None => None,
        };
        self.count(found.is_some());
        found
    }

    /// The cached response, or the one `compute` makes. Concurrent misses of one key share a
    /// single computation (no stampede on the database when a popular entry expires); each
    /// waiter gets its result, an error included.
    pub async fn get_or_compute<F, Fut, E>(
        &self,
        key: Option<String>,
        compute: F,
    ) -> Result<Arc<Cached>, E>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Arc<Cached>, E>>,
        E: Clone + Send + Sync + 'static,
    {
        // The misses are boxed: a hit's future stays small (it is what every cached read
        // polls), not as large as the computation's database queries.
        let (Some(c), Some(key)) = (&self.inner.cache, key) else {
            self.count(false);
            return Box::pin(compute()).await;
        };
        // moka's `get` is a ~800-byte future: boxed apart, it keeps the handler futures that
        // actix boxes under glibc's small-allocation cache (1 KB) instead of the slow path.
        if let Some(hit) = Box::pin(c.get(&key)).await {
            self.count(true);
            return Ok(hit);
        }
        self.count(false);
        Box::pin(c.try_get_with(key, compute()))
            .await
            .map_err(|e| E::clone(&e))
    }

    pub async fn put(&self, key: String, value: Arc<Cached>) {
        if let Some(c) = &self.inner.cache {
            c.insert(key, value).await;
        }
    }

    /// Everything cached for `tenant` becomes unreachable. The generation bump makes readers
    /// miss at once; the dead entries are also dropped in the background, so a busy writer
    /// does not fill the cache with responses nobody can hit until their TTL (the soak
    /// measured that as steady RSS growth).
    pub async fn invalidate_tenant(&self, tenant: &str) {
        if let Some(redis) = &self.inner.cluster
            && !redis.incr(&Self::tenant_key(tenant)).await
        {
            tracing::warn!(%tenant, "cache generation not bumped in Redis; other replicas may serve cached reads until CACHE_TTL");
        }
        {
            let mut gens = self.inner.tenant_gen.write();
            *gens.entry(tenant.to_string()).or_insert(0) += 1;
        }
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = &self.inner.cache {
            let prefix = format!("{tenant}\u{1f}");
            if let Err(e) = c.invalidate_entries_if(move |k, _| k.starts_with(&prefix)) {
                tracing::debug!(error = %e, "a tenant's dead cache entries wait for their TTL");
            }
        }
    }

    /// Everything cached for every tenant becomes unreachable (queue order changed); the
    /// entries are dropped too.
    pub async fn invalidate_all(&self) {
        if let Some(redis) = &self.inner.cluster
            && !redis.incr(Self::QUEUE_KEY).await
        {
            tracing::warn!(
                "queue cache generation not bumped in Redis; other replicas may serve cached reads until CACHE_TTL"
            );
        }
        self.inner.queue_gen.fetch_add(1, Ordering::AcqRel);
        self.inner.epoch.fetch_add(1, Ordering::AcqRel);
        if let Some(c) = &self.inner.cache {
            c.invalidate_all();
        }
    }

    /// Writes and reads back a private entry (not counted as a hit or miss); `true` when the
    /// cache answers, or when caching is disabled.
    pub async fn probe(&self) -> bool {
        let Some(c) = &self.inner.cache else {
            return true;
        };
        let key = "\u{0}probe".to_string();
        let value = Arc::new(Cached::new(Bytes::from_static(b"ok")));
        c.insert(key.clone(), value).await;
        let ok = c.get(&key).await.is_some_and(|v| v.body.as_ref() == b"ok");
        c.invalidate(&key).await;
        ok
    }

    pub fn stats(&self) -> CacheStats {
        let hits = self.inner.metrics.cache_hits_total.get();
        let misses = self.inner.metrics.cache_misses_total.get();
        let (entries, weighted_bytes) = self
            .inner
            .cache
            .as_ref()
            .map_or((0, 0), |c| (c.entry_count(), c.weighted_size()));
        CacheStats {
            hits,
            misses,
            entries,
            weighted_bytes,
            hit_rate: if hits + misses == 0 {
                0.0
            } else {
                hits as f64 / (hits + misses) as f64
            },
        }
    }

    async fn maintain(&self) {
        if let Some(c) = &self.inner.cache {
            c.run_pending_tasks().await;
            self.inner
                .metrics
                .cache_entries
                .set(i64::try_from(c.entry_count()).unwrap_or(i64::MAX));
        }
    }
}

/// A response a handler made from the cache, which a worker may keep a copy of and answer
/// the same GET with, for the same tenant, until the epoch moves or the TTL passes. It may
/// depend only on the tenant and the request's path and query (and `If-None-Match`, which
/// the answer evaluates again), as the shared cache's keys do.
#[derive(Clone)]
pub struct Replayable {
    pub cached: Arc<Cached>,
    pub content_type: &'static str,
}

/// Copies a worker may keep, at most (then it starts again), and of at most this size each.
const WORKER_ENTRIES: usize = 256;
const WORKER_BODY: usize = 64 * 1024;
const WORKER_BYTES: usize = 4 * 1024 * 1024;

/// A worker's own copy of a response: its bytes are its own (not shared with the cache or the
/// other workers), so answering from it touches nothing another thread writes.
pub struct WorkerCopy {
    pub cached: Cached,
    pub content_type: &'static str,
    /// The headers each answer from it carries, made once by whoever keeps the copy.
    pub head: Head,
    /// The body in each encoding a client asked for, made once (`None`: it cannot be).
    encoded: RefCell<Vec<(ContentEncoding, Option<Bytes>)>>,
}

impl WorkerCopy {
    /// The body in `encoding`, when it has been made (`Some(None)`: it cannot be).
    pub fn encoded(&self, encoding: ContentEncoding) -> Option<Option<Bytes>> {
        self.encoded
            .borrow()
            .iter()
            .find(|(e, _)| *e == encoding)
            .map(|(_, body)| body.clone())
    }

    /// Keeps the body made in `encoding` (compressed, it is smaller than the body it encodes).
    pub fn keep_encoded(&self, encoding: ContentEncoding, body: Option<Bytes>) {
        let mut encoded = self.encoded.borrow_mut();
        if !encoded.iter().any(|(e, _)| *e == encoding) {
            encoded.push((encoding, body));
        }
    }
}

/// Response headers, in the order they are set.
pub type Head = Vec<(HeaderName, HeaderValue)>;

/// A tenant's copies, by request path and query.
type CopiesByUri = foldhash::HashMap<Box<str>, Rc<WorkerCopy>>;

/// One HTTP worker's copies of responses, by tenant and then by path and query (see the
/// module doc). Only its worker touches it, so it needs no lock; the epoch it holds its copies
/// at is the only thing it compares with the shared state.
#[derive(Default)]
pub struct WorkerCache {
    epoch: Cell<u64>,
    bytes: Cell<usize>,
    entries: RefCell<foldhash::HashMap<Box<str>, CopiesByUri>>,
}

impl WorkerCache {
    /// The copy of `uri` for `tenant`, when it is still valid at `epoch` and `now`.
    pub fn get(
        &self,
        handle: &CacheHandle,
        epoch: u64,
        now: Instant,
        tenant: &str,
        uri: &str,
    ) -> Option<Rc<WorkerCopy>> {
        if epoch != self.epoch.get() {
            self.restart(epoch);
            return None;
        }
        let entries = self.entries.borrow();
        let found = entries.get(tenant)?.get(uri)?;
        handle.fresh(&found.cached, now).then(|| found.clone())
    }

    /// Keeps a copy of a response made by a request that began at `epoch`, with the headers
    /// `head` makes for it.
    pub fn put(
        &self,
        epoch: u64,
        tenant: &str,
        uri: &str,
        value: &Replayable,
        head: impl FnOnce(&Cached, &'static str) -> Head,
    ) {
        let size = value.cached.body.len();
        if size > WORKER_BODY || uri.len() > WORKER_BODY {
            return;
        }
        match epoch.cmp(&self.epoch.get()) {
            // Made before a change this worker has already seen: it may be stale.
            std::cmp::Ordering::Less => return,
            std::cmp::Ordering::Greater => self.restart(epoch),
            std::cmp::Ordering::Equal => {}
        }
        if self.len() >= WORKER_ENTRIES || self.bytes.get() + size > WORKER_BYTES {
            self.restart(epoch);
        }
        let cached = &value.cached;
        let cached = Cached {
            body: Bytes::copy_from_slice(&cached.body),
            etag: HeaderValue::from_bytes(cached.etag.as_bytes())
                .unwrap_or_else(|_| cached.etag.clone()),
            born: cached.born,
        };
        let copy = Rc::new(WorkerCopy {
            head: head(&cached, value.content_type),
            cached,
            content_type: value.content_type,
            encoded: RefCell::default(),
        });
        let mut entries = self.entries.borrow_mut();
        let by_uri = match entries.get_mut(tenant) {
            Some(by_uri) => by_uri,
            None => entries.entry(tenant.into()).or_default(),
        };
        match by_uri.insert(uri.into(), copy) {
            Some(old) => self
                .bytes
                .set(self.bytes.get() + size - old.cached.body.len()),
            None => self.bytes.set(self.bytes.get() + size),
        }
    }

    /// How many copies it holds (counted when one is added, not per answer).
    fn len(&self) -> usize {
        self.entries
            .borrow()
            .values()
            .map(|by_uri| by_uri.len())
            .sum()
    }

    fn restart(&self, epoch: u64) {
        self.entries.borrow_mut().clear();
        self.epoch.set(epoch);
        self.bytes.set(0);
    }
}

pub struct CacheManager {
    handle: CacheHandle,
}

impl CacheManager {
    pub fn new(handle: CacheHandle) -> Self {
        Self { handle }
    }
}

impl Actor for CacheManager {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(Duration::from_secs(1), |act, ctx| {
            let handle = act.handle.clone();
            ctx.spawn(async move { handle.maintain().await }.into_actor(act));
        });
    }
}

impl Supervised for CacheManager {}

/// Hit/miss counts and size.
#[derive(Message)]
#[rtype(result = "CacheStats")]
pub struct GetStats;

impl Handler<GetStats> for CacheManager {
    type Result = MessageResult<GetStats>;
    fn handle(&mut self, _: GetStats, _: &mut Self::Context) -> Self::Result {
        MessageResult(self.handle.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cached(s: &str) -> Arc<Cached> {
        Arc::new(Cached::new(Bytes::from(s.to_string())))
    }

    #[tokio::test]
    async fn invalidation_hides_old_entries_per_tenant_and_globally() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let c = CacheHandle::new(1, Duration::from_secs(60), metrics);
        c.put(c.key("a", "/v").await.expect("key"), cached("a1"))
            .await;
        c.put(c.key("b", "/v").await.expect("key"), cached("b1"))
            .await;
        assert!(c.get(&c.key("a", "/v").await.expect("key")).await.is_some());
        c.invalidate_tenant("a").await;
        assert!(c.get(&c.key("a", "/v").await.expect("key")).await.is_none());
        assert!(c.get(&c.key("b", "/v").await.expect("key")).await.is_some());
        c.invalidate_all().await;
        assert!(c.get(&c.key("b", "/v").await.expect("key")).await.is_none());
        let s = c.stats();
        assert_eq!((s.hits, s.misses), (2, 2));
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_key_compute_once() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let c = CacheHandle::new(1, Duration::from_secs(60), metrics);
        let computed = Arc::new(AtomicU64::new(0));
        let (go, ready) = tokio::sync::watch::channel(false);
        let waiters = (0..8).map(|_| {
            let (c, computed, mut ready) = (c.clone(), computed.clone(), ready.clone());
            tokio::spawn(async move {
                c.get_or_compute(c.key("t", "/v").await, || async move {
                    computed.fetch_add(1, Ordering::SeqCst);
                    // Held until every waiter has asked: they all meet this computation.
                    let _ = ready.wait_for(|go| *go).await;
                    Ok::<_, String>(cached("v"))
                })
                .await
            })
        });
        let handles: Vec<_> = waiters.collect();
        tokio::time::timeout(Duration::from_secs(30), async {
            while c.stats().misses < 8 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .expect("every waiter missed");
        go.send_replace(true);
        for h in handles {
            let v = h.await.expect("task").expect("value");
            assert_eq!(v.body.as_ref(), b"v");
        }
        assert_eq!(computed.load(Ordering::SeqCst), 1);
    }

    fn no_head(_: &Cached, _: &'static str) -> Head {
        Head::new()
    }

    fn copy(body: &str) -> Replayable {
        Replayable {
            cached: cached(body),
            content_type: "application/json",
        }
    }

    #[tokio::test]
    async fn a_worker_copy_lives_until_the_epoch_moves_or_the_ttl_passes() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let c = CacheHandle::new(1, Duration::from_secs(60), metrics);
        let w = WorkerCache::default();
        let epoch = c.local_epoch().expect("a local cache keeps worker copies");
        let now = Instant::now();
        w.put(epoch, "a", "/v?l=1", &copy("one"), no_head);
        let got = w.get(&c, epoch, now, "a", "/v?l=1").expect("copy");
        assert_eq!(got.cached.body.as_ref(), b"one");
        assert!(
            w.get(&c, epoch, now, "b", "/v?l=1").is_none(),
            "other tenant"
        );
        assert!(
            w.get(&c, epoch, now, "a", "/v?l=2").is_none(),
            "other query"
        );
        // The TTL counts from when the response was made.
        assert!(
            w.get(&c, epoch, now + Duration::from_secs(61), "a", "/v?l=1")
                .is_none()
        );

        // Any invalidation moves the epoch: the copies are gone, and a response made by a
        // request that began before the move is never kept.
        c.invalidate_tenant("b").await;
        let moved = c.local_epoch().expect("epoch");
        assert!(moved > epoch);
        assert!(w.get(&c, moved, now, "a", "/v?l=1").is_none());
        w.put(epoch, "a", "/v?l=1", &copy("stale"), no_head);
        assert!(w.get(&c, moved, now, "a", "/v?l=1").is_none());
        w.put(moved, "a", "/v?l=1", &copy("two"), no_head);
        let got = w.get(&c, moved, now, "a", "/v?l=1").expect("copy");
        assert_eq!(got.cached.body.as_ref(), b"two");
        c.invalidate_all().await;
        assert!(c.local_epoch().expect("epoch") > moved);
    }

    #[tokio::test]
    async fn a_worker_keeps_a_bounded_number_of_copies() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        let c = CacheHandle::new(1, Duration::from_secs(60), metrics);
        let w = WorkerCache::default();
        let now = Instant::now();
        for i in 0..WORKER_ENTRIES * 3 {
            w.put(0, "a", &format!("/v/{i}"), &copy("x"), no_head);
            assert!(w.len() <= WORKER_ENTRIES);
        }
        let big = "x".repeat(WORKER_BODY + 1);
        w.put(0, "a", "/big", &copy(&big), no_head);
        assert!(
            w.get(&c, 0, now, "a", "/big").is_none(),
            "too large to copy"
        );
        assert!(w.bytes.get() <= WORKER_BYTES);
    }

    #[tokio::test]
    async fn without_a_local_cache_workers_keep_no_copies() {
        let metrics = Arc::new(Metrics::new().expect("metrics"));
        assert!(
            CacheHandle::new(0, Duration::from_secs(60), metrics)
                .local_epoch()
                .is_none()
        );
    }
}
