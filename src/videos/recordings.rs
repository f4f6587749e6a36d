//! Uploaded recordings (SPEC §3b, `POST /api/v1/audio`), the one owner of the `recordings`
//! rows and their files. [`accept`] takes an upload already written to scratch, decodes it
//! (GStreamer, bounded by [`RECORDING_LIMITS`], with a watchdog on the wall time in case a
//! decoder never returns), stores the file and then its row — and removes the scratch file
//! whatever happens, so a refused or failed upload leaves nothing behind. [`resolve`] checks
//! that each video request's `audio.id` is a recording of the request's tenant and fills in
//! its length; another tenant's recording is unknown (422 on use, 404 on read).

use entity::recording;
use sea_orm::{ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter};
use uuid::Uuid;

use crate::platform::db::{Db, StoreError, now};
use crate::platform::error::FieldError;
use crate::platform::storage::{BlobStore, StorageError};
use crate::render::media::decode::{self, DecodeError, RECORDING_LIMITS};
use crate::render::params::VideoParams;

/// The largest upload taken (SPEC §3b).
pub const UPLOAD_MAX_BYTES: usize = 25 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum AcceptError {
    /// The file is not a recording we can use (422 `invalid_audio`).
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// GStreamer is missing or broken here: the server's fault.
    #[error("the decoder is unavailable: {0}")]
    Decoder(String),
}

/// Checks the upload at `path` (`size` bytes), stores it as recording `id` of `tenant`, and
/// removes `path` in every case.
pub async fn accept(
    db: &Db,
    blobs: &BlobStore,
    tenant: &str,
    id: Uuid,
    path: &std::path::Path,
    size: u64,
) -> Result<recording::Model, AcceptError> {
    let result = check_and_store(db, blobs, tenant, id, path, size).await;
    let _ = tokio::fs::remove_file(path).await;
    result
}

async fn check_and_store(
    db: &Db,
    blobs: &BlobStore,
    tenant: &str,
    id: Uuid,
    path: &std::path::Path,
    size: u64,
) -> Result<recording::Model, AcceptError> {
    let file = path.to_path_buf();
    let decoding =
        tokio::task::spawn_blocking(move || decode::decode_audio(&file, RECORDING_LIMITS));
    // The decoder bounds itself; this bounds a decoder that never gives control back.
    let watchdog = RECORDING_LIMITS.timeout + std::time::Duration::from_secs(5);
    let decoded = match tokio::time::timeout(watchdog, decoding).await {
        Err(_) => {
            return Err(AcceptError::Invalid(format!(
                "the file could not be decoded within {} s",
                watchdog.as_secs()
            )));
        }
        Ok(Err(join)) => return Err(AcceptError::Decoder(join.to_string())),
        Ok(Ok(decoded)) => decoded,
    };
    let pcm = match decoded {
        Ok(pcm) => pcm,
        Err(DecodeError::Media(e)) => return Err(AcceptError::Decoder(e.to_string())),
        Err(DecodeError::TooLong(max)) => {
            return Err(AcceptError::Invalid(format!(
                "the recording is longer than {} minutes",
                (max / 60.0).floor()
            )));
        }
        Err(e @ (DecodeError::NotAudio(_) | DecodeError::Timeout(_))) => {
            return Err(AcceptError::Invalid(e.to_string()));
        }
    };
    blobs.put_recording(id, path).await?;
    let row = recording::Model {
        id,
        tenant: tenant.to_string(),
        duration_s: pcm.duration_s(),
        size_bytes: i64::try_from(size).unwrap_or(i64::MAX),
        created_at: now(),
    };
    if let Err(e) = recording::ActiveModel::from(row.clone()).insert(db).await {
        let _ = blobs.remove_recording(id).await;
        return Err(StoreError::from(e).into());
    }
    Ok(row)
}

/// A recording of `tenant`.
pub async fn find(db: &Db, tenant: &str, id: Uuid) -> Result<Option<recording::Model>, StoreError> {
    Ok(recording::Entity::find_by_id(id)
        .filter(recording::Column::Tenant.eq(tenant))
        .one(db)
        .await?)
}

/// Removes a recording of `tenant` (row, then file); `false` when there is none. Videos
/// already made keep their sound; a queued video that uses it fails with `invalid_audio`.
pub async fn remove(
    db: &Db,
    blobs: &BlobStore,
    tenant: &str,
    id: Uuid,
) -> Result<bool, AcceptError> {
    let deleted = recording::Entity::delete_many()
        .filter(recording::Column::Id.eq(id))
        .filter(recording::Column::Tenant.eq(tenant))
        .exec(db)
        .await
        .map_err(StoreError::from)?;
    if deleted.rows_affected == 0 {
        return Ok(false);
    }
    blobs.remove_recording(id).await?;
    Ok(true)
}

/// Fills in the length of each request's recording, or names the field of one that is not a
/// recording of `tenant` (`{prefix}audio.id`).
pub async fn resolve(
    db: &Db,
    tenant: &str,
    params: &mut [(String, VideoParams)],
) -> Result<Result<(), Vec<FieldError>>, StoreError> {
    let mut errors = Vec::new();
    for (prefix, p) in params.iter_mut() {
        let Some(audio) = p.audio.as_mut() else {
            continue;
        };
        match find(db, tenant, audio.id).await? {
            Some(found) => audio.duration_s = found.duration_s,
            None => errors.push(FieldError::new(
                format!("{prefix}audio.id"),
                "invalid_audio",
                "no such recording (upload one with POST /api/v1/audio)",
            )),
        }
    }
    Ok(if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    })
}
