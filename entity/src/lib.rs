//! sea-orm models for reelgen's tables. Models only: queries live in `reelgen::store::db`.

pub mod alert;
pub mod api_key;
pub mod custom_avatar;
pub mod idempotency;
pub mod recording;
pub mod video;
pub mod webhook_delivery;
