//! The job queue: the seam through which a worker takes videos and reports on them. A claim
//! gives the worker a [`Lease`]; every later write for that render (progress, completion,
//! failure, hand-back) is one conditional UPDATE fenced by the lease — the row must still be
//! `rendering` under the same attempt — so a worker that lost its video (cancelled, deleted,
//! or recovered after a crash and claimed again) changes nothing when it reports late, and a
//! video completes, and its webhook row is written, at most once.
//!
//! The videos table is the queue and the record, on both backends; nothing about a job lives
//! only in Redis. A claim also sets `lease_until = now + JOB_LEASE`; the worker renews it
//! while it renders ([`JobQueue::keep`], and every progress write), and [`JobQueue::recover`]
//! puts videos whose lease lapsed (a crashed, killed or partitioned worker) back in the queue
//! — or fails them with `too_many_attempts` after the last attempt. A re-claim bumps the
//! attempt number, which is what fences the old worker out.
//!
//! [`JobQueue`] is an enum of backends rather than a trait object: chosen once from the
//! configuration, dispatched statically with no boxed futures, and a new backend makes the
//! compiler point at every method that must handle it.
//! - [`JobQueue::Embedded`] (SQLite): one process. Claims are a conditional UPDATE; at start
//!   every `rendering` row is an orphan of the last run, recovered at once.
//! - [`JobQueue::Shared`] (PostgreSQL): any number of processes. Claims take the oldest
//!   queued row with `FOR UPDATE SKIP LOCKED` (workers never wait on each other's claims);
//!   only lapsed leases are orphans, since other workers may be rendering the rest.
//!
//! Only `videos::lifecycle` calls it.

use chrono::{DateTime, Utc};
use entity::video;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ColumnTrait, Condition, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
    Statement, TransactionTrait,
};
use uuid::Uuid;

use super::model::{VideoStatus, VideoView};
use crate::platform::db::{Db, StoreError, now};

/// A worker's hold on one claimed video.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub id: Uuid,
    pub tenant: String,
    /// The claim's attempt number (1 for the first); a re-claim after recovery bumps it.
    pub attempt: i32,
}

/// What a finished render reports.
#[derive(Debug, Clone, PartialEq)]
pub struct Finished {
    pub frames: i64,
    pub duration_s: f64,
    pub size_bytes: i64,
    /// A multi-scene video's scenes as they came out (`None` otherwise).
    pub scenes: Option<serde_json::Value>,
}

/// When videos are orphans (see [`JobQueue::recover`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Orphans {
    /// At a process's start.
    AtStart,
    /// The periodic sweep.
    Lapsed,
}

#[derive(Clone)]
pub enum JobQueue {
    /// SQLite, one process (see the module doc).
    Embedded { db: Db, lease: std::time::Duration },
    /// PostgreSQL shared by the processes of a cluster (see the module doc).
    Shared { db: Db, lease: std::time::Duration },
}

impl JobQueue {
    /// The backend the database calls for, with leases of `lease`.
    pub fn new(db: Db, lease: std::time::Duration) -> Self {
        match db.get_database_backend() {
            DbBackend::Postgres => Self::Shared { db, lease },
            _ => Self::Embedded { db, lease },
        }
    }

    fn parts(&self) -> (&Db, std::time::Duration) {
        match self {
            Self::Embedded { db, lease } | Self::Shared { db, lease } => (db, *lease),
        }
    }

    /// Whether other processes may hold leases, so lapsed ones must be swept while running.
    pub fn shared(&self) -> bool {
        matches!(self, Self::Shared { .. })
    }

    /// How long a claim lasts unless renewed.
    pub fn lease(&self) -> std::time::Duration {
        self.parts().1
    }

    fn lease_end(&self) -> DateTime<Utc> {
        now() + chrono::Duration::from_std(self.lease()).unwrap_or(chrono::Duration::MAX)
    }

