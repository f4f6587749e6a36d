//! The database connection: set-up with sea-orm (SQLite in WAL mode by default, PostgreSQL by
//! URL), migrations, the readiness ping and the one storage error type. The queries live with
//! the capability they serve (`videos::store`, `platform::auth`, `ops::alerts`).

use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, DbErr,
    TransactionTrait,
};

use crate::platform::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Db(#[from] DbErr),
    #[error("cannot prepare data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error("stored params are unreadable: {0}")]
    Corrupt(String),
}

pub type Db = DatabaseConnection;

/// Opens the pool; for SQLite also creates `DATA_DIR` and switches the file to WAL.
pub async fn connect(config: &Config) -> Result<Db, StoreError> {
    if config.is_sqlite() {
        std::fs::create_dir_all(&config.data_dir)
            .map_err(|e| StoreError::DataDir(config.data_dir.display().to_string(), e))?;
    }
    let mut opts = ConnectOptions::new(config.database_url.clone());
    opts.max_connections(config.max_database_connections)
        .min_connections(1)
        .acquire_timeout(config.pool_timeout)
        .connect_timeout(config.pool_timeout)
        .idle_timeout(Duration::from_secs(300))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(5))
                .create_if_missing(true)
        });
    Ok(Database::connect(opts).await?)
}

/// Applies pending migrations. On PostgreSQL the processes of a cluster may start together:
/// the migrations run in one transaction holding an advisory lock, so one process migrates
/// while the others wait for it and then find nothing pending.
pub async fn migrate(db: &Db) -> Result<(), StoreError> {
    if db.get_database_backend() == DbBackend::Postgres {
        let txn = db.begin().await?;
        txn.execute_unprepared("SELECT pg_advisory_xact_lock(7202612040)")
            .await?;
        Migrator::up(&txn, None).await?;
        txn.commit().await?;
    } else {
        Migrator::up(db, None).await?;
    }
    Ok(())
}

/// Round trip used by the readiness check.
pub async fn ping(db: &Db) -> Result<(), StoreError> {
    Ok(db.ping().await?)
}

/// Timestamps are kept to whole microseconds so they compare equal after a round trip.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}
