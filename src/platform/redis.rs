//! Redis, through `fred`: the transport between the processes of a cluster — never the record
//! (PostgreSQL is). It carries the worker wake-ups and cancels, the video events and live
//! preview, the response-cache invalidations, and the shared rate-limit budget.
//!
//! [`Redis`] owns two connections: one for commands (publish, the GCRA script, the preview's
//! init segment) and one subscriber. Both reconnect by themselves every 500 ms; commands fail
//! fast while Redis is down (each caller has a fallback), and every failure is counted in
//! `reelgen_redis_errors_total`. The subscription keeper re-subscribes after every reconnect
//! and tells [`Redis::subscribed`] readers whether messages can be trusted to arrive (the
//! response cache bypasses itself while they cannot). Pub/sub is at-most-once: whoever
//! listens must survive a missed message (the queue is polled, the cache bypassed).
//!
//! May call only the rest of `platform`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fred::clients::SubscriberClient;
use fred::prelude::*;
use fred::types::scripts::Script;
use prometheus::IntCounter;
use tokio::sync::broadcast;

use super::task::Task;

/// The channels of one cluster.
pub mod channel {
    /// "a video was queued or handed back": idle workers claim.
    pub const WAKE: &str = "reelgen:wake";
    /// a video id: the worker rendering it stops.
    pub const CANCEL: &str = "reelgen:cancel";
    /// `{"id", "event"}` JSON: a video's status, progress and terminal events.
    pub const EVENTS: &str = "reelgen:events";
    /// binary: the live preview's init segments and fragments.
    pub const PREVIEW: &str = "reelgen:preview";
    /// a tenant (or `*` for everyone): cached responses to drop.
    pub const CACHE: &str = "reelgen:cache";

    pub const ALL: [&str; 5] = [WAKE, CANCEL, EVENTS, PREVIEW, CACHE];
}

/// One pub/sub message: its channel and payload.
#[derive(Debug, Clone)]
pub struct Message {
    pub channel: String,
    pub payload: Bytes,
}

/// Atomic GCRA: one round trip decides and records. `KEYS[1]` the key's theoretical arrival
/// time (ms); `ARGV[1]` the emission interval (ms), `ARGV[2]` the burst. Returns
/// `{allowed, remaining, reset_ms, retry_after_ms}`. Uses the server's clock, so replicas
/// with skewed clocks share one budget.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, 0, tat - now, allow_at - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', new_tat - now)
return {1, math.floor((now - allow_at) / interval), new_tat - now, 0}
";

/// A GCRA verdict from Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GcraVerdict {
    pub allowed: bool,
    pub remaining: u32,
    pub reset_ms: u64,
    pub retry_after_ms: u64,
}

struct Inner {
    client: Client,
    subscriber: SubscriberClient,
    gcra: Script,
    errors: IntCounter,
    subscribed: AtomicBool,
    /// Bumped each time the subscriptions are (re)established.
    epoch: AtomicU64,
    messages: broadcast::Sender<Message>,
    _tasks: parking_lot::Mutex<Vec<Task>>,
}

/// The cluster's Redis (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct Redis(Arc<Inner>);

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("subscribed", &self.subscribed())
            .finish()
    }
}

/// How long a command may take before its caller falls back.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(2);
/// The rate limit sits on every request's path: it falls back to the local budget sooner.
const GCRA_TIMEOUT: Duration = Duration::from_secs(1);

