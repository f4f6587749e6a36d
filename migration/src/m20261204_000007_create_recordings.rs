use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Uploaded recordings a video can lip-sync to (SPEC §3b): the file itself is in the blob
/// store; the row says whose it is and how long it is.
#[derive(DeriveIden)]
enum Recordings {
    Table,
    Id,
    Tenant,
    DurationS,
    SizeBytes,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Recordings::Table)
                    .if_not_exists()
                    .col(uuid(Recordings::Id).primary_key())
                    .col(string_len(Recordings::Tenant, 64))
                    .col(double(Recordings::DurationS))
                    .col(big_integer(Recordings::SizeBytes))
                    .col(timestamp_with_time_zone(Recordings::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_recordings_tenant")
                    .table(Recordings::Table)
                    .col(Recordings::Tenant)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Recordings::Table).to_owned())
            .await
    }
}
