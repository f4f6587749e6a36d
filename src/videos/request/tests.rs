//! The validator's rules, limit by limit, and property tests on arbitrary JSON.

use super::*;
use serde_json::{Value, json};

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
        [
            ("dimension.width".into(), "invalid_dimension"),
            ("dimension.height".into(), "invalid_dimension")
        ]
    );
    assert_eq!(
        codes(json!({"script": "a", "dimension": {"width": 320}})),
        [("dimension.height".into(), "invalid_dimension")]
    );
    assert_eq!(
        codes(json!({"script": "a", "dimension": {}})),
        [
            ("dimension.width".into(), "invalid_dimension"),
            ("dimension.height".into(), "invalid_dimension")
        ]
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
    let p =
        parse(json!({"script": "one two three four five six seven eight nine ten.", "fps": 24}))
            .expect("valid");
    let (d, frames) = p.estimate_duration();
    assert!((d * 24.0 - frames as f64).abs() < 1e-9);
    assert!(d > 3.0 && d < 6.0, "{d}");
}

mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Scripts as users and attackers write them: any Unicode, control characters,
    /// emoji, SSML-like tags, very long words.
    fn script() -> impl Strategy<Value = String> {
        prop_oneof![
            "\\PC{0,300}",
            "[\\x00-\\x1f\\x7f a-z]{0,100}",
            "([a-z]{1,12}|😀|👩‍👩‍👧|\\u{200d}|\\u{fe0f}|\\u{202e}|<break time=\"[0-9]{1,3}m?s\"/>|<[a-z]{1,8}>|&[a-z]{2,5};| |\\n){0,60}",
            "[a-zA-Z]{1000,6000}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any script is accepted (trimmed, 1–5000 characters, no control characters but
        /// whitespace) or refused as `invalid_script`; never a panic.
        #[test]
        fn any_script_is_accepted_trimmed_or_refused(s in script()) {
            match parse(serde_json::json!({"script": s})) {
                Ok(p) => {
                    let n = p.script.chars().count();
                    prop_assert!((1..=SCRIPT_MAX_CHARS).contains(&n));
                    prop_assert_eq!(p.script.as_str(), s.trim());
                    prop_assert!(!p.script.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')));
                    let (d, frames) = p.estimate_duration();
                    prop_assert!(d.is_finite() && d > 0.0 && frames >= 1);
                }
                Err(e) => prop_assert_eq!(e[0].code, "invalid_script"),
            }
        }

        /// Any JSON value as a whole request body or as any field: a 422 list or params.
        #[test]
        fn any_json_is_parsed_or_refused(v in json_value(), field in prop::sample::select(TOP_FIELDS)) {
            let _ = parse(v.clone());
            let _ = parse(serde_json::json!({"script": "hello", field: v}));
        }

        /// The normalised params of an accepted request are themselves a valid request
        /// that normalises to the same params (what `params` echoes can be sent again).
        #[test]
        fn normalised_params_round_trip(
            s in "[a-zA-Z ,.!?]{1,200}",
            w in 64u32..=1920, h in 64u32..=1080, fps in 1u32..=60,
            speed in 0.5f64..=2.0, seed in 0u64..=SEED_MAX,
        ) {
            prop_assume!(!s.trim().is_empty());
            let first = parse(serde_json::json!({
                "script": s, "dimension": {"width": w * 2, "height": h * 2}, "fps": fps,
                "voice": {"speed": speed}, "seed": seed,
            })).expect("valid");
            let again = parse(serde_json::to_value(&first).expect("serialises")).expect("still valid");
            prop_assert_eq!(first, again);
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "\\PC{0,40}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[a-z_]{1,10}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }
}

#[test]
fn a_recording_replaces_script_and_voice() {
    let id = "0193a1b2-0000-7000-8000-000000000001";
    let p = parse(json!({"audio": {"id": id}, "fps": 25})).expect("valid");
    assert_eq!(
        p.audio.as_ref().map(|a| a.id.to_string()),
        Some(id.to_string())
    );
    assert_eq!((p.script.as_str(), p.voice.is_none()), ("", true));
    assert_eq!(p.title, "Voice recording");
    // The echoed params are a valid request again.
    let echoed = serde_json::to_value(&p).expect("json");
    assert!(echoed.get("script").is_none());
    assert_eq!(parse(echoed).expect("round trip").audio, p.audio);
    for (body, field) in [
        (json!({"audio": {"id": id}, "script": "Hi"}), "script"),
        (json!({"audio": {"id": id}, "script": null}), "script"),
        (
            json!({"audio": {"id": id}, "voice": {"id": "en-us-1"}}),
            "voice",
        ),
        (json!({"audio": {"id": "nope"}}), "audio.id"),
        (
            json!({"audio": {"id": id, "format": "wav"}}),
            "audio.format",
        ),
        (json!({"audio": "x"}), "audio"),
    ] {
        let fields: Vec<String> = codes(body.clone()).into_iter().map(|(f, _)| f).collect();
        assert!(fields.iter().any(|f| f == field), "{body}: {fields:?}");
    }
}

#[test]
fn scenes_take_the_request_s_defaults_and_are_checked_one_by_one() {
    let p = parse(json!({
        "avatar": {"id": "lena", "expression": "friendly"},
        "background": {"type": "color", "value": "#112233"},
        "scenes": [
            {"script": "One."},
            {"script": "Two.", "avatar": {"id": "marcus"}, "expression": "serious", "voice": null},
        ]
    }))
    .expect("valid");
    let scenes = p.scenes.as_ref().expect("scenes");
    assert_eq!(
        (
            scenes[0].avatar.id.as_str(),
            scenes[0].avatar.expression.as_str()
        ),
        ("lena", "friendly")
    );
    assert_eq!(
        (
            scenes[1].avatar.id.as_str(),
            scenes[1].avatar.expression.as_str()
        ),
        ("marcus", "serious")
    );
    assert!(scenes[0].voice.is_some() && scenes[1].voice.is_none());
    assert_eq!(scenes[1].background, scenes[0].background);
    assert_eq!(p.title, "One.");
    assert_eq!(p.script, "");
    // Two estimates add up to the video's.
    let segs = p.segments();
    let sum: i64 = segs.iter().map(|s| s.estimate_duration().1).sum();
    assert_eq!(p.estimate_duration().1, sum);
    // The echoed params are a valid request again.
    let echoed = serde_json::to_value(&p).expect("json");
    assert_eq!(parse(echoed).expect("round trip").scenes, p.scenes);

    let many: Vec<Value> = (0..51).map(|_| json!({"script": "x"})).collect();
    for (body, field) in [
        (
            json!({"script": "a", "scenes": [{"script": "b"}]}),
            "script",
        ),
        (json!({"scenes": []}), "scenes"),
        (json!({"scenes": many}), "scenes"),
        (
            json!({"scenes": [{"script": "a"}, {"avatar": {"id": "ava"}}]}),
            "scenes[1].script",
        ),
        (
            json!({"scenes": [{"script": "a", "mood": "x"}]}),
            "scenes[0].mood",
        ),
        (
            json!({"scenes": [{"script": "a", "avatar": {"id": "nobody"}}]}),
            "scenes[0].avatar.id",
        ),
        (
            json!({"scenes": [{"script": "a", "expression": "angry"}]}),
            "scenes[0].expression",
        ),
        (
            json!({"scenes": [{"script": "a <speak>b</speak>"}]}),
            "scenes[0].script",
        ),
        (
            json!({"scenes": [{"script": "a"}], "audio": {"id": "0193a1b2-0000-7000-8000-000000000001"}}),
            "scenes",
        ),
    ] {
        let fields: Vec<String> = codes(body.clone()).into_iter().map(|(f, _)| f).collect();
        assert!(fields.iter().any(|f| f == field), "{body}: {fields:?}");
    }
}

#[test]
fn the_validator_the_schema_and_the_params_name_the_same_fields() {
    // The create body is stated by the validator (TOP_FIELDS), the JSON Schema of the
    // OpenAPI document and the normalised VideoParams: they must not drift apart.
    let catalog = Catalog::embedded().expect("catalog");
    let schema = request_schema(&catalog);
    let mut documented: Vec<&str> = schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .map(String::as_str)
        .collect();
    // A script video's params and a recording's (which has `audio` and no `script`).
    let params = [
        json!({"script": "Hi."}),
        json!({"audio": {"id": "0193a1b2-0000-7000-8000-000000000001"}}),
        json!({"scenes": [{"script": "Hi."}]}),
    ]
    .map(|body| serde_json::to_value(parse(body).expect("valid")).expect("json"));
    let mut normalised: Vec<&str> = params
        .iter()
        .flat_map(|p| p.as_object().expect("object").keys())
        .map(String::as_str)
        .collect();
    normalised.sort_unstable();
    normalised.dedup();
    let mut accepted = TOP_FIELDS.to_vec();
    for list in [&mut documented, &mut normalised, &mut accepted] {
        list.sort_unstable();
    }
    assert_eq!(documented, accepted);
    assert_eq!(normalised, accepted);
}
