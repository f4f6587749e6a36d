//! Files of generated videos under `DATA_DIR/videos/{id}/`. Paths are built only from parsed
//! UUIDs, so no request can name a path outside this tree. Writers put bytes in a temporary
//! file and rename it into place, so a reader never sees a half-written file.

use std::io;
use std::path::{Path, PathBuf};

use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
}

impl Files {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            root: data_dir.join("videos"),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn video_dir(&self, id: Uuid) -> PathBuf {
        self.root.join(id.to_string())
    }

    pub fn video_file(&self, id: Uuid) -> PathBuf {
        self.video_dir(id).join("video.mp4")
    }

    pub fn thumbnail_file(&self, id: Uuid) -> PathBuf {
        self.video_dir(id).join("thumbnail.jpg")
    }

    /// Writes `bytes` to `dest` atomically (temporary file in the same directory, then rename).
    pub async fn write_atomic(&self, dest: &Path, bytes: &[u8]) -> io::Result<()> {
        let dir = dest.parent().unwrap_or(&self.root);
        tokio::fs::create_dir_all(dir).await?;
        let tmp = dir.join(format!(".{}.tmp", Uuid::new_v4()));
        tokio::fs::write(&tmp, bytes).await?;
        match tokio::fs::rename(&tmp, dest).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = tokio::fs::remove_file(&tmp).await;
                Err(e)
            }
        }
    }

    /// Removes temporary files an interrupted writer left in a video's directory.
    pub fn remove_partials(&self, id: Uuid) {
        let Ok(entries) = std::fs::read_dir(self.video_dir(id)) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Removes everything stored for a video; a video with no files is fine.
    pub async fn remove_video(&self, id: Uuid) -> io::Result<()> {
        match tokio::fs::remove_dir_all(self.video_dir(id)).await {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn atomic_write_then_remove() {
        let dir = std::env::temp_dir().join(format!("reelgen-files-{}", Uuid::new_v4()));
        let files = Files::new(&dir);
        let id = Uuid::new_v4();
        files
            .write_atomic(&files.thumbnail_file(id), b"jpeg")
            .await
            .expect("write");
        assert_eq!(
            std::fs::read(files.thumbnail_file(id)).expect("read"),
            b"jpeg"
        );
        let leftovers = std::fs::read_dir(files.video_dir(id)).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file remains");
        files.remove_video(id).await.expect("remove");
        assert!(!files.video_dir(id).exists());
        files
            .remove_video(id)
            .await
            .expect("removing twice is fine");
        let _ = std::fs::remove_dir_all(dir);
    }
}