    /// Takes the oldest queued video (any tenant): `queued` → `rendering`, attempt counted,
    /// leased for `JOB_LEASE`.
    pub async fn claim(&self) -> Result<Option<(video::Model, Lease)>, StoreError> {
        let until = self.lease_end();
        let claimed = match self {
            Self::Embedded { db, .. } => claim_next(db, until).await?,
            Self::Shared { db, .. } => claim_skip_locked(db, until).await?,
        };
        Ok(claimed.map(|v| {
            let lease = Lease {
                id: v.id,
                tenant: v.tenant.clone(),
                attempt: v.attempts,
            };
            (v, lease)
        }))
    }

    /// Extends the lease by `JOB_LEASE` from now; `false` when it is gone.
    pub async fn keep(&self, lease: &Lease) -> Result<bool, StoreError> {
        let res = video::Entity::update_many()
            .col_expr(
                video::Column::LeaseUntil,
                Expr::value(Some(self.lease_end())),
            )
            .filter(fenced(lease))
            .exec(self.parts().0)
            .await?;
        Ok(res.rows_affected == 1)
    }

    /// Progress under the lease (never backwards); `false` when the lease is gone.
    pub async fn renew(
        &self,
        lease: &Lease,
        frames_done: i64,
        frames_total: i64,
        duration_s: f64,
    ) -> Result<bool, StoreError> {
        let until = self.lease_end();
        record_progress(
            self.parts().0,
            lease,
            (frames_done, frames_total, duration_s),
            until,
        )
        .await
    }

    /// `rendering` → `completed`, with the webhook row when `callback` is set; `false` when
    /// the lease is gone.
    pub async fn complete(
        &self,
        lease: &Lease,
        finished: Finished,
        callback: Option<&str>,
    ) -> Result<bool, StoreError> {
        complete_video(self.parts().0, lease, finished, callback).await
    }

    /// `rendering` → `failed` with a stable code, with the webhook row when `callback` is
    /// set; `false` when the lease is gone.
    pub async fn fail(
        &self,
        lease: &Lease,
        code: &str,
        message: &str,
        callback: Option<&str>,
    ) -> Result<bool, StoreError> {
        fail_video(self.parts().0, lease, code, message, callback).await
    }

    /// `rendering` → `queued` again, the attempt not counted (graceful shutdown).
    pub async fn requeue(&self, lease: &Lease) -> Result<bool, StoreError> {
        requeue_video(self.parts().0, lease).await
    }

    /// Videos whose render was interrupted — every `rendering` one at an embedded start, else
    /// those whose lease lapsed: back to `queued`, or `failed` after `max_attempts`.
    /// Returns (requeued, failed).
    pub async fn recover(
        &self,
        max_attempts: i32,
        when: Orphans,
    ) -> Result<(u64, u64), StoreError> {
        let all = matches!(self, Self::Embedded { .. }) && when == Orphans::AtStart;
        recover_interrupted(self.parts().0, max_attempts, all).await
    }

    /// Videos waiting, all tenants.
    pub async fn depth(&self) -> Result<u64, StoreError> {
        super::store::count_queued(self.parts().0).await
    }

    /// When the oldest queued video was created (`None` when none waits).
    pub async fn oldest_queued(&self) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(video::Entity::find()
            .select_only()
            .column(video::Column::CreatedAt)
            .filter(video::Column::Status.eq(VideoStatus::Queued))
            .order_by_asc(video::Column::CreatedAt)
            .into_tuple::<DateTime<Utc>>()
            .one(self.parts().0)
            .await?)
    }
}

/// The row a lease still holds: this video, `rendering`, under the same attempt.
fn fenced(lease: &Lease) -> Condition {
    Condition::all()
        .add(video::Column::Id.eq(lease.id))
        .add(video::Column::Status.eq(VideoStatus::Rendering))
        .add(video::Column::Attempts.eq(lease.attempt))
}

