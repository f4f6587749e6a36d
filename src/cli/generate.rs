//! `reelgen generate`: one video from the command line, with a progress bar. The arguments
//! become the same JSON request the API takes, so validation is identical.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::render::assets::Catalog;
use crate::render::pipeline::{Generator, JobSpec, Stage};
use crate::videos::request;

#[derive(clap::Args, Debug)]
pub struct GenerateArgs {
    /// What the avatar says (may hold `<break time="2s"/>` pauses)
    #[arg(long, required_unless_present_any = ["audio", "scenes"], conflicts_with_all = ["audio", "scenes"])]
    pub script: Option<String>,
    /// A multi-scene video: a JSON file holding the `scenes` array of the API (or an object
    /// with it), each `{"script", "avatar", "voice", "background", "expression"}`
    #[arg(long, conflicts_with = "audio")]
    pub scenes: Option<PathBuf>,
    /// Lip-sync to this recording instead (WAV, MP3, OGG/Opus, FLAC, M4A; ≤ 10 min): it is
    /// the video's sound track
    #[arg(long)]
    pub audio: Option<PathBuf>,
    /// Output MP4
    #[arg(short, long, default_value = "out.mp4")]
    pub output: PathBuf,
    /// Also write a JPEG poster frame here
    #[arg(long)]
    pub thumbnail: Option<PathBuf>,
    /// Also write the captions here: WebVTT (`.vtt`), SubRip (`.srt`) or the transcript
    /// with word timings (`.json`), by the file's extension
    #[arg(long)]
    pub captions_out: Option<PathBuf>,
    #[arg(long, default_value = "ava")]
    pub avatar: String,
    /// neutral | friendly | serious
    #[arg(long, default_value = "neutral")]
    pub expression: String,
    #[arg(long, default_value = "en-us-1")]
    pub voice: String,
    /// `#rrggbb`, `gradient:#from:#to[:angle]` or `image:ID`
    #[arg(long, default_value = "#0f172a")]
    pub background: String,
    #[arg(long, default_value_t = 1280)]
    pub width: u32,
    #[arg(long, default_value_t = 720)]
    pub height: u32,
    #[arg(long, default_value_t = 30)]
    pub fps: u32,
    /// draft | standard | high
    #[arg(long, default_value = "standard")]
    pub quality: String,
    #[arg(long)]
    pub captions: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    #[arg(long, default_value_t = 1.0)]
    pub speed: f64,
    #[arg(long, default_value_t = 1.0)]
    pub pitch: f64,
}

fn background(arg: &str) -> Value {
    let parts: Vec<&str> = arg.split(':').collect();
    match parts.as_slice() {
        ["gradient", from, to] => json!({"type": "gradient", "from": from, "to": to, "angle": 180}),
        ["gradient", from, to, angle] => {
            json!({"type": "gradient", "from": from, "to": to, "angle": angle.parse::<f64>().unwrap_or(f64::NAN)})
        }
        ["image", id] => json!({"type": "image", "asset_id": id}),
        _ => json!({"type": "color", "value": arg}),
    }
}

/// The caption formats `--captions-out` writes, by extension.
#[derive(Debug, Clone, Copy, PartialEq)]
enum CaptionFormat {
    Vtt,
    Srt,
    Json,
}

fn caption_format(path: &std::path::Path) -> Result<CaptionFormat, String> {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("vtt") => Ok(CaptionFormat::Vtt),
        Some("srt") => Ok(CaptionFormat::Srt),
        Some("json") => Ok(CaptionFormat::Json),
        _ => Err(format!(
            "--captions-out {}: the file must end in .vtt, .srt or .json",
            path.display()
        )),
    }
}

