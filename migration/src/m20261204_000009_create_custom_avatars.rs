//! Custom avatars (SPEC §3b): a tenant's own presenters, each a built-in base with its own
//! colours and hair style (`look`, JSON).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CustomAvatars {
    Table,
    Id,
    Tenant,
    Name,
    Look,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CustomAvatars::Table)
                    .if_not_exists()
                    .col(uuid(CustomAvatars::Id).primary_key())
                    .col(string_len(CustomAvatars::Tenant, 64))
                    .col(string_len(CustomAvatars::Name, 100))
                    .col(json(CustomAvatars::Look))
                    .col(timestamp_with_time_zone(CustomAvatars::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_custom_avatars_tenant")
                    .table(CustomAvatars::Table)
                    .col(CustomAvatars::Tenant)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(CustomAvatars::Table).to_owned())
            .await
    }
}
