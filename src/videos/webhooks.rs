//! Webhooks (SPEC §6): `video.completed` / `video.failed` POSTed to a video's
//! `callback_url`, signed `X-Reelgen-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "t.body">`
//! with `WEBHOOK_SECRET`.
//!
//! Deliveries are rows in `webhook_deliveries`, written in the same transaction as the
//! video's terminal state, so a crash can delay one but never lose it. The
//! [`WebhookSender`] actor polls for due rows and sends them off the generation path;
//! a failure is retried with exponential back-off (`WEBHOOK_RETRY_BASE` × 2ⁿ, capped at 30
//! minutes) for [`MAX_ATTEMPTS`] attempts — about three hours with the default base —
//! and every attempt is logged on the row (`GET /api/v1/videos/{id}/deliveries`).
//!
//! Outgoing requests time out after 10 s, follow at most 3 redirects and only to the same
//! host, and refuse loopback, private, link-local and other non-public addresses unless
//! `WEBHOOK_ALLOW_PRIVATE=true`. The address is resolved once and the connection pinned to
//! it, so a DNS answer cannot change between the check and the request.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use uuid::Uuid;

use crate::platform::analytics::Stage;
use crate::platform::db::{Db, StoreError, now};
use crate::platform::task::Task;
use crate::platform::telemetry::Recorder;

/// Attempts before a delivery is given up.
pub const MAX_ATTEMPTS: i32 = 14;
const MAX_BACKOFF: Duration = Duration::from_secs(30 * 60);
const TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(500);
/// How long a round holds the deliveries it claimed (well over one attempt's time-outs).
const CLAIM: Duration = Duration::from_secs(120);

/// HMAC-SHA256 (RFC 2104), by the `hmac` crate.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    use hmac::Mac;
    // Any key length is valid for HMAC (longer keys are hashed first).
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC accepts keys of any length"));
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The `X-Reelgen-Signature` value for `body` sent at unix time `t`.
pub fn signature(secret: &str, t: i64, body: &str) -> String {
    let mac = hmac_sha256(secret.as_bytes(), format!("{t}.{body}").as_bytes());
    format!("t={t},v1={}", hex::encode(mac))
}

/// The wait before attempt `attempts + 1`.
pub fn backoff(base: Duration, attempts: i32) -> Duration {
    let exp = attempts.clamp(1, 20) as u32 - 1;
    base.saturating_mul(1u32 << exp).min(MAX_BACKOFF)
}

/// Addresses a webhook may not reach unless private targets are allowed.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.octets()[0] == 0
                // 100.64.0.0/10 (carrier-grade NAT)
                || (v4.octets()[0] == 100 && (v4.octets()[1] & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden(IpAddr::V4(v4));
            }
            let seg = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg & 0xfe00) == 0xfc00 // unique local
                || (seg & 0xffc0) == 0xfe80 // link local
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("invalid callback URL: {0}")]
    Url(String),
    #[error("cannot resolve {0}: {1}")]
    Resolve(String, String),
    #[error(
        "refused: {0} resolves to a non-public address ({1}); set WEBHOOK_ALLOW_PRIVATE=true to allow"
    )]
    Forbidden(String, IpAddr),
    #[error("request failed: {0}")]
    Request(String),
}

/// Sends one payload; `Ok(status)` for any HTTP answer.
pub async fn send(
    url: &str,
    payload: &str,
    event: &str,
    delivery: uuid::Uuid,
    secret: Option<&str>,
    allow_private: bool,
) -> Result<u16, DeliveryError> {
    let parsed = url::Url::parse(url).map_err(|e| DeliveryError::Url(e.to_string()))?;
    let host = parsed
        .host_str()
        .ok_or_else(|| DeliveryError::Url("no host".into()))?
        .to_string();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| DeliveryError::Url("no port".into()))?;
    let lookup_host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((lookup_host.as_str(), port))
        .await
        .map_err(|e| DeliveryError::Resolve(host.clone(), e.to_string()))?
        .collect();
    let addr = *addrs
        .first()
        .ok_or_else(|| DeliveryError::Resolve(host.clone(), "no address".into()))?;
    if !allow_private && let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
        return Err(DeliveryError::Forbidden(host, bad.ip()));
    }
    let origin = host.clone();
    let client = reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(TIMEOUT)
        .resolve(&lookup_host, addr)
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 3 {
                attempt.error("too many redirects")
            } else if attempt.url().host_str() == Some(origin.as_str()) {
                attempt.follow()
            } else {
                attempt.stop()
            }
        }))
        .build()
        .map_err(|e| DeliveryError::Request(e.to_string()))?;
    let mut req = client
        .post(url)
        .header("Content-Type", "application/json")
        .header("User-Agent", concat!("reelgen/", env!("CARGO_PKG_VERSION")))
        .header("X-Reelgen-Event", event)
        .header("X-Reelgen-Delivery", delivery.to_string());
    if let Some(secret) = secret {
        req = req.header(
            "X-Reelgen-Signature",
            signature(secret, chrono::Utc::now().timestamp(), payload),
        );
    }
    let res = req
        .body(payload.to_string())
        .send()
        .await
        .map_err(|e| DeliveryError::Request(e.to_string()))?;
    Ok(res.status().as_u16())
}