pub fn run(a: GenerateArgs) -> Result<(), String> {
    let captions = a
        .captions_out
        .as_deref()
        .map(|p| caption_format(p).map(|f| (p.to_path_buf(), f)))
        .transpose()?;
    let catalog = Arc::new(Catalog::embedded().map_err(|e| e.to_string())?);
    let mut request = json!({
        "avatar": {"id": a.avatar, "expression": a.expression},
        "background": background(&a.background),
        "dimension": {"width": a.width, "height": a.height},
        "fps": a.fps,
        "quality": a.quality,
        "captions": a.captions,
        "seed": a.seed,
    });
    // A recording stands in for the script and the voice; it has no upload id here.
    if let Some(path) = &a.scenes {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("--scenes {}: {e}", path.display()))?;
        let value: Value = serde_json::from_str(&text)
            .map_err(|e| format!("--scenes {}: not JSON: {e}", path.display()))?;
        request["scenes"] = match value {
            Value::Object(mut o) if o.contains_key("scenes") => {
                o.remove("scenes").unwrap_or_default()
            }
            other => other,
        };
        request["voice"] = json!({"id": a.voice, "speed": a.speed, "pitch": a.pitch});
    }
    match (&a.script, &a.audio) {
        _ if a.scenes.is_some() => {}
        (_, Some(path)) => {
            if !path.is_file() {
                return Err(format!("--audio {}: no such file", path.display()));
            }
            request["audio"] = json!({"id": uuid::Uuid::nil()});
        }
        (Some(script), None) => {
            request["script"] = json!(script);
            request["voice"] = json!({"id": a.voice, "speed": a.speed, "pitch": a.pitch});
        }
        (None, None) => return Err("give --script, --scenes or --audio".into()),
    }
    let params =
        request::parse_video_request(&request, &catalog, "", a.seed).map_err(|errors| {
            let lines: Vec<String> = errors
                .iter()
                .map(|e| format!("  {}: {}", e.field, e.message))
                .collect();
            format!("invalid request:\n{}", lines.join("\n"))
        })?;
    let generator = Generator::new(catalog).map_err(|e| e.to_string())?;
    eprintln!(
        "device: {} · encoder: {}{} · audio: {} · RGBA→I420: {}",
        generator.gpu().describe(),
        generator.encoder().element,
        if generator.encoder().hardware {
            " (hardware)"
        } else {
            ""
        },
        generator.encoder().audio,
        generator.color_path().as_str()
    );
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg:<10} [{bar:40}] {pos}/{len} frames · {per_sec} · ETA {eta}",
        )
        .map_err(|e| e.to_string())?
        .progress_chars("=> "),
    );
    let cancel = AtomicBool::new(false);
    // The pipeline writes the transcript as JSON; the other formats are made from it.
    let transcript = captions.as_ref().map(|(path, format)| match format {
        CaptionFormat::Json => path.clone(),
        _ => path.with_extension(format!("{}.transcript.json", std::process::id())),
    });
    let spec = JobSpec {
        params,
        output: a.output.clone(),
        thumbnail: a.thumbnail.clone(),
        transcript: transcript.clone(),
        recording: a.audio.clone(),
        live: false,
    };
    let outcome = generator
        .run(
            &spec,
            &cancel,
            &mut |p| {
                bar.set_length(p.frames_total);
                bar.set_position(p.frames_done);
                bar.set_message(match p.stage {
                    Stage::Timeline => "speech",
                    Stage::Rendering => "rendering",
                    Stage::Finishing => "muxing",
                    Stage::Done => "done",
                });
            },
            &mut |_| {},
        )
        .map_err(|e| e.to_string())?;
    bar.finish();
    println!(
        "wrote {} — {} frames, {:.2} s, {:.1} KiB (timeline {:.2} s, render+encode {:.2} s, finish {:.2} s)",
        a.output.display(),
        outcome.frames,
        outcome.duration_s,
        outcome.size_bytes as f64 / 1024.0,
        outcome.timeline_s,
        outcome.render_s,
        outcome.finish_s
    );
    if let (Some((path, format)), Some(json)) = (captions, transcript) {
        write_captions(&path, format, &json)?;
    }
    Ok(())
}

