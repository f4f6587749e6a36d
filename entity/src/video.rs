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
    pub status: VideoStatus,
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
    /// While `rendering`: when the worker's claim lapses unless renewed (`JOB_LEASE`).
    pub lease_until: Option<DateTimeUtc>,
    /// A completed multi-scene video's scenes: `[{"index", "start_s", "duration_s"}]`.
    pub scenes: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}

/// The states of a video (SPEC §3), stored as their lowercase names.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum VideoStatus {
    #[sea_orm(string_value = "queued")]
    Queued,
    #[sea_orm(string_value = "rendering")]
    Rendering,
    #[sea_orm(string_value = "completed")]
    Completed,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl VideoStatus {
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Rendering,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Rendering => "rendering",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl std::fmt::Display for VideoStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for VideoStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or(())
    }
}
