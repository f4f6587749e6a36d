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
//! The [`CacheManager`] actor owns the handle: it runs moka's maintenance on a timer, exports
//! the entry gauge, and answers [`GetStats`]. Handlers use the handle directly — moka is
//! concurrent, and a mailbox hop per GET would cost more than the lookup (see
//! `reelgen-bench ratelimit`, which measures the same trade-off).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::prelude::*;
use actix_web::http::header::HeaderValue;
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
}

impl Cached {
    pub fn new(body: Bytes) -> Self {
        // Quotes and hex digits: always a valid header value.
        let etag =
            HeaderValue::try_from(etag_of(&body)).unwrap_or(HeaderValue::from_static("\"0\""));
        Self { body, etag }
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
}
