//! The JSON Schema of a create request and of a batch, for the OpenAPI document.

use serde_json::Value;

use super::*;
use crate::render::assets::Catalog;

/// The JSON Schema of a create request, built from the same limits, enumerations and
/// catalog the validator above checks, so the OpenAPI document states exactly what is
/// accepted: `additionalProperties: false` everywhere (unknown fields are 422), both halves
/// of `dimension` required, catalog ids as enums.
pub fn request_schema(catalog: &Catalog) -> Value {
    use serde_json::json;
    let ids = |items: &[crate::render::assets::CatalogItem]| -> Vec<String> {
        items.iter().map(|i| i.id.clone()).collect()
    };
    let mut expressions: Vec<String> = Vec::new();
    for a in &catalog.avatars {
        for e in catalog.expressions(a) {
            if !expressions.contains(&e) {
                expressions.push(e);
            }
        }
    }
    let hex = json!({"type": "string", "pattern": "^#[0-9a-fA-F]{6}$", "examples": ["#0f172a"]});
    // "1–max characters after trimming" in JSON Schema: at most `max` characters, or longer
    // only when whitespace at either end (which is trimmed before counting) allows it.
    let text = |max: usize, what: &str| {
        json!({
            "type": "string", "minLength": 1, "pattern": NO_CONTROL_PATTERN,
            "anyOf": [{"maxLength": max}, {"pattern": "^\\s|\\s$"}],
            "description": format!("{what}: 1–{max} characters after trimming; no control characters but tab and line breaks"),
        })
    };
    let even = |(lo, hi): (u64, u64)| json!({"type": "integer", "minimum": lo, "maximum": hi, "multipleOf": 2});
    let factor = json!({"type": "number", "minimum": VOICE_FACTOR_RANGE.0, "maximum": VOICE_FACTOR_RANGE.1, "default": 1.0});
    let avatar = json!({
        "type": "object", "additionalProperties": false,
        "properties": {
            "id": {"anyOf": [
                {"type": "string", "enum": ids(&catalog.avatars)},
                {"type": "string", "format": "uuid", "description": "a custom avatar of the tenant (POST /api/v1/avatars)"},
            ]},
            "expression": {"type": "string", "enum": expressions.clone(), "default": "neutral"},
            "look": {"type": "object", "description": "ignored: a custom avatar's look comes from the avatar"},
        },
    });
    let voice = json!({"oneOf": [{
                "type": "object", "additionalProperties": false,
                "properties": {
                    "id": {"type": "string", "enum": ids(&catalog.voices)},
                    "speed": factor, "pitch": factor,
                },
            }, {"type": "null", "description": "no audio track"}]});
    let background = json!({"oneOf": [
        {"type": "object", "additionalProperties": false, "required": ["type", "value"],
         "properties": {"type": {"const": "color"}, "value": hex}},
        {"type": "object", "additionalProperties": false, "required": ["type", "from", "to"],
         "properties": {"type": {"const": "gradient"}, "from": hex, "to": hex,
            "angle": {"type": "number", "minimum": GRADIENT_ANGLE_RANGE.0, "maximum": GRADIENT_ANGLE_RANGE.1, "default": 180}}},
        {"type": "object", "additionalProperties": false, "required": ["type", "asset_id"],
         "properties": {"type": {"const": "image"}, "asset_id": {"type": "string", "enum": ids(&catalog.backgrounds)}}},
    ]});
    json!({
        "type": "object",
        "additionalProperties": false,
        // A script read by a voice, a recording (`audio`) instead of both, or scenes each
        // with its own script.
        "oneOf": [
            {"required": ["script"], "not": {"anyOf": [{"required": ["audio"]}, {"required": ["scenes"]}]}},
            {"required": ["audio"], "not": {"anyOf": [{"required": ["script"]}, {"required": ["voice"]}, {"required": ["scenes"]}]}},
            {"required": ["scenes"], "not": {"anyOf": [{"required": ["script"]}, {"required": ["audio"]}]}},
        ],
        "properties": {
            "scenes": {
                "type": "array", "minItems": 1, "maxItems": SCENES_MAX,
                "description": "scenes played in order in one file; each field but script defaults to the request's own",
                "items": {
                    "type": "object", "additionalProperties": false, "required": ["script"],
                    "properties": {
                        "script": text(SCRIPT_MAX_CHARS, "what the avatar says in this scene; may hold <break time=\"…\"/>"),
                        "avatar": avatar.clone(),
                        "voice": voice.clone(),
                        "background": background.clone(),
                        "expression": {"type": "string", "enum": expressions},
                    },
                },
            },
            "audio": {
                "type": "object", "additionalProperties": false, "required": ["id"],
                "description": "a recording from POST /api/v1/audio to lip-sync to (instead of script and voice)",
                "properties": {
                    "id": {"type": "string", "format": "uuid"},
                    "duration_s": {"type": "number", "description": "ignored: the recording's own length is used"},
                },
            },
            "script": text(SCRIPT_MAX_CHARS, "what the avatar says; may hold SSML pauses, <break time=\"500ms\"/> or <break time=\"2s\"/> (up to 10 s each, 120 s in all), and no other tag"),
            "title": {"oneOf": [text(TITLE_MAX_CHARS, "title"), {"type": "null"}]},
            "avatar": avatar,
            "voice": voice,
            "background": background,
            "dimension": {
                "type": "object", "additionalProperties": false, "required": ["width", "height"],
                "properties": {"width": even(WIDTH_RANGE), "height": even(HEIGHT_RANGE)},
            },
            "fps": {"type": "integer", "minimum": FPS_RANGE.0, "maximum": FPS_RANGE.1, "default": 30},
            "captions": {"type": "boolean", "default": false},
            "quality": {"type": "string", "enum": ["draft", "standard", "high"], "default": "standard"},
            "callback_url": {"oneOf": [
                {"type": "string", "maxLength": CALLBACK_URL_MAX, "pattern": "^[hH][tT][tT][pP][sS]?://[^/?#\\s\\u0000-\\u001F\\u007F-\\u009F\\uFEFF]+([/?#][^\\s\\u0000-\\u001F\\u007F-\\u009F\\uFEFF]*)?$"},
                {"type": "null"},
            ]},
            "seed": {"oneOf": [{"type": "integer", "minimum": 0, "maximum": SEED_MAX}, {"type": "null"}]},
        },
    })
}

/// The JSON Schema of a batch: `{"videos": [request, …]}` with 1–[`BATCH_MAX`] items.
pub fn batch_schema(catalog: &Catalog) -> Value {
    serde_json::json!({
        "type": "object", "additionalProperties": false, "required": ["videos"],
        "properties": {"videos": {"type": "array", "minItems": 1, "maxItems": BATCH_MAX, "items": request_schema(catalog)}},
    })
}
