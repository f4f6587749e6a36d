//! GStreamer encoding: encoder choice, the MP4 writer (with an optional live fMP4 branch) and
//! thumbnails.
//!
//! [`probe_encoder`] tries H.264 encoders in order — NVENC, VA, QSV, x264, OpenH264 — by
//! actually encoding a tiny frame with each, and returns the first that works. [`Mp4Writer`]
//! takes RGBA frames and PCM audio: `appsrc → videoconvert → I420 → encoder → h264parse →
//! tee`, one branch into `mp4mux faststart=true` writing a temporary file that is renamed into
//! place on success (a reader never sees a half-written MP4), the other (when asked) into
//! `mp4mux fragment-duration=1000` whose output is cut into an init segment and `moof`
//! fragments for live preview. Audio is AAC (`avenc_aac`, else `voaacenc`): GStreamer 1.22's
//! mp4mux writes a broken Opus box. Every exit path sets the pipeline to `Null`.

use std::path::PathBuf;
use std::sync::Once;
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

mod encoder;
mod fmp4;
mod frames;
mod image;
mod mp4;

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
    #[error("no AAC encoder (avenc_aac or voaacenc); install gstreamer1.0-libav")]
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

/// Time `videoconvert` takes to turn `n` copies of an RGBA frame into I420 (the same element
/// and settings as the MP4 writer), for choosing the conversion path by measurement.
pub fn time_videoconvert(
    rgba: &[u8],
    width: u32,
    height: u32,
    n: u32,
) -> Result<Duration, MediaError> {
    init()?;
    let desc = format!(
        "appsrc name=src format=time block=true max-bytes={max} \
           caps=video/x-raw,format=RGBA,width={width},height={height},framerate=30/1 \
         ! videoconvert n-threads=2 ! video/x-raw,format=I420 ! fakesink sync=false",
        max = rgba.len() * 2
    );
    let pipeline = gst::parse::launch(&desc).map_err(|e| MediaError::Pipeline(e.to_string()))?;
    let src = pipeline
        .clone()
        .downcast::<gst::Bin>()
        .ok()
        .and_then(|b| b.by_name("src"))
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or_else(|| MediaError::Pipeline("appsrc missing".into()))?;
    let t = std::time::Instant::now();
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| MediaError::Pipeline(e.to_string()))?;
    // Reused buffers (they already hold the frame), so no allocation is timed.
    let pool = FramePool::starting_as(rgba.into());
    let pushed = (0..n).try_for_each(|i| {
        let mut buf = gst::Buffer::from_mut_slice(pool.get());
        if let Some(b) = buf.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(
                u64::from(i) * 1_000_000_000 / 30,
            ));
        }
        src.push_buffer(buf).map(|_| ())
    });
    let result = match pushed.and_then(|()| src.end_of_stream().map(|_| ())) {
        Err(e) => Err(MediaError::Pipeline(format!("push: {e:?}"))),
        Ok(()) => match pipeline.bus().and_then(|bus| {
            bus.timed_pop_filtered(
                gst::ClockTime::from_seconds(60),
                &[gst::MessageType::Eos, gst::MessageType::Error],
            )
        }) {
            Some(msg) if matches!(msg.view(), gst::MessageView::Eos(_)) => Ok(t.elapsed()),
            _ => Err(MediaError::Pipeline("videoconvert did not finish".into())),
        },
    };
    let _ = pipeline.set_state(gst::State::Null);
    result
}
