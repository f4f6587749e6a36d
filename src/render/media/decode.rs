//! Decoding a recording: any audio file GStreamer's `decodebin` understands (WAV, MP3,
//! OGG/Opus, FLAC, M4A …) into mono 16-bit PCM at [`DECODE_RATE`], bounded three ways — the
//! decoded length ([`Limits::max_seconds`]: a tiny file that decodes to hours stops there),
//! the wall time ([`Limits::timeout`]: a decoder that hangs is stopped) and what comes out
//! (nothing decodable, or no sound at all, is [`DecodeError::NotAudio`]).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

/// The rate recordings are decoded to (and become the video's sound track at).
pub const DECODE_RATE: u32 = 24_000;

/// How far a decode may go.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_seconds: f64,
    pub timeout: Duration,
}

/// How long a recording may be (SPEC §3b: 10 minutes; a second of slack for rounding) and
/// how long decoding it may take (ten minutes of MP3 or FLAC decode in under a second here).
pub const RECORDING_LIMITS: Limits = Limits {
    max_seconds: 601.0,
    timeout: Duration::from_secs(20),
};

/// Mono signed 16-bit samples at `sample_rate`.
#[derive(Debug, Clone, Default)]
pub struct Pcm {
    pub sample_rate: u32,
    pub samples: Vec<i16>,
}

impl Pcm {
    pub fn duration_s(&self) -> f64 {
        if self.sample_rate == 0 {
            return 0.0;
        }
        self.samples.len() as f64 / f64::from(self.sample_rate)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// Not a file GStreamer can decode as audio, or it holds no sound.
    #[error("not decodable audio: {0}")]
    NotAudio(String),
    #[error("the recording is longer than {0} s")]
    TooLong(f64),
    #[error("decoding took longer than {0:?}")]
    Timeout(Duration),
    /// GStreamer itself is missing or broken: the server's fault, not the file's.
    #[error(transparent)]
    Media(#[from] super::MediaError),
}

/// Decodes the audio file at `path` (see the module doc).
pub fn decode_audio(path: &Path, limits: Limits) -> Result<Pcm, DecodeError> {
    super::init()?;
    let started = Instant::now();
    let location = path
        .to_str()
        .ok_or_else(|| DecodeError::NotAudio("the path is not UTF-8".into()))?;
    let pipeline = gst::Pipeline::new();
    let make = |factory: &str| {
        gst::ElementFactory::make(factory).build().map_err(|_| {
            super::MediaError::Init(format!(
                "the {factory} element is missing (gstreamer1.0-plugins-base)"
            ))
        })
    };
    let src = make("filesrc")?;
    src.set_property("location", location);
    let decode = make("decodebin")?;
    let convert = make("audioconvert")?;
    let resample = make("audioresample")?;
    let sink = gst_app::AppSink::builder()
        .caps(
            &gst::Caps::builder("audio/x-raw")
                .field("format", "S16LE")
                .field("layout", "interleaved")
                .field("channels", 1i32)
                .field("rate", DECODE_RATE as i32)
                .build(),
        )
        .sync(false)
        .max_buffers(8)
        .build();
    let elements = [&src, &decode, &convert, &resample, sink.upcast_ref()];
    pipeline
        .add_many(elements)
        .map_err(|e| super::MediaError::Pipeline(e.to_string()))?;
    src.link(&decode)
        .and_then(|()| gst::Element::link_many([&convert, &resample, sink.upcast_ref()]))
        .map_err(|e| super::MediaError::Pipeline(e.to_string()))?;
    // decodebin's pads appear once it knows the stream: link the first audio one. When it has
    // exposed them all and none is audio (a subtitle, a picture, text that typefinds as
    // something), nothing would ever reach the sink: say so instead of waiting out the time.
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let Some(convert) = convert_weak.upgrade() else {
            return;
        };
        let is_audio = pad
            .current_caps()
            .and_then(|c| c.structure(0).map(|s| s.name().starts_with("audio/")))
            .unwrap_or(false);
        if let Some(sinkpad) = convert.static_pad("sink")
            && is_audio
            && !sinkpad.is_linked()
        {
            let _ = pad.link(&sinkpad);
        }
    });
    let no_audio = Arc::new(AtomicBool::new(false));
    let convert_weak = convert.downgrade();
    let flag = no_audio.clone();
    decode.connect_no_more_pads(move |_| {
        let linked = convert_weak
            .upgrade()
            .and_then(|c| c.static_pad("sink"))
            .is_some_and(|p| p.is_linked());
        if !linked {
            flag.store(true, Ordering::Relaxed);
        }
    });

