//! Persistence: the database (source of truth for videos, keys and idempotency records) and
//! the files of finished videos under `DATA_DIR`.

pub mod db;
pub mod files;
