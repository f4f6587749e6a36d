//! What a video is made of, as the renderer takes it: [`VideoParams`] (a create request
//! after validation, defaults filled in) and the duration estimate. Parsing and validating a
//! request is `videos::request`'s; this module only describes the result.

use serde::{Deserialize, Serialize};

use crate::render::timeline::text;

/// Words per minute of the default voice at speed 1.0, for the duration estimate.
const WORDS_PER_MINUTE: f64 = 165.0;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AvatarParams {
    pub id: String,
    pub expression: String,
    /// A custom avatar's look, copied into the video when it is requested (so a render needs
    /// no database, and deleting the avatar later changes nothing already asked for).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub look: Option<AvatarLook>,
}

/// The hair styles an avatar may have.
pub const HAIR_STYLES: [&str; 4] = ["bob", "short", "long", "swept"];

/// How a custom avatar looks: a built-in `base` (face shape, lips, expressions) with its own
/// colours (`#rrggbb`) and hair style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AvatarLook {
    pub base: String,
    pub skin_tone: String,
    pub hair_style: String,
    pub hair_color: String,
    pub eye_color: String,
    pub outfit_color: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VoiceParams {
    pub id: String,
    pub speed: f64,
    pub pitch: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Background {
    Color {
        value: String,
    },
    Gradient {
        from: String,
        to: String,
        angle: f64,
    },
    Image {
        asset_id: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Dimension {
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Quality {
    Draft,
    Standard,
    High,
}

/// A recording the avatar lip-syncs to (`"audio": {"id"}` in a request): an upload of the
/// request's tenant, and its length as measured when it was uploaded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AudioParams {
    pub id: uuid::Uuid,
    pub duration_s: f64,
}

/// One scene of a multi-scene video (`scenes[]`, 1–[`SCENES_MAX`]): its own script, and the
/// avatar (with its expression), voice and background it uses — the request's own where the
/// scene did not say.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SceneParams {
    pub script: String,
    pub avatar: AvatarParams,
    pub voice: Option<VoiceParams>,
    pub background: Background,
}

/// The most scenes one video may have.
pub const SCENES_MAX: usize = 50;

/// A create request, validated and normalised (`params` in the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VideoParams {
    pub title: String,
    /// Empty (and left out) for a video with `audio`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub script: String,
    pub avatar: AvatarParams,
    /// `null` when the request opted out of audio (`"voice": null`).
    pub voice: Option<VoiceParams>,
    pub background: Background,
    pub dimension: Dimension,
    pub fps: u32,
    pub captions: bool,
    pub quality: Quality,
    pub callback_url: Option<String>,
    pub seed: u64,
    /// The recording the avatar lip-syncs to, instead of a script read by a voice (`script`
    /// is then empty and `voice` null).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audio: Option<AudioParams>,
    /// The scenes of a multi-scene video, played in order in one file (`script` is then
    /// empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenes: Option<Vec<SceneParams>>,
}

impl VideoParams {
    /// What the video is made of, in order: each scene as a video of its own (its script,
    /// avatar, voice and background with this video's size, fps, quality, captions and
    /// seed), or the video itself when it has no scenes. Each renders independently.
    pub fn segments(&self) -> Vec<VideoParams> {
        match &self.scenes {
            None => vec![self.clone()],
            Some(scenes) => scenes
                .iter()
                .map(|scene| VideoParams {
                    script: scene.script.clone(),
                    avatar: scene.avatar.clone(),
                    voice: scene.voice.clone(),
                    background: scene.background.clone(),
                    scenes: None,
                    audio: None,
                    ..self.clone()
                })
                .collect(),
        }
    }

    /// Estimated spoken duration, rounded to whole frames: `(duration_s, frames_total)`.
    /// The pipeline replaces it with the timeline's exact length once speech is synthesised.
    pub fn estimate_duration(&self) -> (f64, i64) {
        let fps = f64::from(self.fps);
        if self.scenes.is_some() {
            let frames: i64 = self
                .segments()
                .iter()
                .map(|s| s.estimate_duration().1)
                .sum();
            return (frames as f64 / fps, frames);
        }
        if let Some(a) = &self.audio {
            let frames = (a.duration_s * fps).round().max(1.0);
            return (frames / fps, frames as i64);
        }
        let plain = text::plain(&self.script);
        let words = plain.split_whitespace().count() as f64;
        let pauses = plain
            .chars()
            .filter(|c| matches!(c, '.' | '!' | '?' | ';' | ':' | ','))
            .count() as f64;
        let breaks = text::parse(&self.script).map_or(0, |p| text::pauses_ms(&p)) as f64 / 1000.0;
        let speed = self.voice.as_ref().map_or(1.0, |v| v.speed);
        let seconds =
            (words * 60.0 / (WORDS_PER_MINUTE * speed) + pauses * 0.25 + breaks + 0.5).max(1.0);
        let frames = (seconds * fps).round().max(1.0);
        (frames / fps, frames as i64)
    }
}
