//! Golden frames: every avatar preset in every expression, rendered at a fixed seed and
//! compared with the committed PNGs in `tests/golden/` within a small tolerance (another
//! Vulkan driver may round differently; a changed shape or colour fails).
//!
//! After an intended change to the look, regenerate them and review the diff:
//! `REELGEN_BLESS=1 bash scripts/test.sh -E 'test(golden)'`.
//! A failing comparison writes what was rendered to `target/golden-actual/`.

use std::path::{Path, PathBuf};

use serde_json::json;

use reelgen::render::pipeline::Generator;

use super::generate::{catalog, generator, params};

const W: u32 = 320;
const H: u32 = 180;
/// A channel may differ by this much before a pixel counts as different…
const CHANNEL_TOLERANCE: u8 = 16;
/// …and this share of pixels may differ.
const MAX_DIFFERENT: f64 = 0.002;
/// Two expressions of one avatar differ visibly in at least this many pixels. Before the
/// expressions were made to read, pairs differed in 55–157 pixels; since, in 195–388.
const MIN_EXPRESSION_PIXELS: usize = 170;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn read_png(path: &Path) -> Option<Vec<u8>> {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).ok()?));
    let mut reader = decoder.read_info().ok()?;
    let mut buf = vec![0; reader.output_buffer_size()?];
    let info = reader.next_frame(&mut buf).ok()?;
    (info.width == W && info.height == H && info.color_type == png::ColorType::Rgba)
        .then(|| buf[..info.buffer_size()].to_vec())
}

fn write_png(path: &Path, rgba: &[u8]) {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("golden dir");
    }
    let file = std::fs::File::create(path).expect("create png");
    let mut enc = png::Encoder::new(std::io::BufWriter::new(file), W, H);
    enc.set_color(png::ColorType::Rgba);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::High);
    enc.write_header()
        .and_then(|mut w| w.write_image_data(rgba))
        .expect("write png");
}

/// The frame of one look: speaking ("ah", teeth and tongue showing), eyes open, a slight
/// head turn from the seed's idle motion.
fn render(g: &Generator, avatar: &str, expression: &str) -> Vec<u8> {
    let p = params(json!({
        "script": "Golden frame.",
        "voice": null,
        "avatar": {"id": avatar, "expression": expression},
        "background": {"type": "image", "asset_id": "studio"},
        "dimension": {"width": W, "height": H},
        "fps": 25,
        "seed": 11
    }));
    let mut timeline = g.timeline(&p).expect("timeline");
    let mut f = timeline.frames[timeline.frames.len() / 2];
    (f.mouth_open, f.mouth_wide, f.mouth_round, f.teeth, f.tongue) = (0.6, 0.25, 0.0, 0.7, 0.4);
    (f.blink, f.gaze_x, f.gaze_y) = (0.0, 0.2, -0.05);
    timeline.frames = vec![f];
    let frames = g.still_frames(&p, &timeline, &[0]).expect("frame");
    frames.into_iter().next().expect("one frame")
}

#[test]
fn every_avatar_and_expression_matches_its_golden_frame() {
    let Some(g) = generator() else { return };
    let bless = std::env::var_os("REELGEN_BLESS").is_some();
    let cat = catalog();
    let mut failures = Vec::new();
    let mut checked = 0;
    let mut looks: Vec<Vec<u8>> = Vec::new();
    for avatar in &cat.avatars {
        for expression in cat.expressions(avatar) {
            let name = format!("{}-{expression}.png", avatar.id);
            let path = golden_dir().join(&name);
            let actual = render(&g, &avatar.id, &expression);
            assert_eq!(actual.len(), (W * H * 4) as usize);
            if bless {
                write_png(&path, &actual);
            }
            let Some(golden) = read_png(&path) else {
                failures.push(format!("{name}: no golden (run with REELGEN_BLESS=1)"));
                continue;
            };
            let different = actual
                .chunks_exact(4)
                .zip(golden.chunks_exact(4))
                .filter(|(a, b)| {
                    a.iter()
                        .zip(*b)
                        .any(|(x, y)| x.abs_diff(*y) > CHANNEL_TOLERANCE)
                })
                .count();
            let share = different as f64 / f64::from(W * H);
            if share > MAX_DIFFERENT {
                let out = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("target/golden-actual")
                    .join(&name);
                write_png(&out, &actual);
                failures.push(format!(
                    "{name}: {:.2} % of pixels differ (allowed {:.2} %); rendered: {}",
                    share * 100.0,
                    MAX_DIFFERENT * 100.0,
                    out.display()
                ));
            }
            looks.push(actual);
            checked += 1;
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(checked >= 12, "4 avatars x 3 expressions, got {checked}");
    // Expressions read at a glance: each pair of one avatar's expressions differs visibly
    // (past the tolerance) in at least this many pixels of the 320×180 frame, where the face
    // is ~60 pixels tall: mouth corners, cheeks, lids and brows all move.
    for (i, per_avatar) in looks.chunks(3).enumerate() {
        for (a, b) in [(0, 1), (0, 2), (1, 2)] {
            let visible = per_avatar[a]
                .chunks_exact(4)
                .zip(per_avatar[b].chunks_exact(4))
                .filter(|(x, y)| {
                    x.iter()
                        .zip(*y)
                        .any(|(p, q)| p.abs_diff(*q) > CHANNEL_TOLERANCE)
                })
                .count();
            assert!(
                visible >= MIN_EXPRESSION_PIXELS,
                "avatar {i}: expressions {a} and {b} differ in only {visible} pixels"
            );
        }
    }
    // Every look is its own: no two presets or expressions render the same frame.
    for (i, a) in looks.iter().enumerate() {
        for b in &looks[i + 1..] {
            assert!(a != b, "two looks render identically");
        }
    }
}
