//! API keys. Only a SHA-256 hash of the key is stored; the key itself is shown once.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// Tenant whose videos this key sees.
    pub tenant: String,
    /// Hex SHA-256 of the full key.
    #[sea_orm(unique)]
    pub key_hash: String,
    /// First characters of the key, for recognising it in listings.
    pub prefix: String,
    pub created_at: DateTimeUtc,
    pub revoked_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
