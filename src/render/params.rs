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

/// A create request, validated and normalised (`params` in the API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VideoParams {
    pub title: String,
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
}

impl VideoParams {
    /// Estimated spoken duration, rounded to whole frames: `(duration_s, frames_total)`.
    /// The pipeline replaces it with the timeline's exact length once speech is synthesised.
    pub fn estimate_duration(&self) -> (f64, i64) {
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
        let fps = f64::from(self.fps);
        let frames = (seconds * fps).round().max(1.0);
        (frames / fps, frames as i64)
    }
}
