//! [`Mp4Writer`]: frames and PCM in, an MP4 out (written to a temporary file, renamed into
//! place on success), with an optional live fMP4 branch; dropping it before it finishes stops
//! the pipeline and removes the partial file.

use std::path::{Path, PathBuf};
use std::sync::mpsc;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use super::encoder::encoder_props;
use super::fmp4::spawn_fragmenter;
use super::*;
use crate::render::params::Quality;

/// One piece of the live fMP4 stream.
#[derive(Debug, Clone)]
pub enum LiveChunk {
    /// `ftyp` + `moov`: sent first to every viewer.
    Init { data: Vec<u8>, mime: String },
    /// `moof` + `mdat`, starting on a key frame.
    Fragment(Vec<u8>),
}

pub struct EncodeSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub quality: Quality,
    /// Sample rate of mono S16 audio, when there is a voice.
    pub audio_rate: Option<u32>,
    /// Also produce the live fMP4 stream.
    pub live: bool,
}

pub struct Mp4Writer {
    pipeline: gst::Element,
    video: gst_app::AppSrc,
    audio: Option<gst_app::AppSrc>,
    tmp: PathBuf,
    dest: PathBuf,
    fps: u32,
    pub live: Option<mpsc::Receiver<LiveChunk>>,
}

impl Mp4Writer {
    pub fn start(
        settings: &EncodeSettings,
        encoder: &EncoderChoice,
        dest: &Path,
    ) -> Result<Self, MediaError> {
        init()?;
        let dir = dest.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(|e| MediaError::Io(dir.to_path_buf(), e))?;
        let tmp = dir.join(format!(".{}.part.mp4", uuid::Uuid::new_v4()));
        let EncodeSettings {
            width, height, fps, ..
        } = *settings;
        let enc = encoder_props(encoder.element, fps, settings.quality);
        let live = settings.live;
        // Frames arrive I420 (see `i420`), in the matrix GStreamer assumes for the size, said
        // explicitly so the encoder signals it; no conversion element.
        let mut desc = format!(
            "appsrc name=v format=time block=true max-bytes={max} \
               caps=video/x-raw,format=I420,width={width},height={height},framerate={fps}/1,colorimetry={colorimetry} \
             ! {enc} ! h264parse config-interval=-1 \
             ! video/x-h264,stream-format=avc,alignment=au ! tee name=vt \
             vt. ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=67108864 ! mux. \
             mp4mux name=mux faststart=true ! filesink name=file location=\"{tmp}\" ",
            // Two frames queued at most: the encoder works on one while the next waits.
            max = 2 * super::i420::frame_bytes(width, height),
            colorimetry = super::i420::Matrix::for_height(height).colorimetry(),
            tmp = tmp.display()
        );
        if live {
            desc.push_str(
                "vt. ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=67108864 ! fmux. \
                 mp4mux name=fmux fragment-duration=1000 streamable=true ! appsink name=live sync=false ",
            );
        }
        if let Some(rate) = settings.audio_rate {
            desc.push_str(&format!(
                "appsrc name=a format=time block=false \
                   caps=audio/x-raw,format=S16LE,layout=interleaved,rate={rate},channels=1 \
                 ! audioconvert ! audioresample ! {aenc} ! tee name=at \
                 at. ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=67108864 ! mux. ",
                aenc = if encoder.audio == "avenc_aac" {
                    "avenc_aac bitrate=96000"
                } else {
                    "voaacenc bitrate=96000"
                }
            ));
            if live {
                desc.push_str("at. ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=67108864 ! fmux. ");
            }
        }
        let pipeline =
            gst::parse::launch(&desc).map_err(|e| MediaError::Pipeline(e.to_string()))?;
        let bin = pipeline
            .clone()
            .downcast::<gst::Bin>()
            .map_err(|_| MediaError::Pipeline("not a bin".into()))?;
        let appsrc = |name: &str| -> Result<gst_app::AppSrc, MediaError> {
            bin.by_name(name)
                .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
                .ok_or_else(|| MediaError::Pipeline(format!("appsrc {name} missing")))
        };
        let video = appsrc("v")?;
        let audio = if settings.audio_rate.is_some() {
            Some(appsrc("a")?)
        } else {
            None
        };
        let live_sink = if live {
            Some(
                bin.by_name("live")
                    .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
                    .ok_or_else(|| MediaError::Pipeline("appsink missing".into()))?,
            )
        } else {
            None
        };
        // Each streaming thread posts `stream-status: enter` from itself as it starts: lower
        // it there (x264's threads, started from it, inherit that), so encoding yields to
        // the API.
        if let Some(bus) = pipeline.bus() {
            bus.set_sync_handler(|_, msg| {
                if let gst::MessageView::StreamStatus(s) = msg.view()
                    && s.type_() == gst::StreamStatusType::Enter
                {
                    crate::render::priority::lower_this_thread();
                }
                gst::BusSyncReply::Pass
            });
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| MediaError::Pipeline(e.to_string()))?;
        // Only now: an appsink that has not started yet answers `pull_sample` with an error at
        // once, which would end the reader early — and an appsink whose samples nobody pulls
        // holds back EOS, so the file would never finish (seen under CPU load in CI).
        let live_rx = live_sink.map(|sink| spawn_fragmenter(sink, bin.clone()));
        Ok(Self {
            pipeline,
            video,
            audio,
            tmp,
            dest: dest.to_path_buf(),
            fps,
            live: live_rx,
        })
    }