/// Crash recovery at start: videos left `rendering` go back to `queued` until they have been
/// tried `max_attempts` times; then they fail with a reason. Returns (requeued, failed).
async fn recover_interrupted(
    db: &Db,
    max_attempts: i32,
    all: bool,
) -> Result<(u64, u64), StoreError> {
    let now = now();
    let orphan = if all {
        Condition::all().add(video::Column::Status.eq(VideoStatus::Rendering))
    } else {
        Condition::all()
            .add(video::Column::Status.eq(VideoStatus::Rendering))
            .add(
                Condition::any()
                    .add(video::Column::LeaseUntil.is_null())
                    .add(video::Column::LeaseUntil.lt(now)),
            )
    };
    let failed = video::Entity::update_many()
        .col_expr(video::Column::Status, Expr::value(VideoStatus::Failed))
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
        .col_expr(
            video::Column::LeaseUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .filter(orphan.clone())
        .filter(video::Column::Attempts.gte(max_attempts))
        .exec(db)
        .await?
        .rows_affected;
    let requeued = video::Entity::update_many()
        .col_expr(video::Column::Status, Expr::value(VideoStatus::Queued))
        .col_expr(video::Column::Progress, Expr::value(0.0))
        .col_expr(video::Column::FramesDone, Expr::value(0))
        .col_expr(video::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            video::Column::LeaseUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .filter(orphan)
        .exec(db)
        .await?
        .rows_affected;
    Ok((requeued, failed))
}

/// Hands a video that was rendering back to the queue (graceful shutdown): it starts again
/// from the beginning, keeps its place (oldest first), and the interrupted attempt does not
/// count against [`recover_interrupted`]'s limit. `false` when it was no longer rendering
/// under this lease (cancelled or deleted meanwhile, or recovered and claimed again).
async fn requeue_video(db: &Db, lease: &Lease) -> Result<bool, StoreError> {
    let res = video::Entity::update_many()
        .col_expr(video::Column::Status, Expr::value(VideoStatus::Queued))
        .col_expr(video::Column::Progress, Expr::value(0.0))
        .col_expr(video::Column::FramesDone, Expr::value(0))
        .col_expr(video::Column::StartedAt, Expr::value(None::<DateTime<Utc>>))
        .col_expr(
            video::Column::Attempts,
            Expr::col(video::Column::Attempts).sub(1),
        )
        .col_expr(video::Column::UpdatedAt, Expr::value(now()))
        .col_expr(
            video::Column::LeaseUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .filter(fenced(lease))
        .filter(video::Column::Attempts.gt(0))
        .exec(db)
        .await?;
    Ok(res.rows_affected == 1)
}

/// Takes the oldest queued video (any tenant) and marks it `rendering`. Safe against other
/// workers: the update only succeeds while the row is still `queued`. A lost race means
/// another claimer took that row, so the loop ends: with a video, or with `None` only when
/// nothing is queued (a bounded number of tries could answer "empty" while videos wait).
async fn claim_next(db: &Db, until: DateTime<Utc>) -> Result<Option<video::Model>, StoreError> {
    loop {
        let Some(next) = video::Entity::find()
            .filter(video::Column::Status.eq(VideoStatus::Queued))
            .order_by_asc(video::Column::CreatedAt)
            .order_by_asc(video::Column::Id)
            .one(db)
            .await?
        else {
            return Ok(None);
        };
        let now = now();
        let res = video::Entity::update_many()
            .col_expr(video::Column::Status, Expr::value(VideoStatus::Rendering))
            .col_expr(video::Column::StartedAt, Expr::value(Some(now)))
            .col_expr(video::Column::UpdatedAt, Expr::value(now))
            .col_expr(video::Column::LeaseUntil, Expr::value(Some(until)))
            .col_expr(
                video::Column::Attempts,
                Expr::col(video::Column::Attempts).add(1),
            )
            .filter(video::Column::Id.eq(next.id))
            .filter(video::Column::Status.eq(VideoStatus::Queued))
            .exec(db)
            .await?;
        if res.rows_affected == 1 {
            return Ok(video::Entity::find_by_id(next.id).one(db).await?);
        }
    }
}

/// PostgreSQL: the oldest queued video, claimed in one statement. `SKIP LOCKED` lets
/// concurrent workers each take a different row instead of queueing on the same one.
async fn claim_skip_locked(
    db: &Db,
    until: DateTime<Utc>,
) -> Result<Option<video::Model>, StoreError> {
    let now = now();
    let sql = r#"UPDATE videos
        SET status = 'rendering', started_at = $1, updated_at = $1, lease_until = $2,
            attempts = attempts + 1
        WHERE id = (
            SELECT id FROM videos WHERE status = 'queued'
            ORDER BY created_at, id
            LIMIT 1
            FOR UPDATE SKIP LOCKED)
        RETURNING *"#;
    let stmt = Statement::from_sql_and_values(DbBackend::Postgres, sql, [now.into(), until.into()]);
    Ok(video::Entity::find().from_raw_sql(stmt).one(db).await?)
}

/// Records progress of a rendering video; never moves it backwards, never touches a video
/// that is no longer rendering (cancelled or deleted meanwhile). `true` when it still renders.
async fn record_progress(
    db: &Db,
    lease: &Lease,
    (frames_done, frames_total, duration_s): (i64, i64, f64),
    until: DateTime<Utc>,
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
        .col_expr(video::Column::LeaseUntil, Expr::value(Some(until)))
        .filter(fenced(lease))
        .filter(video::Column::FramesDone.lte(frames_done))
        .exec(db)
        .await?;
    if res.rows_affected > 0 {
        return Ok(true);
    }
    Ok(video::Entity::find()
        .filter(fenced(lease))
        .one(db)
        .await?
        .is_some())
}

/// Marks a rendering video completed with its file's size and exact length.
async fn complete_video(
    db: &Db,
    lease: &Lease,
    finished: Finished,
    callback: Option<&str>,
) -> Result<bool, StoreError> {
    let Finished {
        frames,
        duration_s,
        size_bytes,
        scenes,
    } = finished;
    let update = video::Entity::update_many()
        .col_expr(video::Column::Status, Expr::value(VideoStatus::Completed))
        .col_expr(video::Column::Progress, Expr::value(1.0))
        .col_expr(video::Column::FramesDone, Expr::value(frames))
        .col_expr(video::Column::FramesTotal, Expr::value(frames))
        .col_expr(video::Column::DurationS, Expr::value(duration_s))
        .col_expr(video::Column::SizeBytes, Expr::value(Some(size_bytes)))
        .col_expr(video::Column::Scenes, Expr::value(scenes));
    end_render(db, lease, update, callback, "video.completed").await
}

/// The terminal write of a render: `update` (its own columns) plus the end time, the lease
/// cleared and the lease's fence, in one transaction with the webhook row when `callback` is
/// set. `false` when the lease is gone (nothing written).
async fn end_render(
    db: &Db,
    lease: &Lease,
    update: sea_orm::UpdateMany<video::Entity>,
    callback: Option<&str>,
    event: &str,
) -> Result<bool, StoreError> {
    let now = now();
    let txn = db.begin().await?;
    let res = update
        .col_expr(video::Column::CompletedAt, Expr::value(Some(now)))
        .col_expr(video::Column::UpdatedAt, Expr::value(now))
        .col_expr(
            video::Column::LeaseUntil,
            Expr::value(None::<DateTime<Utc>>),
        )
        .filter(fenced(lease))
        .exec(&txn)
        .await?;
    let ended = res.rows_affected > 0;
    if ended && let Some(url) = callback {
        enqueue_webhook(&txn, lease.id, url, event).await?;
    }
    txn.commit().await?;
    Ok(ended)
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
        status: Set(webhook_delivery::DeliveryStatus::Pending),
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

/// Marks a rendering video failed with a stable code and a message a user can act on.
async fn fail_video(
    db: &Db,
    lease: &Lease,
    code: &str,
    message: &str,
    callback: Option<&str>,
) -> Result<bool, StoreError> {
    let update = video::Entity::update_many()
        .col_expr(video::Column::Status, Expr::value(VideoStatus::Failed))
        .col_expr(
            video::Column::ErrorCode,
            Expr::value(Some(code.to_string())),
        )
        .col_expr(
            video::Column::ErrorMessage,
            Expr::value(Some(message.to_string())),
        );
    end_render(db, lease, update, callback, "video.failed").await
}