impl Redis {
    /// Connects (in the background: a Redis that is down now is retried every 500 ms, and
    /// the process starts anyway) and keeps the subscriptions. `Err` only for a URL fred
    /// cannot use.
    pub async fn connect(url: &str, errors: IntCounter) -> Result<Self, String> {
        let mut config = Config::from_url(url).map_err(|e| format!("REDIS_URL: {e}"))?;
        // A Redis that is down at start is retried like one that went away later.
        config.fail_fast = false;
        let build = |capacity: usize| {
            Builder::from_config(config.clone())
                .with_connection_config(|c| {
                    c.connection_timeout = Duration::from_secs(2);
                    c.internal_command_timeout = Duration::from_secs(2);
                    c.max_command_attempts = 2;
                })
                .with_performance_config(|p| {
                    p.default_command_timeout = COMMAND_TIMEOUT;
                    p.broadcast_channel_capacity = capacity;
                })
                .set_policy(ReconnectPolicy::new_constant(0, 500))
                .clone()
        };
        let client = build(32).build().map_err(|e| format!("REDIS_URL: {e}"))?;
        let subscriber = build(4096)
            .build_subscriber_client()
            .map_err(|e| format!("REDIS_URL: {e}"))?;
        client.connect();
        subscriber.connect();
        let (messages, _) = broadcast::channel(4096);
        let inner = Arc::new(Inner {
            client,
            subscriber,
            gcra: Script::from_lua(GCRA),
            errors,
            subscribed: AtomicBool::new(false),
            epoch: AtomicU64::new(0),
            messages,
            _tasks: parking_lot::Mutex::new(Vec::new()),
        });
        let redis = Self(inner);
        let tasks = vec![redis.keep_subscribed(), redis.forward_messages()];
        *redis.0._tasks.lock() = tasks;
        // A short wait so a process whose Redis is up starts subscribed (events published
        // right after start are heard); a Redis that is down does not hold start-up.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
        while !redis.subscribed() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if !redis.subscribed() {
            tracing::warn!("Redis is not reachable yet; retrying in the background");
        }
        Ok(redis)
    }

