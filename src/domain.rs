//! Domain values parsed once at the edge: a create request becomes [`VideoParams`] (the
//! normalised request, defaults filled in) or a list of [`FieldError`]s by dotted path. Handlers
//! and the pipeline never re-validate. Also the video states and the duration estimate.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::assets::Catalog;
use crate::error::FieldError;

pub const SCRIPT_MAX_CHARS: usize = 5000;
pub const TITLE_MAX_CHARS: usize = 200;
pub const BATCH_MAX: usize = 50;
/// Seeds stay within JavaScript's exact integer range.
pub const SEED_MAX: u64 = (1 << 53) - 1;
/// Words per minute of the default voice at speed 1.0, for the duration estimate.
const WORDS_PER_MINUTE: f64 = 165.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum VideoStatus {
    Queued,
    Rendering,
    Completed,
    Failed,
    Cancelled,
}

impl VideoStatus {
    pub const ALL: [Self; 5] = [
        Self::Queued,
        Self::Rendering,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Rendering => "rendering",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Completed | Self::Failed | Self::Cancelled)
    }
}

impl fmt::Display for VideoStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VideoStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.into_iter().find(|v| v.as_str() == s).ok_or(())
    }
}

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
        let words = self.script.split_whitespace().count() as f64;
        let pauses = self
            .script
            .chars()
            .filter(|c| matches!(c, '.' | '!' | '?' | ';' | ':' | ','))
            .count() as f64;
        let speed = self.voice.as_ref().map_or(1.0, |v| v.speed);
        let seconds = (words * 60.0 / (WORDS_PER_MINUTE * speed) + pauses * 0.25 + 0.5).max(1.0);
        let fps = f64::from(self.fps);
        let frames = (seconds * fps).round().max(1.0);
        (frames / fps, frames as i64)
    }
}

const TOP_FIELDS: &[&str] = &[
    "title",
    "script",
    "avatar",
    "voice",
    "background",
    "dimension",
    "fps",
    "captions",
    "quality",
    "callback_url",
    "seed",
];

/// Collects field errors under a path prefix (`""` or `"videos[3]."`).
struct Check<'a> {
    prefix: &'a str,
    errors: Vec<FieldError>,
}

impl Check<'_> {
    fn fail(&mut self, field: &str, code: &'static str, message: impl Into<String>) {
        self.errors.push(FieldError::new(
            format!("{}{}", self.prefix, field),
            code,
            message,
        ));
    }

    fn unknown_fields(&mut self, obj: &Map<String, Value>, allowed: &[&str], parent: &str) {
        for key in obj.keys().filter(|k| !allowed.contains(&k.as_str())) {
            let path = if parent.is_empty() {
                key.clone()
            } else {
                format!("{parent}.{key}")
            };
            self.fail(
                &path,
                "unknown_field",
                format!("unknown field; allowed: {}", allowed.join(", ")),
            );
        }
    }

    fn object<'v>(
        &mut self,
        v: &'v Value,
        field: &str,
        code: &'static str,
    ) -> Option<&'v Map<String, Value>> {
        match v {
            Value::Object(o) => Some(o),
            _ => {
                self.fail(field, code, "must be an object");
                None
            }
        }
    }

    fn number_in(
        &mut self,
        v: Option<&Value>,
        field: &str,
        code: &'static str,
        lo: f64,
        hi: f64,
        default: f64,
    ) -> f64 {
        match v {
            None => default,
            Some(Value::Number(n)) => match n.as_f64() {
                Some(x) if x >= lo && x <= hi => x,
                _ => {
                    self.fail(field, code, format!("must be between {lo} and {hi}"));
                    default
                }
            },
            Some(_) => {
                self.fail(
                    field,
                    code,
                    format!("must be a number between {lo} and {hi}"),
                );
                default
            }
        }
    }

    fn int_in(
        &mut self,
        v: Option<&Value>,
        field: &str,
        code: &'static str,
        lo: u64,
        hi: u64,
        default: u64,
    ) -> u64 {
        match v {
            None => default,
            Some(Value::Number(n)) => match n.as_u64() {
                Some(x) if x >= lo && x <= hi => x,
                _ => {
                    self.fail(field, code, format!("must be an integer from {lo} to {hi}"));
                    default
                }
            },
            Some(_) => {
                self.fail(field, code, format!("must be an integer from {lo} to {hi}"));
                default
            }
        }
    }

    fn text(
        &mut self,
        v: Option<&Value>,
        field: &str,
        code: &'static str,
        max: usize,
    ) -> Option<String> {
        let s = match v? {
            Value::String(s) => s.trim(),
            _ => {
                self.fail(field, code, "must be a string");
                return None;
            }
        };
        let n = s.chars().count();
        if n == 0 || n > max {
            self.fail(
                field,
                code,
                format!("must be 1 to {max} characters after trimming (got {n})"),
            );
            None
        } else if s
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
        {
            self.fail(field, code, "must not contain control characters");
            None
        } else {
            Some(s.to_string())
        }
    }

    fn hex_color(&mut self, v: Option<&Value>, field: &str) -> String {
        match v.and_then(Value::as_str) {
            Some(s) if is_hex_color(s) => s.to_ascii_lowercase(),
            _ => {
                self.fail(field, "invalid_background", "must be a color #rrggbb");
                String::new()
            }
        }
    }
}