    let result = pull_all(&pipeline, &sink, started, limits, &no_audio);
    let _ = pipeline.set_state(gst::State::Null);
    result
}

fn pull_all(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    started: Instant,
    limits: Limits,
    no_audio: &AtomicBool,
) -> Result<Pcm, DecodeError> {
    let bus = pipeline
        .bus()
        .ok_or_else(|| super::MediaError::Pipeline("the pipeline has no bus".into()))?;
    pipeline.set_state(gst::State::Playing).map_err(|_| {
        first_error(&bus).unwrap_or_else(|| DecodeError::NotAudio("the file cannot be read".into()))
    })?;
    let max_samples = (limits.max_seconds * f64::from(DECODE_RATE)).ceil() as usize;
    let mut samples: Vec<i16> = Vec::new();
    loop {
        if let Some(e) = first_error(&bus) {
            return Err(e);
        }
        if started.elapsed() >= limits.timeout {
            return Err(DecodeError::Timeout(limits.timeout));
        }
        if no_audio.load(Ordering::Relaxed) {
            return Err(DecodeError::NotAudio("the file has no audio stream".into()));
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            Some(sample) => {
                let Some(buffer) = sample.buffer() else {
                    continue;
                };
                let Ok(map) = buffer.map_readable() else {
                    continue;
                };
                samples.extend(
                    map.as_slice()
                        .chunks_exact(2)
                        .map(|b| i16::from_le_bytes([b[0], b[1]])),
                );
                if samples.len() > max_samples {
                    return Err(DecodeError::TooLong(limits.max_seconds));
                }
            }
            None if sink.is_eos() => break,
            None => {}
        }
    }
    if samples.is_empty() {
        return Err(DecodeError::NotAudio("no audio stream in the file".into()));
    }
    if samples.iter().all(|s| s.unsigned_abs() < 8) {
        return Err(DecodeError::NotAudio("the recording is silent".into()));
    }
    Ok(Pcm {
        sample_rate: DECODE_RATE,
        samples,
    })
}

/// The first error (or a missing-plugin message) on the bus, as a decode error.
fn first_error(bus: &gst::Bus) -> Option<DecodeError> {
    while let Some(msg) = bus.pop() {
        if let gst::MessageView::Error(e) = msg.view() {
            let from = e.src().map(|s| s.name().to_string()).unwrap_or_default();
            return Some(DecodeError::NotAudio(format!("{from}: {}", e.error())));
        }
    }
    None
}

/// `samples` at `from` Hz as `to` Hz (linear interpolation: enough for speech joined to
/// speech at another rate, e.g. espeak-ng's 22,050 Hz after a recording's 24,000).
pub fn resample(samples: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || from == 0 || to == 0 || samples.is_empty() {
        return samples.to_vec();
    }
    let n = (samples.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    let step = f64::from(from) / f64::from(to);
    (0..n)
        .map(|i| {
            let x = i as f64 * step;
            let j = x.floor() as usize;
            let a = f64::from(samples[j.min(samples.len() - 1)]);
            let b = f64::from(samples[(j + 1).min(samples.len() - 1)]);
            (a + (b - a) * (x - j as f64)).round() as i16
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_keeps_the_length_in_time_and_the_shape() {
        let tone: Vec<i16> = (0..22_050)
            .map(|i| {
                (10_000.0 * (f64::from(i) * 440.0 * std::f64::consts::TAU / 22_050.0).sin()) as i16
            })
            .collect();
        let up = resample(&tone, 22_050, 24_000);
        assert_eq!(up.len(), 24_000);
        // The same tone: compare against the exact sine at the new rate.
        let worst = up
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let exact = 10_000.0 * (i as f64 * 440.0 * std::f64::consts::TAU / 24_000.0).sin();
                (f64::from(*s) - exact).abs()
            })
            .fold(0.0, f64::max);
        assert!(worst < 200.0, "{worst}");
        assert_eq!(resample(&tone, 22_050, 22_050), tone);
    }
}
