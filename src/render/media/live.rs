//! A live session's streams. The session renders each frame once and hands it, with that
//! frame's sound, to every [`Outlet`] watching it; each outlet encodes for its own client, so
//! a WebRTC peer gets what it negotiated (H.264 or VP8, Opus: [`super::webrtc`]) and an MSE
//! client gets fragmented MP4 ([`Fmp4Stream`]: H.264 + AAC, one fragment per key frame, at
//! most [`KEY_EVERY_S`] apart). Encoders run at normal priority with zero-latency settings:
//! a live frame waits for no look-ahead.
//!
//! Timestamps: an outlet's first frame is stamped with its pipeline's running time at that
//! moment, each later one `index / fps` after it, so a sink that syncs to the clock never
//! holds a frame back and a frame the session dropped leaves a gap instead of a stall.

use std::sync::Arc;
use std::sync::mpsc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::fmp4::spawn_fragmenter;
use super::*;
use crate::render::timeline::live::SAMPLE_RATE;

/// Longest time between key frames of a live stream (and so between MSE fragments).
pub const KEY_EVERY_S: f64 = 0.5;

/// The stream's picture: I420 frames of this size and rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveFormat {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

impl LiveFormat {
    /// The `appsrc` caps of its frames (colour matrix said explicitly, as for files).
    pub(super) fn video_caps(&self) -> String {
        format!(
            "video/x-raw,format=I420,width={},height={},framerate={}/1,colorimetry={}",
            self.width,
            self.height,
            self.fps,
            super::i420::Matrix::for_height(self.height).colorimetry()
        )
    }

    pub(super) fn audio_caps() -> String {
        format!("audio/x-raw,format=S16LE,layout=interleaved,rate={SAMPLE_RATE},channels=1")
    }

    /// Frames between key frames.
    pub(super) fn key_interval(&self) -> u32 {
        ((f64::from(self.fps) * KEY_EVERY_S) as u32).max(1)
    }
}

/// A rendered live frame (I420), shared by every outlet without a copy; its buffer goes back
/// to the renderer's pool once the last encoder is done with it.
pub type SharedFrame = Arc<PooledFrame>;

/// Where a session's frames go.
pub trait Outlet: Send {
    /// Frame `index` (I420, or `None` when the session had no time to render it: its sound
    /// still goes) and its sound (mono S16 at [`SAMPLE_RATE`]). An error means the outlet is
    /// finished and the session drops it.
    fn push(
        &mut self,
        frame: Option<&SharedFrame>,
        audio: &[i16],
        index: u64,
    ) -> Result<(), MediaError>;
    /// A text message for the client beside the media (events over a data channel); ignored
    /// by outlets without one.
    fn message(&mut self, _json: &str) {}
    /// Whether the client has gone (the session drops it).
    fn closed(&self) -> bool;
}

/// The live pipeline an outlet drives: its two `appsrc`s and the clock arithmetic.
pub(super) struct LiveInput {
    pub pipeline: gst::Pipeline,
    video: gst_app::AppSrc,
    audio: gst_app::AppSrc,
    fps: u32,
    /// The first frame's index and running time.
    first: Option<(u64, gst::ClockTime)>,
}

impl LiveInput {
    pub fn new(pipeline: gst::Pipeline, fps: u32) -> Result<Self, MediaError> {
        // Each streaming thread posts `stream-status: enter` from itself as it starts: a live
        // stream's run at normal priority (x264's threads, started from them, inherit it),
        // where a video's are lowered; see `render::priority`.
        if let Some(bus) = pipeline.bus() {
            bus.set_sync_handler(|_, msg| {
                if let gst::MessageView::StreamStatus(s) = msg.view()
                    && s.type_() == gst::StreamStatusType::Enter
                {
                    crate::render::priority::normal_this_thread();
                }
                gst::BusSyncReply::Pass
            });
        }
        let appsrc = |name: &str| -> Result<gst_app::AppSrc, MediaError> {
            pipeline
                .by_name(name)
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
                .ok_or_else(|| MediaError::Pipeline(format!("appsrc {name} missing")))
        };
        Ok(Self {
            video: appsrc("v")?,
            audio: appsrc("a")?,
            pipeline,
            fps,
            first: None,
        })
    }

    pub fn push(
        &mut self,
        frame: Option<&SharedFrame>,
        audio: &[i16],
        index: u64,
    ) -> Result<(), MediaError> {
        self.check_bus()?;
        let (first, base) = *self.first.get_or_insert_with(|| {
            let now = self.pipeline.current_running_time().unwrap_or_default();
            (index, now)
        });
        let dur = gst::ClockTime::from_nseconds(1_000_000_000 / u64::from(self.fps));
        let pts = base
            + gst::ClockTime::from_nseconds(
                index.saturating_sub(first) * 1_000_000_000 / u64::from(self.fps),
            );
        if let Some(f) = frame {
            let mut buf = gst::Buffer::from_slice(Handed(f.clone()));
            if let Some(b) = buf.get_mut() {
                b.set_pts(pts);
                b.set_duration(dur);
            }
            self.video
                .push_buffer(buf)
                .map_err(|e| MediaError::Pipeline(format!("video push: {e:?}")))?;
        }
        let bytes: Vec<u8> = audio.iter().flat_map(|s| s.to_le_bytes()).collect();
        let mut buf = gst::Buffer::from_mut_slice(bytes);
        if let Some(b) = buf.get_mut() {
            b.set_pts(pts);
            b.set_duration(dur);
        }
        self.audio
            .push_buffer(buf)
            .map_err(|e| MediaError::Pipeline(format!("audio push: {e:?}")))?;
        Ok(())
    }

