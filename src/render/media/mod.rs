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

use std::path::{Path, PathBuf};
use std::sync::{Once, mpsc};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;

use crate::render::params::Quality;

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

/// The H.264 encoder in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderChoice {
    pub element: &'static str,
    pub hardware: bool,
    pub audio: &'static str,
}

const CANDIDATES: &[(&str, bool)] = &[
    ("nvh264enc", true),
    ("nvcudah264enc", true),
    ("vah264enc", true),
    ("vaapih264enc", true),
    ("qsvh264enc", true),
    ("x264enc", false),
    ("openh264enc", false),
];

fn encoder_props(element: &str, fps: u32, quality: Quality) -> String {
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

/// Finds the first H.264 encoder that really encodes here, and an AAC encoder.
pub fn probe_encoder() -> Result<EncoderChoice, MediaError> {
    probe_encoder_except(&[])
}

/// [`probe_encoder`] skipping the elements named in `deny` (as if they were not installed):
/// how the fallback order is tested, and a way to rule out an encoder known to misbehave.
pub fn probe_encoder_except(deny: &[&str]) -> Result<EncoderChoice, MediaError> {
    init()?;
    let audio = ["avenc_aac", "voaacenc"]
        .into_iter()
        .find(|e| gst::ElementFactory::find(e).is_some())
        .ok_or(MediaError::NoAudioEncoder)?;
    let mut tried = Vec::new();
    for (name, hardware) in CANDIDATES {
        if deny.contains(name) || gst::ElementFactory::find(name).is_none() {
            continue;
        }
        tried.push(*name);
        let desc = format!(
            "videotestsrc num-buffers=2 ! video/x-raw,format=I420,width=64,height=64,framerate=30/1 ! {} ! h264parse ! fakesink",
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

/// Reusable frame buffers: a frame handed to GStreamer comes back here when the encoder is
/// done with it, so no frame allocation (and no fresh pages to fault in) per frame.
#[derive(Clone)]
pub struct FramePool {
    free: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
    size: usize,
    /// What a new buffer starts as (zeros when `None`).
    initial: Option<std::sync::Arc<[u8]>>,
}

/// A frame borrowed from a [`FramePool`]; returns to it when dropped.
pub struct PooledFrame {
    data: Vec<u8>,
    free: std::sync::Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl FramePool {
    pub fn new(size: usize) -> Self {
        Self {
            free: Default::default(),
            size,
            initial: None,
        }
    }

    /// A pool whose new buffers are copies of `initial` (a job's static frame). Buffers
    /// coming back hold an earlier frame of the same job, so only what changes per frame
    /// needs writing.
    pub fn starting_as(initial: std::sync::Arc<[u8]>) -> Self {
        Self {
            free: Default::default(),
            size: initial.len(),
            initial: Some(initial),
        }
    }

    /// Keeps at most `keep` idle buffers (the rest are freed), for when fewer frames are in
    /// flight than before.
    pub fn trim(&self, keep: usize) {
        if let Ok(mut free) = self.free.lock() {
            free.truncate(keep);
        }
    }

    pub fn get(&self) -> PooledFrame {
        let data = self
            .free
            .lock()
            .ok()
            .and_then(|mut f| f.pop())
            .unwrap_or_else(|| match &self.initial {
                Some(init) => init.to_vec(),
                None => vec![0u8; self.size],
            });
        PooledFrame {
            data,
            free: self.free.clone(),
        }
    }
}

impl AsRef<[u8]> for PooledFrame {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl AsMut<[u8]> for PooledFrame {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }
}

impl Drop for PooledFrame {
    fn drop(&mut self) {
        if let Ok(mut free) = self.free.lock()
            && free.len() < 16
        {
            free.push(std::mem::take(&mut self.data));
        }
    }
}

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
    /// Frames come as I420 (converted on the device) rather than RGBA.
    pub i420: bool,
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
        let mut desc = format!(
            "appsrc name=v format=time block=true max-bytes={max} \
               caps=video/x-raw,format={format},width={width},height={height},framerate={fps}/1 \
             ! videoconvert n-threads=2 ! video/x-raw,format=I420 ! {enc} ! h264parse config-interval=-1 \
             ! video/x-h264,stream-format=avc,alignment=au ! tee name=vt \
             vt. ! queue max-size-time=0 max-size-buffers=0 max-size-bytes=67108864 ! mux. \
             mp4mux name=mux faststart=true ! filesink name=file location=\"{tmp}\" ",
            max = u64::from(width) * u64::from(height) * 4,
            format = if settings.i420 { "I420" } else { "RGBA" },
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
        let live_rx = live_sink.map(spawn_fragmenter);
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

    /// Pushes frame `index` (RGBA, or I420 when the settings say so). Blocks while a frame is still
    /// queued for the encoder.
    pub fn push_frame(
        &self,
        rgba: impl AsMut<[u8]> + Send + 'static,
        index: u64,
    ) -> Result<(), MediaError> {
        let mut buf = gst::Buffer::from_mut_slice(rgba);
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

/// Reads the fragmented muxer's output and cuts it into init segment and fragments.
fn spawn_fragmenter(sink: gst_app::AppSink) -> mpsc::Receiver<LiveChunk> {
    let (tx, rx) = mpsc::sync_channel::<LiveChunk>(64);
    std::thread::Builder::new()
        .name("reelgen-fmp4".into())
        .spawn(move || {
            crate::render::priority::lower_this_thread();
            let mut init: Vec<u8> = Vec::new();
            let mut current: Vec<u8> = Vec::new();
            let mut sent_init = false;
            while let Ok(sample) = sink.pull_sample() {
                let Some(buf) = sample.buffer() else { continue };
                let Ok(map) = buf.map_readable() else {
                    continue;
                };
                let data = map.as_slice();
                let starts_moof = data.len() >= 8 && &data[4..8] == b"moof";
                if starts_moof {
                    if !sent_init {
                        sent_init = true;
                        let mime = codec_mime(&init);
                        if tx
                            .send(LiveChunk::Init {
                                data: std::mem::take(&mut init),
                                mime,
                            })
                            .is_err()
                        {
                            return;
                        }
                    } else if !current.is_empty()
                        && tx
                            .send(LiveChunk::Fragment(std::mem::take(&mut current)))
                            .is_err()
                    {
                        return;
                    }
                    current.extend_from_slice(data);
                } else if !sent_init {
                    init.extend_from_slice(data);
                } else {
                    current.extend_from_slice(data);
                }
            }
            if !current.is_empty() {
                let _ = tx.send(LiveChunk::Fragment(current));
            }
        })
        .ok();
    rx
}

/// `video/mp4; codecs="avc1.PPCCLL[, mp4a.40.2]"` read from an init segment's `avcC` box.
pub fn codec_mime(init: &[u8]) -> String {
    let find = |tag: &[u8]| init.windows(4).position(|w| w == tag);
    let mut codecs = Vec::new();
    if let Some(i) = find(b"avcC")
        && let Some(b) = init.get(i + 5..i + 8)
    {
        codecs.push(format!("avc1.{:02X}{:02X}{:02X}", b[0], b[1], b[2]));
    }
    if find(b"mp4a").is_some() {
        codecs.push("mp4a.40.2".to_string());
    }
    format!("video/mp4; codecs=\"{}\"", codecs.join(", "))
}

/// A JPEG of one RGBA frame, written atomically.
pub fn write_thumbnail(
    rgba: &[u8],
    width: u32,
    height: u32,
    dest: &Path,
) -> Result<(), MediaError> {
    write_image(rgba, width, height, dest, "jpegenc quality=88")
}

/// A PNG of one RGBA image, written atomically.
pub fn write_png(rgba: &[u8], width: u32, height: u32, dest: &Path) -> Result<(), MediaError> {
    write_image(rgba, width, height, dest, "pngenc")
}

fn write_image(
    rgba: &[u8],
    width: u32,
    height: u32,
    dest: &Path,
    encoder: &str,
) -> Result<(), MediaError> {
    init()?;
    let desc = format!(
        "appsrc name=src format=time caps=video/x-raw,format=RGBA,width={width},height={height},framerate=1/1 \
         ! videoconvert ! {encoder} ! appsink name=sink sync=false"
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
    let mut buf = gst::Buffer::from_slice(rgba.to_vec());
    if let Some(b) = buf.get_mut() {
        b.set_pts(gst::ClockTime::ZERO);
    }
    let jpeg = src
        .push_buffer(buf)
        .ok()
        .and_then(|_| src.end_of_stream().ok())
        .and_then(|_| sink.pull_sample().ok())
        .and_then(|s| {
            s.buffer()
                .and_then(|b| b.map_readable().ok().map(|m| m.as_slice().to_vec()))
        });
    let _ = pipeline.set_state(gst::State::Null);
    let jpeg =
        jpeg.ok_or_else(|| MediaError::Pipeline("image encoding produced nothing".into()))?;
    let dir = dest.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(".{}.part", uuid::Uuid::new_v4()));
    std::fs::write(&tmp, &jpeg).map_err(|e| MediaError::Io(tmp.clone(), e))?;
    std::fs::rename(&tmp, dest).map_err(|e| MediaError::Io(dest.to_path_buf(), e))
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
