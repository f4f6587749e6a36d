//! The videos' rows: insert (with the idempotency record), read, list with cursors, queue
//! positions, and the conditional state transitions the lifecycle and the queue make, each an
//! UPDATE from the expected state; plus the webhook outbox rows written in the same
//! transaction as a terminal state. Every video query a handler makes takes the caller's
//! tenant and filters on it; nothing here can reach another tenant's rows.

use std::time::Duration;

use chrono::{DateTime, Utc};
use entity::{idempotency, video};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder,
    QuerySelect, Set, TransactionTrait,
};
use uuid::Uuid;

use super::model::{VideoStatus, VideoView};
use crate::platform::db::{Db, StoreError, now};
use crate::render::params::VideoParams;

/// A new video row, `queued`.
pub fn new_video(tenant: &str, params: &VideoParams) -> Result<video::Model, StoreError> {
    let (duration_s, frames_total) = params.estimate_duration();
    let now = now();
    Ok(video::Model {
        id: Uuid::now_v7(),
        tenant: tenant.to_string(),
        title: params.title.clone(),
        status: VideoStatus::Queued.as_str().into(),
        progress: 0.0,
        frames_done: 0,
        frames_total,
        duration_s,
        params: serde_json::to_value(params).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        error_code: None,
        error_message: None,
        size_bytes: None,
        attempts: 0,
        created_at: now,
        started_at: None,
        completed_at: None,
        updated_at: now,
    })
}

/// What an idempotent POST stored: replayed verbatim on a matching retry.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub request_hash: String,
    pub status: u16,
    pub location: Option<String>,
    pub body: String,
}

pub enum InsertOutcome {
    Inserted,
    /// The key was used before; here is what it answered.
    Replay(StoredResponse),
}

/// Inserts videos and, when given, the idempotency record, in one transaction: either the
/// videos and the record exist, or neither. A concurrent request with the same key loses the
/// race on the record's primary key and gets the winner's stored response.
pub async fn insert_videos(
    db: &Db,
    rows: Vec<video::Model>,
    idem: Option<(&str, &str, StoredResponse)>,
) -> Result<InsertOutcome, StoreError> {
    let txn = db.begin().await?;
    if let Some((tenant, key, resp)) = &idem {
        // An expired record of this key (not purged yet) gives way to the new request.
        idempotency::Entity::delete_many()
            .filter(idempotency::Column::Tenant.eq(*tenant))
            .filter(idempotency::Column::Key.eq(*key))
            .filter(idempotency::Column::CreatedAt.lte(Utc::now() - IDEMPOTENCY_TTL))
            .exec(&txn)
            .await?;
        let record = idempotency::ActiveModel {
            tenant: Set(tenant.to_string()),
            key: Set(key.to_string()),
            request_hash: Set(resp.request_hash.clone()),
            status_code: Set(i32::from(resp.status)),
            location: Set(resp.location.clone()),
            body: Set(resp.body.clone()),
            created_at: Set(now()),
        };
        let inserted = idempotency::Entity::insert(record)
            .on_conflict(
                OnConflict::columns([idempotency::Column::Tenant, idempotency::Column::Key])
                    .do_nothing()
                    .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
        if inserted == 0 {
            txn.rollback().await?;
            return match find_idempotent(db, tenant, key).await? {
                Some(stored) => Ok(InsertOutcome::Replay(stored)),
                None => Err(StoreError::Corrupt("idempotency record vanished".into())),
            };
        }
    }
    let models: Vec<video::ActiveModel> = rows.into_iter().map(Into::into).collect();
    video::Entity::insert_many(models)
        .exec_without_returning(&txn)
        .await?;
    txn.commit().await?;
    Ok(InsertOutcome::Inserted)
}

/// Records younger than this are replayed; older keys may be reused.
pub const IDEMPOTENCY_TTL: chrono::Duration = chrono::Duration::hours(24);

pub async fn find_idempotent(
    db: &Db,
    tenant: &str,
    key: &str,
) -> Result<Option<StoredResponse>, StoreError> {
    let found = idempotency::Entity::find_by_id((tenant.to_string(), key.to_string()))
        .one(db)
        .await?;
    Ok(found
        .filter(|r| r.created_at > Utc::now() - IDEMPOTENCY_TTL)
        .map(|r| StoredResponse {
            request_hash: r.request_hash,
            status: u16::try_from(r.status_code).unwrap_or(500),
            location: r.location,
            body: r.body,
        }))
}

/// Removes idempotency records past their lifetime; returns how many.
pub async fn purge_idempotency(db: &Db) -> Result<u64, StoreError> {
    let res = idempotency::Entity::delete_many()
        .filter(idempotency::Column::CreatedAt.lt(Utc::now() - IDEMPOTENCY_TTL))
        .exec(db)
        .await?;
    Ok(res.rows_affected)
}

pub async fn get_video(
    db: &Db,
    tenant: &str,
    id: Uuid,
) -> Result<Option<video::Model>, StoreError> {
    Ok(video::Entity::find_by_id(id)
        .filter(video::Column::Tenant.eq(tenant))
        .one(db)
        .await?)
}

/// Position in the list order: newest first, ties broken by id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ListCursor {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

/// One page, newest first; `limit + 1` rows are read to know whether another page follows.
pub async fn list_videos(
    db: &Db,
    tenant: &str,
    status: Option<VideoStatus>,
    after: Option<ListCursor>,
    limit: u64,
) -> Result<(Vec<video::Model>, Option<ListCursor>), StoreError> {
    let mut q = video::Entity::find().filter(video::Column::Tenant.eq(tenant));
    if let Some(s) = status {
        q = q.filter(video::Column::Status.eq(s.as_str()));
    }
    if let Some(c) = after {
        q = q.filter(
            Condition::any()
                .add(video::Column::CreatedAt.lt(c.created_at))
                .add(
                    Condition::all()
                        .add(video::Column::CreatedAt.eq(c.created_at))
                        .add(video::Column::Id.lt(c.id)),
                ),
        );
    }
    let mut rows = q
        .order_by_desc(video::Column::CreatedAt)
        .order_by_desc(video::Column::Id)
        .limit(limit + 1)
        .all(db)
        .await?;
    let next = if rows.len() as u64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| ListCursor {
            created_at: r.created_at,
            id: r.id,
        })
    } else {
        None
    };
    Ok((rows, next))
}