/// Settings of the sender.
#[derive(Clone)]
pub struct SenderConfig {
    pub secret: Option<String>,
    pub allow_private: bool,
    pub retry_base: Duration,
}

/// Sends due deliveries, one round at a time: the sender's polls and the shutdown flush
/// share it, and its round lock keeps the two from overlapping. Every process of a cluster
/// runs a sender on the same outbox: a row is sent only by the round that claimed it
/// ([`claim_due_webhooks`]), so one attempt is made once.
#[derive(Clone)]
pub struct Deliverer {
    db: Db,
    config: SenderConfig,
    recorder: Recorder,
    round: Arc<tokio::sync::Mutex<()>>,
}

impl Deliverer {
    pub fn new(db: Db, config: SenderConfig, recorder: Recorder) -> Self {
        Self {
            db,
            config,
            recorder,
            round: Arc::default(),
        }
    }

    /// Sends up to `limit` due deliveries and records each attempt; how many were due.
    pub async fn round(&self, limit: u64) -> usize {
        let _round = self.round.lock().await;
        let (db, config) = (&self.db, &self.config);
        let due = match claim_due_webhooks(db, limit, CLAIM).await {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(error = %e, "webhook poll failed");
                return 0;
            }
        };
        let count = due.len();
        for d in due {
            let started = Instant::now();
            let result = send(
                &d.url,
                &d.payload,
                &d.event,
                d.id,
                config.secret.as_deref(),
                config.allow_private,
            )
            .await;
            let took = started.elapsed();
            let (code, error) = match &result {
                Ok(code) if (200..300).contains(code) => (Some(*code), None),
                Ok(code) => (Some(*code), Some(format!("HTTP {code}"))),
                Err(e) => (None, Some(e.to_string())),
            };
            let ok = error.is_none();
            self.recorder.stage(Stage::Webhook, took, !ok);
            let attempts = d.attempts + 1;
            let next = backoff(config.retry_base, attempts);
            let attempt = Attempt {
                number: attempts,
                status_code: code.map(i32::from),
                error: error.as_deref(),
                took,
                retry_in: next,
                max_attempts: MAX_ATTEMPTS,
            };
            if let Err(e) = record_webhook_attempt(db, d.id, &attempt).await {
                tracing::warn!(delivery = %d.id, error = %e, "could not record webhook attempt");
            }
            match error {
                None => {
                    tracing::info!(delivery = %d.id, video = %d.video_id, "webhook delivered")
                }
                Some(e) => {
                    tracing::warn!(delivery = %d.id, attempts, error = %e, "webhook attempt failed")
                }
            }
        }
        count
    }

    /// At shutdown: one more round over the deliveries due now (each tried once), within
    /// `budget`. What fails or does not fit stays in its row and is sent after the next start.
    pub async fn flush(&self, budget: Duration) {
        if tokio::time::timeout(budget, self.round(64)).await.is_err() {
            tracing::warn!("webhook flush ran out of time; the rest is sent after restart");
        }
    }
}

/// Polls for due deliveries and sends them (every [`POLL`]; a round that outlasts the
/// interval delays the next instead of overlapping it). Runs until the task is dropped.
pub fn spawn_sender(deliverer: Deliverer) -> Task {
    Task::spawn("webhook sender", async move {
        let mut tick = tokio::time::interval(POLL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            deliverer.round(16).await;
        }
    })
}

// ---- the outbox rows ---------------------------------------------------------------------------

/// Pending deliveries whose time has come, oldest first, each claimed for `claim`: its
/// `next_attempt_at` moves past the attempt by a compare-and-set on its old value, so of
/// two processes polling the same outbox exactly one gets each row. The attempt's record
/// then sets the real next time; a process that dies mid-attempt leaves the row due again
/// once the claim passes (at least once, never lost).
pub async fn claim_due_webhooks(
    db: &Db,
    limit: u64,
    claim: Duration,
) -> Result<Vec<entity::webhook_delivery::Model>, StoreError> {
    use entity::webhook_delivery;
    let due = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::Status.eq(webhook_delivery::DeliveryStatus::Pending))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now()))
        .order_by_asc(webhook_delivery::Column::NextAttemptAt)
        .limit(limit)
        .all(db)
        .await?;
    let until = now() + chrono::Duration::from_std(claim).unwrap_or(chrono::Duration::MAX);
    let mut claimed = Vec::with_capacity(due.len());
    for row in due {
        let res = webhook_delivery::Entity::update_many()
            .col_expr(
                webhook_delivery::Column::NextAttemptAt,
                sea_orm::sea_query::Expr::value(until),
            )
            .filter(webhook_delivery::Column::Id.eq(row.id))
            .filter(webhook_delivery::Column::Status.eq(webhook_delivery::DeliveryStatus::Pending))
            .filter(webhook_delivery::Column::NextAttemptAt.eq(row.next_attempt_at))
            .exec(db)
            .await?;
        if res.rows_affected == 1 {
            claimed.push(row);
        }
    }
    Ok(claimed)
}