    /// Re-subscribes after every (re)connection; `subscribed` is false in between.
    fn keep_subscribed(&self) -> Task {
        let inner = self.0.clone();
        Task::spawn("redis subscriptions", async move {
            let mut reconnects = inner.subscriber.reconnect_rx();
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tokio::select! {
                    _ = reconnects.recv() => inner.subscribed.store(false, Ordering::SeqCst),
                    _ = tick.tick() => {}
                }
                let connected = inner.subscriber.state() == ClientState::Connected;
                if !connected {
                    if inner.subscribed.swap(false, Ordering::SeqCst) {
                        tracing::warn!("Redis connection lost");
                    }
                    continue;
                }
                if inner.subscribed.load(Ordering::SeqCst) {
                    continue;
                }
                match inner.subscriber.subscribe(channel::ALL.to_vec()).await {
                    Ok(()) => {
                        inner.epoch.fetch_add(1, Ordering::SeqCst);
                        inner.subscribed.store(true, Ordering::SeqCst);
                        tracing::info!("Redis subscriptions established");
                    }
                    Err(e) => {
                        inner.errors.inc();
                        tracing::debug!(error = %e, "Redis subscribe failed; retrying");
                    }
                }
            }
        })
    }

    /// fred's messages, as plain channel + bytes, to every [`Redis::messages`] receiver.
    fn forward_messages(&self) -> Task {
        let inner = self.0.clone();
        Task::spawn("redis messages", async move {
            let mut rx = inner.subscriber.message_rx();
            loop {
                match rx.recv().await {
                    Ok(m) => {
                        let payload = match m.value {
                            Value::Bytes(b) => b,
                            Value::String(s) => s.into_inner(),
                            other => match other.as_bytes() {
                                Some(b) => Bytes::copy_from_slice(b),
                                None => continue,
                            },
                        };
                        let _ = inner.messages.send(Message {
                            channel: m.channel.to_string(),
                            payload,
                        });
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "Redis messages arrived faster than read");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        })
    }

    /// Every message of the cluster's channels from now on (a slow reader lags and skips).
    pub fn messages(&self) -> broadcast::Receiver<Message> {
        self.0.messages.subscribe()
    }

    /// `true` while the subscriptions are established (messages arrive).
    pub fn subscribed(&self) -> bool {
        self.0.subscribed.load(Ordering::SeqCst)
    }

    /// Changes each time the subscriptions are re-established: a reader that remembers it
    /// knows when it may have missed messages.
    pub fn epoch(&self) -> u64 {
        self.0.epoch.load(Ordering::SeqCst)
    }

    fn fail_fast(&self) -> fred::clients::WithOptions<Client> {
        self.0.client.with_options(&Options {
            fail_fast: true,
            timeout: Some(COMMAND_TIMEOUT),
            max_attempts: Some(1),
            ..Options::default()
        })
    }

    fn failed(&self, what: &str, e: &Error) {
        self.0.errors.inc();
        tracing::debug!(error = %e, what, "Redis command failed");
    }

    /// A command's answer; a failure is counted and becomes `None`.
    fn answered<T>(&self, what: &str, res: Result<T, Error>) -> Option<T> {
        res.inspect_err(|e| self.failed(what, e)).ok()
    }

    /// Publishes to one channel; `false` (counted) when Redis did not take it.
    pub async fn publish(&self, channel: &str, payload: Bytes) -> bool {
        let sent: Result<i64, Error> = self.fail_fast().publish(channel, payload).await;
        self.answered("publish", sent).is_some()
    }

    /// Sets `key` to `value` for `ttl`.
    pub async fn set_ex(&self, key: &str, value: Bytes, ttl: Duration) -> bool {
        let secs = i64::try_from(ttl.as_secs().max(1)).unwrap_or(i64::MAX);
        let set: Result<(), Error> = self
            .fail_fast()
            .set(key, value, Some(Expiration::EX(secs)), None, false)
            .await;
        self.answered("set", set).is_some()
    }

    /// The value of `key`, `None` when absent or when Redis does not answer.
    pub async fn get(&self, key: &str) -> Option<Bytes> {
        let got: Result<Option<Bytes>, Error> = self.fail_fast().get(key).await;
        self.answered("get", got).flatten()
    }

    /// Adds one to the counter at `key`; `false` (counted) when Redis did not take it.
    pub async fn incr(&self, key: &str) -> bool {
        let res: Result<i64, Error> = self.fail_fast().incr(key).await;
        self.answered("incr", res).is_some()
    }

    /// The values at `keys` (`None` for an absent key); `None` when Redis does not answer.
    pub async fn mget(&self, keys: &[&str]) -> Option<Vec<Option<String>>> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_string()).collect();
        let n = keys.len();
        let res: Result<Vec<Option<String>>, Error> = self.fail_fast().mget(keys).await;
        self.answered("mget", res).filter(|v| v.len() == n)
    }

    /// Sets `key` to `value` unless it exists.
    pub async fn set_nx(&self, key: &str, value: &str) -> bool {
        let set: Result<Option<String>, Error> = self
            .fail_fast()
            .set(key, value, None, Some(SetOptions::NX), false)
            .await;
        self.answered("set nx", set).is_some()
    }

    /// One atomic GCRA decision for `key` (see [`GCRA`]); `None` when Redis does not answer.
    pub async fn gcra(&self, key: &str, interval: Duration, burst: u32) -> Option<GcraVerdict> {
        let interval_ms = i64::try_from(interval.as_millis().max(1)).unwrap_or(i64::MAX);
        let keys = vec![format!("reelgen:rl:{key}")];
        let args = vec![interval_ms, i64::from(burst)];
        // fred's scripts take a plain client (no fail-fast options): a disconnected client is
        // answered at once, and a slow one is bounded here.
        if !self.0.client.is_connected() {
            self.0.errors.inc();
            return None;
        }
        let client = &self.0.client;
        let ask = || async {
            tokio::time::timeout(
                GCRA_TIMEOUT,
                self.0
                    .gcra
                    .evalsha::<Vec<i64>, _, _, _>(client, keys.clone(), args.clone()),
            )
            .await
            .unwrap_or_else(|_| Err(Error::new(ErrorKind::Timeout, "GCRA script timed out")))
        };
        let mut res: Result<Vec<i64>, Error> = ask().await;
        // A restarted (emptied) Redis forgot the script: load it and ask again.
        if res
            .as_ref()
            .is_err_and(|e| e.details().contains("NOSCRIPT"))
        {
            if let Err(e) = self.0.gcra.load(client).await {
                self.failed("script load", &e);
                return None;
            }
            res = ask().await;
        }
        match res {
            Ok(v) if v.len() == 4 => Some(GcraVerdict {
                allowed: v[0] == 1,
                remaining: u32::try_from(v[1].max(0)).unwrap_or(u32::MAX),
                reset_ms: u64::try_from(v[2].max(0)).unwrap_or(0),
                retry_after_ms: u64::try_from(v[3].max(0)).unwrap_or(0),
            }),
            Ok(v) => {
                tracing::warn!(?v, "unexpected GCRA script reply");
                None
            }
            Err(e) => {
                self.failed("gcra", &e);
                None
            }
        }
    }

    /// A round trip (the readiness check).
    pub async fn ping(&self) -> Result<(), String> {
        let pong: Result<String, Error> = self.fail_fast().ping(None).await;
        pong.map(drop).map_err(|e| {
            self.failed("ping", &e);
            e.to_string()
        })
    }
}
