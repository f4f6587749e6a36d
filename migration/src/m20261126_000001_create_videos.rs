use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Videos {
    Table,
    Id,
    Tenant,
    Title,
    Status,
    Progress,
    FramesDone,
    FramesTotal,
    DurationS,
    Params,
    ErrorCode,
    ErrorMessage,
    SizeBytes,
    Attempts,
    CreatedAt,
    StartedAt,
    CompletedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Videos::Table)
                    .if_not_exists()
                    .col(uuid(Videos::Id).primary_key())
                    .col(string_len(Videos::Tenant, 64))
                    .col(string_len(Videos::Title, 200))
                    .col(string_len(Videos::Status, 16))
                    .col(double(Videos::Progress))
                    .col(big_integer(Videos::FramesDone))
                    .col(big_integer(Videos::FramesTotal))
                    .col(double(Videos::DurationS))
                    .col(json(Videos::Params))
                    .col(string_len_null(Videos::ErrorCode, 64))
                    .col(text_null(Videos::ErrorMessage))
                    .col(big_integer_null(Videos::SizeBytes))
                    .col(integer(Videos::Attempts).default(0))
                    .col(timestamp_with_time_zone(Videos::CreatedAt))
                    .col(timestamp_with_time_zone_null(Videos::StartedAt))
                    .col(timestamp_with_time_zone_null(Videos::CompletedAt))
                    .col(timestamp_with_time_zone(Videos::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        // Serves the list query: WHERE tenant = ? [AND status = ?] ORDER BY created_at DESC, id DESC.
        manager
            .create_index(
                Index::create()
                    .name("idx_videos_tenant_created_id")
                    .table(Videos::Table)
                    .col(Videos::Tenant)
                    .col(Videos::CreatedAt)
                    .col(Videos::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_videos_tenant_status_created_id")
                    .table(Videos::Table)
                    .col(Videos::Tenant)
                    .col(Videos::Status)
                    .col(Videos::CreatedAt)
                    .col(Videos::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        // Serves the queue: WHERE status = 'queued' ORDER BY created_at, id (dispatch order and
        // queue positions across tenants).
        manager
            .create_index(
                Index::create()
                    .name("idx_videos_status_created_id")
                    .table(Videos::Table)
                    .col(Videos::Status)
                    .col(Videos::CreatedAt)
                    .col(Videos::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Videos::Table).to_owned())
            .await
    }
}