fn queued_before(created_at: DateTime<Utc>, id: Uuid) -> Condition {
    Condition::all()
        .add(video::Column::Status.eq(VideoStatus::Queued.as_str()))
        .add(
            Condition::any()
                .add(video::Column::CreatedAt.lt(created_at))
                .add(
                    Condition::all()
                        .add(video::Column::CreatedAt.eq(created_at))
                        .add(video::Column::Id.lt(id)),
                ),
        )
}

/// 1-based positions in the global queue (all tenants, oldest first) of the queued videos
/// among `rows`, in the same order; `None` for videos that are not queued. Two queries
/// whatever the page size: the count before the oldest, then the queued keys in the range.
pub async fn queue_positions(
    db: &Db,
    rows: &[video::Model],
) -> Result<Vec<Option<u64>>, StoreError> {
    let queued: Vec<&video::Model> = rows
        .iter()
        .filter(|r| r.status == VideoStatus::Queued.as_str())
        .collect();
    let Some(oldest) = queued.iter().min_by_key(|r| (r.created_at, r.id)) else {
        return Ok(vec![None; rows.len()]);
    };
    let newest = queued
        .iter()
        .max_by_key(|r| (r.created_at, r.id))
        .unwrap_or(oldest);
    let before = video::Entity::find()
        .filter(queued_before(oldest.created_at, oldest.id))
        .count(db)
        .await?;
    let mut keys: Vec<(DateTime<Utc>, Uuid)> = if queued.len() == 1 {
        vec![(oldest.created_at, oldest.id)]
    } else {
        video::Entity::find()
            .select_only()
            .column(video::Column::CreatedAt)
            .column(video::Column::Id)
            .filter(video::Column::Status.eq(VideoStatus::Queued.as_str()))
            .filter(video::Column::CreatedAt.gte(oldest.created_at))
            .filter(video::Column::CreatedAt.lte(newest.created_at))
            .into_tuple()
            .all(db)
            .await?
    };
    keys.sort();
    Ok(rows
        .iter()
        .map(|r| {
            (r.status == VideoStatus::Queued.as_str()).then(|| {
                let rank = keys.partition_point(|k| *k < (r.created_at, r.id)) as u64;
                let lower = keys.partition_point(|k| *k < (oldest.created_at, oldest.id)) as u64;
                before + rank - lower + 1
            })
        })
        .collect())
}