/// Turns the pipeline's transcript JSON into the requested caption file.
fn write_captions(
    path: &std::path::Path,
    format: CaptionFormat,
    json: &std::path::Path,
) -> Result<(), String> {
    use crate::render::timeline::transcript::Transcript;
    let read = std::fs::read(json);
    if format != CaptionFormat::Json {
        let _ = std::fs::remove_file(json);
    }
    let transcript: Transcript = match read {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| e.to_string())?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!(
                "--captions-out {}: the video has no speech, so no captions",
                path.display()
            ));
        }
        Err(e) => return Err(format!("{}: {e}", json.display())),
    };
    let body = match format {
        CaptionFormat::Vtt => transcript.vtt(),
        CaptionFormat::Srt => transcript.srt(),
        CaptionFormat::Json => return Ok(()),
    };
    std::fs::write(path, body).map_err(|e| format!("{}: {e}", path.display()))?;
    println!(
        "wrote {} ({} words)",
        path.display(),
        transcript.words.len()
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ContactSheetArgs {
    /// Output PNG
    #[arg(short, long, default_value = "docs/contact-sheet.png")]
    pub output: PathBuf,
    /// Width of one cell (16:9)
    #[arg(long, default_value_t = 480)]
    pub cell_width: u32,
}

/// `reelgen contact-sheet`: every avatar (rows) in every expression (columns), mid-word with
/// the mouth about half open.
pub fn contact_sheet(a: ContactSheetArgs) -> Result<(), String> {
    let catalog = Arc::new(Catalog::embedded().map_err(|e| e.to_string())?);
    let generator = Generator::new(catalog.clone()).map_err(|e| e.to_string())?;
    let cw = a.cell_width.max(128) & !1;
    let ch = (cw * 9 / 16) & !1;
    let expressions = ["neutral", "friendly", "serious"];
    let backgrounds = [
        json!({"type": "image", "asset_id": "studio"}),
        json!({"type": "gradient", "from": "#1e3a8a", "to": "#0f172a", "angle": 160}),
        json!({"type": "color", "value": "#e2e8f0"}),
        json!({"type": "image", "asset_id": "sunrise"}),
    ];
    let cols = expressions.len() as u32;
    let rows = catalog.avatars.len() as u32;
    let (sw, sh) = (cw * cols, ch * rows);
    let mut sheet = vec![0u8; (sw * sh * 4) as usize];
    for (r, avatar) in catalog.avatars.iter().enumerate() {
        for (c, expr) in expressions.iter().enumerate() {
            let request = json!({"script": "Hello! Welcome to the show.", "avatar": {"id": avatar.id, "expression": expr},
                "background": backgrounds[r % backgrounds.len()], "dimension": {"width": cw, "height": ch}, "seed": 5});
            let params = request::parse_video_request(&request, &catalog, "", 5)
                .map_err(|e| format!("{e:?}"))?;
            let timeline = generator.timeline(&params).map_err(|e| e.to_string())?;
            // A frame mid-word with the mouth about half open: lips and teeth show, and the
            // expression (mouth corners, cheeks, lids, brows) reads as it does while talking.
            let at = timeline
                .frames
                .iter()
                .enumerate()
                .min_by(|x, y| {
                    (x.1.mouth_open - 0.35)
                        .abs()
                        .total_cmp(&(y.1.mouth_open - 0.35).abs())
                })
                .map_or(0, |(i, _)| i);
            let frame = generator
                .still_frames(&params, &timeline, &[at])
                .map_err(|e| e.to_string())?;
            let Some(rgba) = frame.first() else { continue };
            for y in 0..ch {
                let src = (y * cw * 4) as usize;
                let dst = (((r as u32 * ch + y) * sw + c as u32 * cw) * 4) as usize;
                sheet[dst..dst + (cw * 4) as usize]
                    .copy_from_slice(&rgba[src..src + (cw * 4) as usize]);
            }
        }
    }
    if let Some(dir) = a.output.parent() {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    crate::render::media::write_png(&sheet, sw, sh, &a.output).map_err(|e| e.to_string())?;
    println!(
        "wrote {} ({sw}x{sh}: {rows} avatars x {cols} expressions)",
        a.output.display()
    );
    Ok(())
}
