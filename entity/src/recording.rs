//! Uploaded recordings (`POST /api/v1/audio`): whose each is and how long. The file is in the
//! blob store under the recording's id.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "recordings")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Tenant that uploaded it: only its videos may use it.
    pub tenant: String,
    /// Seconds of sound, as decoded when it was uploaded.
    pub duration_s: f64,
    /// Bytes of the file as uploaded.
    pub size_bytes: i64,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