    fn check_bus(&self) -> Result<(), MediaError> {
        let Some(bus) = self.pipeline.bus() else {
            return Ok(());
        };
        while let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
            if let gst::MessageView::Error(e) = msg.view() {
                return Err(MediaError::Pipeline(e.error().to_string()));
            }
        }
        Ok(())
    }

    /// Pushes the whole audio track (mono S16) at once; the muxer interleaves it.
    pub fn push_audio(&self, samples: &[i16], rate: u32) -> Result<(), MediaError> {
        let Some(src) = &self.audio else {
            return Ok(());
        };
        let chunk = rate as usize; // one second per buffer
        for (i, part) in samples.chunks(chunk.max(1)).enumerate() {
            let bytes: Vec<u8> = part.iter().flat_map(|s| s.to_le_bytes()).collect();
            let mut buf = gst::Buffer::from_mut_slice(bytes);
            if let Some(b) = buf.get_mut() {
                b.set_pts(gst::ClockTime::from_nseconds((i as u64) * 1_000_000_000));
                b.set_duration(gst::ClockTime::from_nseconds(
                    part.len() as u64 * 1_000_000_000 / u64::from(rate),
                ));
            }
            src.push_buffer(buf)
                .map_err(|e| MediaError::Pipeline(format!("audio push: {e:?}")))?;
        }
        src.end_of_stream()
            .map_err(|e| MediaError::Pipeline(format!("audio eos: {e:?}")))?;
        Ok(())
    }

    /// Pushes frame `index` (I420, [`super::i420::frame_bytes`] long). GStreamer takes the
    /// buffer as it is (a pooled frame returns to its pool when the encoder is done with it).
    /// Blocks while two frames are still queued for the encoder.
    pub fn push_frame(
        &self,
        i420: impl AsMut<[u8]> + Send + 'static,
        index: u64,
    ) -> Result<(), MediaError> {
        let mut buf = gst::Buffer::from_mut_slice(i420);
        let fps = u64::from(self.fps);
        if let Some(b) = buf.get_mut() {
            b.set_pts(gst::ClockTime::from_nseconds(index * 1_000_000_000 / fps));
            b.set_duration(gst::ClockTime::from_nseconds(1_000_000_000 / fps));
        }
        self.video
            .push_buffer(buf)
            .map_err(|e| MediaError::Pipeline(format!("video push: {e:?}")))?;
        if index.is_multiple_of(30) {
            self.check_bus()?;
        }
        Ok(())
    }

    /// Ends the streams, waits for the muxer, and renames the file into place. Returns its
    /// size. On failure the writer's drop removes the partial file.
    pub fn finish(self) -> Result<u64, MediaError> {
        self.video
            .end_of_stream()
            .map_err(|e| MediaError::Pipeline(format!("video eos: {e:?}")))?;
        let bus = self
            .pipeline
            .bus()
            .ok_or_else(|| MediaError::Pipeline("no bus".into()))?;
        match bus.timed_pop_filtered(
            gst::ClockTime::from_seconds(120),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) {
            Some(msg) => {
                if let gst::MessageView::Error(e) = msg.view() {
                    return Err(MediaError::Pipeline(e.error().to_string()));
                }
            }
            None => {
                return Err(MediaError::Pipeline(
                    "muxer did not finish within 120 s".into(),
                ));
            }
        }
        let _ = self.pipeline.set_state(gst::State::Null);
        std::fs::rename(&self.tmp, &self.dest).map_err(|e| MediaError::Io(self.dest.clone(), e))?;
        std::fs::metadata(&self.dest)
            .map(|m| m.len())
            .map_err(|e| MediaError::Io(self.dest.clone(), e))
    }
}

/// A writer dropped before [`Mp4Writer::finish`] succeeded (an error, a cancel, any early
/// return) stops its pipeline and removes its partial file; after a successful finish the
/// file has been renamed into place and only the pipeline is stopped (again, harmlessly).
impl Drop for Mp4Writer {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
        let _ = std::fs::remove_file(&self.tmp);
    }
}