fn is_hex_color(s: &str) -> bool {
    s.len() == 7 && s.starts_with('#') && s[1..].chars().all(|c| c.is_ascii_hexdigit())
}

/// Validates one create request against SPEC §3's limits and the catalog.
/// `prefix` is prepended to every field path (batch items use `videos[i].`).
pub fn parse_video_request(
    body: &Value,
    catalog: &Catalog,
    prefix: &str,
    random_seed: u64,
) -> Result<VideoParams, Vec<FieldError>> {
    let mut c = Check {
        prefix,
        errors: Vec::new(),
    };
    let Some(obj) = body.as_object() else {
        let field = if prefix.is_empty() {
            "body"
        } else {
            prefix.trim_end_matches('.')
        };
        return Err(vec![FieldError::new(
            field,
            "invalid_body",
            "must be a JSON object",
        )]);
    };
    c.unknown_fields(obj, TOP_FIELDS, "");

    let script = match obj.get("script") {
        None | Some(Value::Null) => {
            c.fail("script", "invalid_script", "is required");
            String::new()
        }
        v => c
            .text(v, "script", "invalid_script", SCRIPT_MAX_CHARS)
            .unwrap_or_default(),
    };
    let title = match obj.get("title") {
        None | Some(Value::Null) => default_title(&script),
        v => c
            .text(v, "title", "invalid_title", TITLE_MAX_CHARS)
            .unwrap_or_default(),
    };

    let avatar = parse_avatar(&mut c, obj.get("avatar"), catalog);
    let voice = parse_voice(&mut c, obj.get("voice"), catalog);
    let background = parse_background(&mut c, obj.get("background"), catalog);
    let dimension = parse_dimension(&mut c, obj.get("dimension"));
    let fps = c.int_in(obj.get("fps"), "fps", "invalid_fps", 1, 60, 30) as u32;
    let captions = match obj.get("captions") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            c.fail("captions", "invalid_captions", "must be true or false");
            false
        }
    };
    let quality = match obj.get("quality") {
        None => Quality::Standard,
        Some(v) => serde_json::from_value(v.clone()).unwrap_or_else(|_| {
            c.fail(
                "quality",
                "invalid_quality",
                "must be one of draft, standard, high",
            );
            Quality::Standard
        }),
    };
    let callback_url = match obj.get("callback_url") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if valid_callback(s) => Some(s.clone()),
        Some(_) => {
            c.fail(
                "callback_url",
                "invalid_callback_url",
                "must be an http(s) URL with a host, at most 2048 characters",
            );
            None
        }
    };
    let seed = match obj.get("seed") {
        None | Some(Value::Null) => random_seed & SEED_MAX,
        v => c.int_in(v, "seed", "invalid_seed", 0, SEED_MAX, 0),
    };

    if c.errors.is_empty() {
        Ok(VideoParams {
            title,
            script,
            avatar,
            voice,
            background,
            dimension,
            fps,
            captions,
            quality,
            callback_url,
            seed,
        })
    } else {
        Err(c.errors)
    }
}

fn default_title(script: &str) -> String {
    let mut title = String::new();
    for word in script.split_whitespace().take(8) {
        if title.chars().count() + word.chars().count() > 60 {
            break;
        }
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(word);
    }
    if title.is_empty() {
        "Untitled".into()
    } else {
        title
    }
}

fn valid_callback(s: &str) -> bool {
    s.len() <= 2048
        && url::Url::parse(s).is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        })
}