    fn check_bus(&self) -> Result<(), MediaError> {
        let Some(bus) = self.pipeline.bus() else {
            return Ok(());
        };
        match bus.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]) {
            Some(msg) => Err(match msg.view() {
                gst::MessageView::Error(e) => MediaError::Pipeline(e.error().to_string()),
                _ => MediaError::Pipeline("the stream ended".into()),
            }),
            None => Ok(()),
        }
    }
}

impl Drop for LiveInput {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// A shared frame handed to GStreamer without a copy.
struct Handed(SharedFrame);

impl AsRef<[u8]> for Handed {
    fn as_ref(&self) -> &[u8] {
        self.0.as_ref().as_ref()
    }
}

/// Builds a pipeline from a launch description.
pub(super) fn launch(desc: &str) -> Result<gst::Pipeline, MediaError> {
    init()?;
    gst::parse::launch(desc)
        .map_err(|e| MediaError::Pipeline(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| MediaError::Pipeline("not a pipeline".into()))
}

/// The x264 settings of a live stream: no look-ahead, no B-frames, a key frame at least
/// every `key` frames.
pub(super) fn live_x264(key: u32) -> String {
    format!(
        "x264enc name=enc tune=zerolatency speed-preset=ultrafast bframes=0 key-int-max={key} \
         bitrate=1500 vbv-buf-capacity=300"
    )
}

/// The MSE fallback: fragmented MP4 (H.264 + AAC), cut into the init segment and one
/// fragment per key frame.
pub struct Fmp4Stream {
    input: LiveInput,
    chunks: mpsc::Receiver<LiveChunk>,
    /// Chunks for the client, in order (the init segment first).
    out: tokio::sync::mpsc::Sender<LiveChunk>,
    gone: bool,
}

impl Fmp4Stream {
    /// Starts the encoder; the client reads from the returned receiver.
    pub fn start(
        format: LiveFormat,
        encoder: &EncoderChoice,
    ) -> Result<(Self, tokio::sync::mpsc::Receiver<LiveChunk>), MediaError> {
        let ms = (KEY_EVERY_S * 1000.0) as u32;
        let desc = format!(
            "appsrc name=v is-live=true format=time block=false max-bytes={max} caps={vcaps} \
             ! queue max-size-buffers=4 ! {enc} ! h264parse config-interval=-1 \
             ! video/x-h264,stream-format=avc,alignment=au ! identity name=vt ! mux. \
             appsrc name=a is-live=true format=time block=false caps={acaps} \
             ! audioconvert ! audioresample ! {aenc} ! identity name=at ! mux. \
             mp4mux name=mux fragment-duration={ms} streamable=true \
             ! appsink name=live sync=false",
            max = 4 * super::i420::frame_bytes(format.width, format.height),
            vcaps = format.video_caps(),
            acaps = LiveFormat::audio_caps(),
            enc = live_x264(format.key_interval()),
            aenc = if encoder.audio == "avenc_aac" {
                "avenc_aac bitrate=96000"
            } else {
                "voaacenc bitrate=96000"
            },
        );
        let pipeline = launch(&desc)?;
        let sink = pipeline
            .by_name("live")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| MediaError::Pipeline("appsink missing".into()))?;
        let input = LiveInput::new(pipeline.clone(), format.fps)?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Pipeline(e.to_string()))?;
        let chunks = spawn_fragmenter(sink, pipeline.upcast_ref::<gst::Bin>().clone());
        let (out, rx) = tokio::sync::mpsc::channel(64);
        Ok((
            Self {
                input,
                chunks,
                out,
                gone: false,
            },
            rx,
        ))
    }
}

impl Outlet for Fmp4Stream {
    fn push(
        &mut self,
        frame: Option<&SharedFrame>,
        audio: &[i16],
        index: u64,
    ) -> Result<(), MediaError> {
        self.input.push(frame, audio, index)?;
        while let Ok(chunk) = self.chunks.try_recv() {
            match self.out.try_send(chunk) {
                Ok(()) => {}
                // A client this far behind cannot catch up: it is dropped.
                Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {
                    self.gone = true;
                    return Err(MediaError::Pipeline("the client fell behind".into()));
                }
                Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => {
                    self.gone = true;
                    return Err(MediaError::Pipeline("the client has gone".into()));
                }
            }
        }
        Ok(())
    }

    fn closed(&self) -> bool {
        self.gone || self.out.is_closed()
    }
}
