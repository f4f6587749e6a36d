//! One requested video: its normalised parameters, its state and its progress.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "videos")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Owner of the video: every query filters on it.
    pub tenant: String,
    pub title: String,
    /// `queued | rendering | completed | failed | cancelled`.
    pub status: String,
    pub progress: f64,
    pub frames_done: i64,
    pub frames_total: i64,
    pub duration_s: f64,
    /// The normalised request (`params` in the API).
    pub params: Json,
    pub error_code: Option<String>,
    pub error_message: Option<String>,
    pub size_bytes: Option<i64>,
    /// How many times a worker has started rendering this video.
    pub attempts: i32,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub completed_at: Option<DateTimeUtc>,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