fn parse_avatar(c: &mut Check<'_>, v: Option<&Value>, catalog: &Catalog) -> AvatarParams {
    let default_id = catalog
        .avatars
        .first()
        .map_or_else(String::new, |a| a.id.clone());
    let mut out = AvatarParams {
        id: default_id,
        expression: "neutral".into(),
    };
    let Some(v) = v else { return out };
    let Some(obj) = c.object(v, "avatar", "invalid_avatar") else {
        return out;
    };
    c.unknown_fields(obj, &["id", "expression"], "avatar");
    if let Some(id) = obj.get("id") {
        match id.as_str().and_then(|id| catalog.avatar(id)) {
            Some(a) => out.id = a.id.clone(),
            None => c.fail(
                "avatar.id",
                "invalid_avatar",
                "must be an id from GET /api/v1/avatars",
            ),
        }
    }
    if let Some(e) = obj.get("expression") {
        let supported = catalog
            .avatar(&out.id)
            .map(|a| catalog.expressions(a))
            .unwrap_or_default();
        match e.as_str() {
            Some(e) if supported.iter().any(|s| s == e) => out.expression = e.to_string(),
            _ => c.fail(
                "avatar.expression",
                "invalid_avatar",
                format!("must be one of {}", supported.join(", ")),
            ),
        }
    }
    out
}

fn parse_voice(c: &mut Check<'_>, v: Option<&Value>, catalog: &Catalog) -> Option<VoiceParams> {
    let mut out = VoiceParams {
        id: catalog
            .voices
            .first()
            .map_or_else(String::new, |v| v.id.clone()),
        speed: 1.0,
        pitch: 1.0,
    };
    let v = match v {
        None => return Some(out),
        Some(Value::Null) => return None,
        Some(v) => v,
    };
    let obj = c.object(v, "voice", "invalid_voice")?;
    c.unknown_fields(obj, &["id", "speed", "pitch"], "voice");
    if let Some(id) = obj.get("id") {
        match id.as_str().and_then(|id| catalog.voice(id)) {
            Some(found) => out.id = found.id.clone(),
            None => c.fail(
                "voice.id",
                "invalid_voice",
                "must be an id from GET /api/v1/voices",
            ),
        }
    }
    out.speed = c.number_in(
        obj.get("speed"),
        "voice.speed",
        "invalid_voice",
        0.5,
        2.0,
        1.0,
    );
    out.pitch = c.number_in(
        obj.get("pitch"),
        "voice.pitch",
        "invalid_voice",
        0.5,
        2.0,
        1.0,
    );
    Some(out)
}

fn parse_background(c: &mut Check<'_>, v: Option<&Value>, catalog: &Catalog) -> Background {
    let default = Background::Color {
        value: "#0f172a".into(),
    };
    let Some(v) = v else { return default };
    let Some(obj) = c.object(v, "background", "invalid_background") else {
        return default;
    };
    match obj.get("type").and_then(Value::as_str) {
        Some("color") => {
            c.unknown_fields(obj, &["type", "value"], "background");
            Background::Color {
                value: c.hex_color(obj.get("value"), "background.value"),
            }
        }
        Some("gradient") => {
            c.unknown_fields(obj, &["type", "from", "to", "angle"], "background");
            Background::Gradient {
                from: c.hex_color(obj.get("from"), "background.from"),
                to: c.hex_color(obj.get("to"), "background.to"),
                angle: c.number_in(
                    obj.get("angle"),
                    "background.angle",
                    "invalid_background",
                    0.0,
                    360.0,
                    180.0,
                ),
            }
        }
        Some("image") => {
            c.unknown_fields(obj, &["type", "asset_id"], "background");
            match obj
                .get("asset_id")
                .and_then(Value::as_str)
                .and_then(|id| catalog.background(id))
            {
                Some(b) => Background::Image {
                    asset_id: b.id.clone(),
                },
                None => {
                    c.fail(
                        "background.asset_id",
                        "invalid_background",
                        "must be an id from GET /api/v1/backgrounds",
                    );
                    default
                }
            }
        }
        _ => {
            c.fail(
                "background.type",
                "invalid_background",
                "must be one of color, gradient, image",
            );
            default
        }
    }
}

