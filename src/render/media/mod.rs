//! GStreamer encoding: encoder choice, the MP4 writer (with an optional live fMP4 branch),
//! thumbnails, and decoding recordings ([`decode`]).
//!
//! [`probe_encoder`] tries H.264 encoders in order — NVENC, VA, QSV, x264, OpenH264 — by
//! actually encoding a tiny frame with each, and returns the first that works. [`Mp4Writer`]
//! takes I420 frames (born I420: [`i420`]) and PCM audio: `appsrc → encoder → h264parse →
//! tee`, one branch into `mp4mux faststart=true` writing a temporary file that is renamed into
//! place on success (a reader never sees a half-written MP4), the other (when asked) into
//! `mp4mux fragment-duration=1000` whose output is cut into an init segment and `moof`
//! fragments for live preview. Audio is AAC (`voaacenc`, else `avenc_aac`): GStreamer 1.22's
//! mp4mux writes a broken Opus box. Every exit path sets the pipeline to `Null`. A live
//! session's streams ([`live`]: MSE fMP4, and WebRTC peers on `webrtcbin`: [`webrtc`]) take
//! the frames as the session renders them.

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

pub mod decode;
mod encoder;
mod fmp4;
mod frames;
pub mod i420;
mod image;
pub mod live;
mod mp4;
pub mod webrtc;

pub use decode::resample;
pub use encoder::{EncoderChoice, probe_encoder, probe_encoder_except};
pub use fmp4::codec_mime;
pub use frames::{FramePool, PooledFrame};
pub use image::{write_png, write_thumbnail};
pub use mp4::{EncodeSettings, LiveChunk, Mp4Writer};

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(String),
    #[error("no H.264 encoder works here (tried {0}); install gstreamer1.0-plugins-ugly for x264")]
    NoEncoder(String),
    #[error(
        "no AAC encoder (voaacenc or avenc_aac); install gstreamer1.0-plugins-bad or gstreamer1.0-libav"
    )]
    NoAudioEncoder,
    #[error("the encoding pipeline failed: {0}")]
    Pipeline(String),
    #[error("cannot write {0}: {1}")]
    Io(PathBuf, std::io::Error),
}

static INIT: Once = Once::new();

pub fn init() -> Result<(), MediaError> {
    let mut result = Ok(());
    INIT.call_once(|| {
        // GLib 2.74 gives every thread of its shared pools the scheduling settings of the
        // thread that created the first such pool. GStreamer's helper threads (videoconvert's
        // workers, the task pool) come from there, so the first pool is made by a lowered
        // thread: otherwise they run at the API's priority and delay its replies.
        let _ = std::thread::spawn(|| {
            crate::render::priority::lower_this_thread();
            if let Ok(pool) = gst::glib::ThreadPool::shared(Some(1)) {
                let _ = pool.push(|| ());
            }
        })
        .join();
        if let Err(e) = gst::init() {
            result = Err(MediaError::Init(e.to_string()));
        }
    });
    result?;
    if gst::ElementFactory::find("appsrc").is_none() {
        return Err(MediaError::Init(
            "the appsrc element is missing (gstreamer1.0-plugins-base)".into(),
        ));
    }
    Ok(())
}

fn run_to_eos(pipeline: &gst::Element, timeout: Duration) -> Result<(), MediaError> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| MediaError::Pipeline(e.to_string()))?;
    let bus = pipeline
        .bus()
        .ok_or_else(|| MediaError::Pipeline("pipeline has no bus".into()))?;
    let result = match bus.timed_pop_filtered(
        gst::ClockTime::from_nseconds(timeout.as_nanos() as u64),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    ) {
        Some(msg) => match msg.view() {
            gst::MessageView::Eos(_) => Ok(()),
            gst::MessageView::Error(e) => Err(MediaError::Pipeline(format!(
                "{} ({})",
                e.error(),
                e.debug().map(|d| d.to_string()).unwrap_or_default()
            ))),
            _ => Err(MediaError::Pipeline("unexpected message".into())),
        },
        None => Err(MediaError::Pipeline("timed out".into())),
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// `frames` (RGBA, `width` × `height`) through GStreamer's `videoconvert` into I420, as
/// every frame went before frames were born I420: the reference the I420 path is measured
/// against (PSNR), and the cost it removed (`reelgen-bench generate`). Returns the I420 frames
/// and the wall time of the conversion.
pub fn videoconvert_i420(
    frames: Vec<Vec<u8>>,
    width: u32,
    height: u32,
) -> Result<(Vec<Vec<u8>>, Duration), MediaError> {
    init()?;
    let desc = format!(
        "appsrc name=src format=time block=true max-bytes={max} \
           caps=video/x-raw,format=RGBA,width={width},height={height},framerate=30/1 \
         ! videoconvert n-threads=2 ! video/x-raw,format=I420 ! appsink name=sink sync=false",
        max = u64::from(width) * u64::from(height) * 8
    );
    let pipeline = gst::parse::launch(&desc).map_err(|e| MediaError::Pipeline(e.to_string()))?;
    let bin = pipeline
        .clone()
        .downcast::<gst::Bin>()
        .map_err(|_| MediaError::Pipeline("not a bin".into()))?;
    let src = bin
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| MediaError::Pipeline("appsrc missing".into()))?;
    let sink = bin
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or_else(|| MediaError::Pipeline("appsink missing".into()))?;
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| MediaError::Pipeline(e.to_string()))?;
    let t = std::time::Instant::now();
    let pusher = std::thread::spawn(move || {
        for (i, f) in frames.into_iter().enumerate() {
            let mut buf = gst::Buffer::from_mut_slice(f);
            if let Some(b) = buf.get_mut() {
                b.set_pts(gst::ClockTime::from_nseconds(i as u64 * 1_000_000_000 / 30));
            }
            if src.push_buffer(buf).is_err() {
                return;
            }
        }
        let _ = src.end_of_stream();
    });
    let mut out = Vec::new();
    let result = loop {
        match sink.try_pull_sample(gst::ClockTime::from_seconds(60)) {
            Some(sample) => {
                if let Some(map) = sample.buffer().and_then(|b| b.map_readable().ok()) {
                    out.push(map.as_slice().to_vec());
                }
            }
            None if sink.is_eos() => break Ok((out, t.elapsed())),
            None => break Err(MediaError::Pipeline("videoconvert did not finish".into())),
        }
    };
    let _ = pusher.join();
    let _ = pipeline.set_state(gst::State::Null);
    result
}
