//! The blob store: the one path to videos' files, through `object_store`'s [`ObjectStore`] —
//! chosen by `STORAGE_URL` ([`BlobStore::open`]): the local filesystem under `{root}/videos/`
//! (default `DATA_DIR`), or any S3-compatible bucket (`s3://bucket/prefix`, endpoint and
//! credentials from the usual `AWS_*` variables), which is what lets API replicas serve files
//! that workers on other hosts rendered.
//!
//! A render writes its MP4 and poster into a local scratch folder (`DATA_DIR/scratch/{id}/`,
//! never served); [`BlobStore::publish`] uploads them — the poster first, the MP4 last, each
//! in one atomic put — and removes the scratch. Readers get an object's metadata
//! ([`BlobStore::stat`]) and its bytes or a range of them ([`BlobStore::get`]);
//! [`BlobStore::remove_video`] removes a video's objects and scratch. Uploaded recordings
//! (`recordings/{id}`) arrive in `scratch/uploads/`, are stored whole once checked, and are
//! fetched into a render's scratch. Keys are built only from parsed UUIDs, so no request can
//! name anything outside its own keys.

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as Key;
use object_store::prefix::PrefixStore;
use object_store::{
    GetOptions, GetRange, GetResult, ObjectMeta, ObjectStore, ObjectStoreExt, WriteMultipart,
};
use tokio::io::AsyncReadExt;
use uuid::Uuid;

/// Upload chunk: the file is streamed, never held whole in memory.
const CHUNK: usize = 8 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("object store: {0}")]
    Store(#[from] object_store::Error),
    #[error("{0}: {1}")]
    Io(PathBuf, io::Error),
    #[error("STORAGE_URL {url}: the bucket cannot be used: {reason}")]
    Unreachable { url: String, reason: String },
}

/// The objects of a video: the MP4, its poster and (when it has speech) its transcript.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Object {
    Video,
    Thumbnail,
    Transcript,
}

impl Object {
    /// Every object, in the order a render publishes them: the MP4 last, so a video whose
    /// file exists has all its other objects.
    const ALL: [Object; 3] = [Self::Thumbnail, Self::Transcript, Self::Video];

    fn name(self) -> &'static str {
        match self {
            Self::Video => "video.mp4",
            Self::Thumbnail => "thumbnail.jpg",
            Self::Transcript => "transcript.json",
        }
    }
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    scratch: PathBuf,
    /// Seconds per storage operation, by operation (`reelgen_storage_seconds`).
    latency: Option<prometheus::HistogramVec>,
}

impl BlobStore {
    /// Objects under `DATA_DIR/videos/`, scratch under `DATA_DIR/scratch/` (both created).
    pub fn local(data_dir: &Path) -> Result<Self, StorageError> {
        Self::file(data_dir, data_dir)
    }