/// One delivery attempt's result.
pub struct Attempt<'a> {
    /// 1 for the first attempt.
    pub number: i32,
    pub status_code: Option<i32>,
    /// `None` when delivered.
    pub error: Option<&'a str>,
    pub took: Duration,
    /// When to try again after a failure.
    pub retry_in: Duration,
    /// After this many failures the delivery fails for good.
    pub max_attempts: i32,
}

/// Records one attempt: delivered on success, else retried after `retry_in`, or failed for
/// good after `max_attempts`.
pub async fn record_webhook_attempt(db: &Db, id: Uuid, a: &Attempt<'_>) -> Result<(), StoreError> {
    let Attempt {
        number: attempts,
        status_code,
        error,
        took,
        retry_in,
        max_attempts,
    } = *a;
    use entity::webhook_delivery;
    let Some(row) = webhook_delivery::Entity::find_by_id(id).one(db).await? else {
        return Ok(());
    };
    let now = now();
    let mut log: Vec<serde_json::Value> = serde_json::from_str(&row.log).unwrap_or_default();
    log.push(serde_json::json!({
        "attempt": attempts,
        "at": now,
        "status_code": status_code,
        "error": error,
        "ms": (took.as_secs_f64() * 1e4).round() / 10.0,
    }));
    let mut m: webhook_delivery::ActiveModel = row.into();
    m.attempts = Set(attempts);
    m.last_status_code = Set(status_code);
    m.last_error = Set(error.map(str::to_string));
    m.log = Set(serde_json::Value::Array(log).to_string());
    match error {
        None => {
            m.status = Set(webhook_delivery::DeliveryStatus::Delivered);
            m.delivered_at = Set(Some(now));
        }
        Some(_) if attempts >= max_attempts => {
            m.status = Set(webhook_delivery::DeliveryStatus::Failed)
        }
        Some(_) => {
            m.next_attempt_at =
                Set(now
                    + chrono::Duration::from_std(retry_in)
                        .unwrap_or(chrono::Duration::minutes(30)));
        }
    }
    m.update(db).await?;
    Ok(())
}

/// A video's deliveries (tenant-scoped), newest first.
pub async fn list_webhooks(
    db: &Db,
    tenant: &str,
    video_id: Uuid,
) -> Result<Vec<entity::webhook_delivery::Model>, StoreError> {
    use entity::webhook_delivery;
    Ok(webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::Tenant.eq(tenant))
        .filter(webhook_delivery::Column::VideoId.eq(video_id))
        .order_by_desc(webhook_delivery::Column::CreatedAt)
        .all(db)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
        assert_eq!(
            signature("s", 7, "{}"),
            format!("t=7,v1={}", hex::encode(hmac_sha256(b"s", b"7.{}")))
        );
    }

    #[test]
    fn backoff_doubles_and_is_capped() {
        let base = Duration::from_secs(10);
        assert_eq!(backoff(base, 1), Duration::from_secs(10));
        assert_eq!(backoff(base, 4), Duration::from_secs(80));
        assert_eq!(backoff(base, 13), MAX_BACKOFF);
        let total: Duration = (1..MAX_ATTEMPTS).map(|n| backoff(base, n)).sum();
        assert!(total > Duration::from_secs(3600), "retries span {total:?}");
    }

    #[test]
    fn private_and_loopback_targets_are_refused() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.4",
            "169.254.169.254",
            "0.0.0.0",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "100.64.0.1",
        ] {
            assert!(is_forbidden(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["93.184.216.34", "2606:2800:220:1::1", "8.8.8.8"] {
            assert!(!is_forbidden(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[actix_web::test]
    async fn a_loopback_callback_is_refused_before_any_connection() {
        let err = send(
            "http://127.0.0.1:9/hook",
            "{}",
            "video.completed",
            uuid::Uuid::nil(),
            None,
            false,
        )
        .await
        .expect_err("refused");
        assert!(matches!(err, DeliveryError::Forbidden(..)), "{err}");
        assert!(err.to_string().contains("WEBHOOK_ALLOW_PRIVATE"));
    }
}
