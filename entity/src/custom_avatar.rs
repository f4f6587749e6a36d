//! Custom avatars (`POST /api/v1/avatars`): a tenant's own presenter, a built-in base with its
//! own look (`AvatarLook` as JSON).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "custom_avatars")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Tenant that made it: only its requests may use or see it.
    pub tenant: String,
    pub name: String,
    /// The look: base, skin tone, hair style and colour, eye colour, outfit colour.
    pub look: Json,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