pub async fn count_queued(db: &Db) -> Result<u64, StoreError> {
    Ok(video::Entity::find()
        .filter(video::Column::Status.eq(VideoStatus::Queued.as_str()))
        .count(db)
        .await?)
}

pub enum CancelOutcome {
    Cancelled(Box<video::Model>),
    AlreadyFinished(VideoStatus),
    NotFound,
}

/// Moves a queued or rendering video to `cancelled`; finished ones are left alone.
pub async fn cancel_video(db: &Db, tenant: &str, id: Uuid) -> Result<CancelOutcome, StoreError> {
    let now = now();
    let res = video::Entity::update_many()
        .col_expr(
            video::Column::Status,
            Expr::value(VideoStatus::Cancelled.as_str()),
        )
        .col_expr(video::Column::CompletedAt, Expr::value(Some(now)))
        .col_expr(video::Column::UpdatedAt, Expr::value(now))
        .filter(video::Column::Id.eq(id))
        .filter(video::Column::Tenant.eq(tenant))
        .filter(video::Column::Status.is_in([
            VideoStatus::Queued.as_str(),
            VideoStatus::Rendering.as_str(),
        ]))
        .exec(db)
        .await?;
    let current = get_video(db, tenant, id).await?;
    Ok(match current {
        None => CancelOutcome::NotFound,
        Some(v) if res.rows_affected > 0 => CancelOutcome::Cancelled(Box::new(v)),
        Some(v) => {
            CancelOutcome::AlreadyFinished(v.status.parse().unwrap_or(VideoStatus::Completed))
        }
    })
}

/// Deletes the row; returns the deleted video's last status, `None` when it did not exist.
pub async fn delete_video(
    db: &Db,
    tenant: &str,
    id: Uuid,
) -> Result<Option<VideoStatus>, StoreError> {
    let Some(existing) = get_video(db, tenant, id).await? else {
        return Ok(None);
    };
    let res = video::Entity::delete_many()
        .filter(video::Column::Id.eq(id))
        .filter(video::Column::Tenant.eq(tenant))
        .exec(db)
        .await?;
    Ok((res.rows_affected > 0).then(|| existing.status.parse().unwrap_or(VideoStatus::Queued)))
}

// ---- the job queue ----------------------------------------------------------------------------

/// Crash recovery at start: videos left `rendering` go back to `queued` until they have been
/// tried `max_attempts` times; then they fail with a reason. Returns (requeued, failed).
pub async fn recover_interrupted(db: &Db, max_attempts: i32) -> Result<(u64, u64), StoreError> {
    let now = now();
    let failed = video::Entity::update_many()
        .col_expr(
            video::Column::Status,
            Expr::value(VideoStatus::Failed.as_str()),
        )
        .col_expr(
            video::Column::ErrorCode,
            Expr::value(Some("too_many_attempts")),
        )
        .col_expr(
            video::Column::ErrorMessage,
            Expr::value(Some(format!(
                "rendering was interrupted {max_attempts} times; giving up"
            ))),
        )
        .col_expr(video::Column::CompletedAt, Expr::value(Some(now)))
        .col_expr(video::Column::UpdatedAt, Expr::value(now))
        .filter(video::Column::Status.eq(VideoStatus::Rendering.as_str()))
        .filter(video::Column::Attempts.gte(max_attempts))
        .exec(db)
        .await?
        .rows_affected;
    let requeued = video::Entity::update_many()
        .col_expr(
            video::Column::Status,
            Expr::value(VideoStatus::Queued.as_str()),
        )
        .col_expr(video::Column::Progress, Expr::value(0.0))
        .col_expr(video::Column::FramesDone, Expr::value(0))
        .col_expr(video::Column::UpdatedAt, Expr::value(now))
        .filter(video::Column::Status.eq(VideoStatus::Rendering.as_str()))
        .exec(db)
        .await?
        .rows_affected;
    Ok((requeued, failed))
}

