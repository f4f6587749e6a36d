//! reelgen's schema, as ordered migrations. `reelgen migrate` (and `serve` at start) applies them;
//! `cargo run -p migration -- up|down|status` works too.

pub use sea_orm_migration::prelude::*;

mod m20261126_000001_create_videos;
mod m20261126_000002_create_api_keys;
mod m20261126_000003_create_idempotency;
mod m20261130_000004_create_alerts;
mod m20261130_000005_create_webhook_deliveries;
mod m20261204_000006_video_leases;
mod m20261204_000007_create_recordings;
mod m20261204_000008_video_scenes;
mod m20261204_000009_create_custom_avatars;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261126_000001_create_videos::Migration),
            Box::new(m20261126_000002_create_api_keys::Migration),
            Box::new(m20261126_000003_create_idempotency::Migration),
            Box::new(m20261130_000004_create_alerts::Migration),
            Box::new(m20261130_000005_create_webhook_deliveries::Migration),
            Box::new(m20261204_000006_video_leases::Migration),
            Box::new(m20261204_000007_create_recordings::Migration),
            Box::new(m20261204_000008_video_scenes::Migration),
            Box::new(m20261204_000009_create_custom_avatars::Migration),
        ]
    }
}
