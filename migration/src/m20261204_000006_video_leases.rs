//! Job leases (scale-out): a rendering video's claim lapses at `lease_until` unless its
//! worker renews it, so a crashed worker's video is taken by another after `JOB_LEASE`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Videos {
    Table,
    Status,
    LeaseUntil,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Videos::Table)
                    .add_column_if_not_exists(timestamp_with_time_zone_null(Videos::LeaseUntil))
                    .to_owned(),
            )
            .await?;
        // The lapsed-lease sweep: rendering videos by lease end.
        manager
            .create_index(
                Index::create()
                    .name("idx_videos_status_lease")
                    .table(Videos::Table)
                    .col(Videos::Status)
                    .col(Videos::LeaseUntil)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_videos_status_lease")
                    .table(Videos::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Videos::Table)
                    .drop_column(Videos::LeaseUntil)
                    .to_owned(),
            )
            .await
    }
}