    /// Objects under `{root}/videos/`, scratch under `DATA_DIR/scratch/`.
    fn file(root: &Path, data_dir: &Path) -> Result<Self, StorageError> {
        let root = root.join("videos");
        let scratch = data_dir.join("scratch");
        for dir in [&root, &scratch] {
            std::fs::create_dir_all(dir).map_err(|e| StorageError::Io(dir.clone(), e))?;
        }
        let store = LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true);
        Ok(Self {
            store: Arc::new(store),
            scratch,
            latency: None,
        })
    }

    /// The store `STORAGE_URL` names. An S3 bucket is listed once here, so a wrong endpoint,
    /// missing bucket or refused credentials stop start-up with the reason.
    pub async fn open(
        url: &crate::platform::config::StorageUrl,
        data_dir: &Path,
    ) -> Result<Self, StorageError> {
        use crate::platform::config::StorageUrl;
        match url {
            StorageUrl::File(root) => Self::file(root, data_dir),
            StorageUrl::S3 { bucket, prefix } => {
                let scratch = data_dir.join("scratch");
                std::fs::create_dir_all(&scratch)
                    .map_err(|e| StorageError::Io(scratch.clone(), e))?;
                let shown = format!("s3://{bucket}/{prefix}");
                let unreachable = |reason: String| StorageError::Unreachable {
                    url: shown.clone(),
                    reason,
                };
                let s3 = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .build()
                    .map_err(|e| unreachable(e.to_string()))?;
                let store: Arc<dyn ObjectStore> = if prefix.is_empty() {
                    Arc::new(s3)
                } else {
                    Arc::new(PrefixStore::new(s3, prefix.as_str()))
                };
                // Listing never answers 404 for a bucket that exists.
                tokio::time::timeout(
                    std::time::Duration::from_secs(20),
                    store.list_with_delimiter(None),
                )
                .await
                .map_err(|_| unreachable("no answer within 20 s".into()))?
                .map_err(|e| unreachable(e.to_string()))?;
                Ok(Self {
                    store,
                    scratch,
                    latency: None,
                })
            }
        }
    }

    /// Observes each operation's latency in `histogram` (labelled by operation).
    pub fn with_latency(mut self, histogram: prometheus::HistogramVec) -> Self {
        self.latency = Some(histogram);
        self
    }

    fn timed(&self, op: &'static str, started: std::time::Instant) {
        if let Some(h) = &self.latency {
            h.with_label_values(&[op])
                .observe(started.elapsed().as_secs_f64());
        }
    }

    fn key(id: Uuid, object: Object) -> Key {
        Key::from(format!("{id}/{}", object.name()))
    }

    /// Where a render of this video writes before it is published.
    pub fn scratch_dir(&self, id: Uuid) -> PathBuf {
        self.scratch.join(id.to_string())
    }

    /// The scratch path of one object of a render.
    pub fn scratch_file(&self, id: Uuid, object: Object) -> PathBuf {
        self.scratch_dir(id).join(object.name())
    }

    /// Removes a render's scratch (what an interrupted attempt left, or a finished one).
    pub fn clear_scratch(&self, id: Uuid) {
        let _ = std::fs::remove_dir_all(self.scratch_dir(id));
    }

    /// Uploads a finished render's files from its scratch (the poster and the transcript
    /// when there are any, then the MP4), then clears the scratch. Each object appears whole
    /// or not at all.
    pub async fn publish(&self, id: Uuid) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        for object in Object::ALL {
            let path = self.scratch_file(id, object);
            if object != Object::Video && !path.exists() {
                continue;
            }
            self.upload(&path, &Self::key(id, object)).await?;
        }
        self.clear_scratch(id);
        self.timed("publish", started);
        Ok(())
    }

    async fn upload(&self, from: &Path, key: &Key) -> Result<(), StorageError> {
        let io = |e| StorageError::Io(from.to_path_buf(), e);
        let mut file = tokio::fs::File::open(from).await.map_err(io)?;
        let upload = self.store.put_multipart(key).await?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = file.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            writer.wait_for_capacity(4).await?;
            writer.write(&buf[..n]);
        }
        writer.finish().await?;
        Ok(())
    }

    /// An object's metadata; `None` when it does not exist.
    pub async fn stat(&self, id: Uuid, object: Object) -> Result<Option<ObjectMeta>, StorageError> {
        let started = std::time::Instant::now();
        let head = self.store.head(&Self::key(id, object)).await;
        self.timed("stat", started);
        match head {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// An object's bytes, or the given range of them.
    pub async fn get(
        &self,
        id: Uuid,
        object: Object,
        range: Option<Range<u64>>,
    ) -> Result<GetResult, StorageError> {
        let options = GetOptions {
            range: range.map(GetRange::Bounded),
            ..GetOptions::default()
        };
        let started = std::time::Instant::now();
        let got = self.store.get_opts(&Self::key(id, object), options).await?;
        self.timed("get", started);
        Ok(got)
    }

    /// A small object's bytes, whole; `None` when it does not exist.
    pub async fn read(
        &self,
        id: Uuid,
        object: Object,
    ) -> Result<Option<bytes::Bytes>, StorageError> {
        let started = std::time::Instant::now();
        let got = match self.store.get(&Self::key(id, object)).await {
            Ok(got) => got.bytes().await.map(Some),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        };
        self.timed("get", started);
        Ok(got?)
    }

    fn recording_key(id: Uuid) -> Key {
        Key::from(format!("recordings/{id}"))
    }

    /// Where an upload being received is written (scratch, never served) before it is
    /// checked and stored.
    pub fn upload_file(&self, id: Uuid) -> PathBuf {
        self.scratch.join("uploads").join(id.to_string())
    }

    /// Stores an uploaded recording (whole or not at all) from `from`.
    pub async fn put_recording(&self, id: Uuid, from: &Path) -> Result<(), StorageError> {
        let started = std::time::Instant::now();
        self.upload(from, &Self::recording_key(id)).await?;
        self.timed("publish", started);
        Ok(())
    }

    /// Writes a stored recording to `to` (a render's scratch); `false` when there is none.
    pub async fn recording_to_file(&self, id: Uuid, to: &Path) -> Result<bool, StorageError> {
        let started = std::time::Instant::now();
        let got = match self.store.get(&Self::recording_key(id)).await {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        let io = |e| StorageError::Io(to.to_path_buf(), e);
        if let Some(dir) = to.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(io)?;
        }
        let mut file = tokio::fs::File::create(to).await.map_err(io)?;
        let mut stream = got.into_stream();
        while let Some(chunk) = futures_util::StreamExt::next(&mut stream).await {
            tokio::io::AsyncWriteExt::write_all(&mut file, &chunk?)
                .await
                .map_err(io)?;
        }
        tokio::io::AsyncWriteExt::flush(&mut file)
            .await
            .map_err(io)?;
        self.timed("get", started);
        Ok(true)
    }

    /// Removes a stored recording; one that does not exist is fine.
    pub async fn remove_recording(&self, id: Uuid) -> Result<(), StorageError> {
        match self.store.delete(&Self::recording_key(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes everything stored for a video, and its scratch; a video with no files is fine.
    pub async fn remove_video(&self, id: Uuid) -> Result<(), StorageError> {
        self.clear_scratch(id);
        for object in Object::ALL {
            match self.store.delete(&Self::key(id, object)).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;

    use super::*;

    #[tokio::test]
    async fn publish_then_read_a_range_then_remove() {
        let dir = std::env::temp_dir().join(format!("reelgen-blobs-{}", Uuid::new_v4()));
        let blobs = BlobStore::local(&dir).expect("store");
        let id = Uuid::new_v4();
        std::fs::create_dir_all(blobs.scratch_dir(id)).expect("scratch");
        let body: Vec<u8> = (0..=255u8).cycle().take(300_000).collect();
        std::fs::write(blobs.scratch_file(id, Object::Video), &body).expect("write");
        std::fs::write(
            blobs.scratch_file(id, Object::Transcript),
            b"{\"words\":[]}",
        )
        .expect("write");
        assert_eq!(blobs.stat(id, Object::Video).await.expect("stat"), None);

        blobs.publish(id).await.expect("publish");
        assert!(!blobs.scratch_dir(id).exists(), "scratch cleared");
        let meta = blobs
            .stat(id, Object::Video)
            .await
            .expect("stat")
            .expect("published");
        assert_eq!(meta.size, body.len() as u64);
        assert_eq!(blobs.stat(id, Object::Thumbnail).await.expect("stat"), None);
        let got = blobs
            .get(id, Object::Video, Some(1000..1100))
            .await
            .expect("get");
        let mut bytes = Vec::new();
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            bytes.extend_from_slice(&chunk.expect("chunk"));
        }
        assert_eq!(bytes, &body[1000..1100]);
        let transcript = blobs.read(id, Object::Transcript).await.expect("read");
        assert_eq!(transcript.as_deref(), Some(&b"{\"words\":[]}"[..]));

        blobs.remove_video(id).await.expect("remove");
        assert_eq!(blobs.stat(id, Object::Video).await.expect("stat"), None);
        assert_eq!(
            blobs.read(id, Object::Transcript).await.expect("read"),
            None
        );
        blobs
            .remove_video(id)
            .await
            .expect("removing twice is fine");
        let _ = std::fs::remove_dir_all(dir);
    }
}
