//! Choosing the H.264 encoder: [`probe_encoder`] encodes a tiny frame with each candidate
//! (NVENC, VA, QSV, x264, OpenH264) and returns the first that works; the settings each gets.

use std::time::Duration;

use gstreamer as gst;

use super::*;
use crate::render::params::Quality;

/// The H.264 encoder in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderChoice {
    pub element: &'static str,
    pub hardware: bool,
    pub audio: &'static str,
}

pub(super) const CANDIDATES: &[(&str, bool)] = &[
    ("nvh264enc", true),
    ("nvcudah264enc", true),
    ("vah264enc", true),
    ("vaapih264enc", true),
    ("qsvh264enc", true),
    ("x264enc", false),
    ("openh264enc", false),
];

pub(super) fn encoder_props(element: &str, fps: u32, quality: Quality) -> String {
    let key = fps.max(1);
    match element {
        "x264enc" => {
            let (preset, q) = match quality {
                Quality::Draft => ("ultrafast", 28),
                Quality::Standard => ("superfast", 23),
                Quality::High => ("veryfast", 20),
            };
            format!(
                "x264enc speed-preset={preset} pass=quant quantizer={q} key-int-max={key} bframes=0 tune=zerolatency"
            )
        }
        "openh264enc" => format!("openh264enc gop-size={key} complexity=low"),
        "nvh264enc" | "nvcudah264enc" => format!("{element} gop-size={key} bframes=0"),
        "vah264enc" => format!("vah264enc key-int-max={key} b-frames=0"),
        "vaapih264enc" => format!("vaapih264enc keyframe-period={key} max-bframes=0"),
        "qsvh264enc" => format!("qsvh264enc gop-size={key} b-frames=0"),
        other => other.to_string(),
    }
}

/// Finds the first H.264 encoder that really encodes here, and an AAC encoder.
pub fn probe_encoder() -> Result<EncoderChoice, MediaError> {
    probe_encoder_except(&[])
}

/// [`probe_encoder`] skipping the elements named in `deny` (as if they were not installed):
/// how the fallback order is tested, and a way to rule out an encoder known to misbehave.
pub fn probe_encoder_except(deny: &[&str]) -> Result<EncoderChoice, MediaError> {
    init()?;
    // voaacenc first: a twelfth of avenc_aac's CPU (a minute of speech: 0.12 s against
    // 1.46 s here), and its plugin links 23 libraries where gst-libav's links 177 (~30 MB
    // more resident once loaded).
    let audio = ["voaacenc", "avenc_aac"]
        .into_iter()
        .find(|e| gst::ElementFactory::find(e).is_some())
        .ok_or(MediaError::NoAudioEncoder)?;
    let mut tried = Vec::new();
    for (name, hardware) in CANDIDATES {
        if deny.contains(name) || gst::ElementFactory::find(name).is_none() {
            continue;
        }
        tried.push(*name);
        // 256×144: above the smallest frame hardware encoders take (NVENC has a minimum).
        let desc = format!(
            "videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=256,height=144,framerate=30/1 ! {} ! h264parse ! fakesink",
            encoder_props(name, 30, Quality::Draft)
        );
        let Ok(p) = gst::parse::launch(&desc) else {
            continue;
        };
        if run_to_eos(&p, Duration::from_secs(10)).is_ok() {
            return Ok(EncoderChoice {
                element: name,
                hardware: *hardware,
                audio,
            });
        }
    }
    Err(MediaError::NoEncoder(if tried.is_empty() {
        "none installed".into()
    } else {
        tried.join(", ")
    }))
}
