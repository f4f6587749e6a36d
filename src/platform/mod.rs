//! The service's foundations, which know nothing of videos: configuration, the database
//! connection, file storage, errors as problem+json, authentication, the response cache and
//! rate limiter, metrics and the analytics recorder, memory and shutdown signals. May call
//! `render` (the recorder reads the GPU scheduler's counters) and nothing above.

pub mod alert_rules;
pub mod analytics;
pub mod auth;
pub mod cache;
pub mod config;
pub mod db;
pub mod error;
pub mod limiter;
pub mod memory;
pub mod redis;
pub mod shutdown;
pub mod storage;
pub mod task;
pub mod telemetry;
