//! Scenes (SPEC §3b): where each scene of a multi-scene video starts in its file and how long
//! it lasts, written when the video completes (`[{"index", "start_s", "duration_s"}]`).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Videos {
    Table,
    Scenes,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Videos::Table)
                    .add_column_if_not_exists(json_null(Videos::Scenes))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .alter_table(
                Table::alter()
                    .table(Videos::Table)
                    .drop_column(Videos::Scenes)
                    .to_owned(),
            )
            .await
    }
}
