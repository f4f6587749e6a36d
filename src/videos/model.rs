//! The video as everyone outside the store sees it: its states ([`VideoStatus`]), the Video
//! object of SPEC §3 ([`VideoView`]) and the messages of its event stream ([`VideoEvent`],
//! SPEC §4). Plain data: it calls nothing.

use chrono::{DateTime, Utc};
use entity::video;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// The states of a video, stored as their names (see the entity).
pub use entity::video::VideoStatus;

pub use crate::render::pipeline::SceneSpan;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VideoError {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VideoLinks {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
}

/// The Video object of SPEC §3.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VideoView {
    pub id: Uuid,
    pub title: String,
    pub status: VideoStatus,
    pub progress: f64,
    pub frames_done: i64,
    pub frames_total: i64,
    pub duration_s: f64,
    pub queue_position: Option<u64>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub error: Option<VideoError>,
    pub video_url: Option<String>,
    pub thumbnail_url: Option<String>,
    pub size_bytes: Option<i64>,
    #[schema(value_type = crate::render::params::VideoParams)]
    pub params: Value,
    /// A multi-scene video's scenes: where each starts in the file and how long it lasts —
    /// estimated until the video completes, then as rendered. Absent for other videos.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenes: Option<Vec<SceneSpan>>,
    pub links: VideoLinks,
}

/// The scenes of a video: as rendered when known, else estimated from its parameters.
fn scenes_of(stored: Option<&Value>, params: &Value) -> Option<Vec<SceneSpan>> {
    if let Some(spans) = stored.and_then(|v| serde_json::from_value(v.clone()).ok()) {
        return Some(spans);
    }
    params.get("scenes")?;
    let p: crate::render::params::VideoParams = serde_json::from_value(params.clone()).ok()?;
    let fps = f64::from(p.fps.max(1));
    let mut start = 0i64;
    Some(
        p.segments()
            .iter()
            .enumerate()
            .map(|(index, seg)| {
                let frames = seg.estimate_duration().1;
                let span = SceneSpan {
                    index,
                    start_s: start as f64 / fps,
                    duration_s: frames as f64 / fps,
                };
                start += frames;
                span
            })
            .collect(),
    )
}

impl VideoView {
    pub fn from_model(m: video::Model, queue_position: Option<u64>) -> Self {
        let status = m.status;
        let base = format!("/api/v1/videos/{}", m.id);
        let done = status == VideoStatus::Completed;
        Self {
            id: m.id,
            title: m.title,
            status,
            progress: m.progress,
            frames_done: m.frames_done,
            frames_total: m.frames_total,
            duration_s: m.duration_s,
            queue_position,
            created_at: m.created_at,
            started_at: m.started_at,
            completed_at: m.completed_at,
            error: m.error_code.map(|code| VideoError {
                code,
                message: m.error_message.unwrap_or_default(),
            }),
            video_url: done.then(|| format!("{base}/file")),
            thumbnail_url: done.then(|| format!("{base}/thumbnail")),
            size_bytes: m.size_bytes,
            scenes: scenes_of(m.scenes.as_ref(), &m.params),
            params: m.params,
            links: VideoLinks {
                events: format!("{base}/ws"),
                self_: base,
            },
        }
    }
}

/// One message of the WebSocket protocol (the `snapshot` is built by the session itself).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum VideoEvent {
    Status {
        status: VideoStatus,
        queue_position: Option<u64>,
    },
    Progress {
        frames_done: u64,
        frames_total: u64,
        progress: f64,
        fps: f64,
        eta_s: f64,
        /// When the server emitted it (unix ms): lets a client measure its own lag.
        emitted_at_ms: i64,
    },
    Completed {
        video: Box<VideoView>,
    },
    Failed {
        error: VideoError,
    },
    Cancelled,
    /// The live stream's init segment became available (sent as a binary frame, not JSON).
    #[serde(skip)]
    Preview {
        mime: String,
        init: bytes::Bytes,
    },
}

impl VideoEvent {
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            Self::Completed { .. } | Self::Failed { .. } | Self::Cancelled
        )
    }
}
