//! Create requests, parsed once at the edge: a JSON body becomes [`VideoParams`] (the
//! normalised request, defaults filled in) or a list of [`FieldError`]s by dotted path, and
//! the JSON Schema of the same rules for the OpenAPI document ([`schema`]). Handlers and the
//! pipeline never re-validate.

mod schema;
#[cfg(test)]
mod tests;

pub use schema::{batch_schema, request_schema};
use serde_json::{Map, Value};

use crate::platform::error::FieldError;
use crate::render::assets::Catalog;
use crate::render::params::{
    AudioParams, AvatarParams, Background, Dimension, Quality, SCENES_MAX, SceneParams,
    VideoParams, VoiceParams,
};
use crate::render::timeline::text;

pub const SCRIPT_MAX_CHARS: usize = 5000;
pub const TITLE_MAX_CHARS: usize = 200;
pub const BATCH_MAX: usize = 50;
/// Seeds stay within JavaScript's exact integer range.
pub const SEED_MAX: u64 = (1 << 53) - 1;
/// Frame size limits: even integers in these ranges.
pub const WIDTH_RANGE: (u64, u64) = (128, 3840);
pub const HEIGHT_RANGE: (u64, u64) = (128, 2160);
pub const FPS_RANGE: (u64, u64) = (1, 60);
/// Voice speed and pitch factors.
pub const VOICE_FACTOR_RANGE: (f64, f64) = (0.5, 2.0);
pub const GRADIENT_ANGLE_RANGE: (f64, f64) = (0.0, 360.0);
pub const CALLBACK_URL_MAX: usize = 2048;
/// Characters a script or title may not contain (control characters but tab, CR, LF), as
/// the JSON Schema pattern of [`request_schema`]; [`Check::text`] enforces the same.
pub(super) const NO_CONTROL_PATTERN: &str =
    "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$";

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
    "audio",
    "scenes",
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
        let raw = match v? {
            Value::String(s) => s,
            _ => {
                self.fail(field, code, "must be a string");
                return None;
            }
        };
        let s = raw.trim();
        let n = s.chars().count();
        if n == 0 || n > max {
            self.fail(
                field,
                code,
                format!("must be 1 to {max} characters after trimming (got {n})"),
            );
            None
        // The raw string, not the trimmed one: a control character (U+000B, U+0085) is
        // refused wherever it stands, as the documented pattern says.
        } else if raw
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

    let audio = parse_audio(&mut c, obj.get("audio"));
    let has_scenes = obj.get("scenes").is_some_and(|v| !v.is_null());
    if has_scenes && audio.is_some() {
        c.fail(
            "scenes",
            "invalid_scenes",
            "a video with scenes speaks their scripts; audio cannot be used with scenes",
        );
    }
    let script = match (obj.get("script"), &audio) {
        (None, _) if has_scenes => String::new(),
        (Some(_), _) if has_scenes => {
            c.fail(
                "script",
                "invalid_script",
                "give script or scenes, not both (each scene has its own script)",
            );
            String::new()
        }
        (None, Some(_)) => String::new(),
        (None | Some(Value::Null), None) => {
            c.fail("script", "invalid_script", "is required (or audio)");
            String::new()
        }
        (Some(_), Some(_)) => {
            c.fail(
                "script",
                "invalid_script",
                "a video speaks a script or lip-syncs to audio, not both",
            );
            String::new()
        }
        (v, None) => c
            .text(v, "script", "invalid_script", SCRIPT_MAX_CHARS)
            .unwrap_or_default(),
    };
    // The script's markup: `<break/>` only (SPEC §3b).
    if let Err(e) = text::parse(&script) {
        c.fail("script", "invalid_script", e.to_string());
    }
    let title = match obj.get("title") {
        None | Some(Value::Null) if audio.is_some() => "Voice recording".to_string(),
        None | Some(Value::Null) if has_scenes => obj
            .get("scenes")
            .and_then(|s| s.get(0))
            .and_then(|s| s.get("script"))
            .and_then(Value::as_str)
            .map_or_else(|| "Untitled".to_string(), default_title),
        None | Some(Value::Null) => default_title(&script),
        v => c
            .text(v, "title", "invalid_title", TITLE_MAX_CHARS)
            .unwrap_or_default(),
    };

    let avatar = parse_avatar(&mut c, obj.get("avatar"), catalog);
    let voice = match (&audio, obj.get("voice")) {
        (Some(_), None | Some(Value::Null)) => None,
        (Some(_), Some(_)) => {
            c.fail(
                "voice",
                "invalid_voice",
                "a video with audio has that recording's voice; leave voice out",
            );
            None
        }
        (None, v) => parse_voice(&mut c, v, catalog),
    };
    let background = parse_background(&mut c, obj.get("background"), catalog);
    let scenes = parse_scenes(
        &mut c,
        obj.get("scenes"),
        catalog,
        (&avatar, &voice, &background),
    );
    let dimension = parse_dimension(&mut c, obj.get("dimension"));
    let fps = c.int_in(
        obj.get("fps"),
        "fps",
        "invalid_fps",
        FPS_RANGE.0,
        FPS_RANGE.1,
        30,
    ) as u32;
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
                format!(
                    "must be an http(s) URL with a host, at most {CALLBACK_URL_MAX} characters"
                ),
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
            audio,
            scenes,
        })
    } else {
        Err(c.errors)
    }
}