/// Hands a video that was rendering back to the queue (graceful shutdown): it starts again
/// from the beginning, keeps its place (oldest first), and the interrupted attempt does not
/// count against [`recover_interrupted`]'s limit. `false` when it was no longer rendering
/// (cancelled or deleted meanwhile).
pub async fn requeue_video(db: &Db, id: Uuid) -> Result<bool, StoreError> {
    let res = video::Entity::update_many()
        .col_expr(
            video::Column::Status,
            Expr::value(VideoStatus::Queued.as_str()),
        )
        .col_expr(video::Column::Progress, Expr::value(0.0))
        .col_expr(video::Column::FramesDone, Expr::value(0))
        .col_expr(video::Column::StartedAt, Expr::value(None::<DateTime<Utc>>))
        .col_expr(
            video::Column::Attempts,
            Expr::col(video::Column::Attempts).sub(1),
        )
        .col_expr(video::Column::UpdatedAt, Expr::value(now()))
        .filter(video::Column::Id.eq(id))
        .filter(video::Column::Status.eq(VideoStatus::Rendering.as_str()))
        .filter(video::Column::Attempts.gt(0))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Takes the oldest queued video (any tenant) and marks it `rendering`. Safe against other
/// workers: the update only succeeds while the row is still `queued`.
pub async fn claim_next(db: &Db) -> Result<Option<video::Model>, StoreError> {
    for _ in 0..5 {
        let Some(next) = video::Entity::find()
            .filter(video::Column::Status.eq(VideoStatus::Queued.as_str()))
            .order_by_asc(video::Column::CreatedAt)
            .order_by_asc(video::Column::Id)
            .one(db)
            .await?
        else {
            return Ok(None);
        };
        let now = now();
        let res = video::Entity::update_many()
            .col_expr(
                video::Column::Status,
                Expr::value(VideoStatus::Rendering.as_str()),
            )
            .col_expr(video::Column::StartedAt, Expr::value(Some(now)))
            .col_expr(video::Column::UpdatedAt, Expr::value(now))
            .col_expr(
                video::Column::Attempts,
                Expr::col(video::Column::Attempts).add(1),
            )
            .filter(video::Column::Id.eq(next.id))
            .filter(video::Column::Status.eq(VideoStatus::Queued.as_str()))
            .exec(db)
            .await?;
        if res.rows_affected == 1 {
            return Ok(video::Entity::find_by_id(next.id).one(db).await?);
        }
    }
    Ok(None)
}

/// Records progress of a rendering video; never moves it backwards, never touches a video
/// that is no longer rendering (cancelled or deleted meanwhile). `true` when it still renders.
pub async fn record_progress(
    db: &Db,
    id: Uuid,
    frames_done: i64,
    frames_total: i64,
    duration_s: f64,
) -> Result<bool, StoreError> {
    let progress = if frames_total > 0 {
        (frames_done as f64 / frames_total as f64).min(1.0)
    } else {
        0.0
    };
    let res = video::Entity::update_many()
        .col_expr(video::Column::FramesDone, Expr::value(frames_done))
        .col_expr(video::Column::FramesTotal, Expr::value(frames_total))
        .col_expr(video::Column::DurationS, Expr::value(duration_s))
        .col_expr(video::Column::Progress, Expr::value(progress))
        .col_expr(video::Column::UpdatedAt, Expr::value(now()))
        .filter(video::Column::Id.eq(id))
        .filter(video::Column::Status.eq(VideoStatus::Rendering.as_str()))
        .filter(video::Column::FramesDone.lte(frames_done))
        .exec(db)
        .await?;
    if res.rows_affected > 0 {
        return Ok(true);
    }
    Ok(video::Entity::find_by_id(id)
        .one(db)
        .await?
        .is_some_and(|v| v.status == VideoStatus::Rendering.as_str()))
}

/// Marks a rendering video completed with its file's size and exact length.
pub async fn complete_video(
    db: &Db,
    id: Uuid,
    frames: i64,
    duration_s: f64,
    size_bytes: i64,
    callback: Option<&str>,
) -> Result<bool, StoreError> {
    let now = now();
    let txn = db.begin().await?;
    let res = video::Entity::update_many()
        .col_expr(
            video::Column::Status,
            Expr::value(VideoStatus::Completed.as_str()),
        )
        .col_expr(video::Column::Progress, Expr::value(1.0))
        .col_expr(video::Column::FramesDone, Expr::value(frames))
        .col_expr(video::Column::FramesTotal, Expr::value(frames))
        .col_expr(video::Column::DurationS, Expr::value(duration_s))
        .col_expr(video::Column::SizeBytes, Expr::value(Some(size_bytes)))
        .col_expr(video::Column::CompletedAt, Expr::value(Some(now)))
        .col_expr(video::Column::UpdatedAt, Expr::value(now))
        .filter(video::Column::Id.eq(id))
        .filter(video::Column::Status.eq(VideoStatus::Rendering.as_str()))
        .exec(&txn)
        .await?;
    let done = res.rows_affected > 0;
    if done && let Some(url) = callback {
        enqueue_webhook(&txn, id, url, "video.completed").await?;
    }
    txn.commit().await?;
    Ok(done)
}

async fn enqueue_webhook(
    txn: &sea_orm::DatabaseTransaction,
    id: Uuid,
    url: &str,
    event: &str,
) -> Result<(), StoreError> {
    use entity::webhook_delivery;
    let Some(v) = video::Entity::find_by_id(id).one(txn).await? else {
        return Ok(());
    };
    let now = now();
    let tenant = v.tenant.clone();
    // The body of a webhook: `{"event", "video"}` with the video as the API shows it.
    let payload =
        serde_json::json!({"event": event, "video": VideoView::from_model(v, None)}).to_string();
    webhook_delivery::Entity::insert(webhook_delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        video_id: Set(id),
        tenant: Set(tenant),
        event: Set(event.to_string()),
        url: Set(url.to_string()),
        payload: Set(payload),
        status: Set("pending".into()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        last_status_code: Set(None),
        last_error: Set(None),
        log: Set("[]".into()),
        created_at: Set(now),
        delivered_at: Set(None),
    })
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// Pending deliveries whose time has come, oldest first.
pub async fn due_webhooks(
    db: &Db,
    limit: u64,
) -> Result<Vec<entity::webhook_delivery::Model>, StoreError> {
    use entity::webhook_delivery;
    Ok(webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::Status.eq("pending"))
        .filter(webhook_delivery::Column::NextAttemptAt.lte(now()))
        .order_by_asc(webhook_delivery::Column::NextAttemptAt)
        .limit(limit)
        .all(db)
        .await?)
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
            m.status = Set("delivered".into());
            m.delivered_at = Set(Some(now));
        }
        Some(_) if attempts >= max_attempts => m.status = Set("failed".into()),
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

/// Marks a rendering video failed with a stable code and a message a user can act on.
pub async fn fail_video(
    db: &Db,
    id: Uuid,
    code: &str,
    message: &str,
    callback: Option<&str>,
) -> Result<bool, StoreError> {
    let now = now();
    let txn = db.begin().await?;
    let res = video::Entity::update_many()
        .col_expr(
            video::Column::Status,
            Expr::value(VideoStatus::Failed.as_str()),
        )
        .col_expr(
            video::Column::ErrorCode,
            Expr::value(Some(code.to_string())),
        )
        .col_expr(
            video::Column::ErrorMessage,
            Expr::value(Some(message.to_string())),
        )
        .col_expr(video::Column::CompletedAt, Expr::value(Some(now)))
        .col_expr(video::Column::UpdatedAt, Expr::value(now))
        .filter(video::Column::Id.eq(id))
        .filter(video::Column::Status.eq(VideoStatus::Rendering.as_str()))
        .exec(&txn)
        .await?;
    let failed = res.rows_affected > 0;
    if failed && let Some(url) = callback {
        enqueue_webhook(&txn, id, url, "video.failed").await?;
    }
    txn.commit().await?;
    Ok(failed)
}
