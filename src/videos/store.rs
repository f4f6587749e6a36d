//! The videos' rows as tenants reach them: insert (with the idempotency record), read, list
//! with cursors, queue positions, cancel and delete (each a conditional UPDATE or DELETE from
//! the expected state). A worker's writes go through `videos::queue`. Every query takes the
//! caller's tenant and filters on it; nothing here can reach another tenant's rows. Only
//! `videos::lifecycle` changes state through it; handlers read.

use chrono::{DateTime, Utc};
use entity::{idempotency, video};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    TransactionTrait,
};
use uuid::Uuid;

use super::model::VideoStatus;
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
        status: VideoStatus::Queued,
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
        lease_until: None,
        scenes: None,
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
        q = q.filter(video::Column::Status.eq(s));
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
        .add(video::Column::Status.eq(VideoStatus::Queued))
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
        .filter(|r| r.status == VideoStatus::Queued)
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
            .filter(video::Column::Status.eq(VideoStatus::Queued))
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
            (r.status == VideoStatus::Queued).then(|| {
                let rank = keys.partition_point(|k| *k < (r.created_at, r.id)) as u64;
                let lower = keys.partition_point(|k| *k < (oldest.created_at, oldest.id)) as u64;
                before + rank - lower + 1
            })
        })
        .collect())
}

pub async fn count_queued(db: &Db) -> Result<u64, StoreError> {
    Ok(video::Entity::find()
        .filter(video::Column::Status.eq(VideoStatus::Queued))
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
        .col_expr(video::Column::Status, Expr::value(VideoStatus::Cancelled))
        .col_expr(video::Column::CompletedAt, Expr::value(Some(now)))
        .col_expr(video::Column::UpdatedAt, Expr::value(now))
        .filter(video::Column::Id.eq(id))
        .filter(video::Column::Tenant.eq(tenant))
        .filter(video::Column::Status.is_in([VideoStatus::Queued, VideoStatus::Rendering]))
        .exec(db)
        .await?;
    let current = get_video(db, tenant, id).await?;
    Ok(match current {
        None => CancelOutcome::NotFound,
        Some(v) if res.rows_affected > 0 => CancelOutcome::Cancelled(Box::new(v)),
        Some(v) => CancelOutcome::AlreadyFinished(v.status),
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
    Ok((res.rows_affected > 0).then_some(existing.status))
}