fn default_title(script: &str) -> String {
    let mut title = String::new();
    for word in text::plain(script).split_whitespace().take(8) {
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

/// An absolute http(s) URL as written, not as a lenient URL parser would repair it
/// (`http:host`, `http:///x` or surrounding whitespace are refused): the shape the
/// documented pattern states, then a parse that must find a host.
fn valid_callback(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &s[8..]
    } else if lower.starts_with("http://") {
        &s[7..]
    } else {
        return false;
    };
    s.len() <= CALLBACK_URL_MAX
        && !rest.is_empty()
        && !rest.starts_with(['/', '?', '#'])
        // Whitespace as any regex engine means it, control characters and the BOM: the
        // documented pattern refuses them all, so the validator does too.
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\u{feff}')
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
        look: None,
    };
    let Some(v) = v else { return out };
    let Some(obj) = c.object(v, "avatar", "invalid_avatar") else {
        return out;
    };
    // `look` is what the params echo for a custom avatar: accepted, and filled in again from
    // the avatar itself by the handler.
    c.unknown_fields(obj, &["id", "expression", "look"], "avatar");
    if let Some(id) = obj.get("id") {
        match id.as_str() {
            Some(id) if catalog.avatar(id).is_some() => out.id = id.to_string(),
            // A custom avatar: whether it is the tenant's is the handler's check.
            Some(id) if uuid::Uuid::parse_str(id).is_ok() => out.id = id.to_ascii_lowercase(),
            _ => c.fail(
                "avatar.id",
                "invalid_avatar",
                "must be an id from GET /api/v1/avatars",
            ),
        }
    }
    if let Some(e) = obj.get("expression") {
        let supported = expressions_of(catalog, &out.id);
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

/// The expressions an avatar may use: a built-in one's own, a custom one's the standard three
/// (every base has them).
fn expressions_of(catalog: &Catalog, id: &str) -> Vec<String> {
    match catalog.avatar(id) {
        Some(a) => catalog.expressions(a),
        None => ["neutral", "friendly", "serious"]
            .map(String::from)
            .to_vec(),
    }
}

/// `"scenes": [{"script", "avatar", "voice", "background", "expression"}, …]` (1–50): each
/// scene's fields but `script` default to the request's own (`expression` sets the avatar's).
fn parse_scenes(
    c: &mut Check<'_>,
    v: Option<&Value>,
    catalog: &Catalog,
    (avatar, voice, background): (&AvatarParams, &Option<VoiceParams>, &Background),
) -> Option<Vec<SceneParams>> {
    let list = match v? {
        Value::Null => return None,
        Value::Array(a) if (1..=SCENES_MAX).contains(&a.len()) => a,
        _ => {
            c.fail(
                "scenes",
                "invalid_scenes",
                format!("must be an array of 1 to {SCENES_MAX} scenes"),
            );
            return None;
        }
    };
    let mut scenes = Vec::with_capacity(list.len());
    for (i, item) in list.iter().enumerate() {
        let prefix = format!("{}scenes[{i}].", c.prefix);
        let mut sc = Check {
            prefix: &prefix,
            errors: Vec::new(),
        };
        let Some(obj) = item.as_object() else {
            c.fail(
                &format!("scenes[{i}]"),
                "invalid_scenes",
                "must be an object",
            );
            continue;
        };
        sc.unknown_fields(
            obj,
            &["script", "avatar", "voice", "background", "expression"],
            "",
        );
        let script = match obj.get("script") {
            None | Some(Value::Null) => {
                sc.fail("script", "invalid_script", "is required");
                String::new()
            }
            v => sc
                .text(v, "script", "invalid_script", SCRIPT_MAX_CHARS)
                .unwrap_or_default(),
        };
        if let Err(e) = text::parse(&script) {
            sc.fail("script", "invalid_script", e.to_string());
        }
        let mut scene_avatar = match obj.get("avatar") {
            None => avatar.clone(),
            v => parse_avatar(&mut sc, v, catalog),
        };
        if let Some(e) = obj.get("expression") {
            match e.as_str().filter(|e| {
                expressions_of(catalog, &scene_avatar.id)
                    .iter()
                    .any(|x| x == e)
            }) {
                Some(e) => scene_avatar.expression = e.to_string(),
                None => sc.fail(
                    "expression",
                    "invalid_avatar",
                    "must be one of the avatar's expressions (neutral, friendly, serious)",
                ),
            }
        }
        let scene_voice = match obj.get("voice") {
            None => voice.clone(),
            v => parse_voice(&mut sc, v, catalog),
        };
        let scene_background = match obj.get("background") {
            None => background.clone(),
            v => parse_background(&mut sc, v, catalog),
        };
        c.errors.append(&mut sc.errors);
        scenes.push(SceneParams {
            script,
            avatar: scene_avatar,
            voice: scene_voice,
            background: scene_background,
        });
    }
    Some(scenes)
}

/// `"audio": {"id": <uuid>}`: the recording to lip-sync to. Whether the id is an upload of
/// the tenant (and how long it is) is the handler's check ([`AudioParams::duration_s`] is
/// filled in there; a `duration_s` sent back from `params` is accepted and replaced).
fn parse_audio(c: &mut Check<'_>, v: Option<&Value>) -> Option<AudioParams> {
    let v = match v {
        None | Some(Value::Null) => return None,
        Some(v) => v,
    };
    let obj = c.object(v, "audio", "invalid_audio")?;
    c.unknown_fields(obj, &["id", "duration_s"], "audio");
    match obj
        .get("id")
        .and_then(Value::as_str)
        .map(uuid::Uuid::parse_str)
    {
        Some(Ok(id)) => Some(AudioParams {
            id,
            duration_s: 0.0,
        }),
        _ => {
            c.fail(
                "audio.id",
                "invalid_audio",
                "must be the id of a recording from POST /api/v1/audio",
            );
            None
        }
    }
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
        VOICE_FACTOR_RANGE.0,
        VOICE_FACTOR_RANGE.1,
        1.0,
    );
    out.pitch = c.number_in(
        obj.get("pitch"),
        "voice.pitch",
        "invalid_voice",
        VOICE_FACTOR_RANGE.0,
        VOICE_FACTOR_RANGE.1,
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
                    GRADIENT_ANGLE_RANGE.0,
                    GRADIENT_ANGLE_RANGE.1,
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
    for (field, (min, max), slot) in [
        ("width", WIDTH_RANGE, &mut out.width),
        ("height", HEIGHT_RANGE, &mut out.height),
    ] {
        let path = format!("dimension.{field}");
        // Width and height only make sense together: a missing one is an error, never a
        // silently defaulted half of another aspect ratio.
        let Some(value) = obj.get(field) else {
            c.fail(
                &path,
                "invalid_dimension",
                "is required when dimension is given (width and height together)",
            );
            continue;
        };
        match value.as_u64() {
            Some(n) if (min..=max).contains(&n) && n % 2 == 0 => *slot = n as u32,
            _ => c.fail(
                &path,
                "invalid_dimension",
                format!("must be an even integer from {min} to {max}"),
            ),
        }
    }
    out
}