fn parse_dimension(c: &mut Check<'_>, v: Option<&Value>) -> Dimension {
    let mut out = Dimension {
        width: 1280,
        height: 720,
    };
    let Some(v) = v else { return out };
    let Some(obj) = c.object(v, "dimension", "invalid_dimension") else {
        return out;
    };
    c.unknown_fields(obj, &["width", "height"], "dimension");
    for (field, max, slot) in [
        ("width", 3840, &mut out.width),
        ("height", 2160, &mut out.height),
    ] {
        let path = format!("dimension.{field}");
        let Some(value) = obj.get(field) else {
            continue;
        };
        match value.as_u64() {
            Some(n) if (128..=max).contains(&n) && n % 2 == 0 => *slot = n as u32,
            _ => c.fail(
                &path,
                "invalid_dimension",
                format!("must be an even integer from 128 to {max}"),
            ),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(v: Value) -> Result<VideoParams, Vec<FieldError>> {
        let catalog = Catalog::embedded().expect("catalog");
        parse_video_request(&v, &catalog, "", 7)
    }

    fn codes(v: Value) -> Vec<(String, &'static str)> {
        parse(v)
            .expect_err("invalid")
            .into_iter()
            .map(|e| (e.field, e.code))
            .collect()
    }

    #[test]
    fn only_script_is_required_and_defaults_are_filled_in() {
        let p = parse(json!({"script": "  Hello there. General Kenobi!  "})).expect("valid");
        assert_eq!(p.script, "Hello there. General Kenobi!");
        assert_eq!(
            p.dimension,
            Dimension {
                width: 1280,
                height: 720
            }
        );
        assert_eq!(p.fps, 30);
        assert_eq!(p.quality, Quality::Standard);
        assert_eq!(p.voice.as_ref().map(|v| v.id.as_str()), Some("en-us-1"));
        assert_eq!(p.seed, 7);
        assert_eq!(p.title, "Hello there. General Kenobi!");
    }

    #[test]
    fn limits_are_exact() {
        assert!(parse(json!({"script": "x".repeat(5000)})).is_ok());
        assert_eq!(
            codes(json!({"script": "x".repeat(5001)})),
            [("script".into(), "invalid_script")]
        );
        assert_eq!(
            codes(json!({"script": "   "})),
            [("script".into(), "invalid_script")]
        );
        assert!(parse(json!({"script": "a", "dimension": {"width": 128, "height": 2160}})).is_ok());
        assert_eq!(
            codes(json!({"script": "a", "dimension": {"width": 127, "height": 2162}})),
            [
                ("dimension.width".into(), "invalid_dimension"),
                ("dimension.height".into(), "invalid_dimension")
            ]
        );
        assert_eq!(
            codes(json!({"script": "a", "dimension": {"width": 1281}})),
            [("dimension.width".into(), "invalid_dimension")]
        );
        assert!(
            parse(json!({"script": "a", "fps": 60, "voice": {"speed": 0.5, "pitch": 2.0}})).is_ok()
        );
        assert_eq!(
            codes(json!({"script": "a", "fps": 61})),
            [("fps".into(), "invalid_fps")]
        );
        assert_eq!(
            codes(json!({"script": "a", "fps": 0})),
            [("fps".into(), "invalid_fps")]
        );
        assert_eq!(
            codes(json!({"script": "a", "fps": 29.97})),
            [("fps".into(), "invalid_fps")]
        );
        assert_eq!(
            codes(json!({"script": "a", "voice": {"speed": 2.01}})),
            [("voice.speed".into(), "invalid_voice")]
        );
    }

    #[test]
    fn unknown_fields_are_rejected_at_every_level() {
        assert_eq!(
            codes(json!({"script": "a", "colour": 1, "avatar": {"id": "ava", "mood": "x"}})),
            [
                ("colour".into(), "unknown_field"),
                ("avatar.mood".into(), "unknown_field")
            ]
        );
    }

    #[test]
    fn catalog_ids_and_enums_are_checked() {
        assert_eq!(
            codes(json!({"script": "a", "avatar": {"id": "nobody"}})),
            [("avatar.id".into(), "invalid_avatar")]
        );
        assert_eq!(
            codes(json!({"script": "a", "voice": {"id": "klingon"}})),
            [("voice.id".into(), "invalid_voice")]
        );
        assert_eq!(
            codes(json!({"script": "a", "quality": "ultra"})),
            [("quality".into(), "invalid_quality")]
        );
        assert_eq!(
            codes(json!({"script": "a", "background": {"type": "color", "value": "red"}})),
            [("background.value".into(), "invalid_background")]
        );
        assert_eq!(
            codes(json!({"script": "a", "callback_url": "ftp://x"})),
            [("callback_url".into(), "invalid_callback_url")]
        );
    }

    #[test]
    fn a_null_voice_opts_out_of_audio() {
        assert_eq!(
            parse(json!({"script": "a", "voice": null}))
                .expect("valid")
                .voice,
            None
        );
    }

    #[test]
    fn duration_estimate_is_whole_frames() {
        let p = parse(
            json!({"script": "one two three four five six seven eight nine ten.", "fps": 24}),
        )
        .expect("valid");
        let (d, frames) = p.estimate_duration();
        assert!((d * 24.0 - frames as f64).abs() < 1e-9);
        assert!(d > 3.0 && d < 6.0, "{d}");
    }
}
