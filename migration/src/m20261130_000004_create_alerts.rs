use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Alerts {
    Table,
    Id,
    Rule,
    Severity,
    State,
    Metric,
    Value,
    Threshold,
    Message,
    StartedAt,
    ResolvedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Alerts::Table)
                    .if_not_exists()
                    .col(uuid(Alerts::Id).primary_key())
                    .col(string_len(Alerts::Rule, 64))
                    .col(string_len(Alerts::Severity, 16))
                    .col(string_len(Alerts::State, 16))
                    .col(string_len(Alerts::Metric, 64))
                    .col(double(Alerts::Value))
                    .col(double(Alerts::Threshold))
                    .col(text(Alerts::Message))
                    .col(timestamp_with_time_zone(Alerts::StartedAt))
                    .col(timestamp_with_time_zone_null(Alerts::ResolvedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_alerts_started")
                    .table(Alerts::Table)
                    .col(Alerts::StartedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Alerts::Table).to_owned())
            .await
    }
}
