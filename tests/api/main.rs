//! Integration tests: a real server per test (SQLite, or PostgreSQL where marked `postgres`).

mod helpers;

mod audio;
mod avatars;
mod browser;
mod browser_headers;
mod captions;
mod cli;
mod cluster;
mod contract;
mod deploy;
mod hostile;
mod ops;
mod performance;
mod prometheus;
mod queue;
mod scenes;
mod sessions;
mod shutdown;
mod speech_server;
mod tenancy;
mod videos;
mod webhooks;
mod worker;

/// Runs an async test body against both backends: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::helpers::Backend;
            #[actix_web::test]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            #[actix_web::test]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )*};
}
