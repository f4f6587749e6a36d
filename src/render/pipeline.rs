//! Generation: one video from [`VideoParams`] to an MP4 on disk, without a server.
//!
//! [`Generator`] holds what is built once per process — the GPU device and kernels, the TTS
//! backend, the probed encoder. [`Generator::run`] drives one job: timeline (text, speech,
//! visemes, motion) → per-frame avatar kernels → patch readback → I420 frame (only the
//! patch's boxes converted, into a pooled buffer: [`FrameMaker`]) → GStreamer MP4 (+ live fMP4),
//! reporting [`Progress`], honouring a cancel flag between frames (so a cancel stops GPU and
//! encoder work within a frame's time), and writing a thumbnail. [`Generator::spawn`] runs it
//! on its own thread and hands back a [`JobHandle`] (cancel, progress, join) — the API the job
//! dispatcher drives.

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::render::assets::Catalog;
use crate::render::gpu::i420::{ColorPath, I420Converter};
use crate::render::gpu::scheduler::{
    GpuScheduler, JobRenderer, OpenJob, SchedulerConfig, SchedulerStats,
};
use crate::render::gpu::{
    Changed, FrameRequest, Gpu, GpuError, PatchGeometry, Rendered, Style, hex_rgba, tile_box,
};
use crate::render::media::{
    self, EncodeSettings, EncoderChoice, FramePool, LiveChunk, MediaError, Mp4Writer, PooledFrame,
};
use crate::render::params::{Background, VideoParams};

use crate::render::media::decode;
use crate::render::timeline::captions;
use crate::render::timeline::script::{self, Timeline, TimelineError};
use crate::render::timeline::speech_server::SpeechServer;
use crate::render::timeline::transcript::Transcript;
use crate::render::timeline::voice::{Speech, TtsBackend, VoiceError};
use crate::render::timeline::voices::Voices;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Timeline(#[from] TimelineError),
    #[error("unknown avatar {0:?}")]
    UnknownAvatar(String),
    /// The caption track could not be laid out (font, size).
    #[error("captions: {0}")]
    Captions(String),
    /// The job's thread panicked or could not start: a bug or an exhausted process, never
    /// the request's fault.
    #[error("the render thread failed: {0}")]
    Thread(String),
    #[error("cancelled")]
    Cancelled,
    /// The recording of an `audio` video could not be read or decoded.
    #[error("the recording: {0}")]
    Audio(String),
}

impl GenerateError {
    /// Stable code for `error.code` of a failed video.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Gpu(_) => "gpu_unavailable",
            Self::Media(MediaError::NoEncoder(_) | MediaError::NoAudioEncoder) => {
                "encoder_unavailable"
            }
            Self::Media(_) => "encode_failed",
            Self::Timeline(TimelineError::Voice(VoiceError::Unavailable(_))) => "tts_unavailable",
            Self::Timeline(_) => "speech_failed",
            Self::UnknownAvatar(_) => "invalid_avatar",
            Self::Captions(_) => "captions_failed",
            Self::Thread(_) => "render_crashed",
            Self::Cancelled => "cancelled",
            Self::Audio(_) => "invalid_audio",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Timeline,
    Rendering,
    Finishing,
    Done,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Progress {
    pub stage: Stage,
    pub frames_done: u64,
    pub frames_total: u64,
    /// Frames per second over the render so far.
    pub fps: f64,
    pub eta_s: f64,
}

/// What a finished job produced.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Outcome {
    pub frames: u64,
    pub duration_s: f64,
    pub size_bytes: u64,
    pub encoder: String,
    /// Seconds spent: timeline (text + speech), render + encode loop, finishing the file.
    pub timeline_s: f64,
    pub render_s: f64,
    pub finish_s: f64,
    /// The render loop split: kernel submission, waiting for readback, handing frames to
    /// the encoder (which blocks while the encoder is behind).
    pub submit_s: f64,
    pub readback_s: f64,
    /// Making each I420 frame from its patch (applying it, converting the changed boxes).
    pub convert_s: f64,
    pub encode_s: f64,
    /// Where each scene of a video with scenes starts and how long it lasts (empty otherwise).
    pub scenes: Vec<SceneSpan>,
}

/// One scene's place in the file (`scenes[]` of the Video).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct SceneSpan {
    pub index: usize,
    pub start_s: f64,
    pub duration_s: f64,
}

/// One independently rendered part of a video: a scene, or the whole video.
struct Segment {
    params: VideoParams,
    timeline: Timeline,
    /// Its first frame's index in the file.
    start_frame: u64,
}

impl Segment {
    fn frames(&self) -> u64 {
        self.timeline.frames.len() as u64
    }
}

/// Where the render loop spent its time.
#[derive(Debug, Default, Clone, Copy)]
struct StageTimes {
    submit: std::time::Duration,
    readback: std::time::Duration,
    convert: std::time::Duration,
    encode: std::time::Duration,
}

/// A job's render across its segments: frames done, the poster, progress reports.
struct RunState {
    total: u64,
    thumb_at: u64,
    thumb: Option<Vec<u8>>,
    done: u64,
    render_start: Instant,
    last_report: Instant,
    times: StageTimes,
}

/// The video's sound track, `(samples, rate)`: each segment's speech (or silence for a
/// segment without a voice) one after the other at the first speech's rate. Every segment
/// but the last is cut or padded to exactly its frames' time, so each scene's sound starts
/// with its first frame; a single segment keeps its speech as it is. `None` without speech.
fn sound_track(segments: &[Segment], fps: u32) -> Option<(Cow<'_, [i16]>, u32)> {
    let rate = segments
        .iter()
        .filter_map(|s| s.timeline.speech.as_ref())
        .map(|s| s.sample_rate)
        .find(|r| *r > 0)?;
    if let [only] = segments {
        return only
            .timeline
            .speech
            .as_ref()
            .map(|s| (Cow::Borrowed(s.samples.as_slice()), s.sample_rate));
    }
    let mut out: Vec<i16> = Vec::new();
    for (i, seg) in segments.iter().enumerate() {
        if let Some(speech) = &seg.timeline.speech {
            out.extend(media::resample(&speech.samples, speech.sample_rate, rate));
        }
        let end_frame = seg.start_frame + seg.frames();
        let end = (end_frame * u64::from(rate) / u64::from(fps)) as usize;
        if i + 1 < segments.len() || seg.timeline.speech.is_none() {
            out.resize(end, 0);
        }
    }
    Some((Cow::Owned(out), rate))
}

/// Every segment's words, on the file's clock.
fn transcript_words(segments: &[Segment], fps: u32) -> Vec<crate::render::timeline::align::WordAt> {
    segments
        .iter()
        .flat_map(|seg| {
            let offset = (seg.start_frame * 1000 / u64::from(fps)) as u32;
            seg.timeline
                .words
                .iter()
                .map(move |w| crate::render::timeline::align::WordAt {
                    text: w.text.clone(),
                    start_ms: w.start_ms + offset,
                    end_ms: w.end_ms + offset,
                })
        })
        .collect()
}

pub struct JobSpec {
    pub params: VideoParams,
    pub output: PathBuf,
    pub thumbnail: Option<PathBuf>,
    /// Where the transcript (`transcript.json`, [`Transcript`]) goes when the video has speech.
    pub transcript: Option<PathBuf>,
    /// The recording of a video with `audio` (any format `decodebin` reads).
    pub recording: Option<PathBuf>,
    pub live: bool,
}

pub struct Generator {
    scheduler: GpuScheduler,
    tts: Arc<dyn TtsBackend>,
    catalog: Arc<Catalog>,
    encoder: EncoderChoice,
    color: ColorPath,
}

/// How the GPU scheduler is set up (`GPU_MEMORY_FRACTION`, `MODEL_CACHE_SIZE`,
/// `BATCH_SIZE_AUTO_TUNE`) and where it adds its device time.
#[derive(Debug, Clone)]
pub struct GeneratorOptions {
    pub gpu_memory_fraction: f64,
    pub model_cache_size: usize,
    pub batch_size_auto_tune: bool,
    /// Frames per submission when not auto-tuning.
    pub batch_size: usize,
    /// Nanoseconds of device work, all jobs together (the analytics' GPU utilisation).
    pub busy_ns: Arc<std::sync::atomic::AtomicU64>,
    /// The scheduler's counters, kept by the caller across device re-opens.
    pub stats: Arc<SchedulerStats>,
    /// How frames become I420; `None` chooses per device ([`ColorPath::choose`]).
    pub color_path: Option<ColorPath>,
    /// The speech server of the catalog's `http` voices (`TTS_URL`).
    pub speech_server: Option<SpeechServer>,
    /// Open the device from a lowered thread, so its worker threads (lavapipe's) yield to
    /// the API: batch rendering. A live session's device runs at normal priority.
    pub lowered: bool,
    /// Draw eyes and mouth over their whole boxes instead of only where they can touch:
    /// the same pixels with more work, the reference a test holds the extents to.
    pub whole_feature_boxes: bool,
}

impl Default for GeneratorOptions {
    fn default() -> Self {
        Self {
            gpu_memory_fraction: 0.8,
            model_cache_size: 8,
            batch_size_auto_tune: true,
            batch_size: 4,
            busy_ns: Arc::default(),
            stats: Arc::default(),
            color_path: None,
            speech_server: None,
            lowered: true,
            whole_feature_boxes: false,
        }
    }
}

/// The format [`Generator::frames`] hands frames over in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pixels {
    Rgba,
    I420,
}

/// How often progress is reported at most.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl Generator {
    /// Opens the device and probes the encoder: fails clearly when either is missing.
    pub fn new(catalog: Arc<Catalog>) -> Result<Self, GenerateError> {
        Self::with_options(catalog, GeneratorOptions::default())
    }

    /// Opens the device, starts the GPU scheduler on it and probes the encoder.
    pub fn with_options(catalog: Arc<Catalog>, o: GeneratorOptions) -> Result<Self, GenerateError> {
        // Opened from a lowered thread: the device's worker threads (lavapipe's) inherit it.
        let lowered = o.lowered;
        let gpu = std::thread::spawn(move || {
            if lowered {
                crate::render::priority::lower_this_thread();
            }
            Gpu::new()
        })
        .join()
        .map_err(|_| {
            GenerateError::Gpu(crate::render::gpu::GpuError::Device(
                "device setup panicked".into(),
            ))
        })??;
        let gpu = Arc::new(gpu);
        let encoder = media::probe_encoder()?;
        let host = sysinfo::System::new_with_specifics(
            sysinfo::RefreshKind::nothing()
                .with_memory(sysinfo::MemoryRefreshKind::nothing().with_ram()),
        )
        .map(|s| s.total_memory())
        .unwrap_or(0);
        let mut config = SchedulerConfig::new(
            &gpu,
            o.gpu_memory_fraction,
            o.model_cache_size,
            o.batch_size_auto_tune,
            host,
        );
        if !o.batch_size_auto_tune {
            config.batch_size = o.batch_size;
        }
        config.whole_feature_boxes = o.whole_feature_boxes;
        let color = o.color_path.unwrap_or_else(|| ColorPath::choose(&gpu));
        Ok(Self {
            color,
            scheduler: GpuScheduler::start(gpu, config, o.busy_ns, o.stats, o.lowered),
            tts: Arc::new(Voices::new(catalog.clone(), o.speech_server)),
            catalog,
            encoder,
        })
    }

    /// How frames become I420 on this device.
    pub fn color_path(&self) -> ColorPath {
        self.color
    }

    pub fn gpu(&self) -> &Gpu {
        self.scheduler.gpu()
    }

    pub fn scheduler(&self) -> &GpuScheduler {
        &self.scheduler
    }

    pub fn encoder(&self) -> &EncoderChoice {
        &self.encoder
    }

    /// The voices (TTS back-ends), for what is spoken outside a job (a live session's
    /// utterances).
    pub fn voices(&self) -> Arc<dyn TtsBackend> {
        self.tts.clone()
    }

    /// A live session's renderer for `params`' look and size, resting in pose `rest`.
    pub fn live(
        &self,
        params: &VideoParams,
        rest: crate::render::timeline::script::FrameParams,
    ) -> Result<LiveRenderer<'_>, GenerateError> {
        let renderer = self.scheduler.open(OpenJob {
            style: self.style(params)?,
            width: params.dimension.width,
            height: params.dimension.height,
            rest,
            captions: None,
        })?;
        let (w, h) = (params.dimension.width, params.dimension.height);
        let frames = FrameMaker::new(self.gpu(), &renderer, self.color, w, h);
        Ok(LiveRenderer {
            patches: FramePool::new(renderer.patch_bytes()),
            renderer,
            frames,
        })
    }

    pub fn timeline(&self, params: &VideoParams) -> Result<Timeline, GenerateError> {
        Ok(script::build(params, self.tts.as_ref())?)
    }

    /// The timeline of a job: for a video with `audio`, its recording decoded (the sound track
    /// the mouth follows); otherwise as [`Self::timeline`].
    pub fn job_timeline(&self, spec: &JobSpec) -> Result<Timeline, GenerateError> {
        let p = &spec.params;
        if p.audio.is_none() {
            return self.timeline(p);
        }
        let path = spec
            .recording
            .as_ref()
            .ok_or_else(|| GenerateError::Audio("the video's recording is not available".into()))?;
        let pcm = decode::decode_audio(path, decode::RECORDING_LIMITS)
            .map_err(|e| GenerateError::Audio(e.to_string()))?;
        let speech = Speech {
            sample_rate: pcm.sample_rate,
            samples: pcm.samples,
            ..Speech::default()
        };
        Ok(script::build_with(p, self.tts.as_ref(), Some(speech))?)
    }

    /// Colours and shapes of the requested avatar and background.
    pub fn style(&self, params: &VideoParams) -> Result<Style, GenerateError> {
        let look = params.avatar.look.as_ref();
        let base = look.map_or(params.avatar.id.as_str(), |l| l.base.as_str());
        let a = self
            .catalog
            .avatar(base)
            .ok_or_else(|| GenerateError::UnknownAvatar(params.avatar.id.clone()))?;
        // A custom avatar's look over its base's definition.
        let field = |k: &str| {
            let own = look.and_then(|l| match k {
                "skin" => Some(l.skin_tone.as_str()),
                "hair" => Some(l.hair_color.as_str()),
                "hair_style" => Some(l.hair_style.as_str()),
                "clothing" => Some(l.outfit_color.as_str()),
                "iris" => Some(l.eye_color.as_str()),
                _ => None,
            });
            own.or_else(|| a.extra.get(k).and_then(|v| v.as_str()))
                .unwrap_or("#888888")
        };
        let hair_style = match field("hair_style") {
            "bob" => 0.0,
            "short" => 1.0,
            "long" => 2.0,
            _ => 3.0,
        };
        let face_shape = match field("face_shape") {
            "square" => 1.0,
            "heart" => 2.0,
            "round" => 3.0,
            _ => 0.0,
        };
        let (kind, bg0, bg1, angle) = match &params.background {
            Background::Color { value } => (0.0, hex_rgba(value), hex_rgba(value), 0.0),
            Background::Gradient { from, to, angle } => {
                (1.0, hex_rgba(from), hex_rgba(to), angle.to_radians() as f32)
            }
            Background::Image { asset_id } => {
                let b = self.catalog.background(asset_id);
                let c = |k: &str| {
                    b.and_then(|b| b.extra.get(k))
                        .and_then(|v| v.as_str())
                        .unwrap_or("#444444")
                };
                (2.0, hex_rgba(c("from")), hex_rgba(c("to")), 0.0)
            }
        };
        Ok(Style {
            skin: hex_rgba(field("skin")),
            hair: hex_rgba(field("hair")),
            cloth: hex_rgba(field("clothing")),
            iris: hex_rgba(field("iris")),
            lip: hex_rgba(field("lips")),
            bg0,
            bg1,
            misc: [hair_style, face_shape, kind, angle],
        })
    }

    /// A portrait of an avatar (a custom one's look included) for previews: RGBA, `width` ×
    /// `height`, mid-word, eyes open, on a plain studio colour, by the same kernels as videos.
    pub fn portrait(
        &self,
        avatar: &crate::render::params::AvatarParams,
        width: u32,
        height: u32,
    ) -> Result<Vec<u8>, GenerateError> {
        let params = VideoParams {
            title: "Preview".into(),
            script: "Hello there.".into(),
            avatar: avatar.clone(),
            voice: None,
            background: Background::Color {
                value: "#1e293b".into(),
            },
            dimension: crate::render::params::Dimension { width, height },
            fps: 25,
            captions: false,
            quality: crate::render::params::Quality::Draft,
            callback_url: None,
            seed: 5,
            audio: None,
            scenes: None,
        };
        let mut timeline = self.timeline(&params)?;
        let mut f = timeline.frames[timeline.frames.len() / 2];
        (f.mouth_open, f.mouth_wide, f.teeth, f.blink) = (0.3, 0.3, 0.6, 0.0);
        timeline.frames = vec![f];
        self.still_frames(&params, &timeline, &[0])?
            .into_iter()
            .next()
            .ok_or_else(|| GenerateError::Thread("no frame rendered".into()))
    }

    /// Renders single frames (RGBA) of `params` at the given timeline frame indices.
    pub fn still_frames(
        &self,
        params: &VideoParams,
        timeline: &Timeline,
        at: &[usize],
    ) -> Result<Vec<Vec<u8>>, GenerateError> {
        let mut out = Vec::with_capacity(at.len());
        self.render_frames(params, timeline, at, &mut |frame| out.push(frame.to_vec()))?;
        Ok(out)
    }

    /// Renders the frames at `at` (captions if `params` asks for them; no encoder) and hands
    /// each to `sink` as RGBA, in order, as the job path makes them: patches from the GPU
    /// applied to the job's frame.
    pub fn render_frames(
        &self,
        params: &VideoParams,
        timeline: &Timeline,
        at: &[usize],
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), GenerateError> {
        self.frames(params, timeline, at, Pixels::Rgba, sink)
    }

    /// [`Self::render_frames`] in either format: RGBA, or the I420 buffers a job hands to
    /// GStreamer.
    pub fn frames(
        &self,
        params: &VideoParams,
        timeline: &Timeline,
        at: &[usize],
        pixels: Pixels,
        sink: &mut dyn FnMut(&[u8]),
    ) -> Result<(), GenerateError> {
        self.make_frames(params, timeline, at, &mut |frames| {
            match pixels {
                Pixels::Rgba => sink(frames.rgba()),
                Pixels::I420 => sink(frames.i420()?.as_ref()),
            }
            Ok(())
        })
    }

    /// Renders the frames at `at` batch by batch, one batch ahead as a job does, and calls
    /// `each` with every frame's [`FrameMaker`] once its patch is applied.
    fn make_frames(
        &self,
        params: &VideoParams,
        timeline: &Timeline,
        at: &[usize],
        each: &mut dyn FnMut(&mut FrameMaker) -> Result<(), GenerateError>,
    ) -> Result<(), GenerateError> {
        let captions = caption_track(params, timeline)?;
        let renderer = self.open(params, timeline, captions.as_ref().map(|c| c.area))?;
        let patches = FramePool::new(renderer.patch_bytes());
        let (w, h) = (params.dimension.width, params.dimension.height);
        let mut frames = FrameMaker::new(self.gpu(), &renderer, self.color, w, h);
        let mut feed = Feed::new(timeline, captions.as_ref(), at);
        let mut submit = || {
            let batch = feed.next_batch(renderer.batch_size());
            let bufs = batch.iter().map(|_| patches.get()).collect();
            (!batch.is_empty()).then(|| renderer.submit(batch, bufs))
        };
        let mut in_flight = submit();
        while let Some(ticket) = in_flight.take() {
            in_flight = submit();
            for rendered in ticket.wait()? {
                frames.apply(rendered);
                each(&mut frames)?;
            }
        }
        Ok(())
    }

    /// Registers a job with the GPU scheduler: its static layers come from the model cache
    /// or are rendered now.
    fn open(
        &self,
        params: &VideoParams,
        timeline: &Timeline,
        captions: Option<[u32; 4]>,
    ) -> Result<JobRenderer, GenerateError> {
        Ok(self.scheduler.open(OpenJob {
            style: self.style(params)?,
            width: params.dimension.width,
            height: params.dimension.height,
            rest: timeline.frames.first().copied().unwrap_or_default(),
            captions,
        })?)
    }

    /// Produces one video. Blocking: call it from a dedicated thread.
    pub fn run(
        &self,
        spec: &JobSpec,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(&Progress),
        on_live: &mut dyn FnMut(LiveChunk),
    ) -> Result<Outcome, GenerateError> {
        let started = Instant::now();
        let p = &spec.params;
        on_progress(&Progress {
            stage: Stage::Timeline,
            frames_done: 0,
            frames_total: 0,
            fps: 0.0,
            eta_s: 0.0,
        });
        let segments = self.segments(spec)?;
        let timeline_s = started.elapsed().as_secs_f64();
        if cancel.load(Ordering::Relaxed) {
            return Err(GenerateError::Cancelled);
        }

        let (w, h) = (p.dimension.width, p.dimension.height);
        let fps = p.fps.max(1);
        let sound = sound_track(&segments, fps);
        let settings = EncodeSettings {
            width: w,
            height: h,
            fps,
            quality: p.quality,
            audio_rate: sound.as_ref().map(|s| s.1),
            live: spec.live,
        };
        let mut writer = Mp4Writer::start(&settings, &self.encoder, &spec.output)?;
        let live_rx = writer.live.take();
        // From here on every early return drops the writer, which stops the pipeline and
        // removes its partial file.
        if let Some((samples, rate)) = &sound {
            writer.push_audio(samples, *rate)?;
        }

        let total: u64 = segments.iter().map(|s| s.frames()).sum();
        let mut run = RunState {
            total,
            thumb_at: u64::from(fps).min(total.saturating_sub(1)),
            thumb: None,
            done: 0,
            render_start: Instant::now(),
            last_report: Instant::now(),
            times: StageTimes::default(),
        };
        for segment in &segments {
            self.render_segment(
                segment,
                &writer,
                live_rx.as_ref(),
                &mut run,
                cancel,
                on_progress,
                on_live,
            )?;
        }
        let done = run.done;
        let render_s = run.render_start.elapsed().as_secs_f64();
        on_progress(&progress(Stage::Finishing, done, total, run.render_start));
        // A cancel that lands while the last frames drain still stops the job: nothing is
        // published for a cancelled (or handed back) video.
        if cancel.load(Ordering::Relaxed) {
            return Err(GenerateError::Cancelled);
        }
        let finish_start = Instant::now();
        let size_bytes = writer.finish()?;
        if let Some(rx) = live_rx {
            while let Ok(chunk) = rx.recv() {
                on_live(chunk);
            }
        }
        if let (Some(path), Some(frame)) = (&spec.thumbnail, run.thumb.take()) {
            media::write_thumbnail(&frame, w, h, path)?;
        }
        let words = transcript_words(&segments, fps);
        if let Some(path) = spec.transcript.as_ref().filter(|_| !words.is_empty()) {
            write_transcript(&Transcript::from_words(&words), path)?;
        }
        on_progress(&progress(Stage::Done, done, total, run.render_start));
        let scenes = if p.scenes.is_some() {
            segments
                .iter()
                .enumerate()
                .map(|(index, s)| SceneSpan {
                    index,
                    start_s: s.start_frame as f64 / f64::from(fps),
                    duration_s: s.frames() as f64 / f64::from(fps),
                })
                .collect()
        } else {
            Vec::new()
        };
        let t = run.times;
        Ok(Outcome {
            frames: done,
            duration_s: done as f64 / f64::from(fps),
            size_bytes,
            encoder: self.encoder.element.to_string(),
            timeline_s,
            render_s,
            finish_s: finish_start.elapsed().as_secs_f64(),
            submit_s: t.submit.as_secs_f64(),
            readback_s: t.readback.as_secs_f64(),
            convert_s: t.convert.as_secs_f64(),
            encode_s: t.encode.as_secs_f64(),
            scenes,
        })
    }

    /// The segments of a job, each with its timeline: every scene of a video with scenes (in
    /// order, each starting where the one before ends), or the video itself.
    fn segments(&self, spec: &JobSpec) -> Result<Vec<Segment>, GenerateError> {
        let p = &spec.params;
        if p.scenes.is_none() {
            let timeline = self.job_timeline(spec)?;
            return Ok(vec![Segment {
                params: p.clone(),
                timeline,
                start_frame: 0,
            }]);
        }
        let mut out: Vec<Segment> = Vec::new();
        let mut start_frame = 0;
        for params in p.segments() {
            let timeline = self.timeline(&params)?;
            let frames = timeline.frames.len() as u64;
            out.push(Segment {
                params,
                timeline,
                start_frame,
            });
            start_frame += frames;
        }
        Ok(out)
    }

    /// Renders one segment's frames into the writer (continuing its frame count), with its own
    /// look and caption track.
    #[allow(clippy::too_many_arguments)]
    fn render_segment(
        &self,
        segment: &Segment,
        writer: &Mp4Writer,
        live_rx: Option<&std::sync::mpsc::Receiver<LiveChunk>>,
        run: &mut RunState,
        cancel: &AtomicBool,
        on_progress: &mut dyn FnMut(&Progress),
        on_live: &mut dyn FnMut(LiveChunk),
    ) -> Result<(), GenerateError> {
        let p = &segment.params;
        let timeline = &segment.timeline;
        let (w, h) = (p.dimension.width, p.dimension.height);
        let captions = caption_track(p, timeline)?;
        let renderer = self.open(p, timeline, captions.as_ref().map(|c| c.area))?;
        // Patches come back from the GPU; each becomes an I420 frame for the encoder.
        let patches = FramePool::new(renderer.patch_bytes());
        let mut frames = FrameMaker::new(self.gpu(), &renderer, self.color, w, h);
        let times = &mut run.times;
        // Batches go to the scheduler one ahead: while it renders batch k + 1, this thread
        // hands batch k to the encoder.
        let all: Vec<usize> = (0..timeline.frames.len()).collect();
        let mut feed = Feed::new(timeline, captions.as_ref(), &all);
        let submit = |batch: Vec<FrameRequest>, submit_t: &mut std::time::Duration| {
            let t = Instant::now();
            let bufs = batch.iter().map(|_| patches.get()).collect();
            let ticket = renderer.submit(batch, bufs);
            *submit_t += t.elapsed();
            ticket
        };
        let first = feed.next_batch(renderer.batch_size());
        let mut in_flight = (!first.is_empty()).then(|| submit(first, &mut times.submit));
        while let Some(ticket) = in_flight.take() {
            if cancel.load(Ordering::Relaxed) {
                return Err(GenerateError::Cancelled);
            }
            let batch = feed.next_batch(renderer.batch_size());
            if !batch.is_empty() {
                in_flight = Some(submit(batch, &mut times.submit));
            }
            // Two batches are in flight at most; idle patch buffers beyond that (left from
            // when this job had the device to itself) are freed.
            patches.trim(renderer.batch_size());
            let t = Instant::now();
            let rendered = ticket.wait()?;
            times.readback += t.elapsed();
            for patch in rendered {
                let t = Instant::now();
                frames.apply(patch);
                if run.done == run.thumb_at {
                    run.thumb = Some(frames.rgba().to_vec());
                }
                let i420 = frames.i420()?;
                times.convert += t.elapsed();
                let t = Instant::now();
                writer.push_frame(i420, run.done)?;
                times.encode += t.elapsed();
                run.done += 1;
            }
            if let Some(rx) = live_rx {
                while let Ok(chunk) = rx.try_recv() {
                    on_live(chunk);
                }
            }
            if run.last_report.elapsed() >= PROGRESS_EVERY {
                run.last_report = Instant::now();
                on_progress(&progress(
                    Stage::Rendering,
                    run.done,
                    run.total,
                    run.render_start,
                ));
            }
        }
        Ok(())
    }

    /// Runs a job on its own thread.
    pub fn spawn(
        self: &Arc<Self>,
        spec: JobSpec,
        on_progress: impl FnMut(&Progress) + Send + 'static,
        on_live: impl FnMut(LiveChunk) + Send + 'static,
    ) -> JobHandle {
        self.spawn_with(spec, Arc::default(), on_progress, on_live)
    }

    /// Runs a job on its own thread, stopped by a cancel flag the caller already holds.
    pub fn spawn_with(
        self: &Arc<Self>,
        spec: JobSpec,
        cancel: Arc<AtomicBool>,
        mut on_progress: impl FnMut(&Progress) + Send + 'static,
        mut on_live: impl FnMut(LiveChunk) + Send + 'static,
    ) -> JobHandle {
        let me = self.clone();
        JobHandle::spawn(cancel, move |flag| {
            me.run(&spec, flag, &mut on_progress, &mut on_live)
        })
    }
}

/// A live session's renderer: one frame at a time, as soon as it is asked for (one frame per
/// submission: a live frame waits for no batch).
pub struct LiveRenderer<'a> {
    renderer: JobRenderer,
    patches: FramePool,
    frames: FrameMaker<'a>,
}

impl LiveRenderer<'_> {
    /// The frame of `params`, I420, in a pooled buffer the streams share.
    pub fn render(
        &mut self,
        params: crate::render::timeline::script::FrameParams,
    ) -> Result<media::live::SharedFrame, GenerateError> {
        let request = FrameRequest {
            params,
            caption: None,
            line: None,
        };
        for rendered in self
            .renderer
            .render(vec![request], vec![self.patches.get()])?
        {
            self.frames.apply(rendered);
        }
        Ok(Arc::new(self.frames.i420()?))
    }
}

/// A job's frames, made from its read-back patches: the RGBA frame of the moment (the
/// look's static frame with the latest patch applied) and, from it, each I420 frame for the
/// encoder. On the `Boxes` path only what changed is converted, into a pooled buffer: a new
/// buffer starts as the static frame converted once (and gets the whole patch), and one
/// coming back from the encoder is tagged with the frame it holds, so only what changed since
/// (the head's recomposited tiles, the eyes and mouth boxes, the caption box) is converted
/// again. On the `Kernel` path the whole frame is converted on the device (sizes the kernel
/// cannot take use the boxes).
struct FrameMaker<'a> {
    gpu: &'a Gpu,
    geometry: PatchGeometry,
    width: u32,
    height: u32,
    rgba: Vec<u8>,
    pool: FramePool,
    kernel: Option<I420Converter>,
    /// Frames applied so far (frame n is tagged n; 0 is the static frame).
    made: u64,
    /// What changed in each of the latest frames, oldest first: (frame, change).
    recent: std::collections::VecDeque<(u64, Changed)>,
}

/// Frames whose changes are remembered; a pooled buffer older than that is converted whole.
const RECENT: usize = 16;

impl<'a> FrameMaker<'a> {
    fn new(gpu: &'a Gpu, renderer: &JobRenderer, path: ColorPath, width: u32, height: u32) -> Self {
        let rgba = renderer.static_frame().to_vec();
        let kernel = match path {
            ColorPath::Kernel => I420Converter::new(gpu, width, height).ok(),
            ColorPath::Boxes => None,
        };
        let pool = FramePool::starting_as(media::i420::from_rgba(&rgba, width, height).into());
        Self {
            gpu,
            geometry: renderer.geometry(),
            width,
            height,
            rgba,
            pool,
            kernel,
            made: 0,
            recent: std::collections::VecDeque::with_capacity(RECENT),
        }
    }

    /// Applies the next frame's patch (and notes what changed in it).
    fn apply(&mut self, rendered: Rendered) {
        self.geometry.apply(rendered.patch.as_ref(), &mut self.rgba);
        self.made += 1;
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back((self.made, rendered.changed));
    }

    /// The current frame, RGBA.
    fn rgba(&self) -> &[u8] {
        &self.rgba
    }

    /// The current frame, I420, in a pooled buffer.
    fn i420(&mut self) -> Result<PooledFrame, GenerateError> {
        let mut out = self.pool.get();
        match &self.kernel {
            Some(k) => k
                .convert_into(self.gpu, &self.rgba, out.as_mut())
                .map_err(|e| MediaError::Pipeline(e.to_string()))?,
            None => {
                let (w, h) = (self.width, self.height);
                let convert = |b: [u32; 4], out: &mut PooledFrame| {
                    media::i420::convert_box(&self.rgba, w, h, b, out.as_mut());
                };
                for b in self.changed_since(out.tag()) {
                    convert(b, &mut out);
                }
                if let Some(c) = self.geometry.caption {
                    convert(c, &mut out);
                }
            }
        }
        out.set_tag(self.made);
        Ok(out)
    }

    /// The boxes of the head that changed after frame `tag` up to the current one: the whole
    /// head box when that is not remembered (or `tag` is the static frame).
    fn changed_since(&self, tag: u64) -> Vec<[u32; 4]> {
        let remembered = self.recent.front().map_or(u64::MAX, |(first, _)| *first);
        if tag == 0 || tag + 1 < remembered {
            return vec![self.geometry.head];
        }
        let mut tiles = Vec::new();
        let mut boxes = Vec::new();
        for (_, changed) in self.recent.iter().filter(|(n, _)| *n > tag) {
            match changed {
                Changed::Whole => return vec![self.geometry.head],
                Changed::Parts { tiles: t, boxes: b } => {
                    tiles.extend_from_slice(t);
                    boxes.extend(b.iter().copied().filter(|b| b[2] > 0 && b[3] > 0));
                }
            }
        }
        tiles.sort_unstable();
        tiles.dedup();
        let [hx, hy, ..] = self.geometry.head;
        boxes.extend(tiles.iter().map(|&t| tile_box([hx, hy], t)));
        boxes
    }
}

/// Writes a transcript as JSON, whole (a temporary file renamed into place).
fn write_transcript(t: &Transcript, path: &std::path::Path) -> Result<(), GenerateError> {
    let io = |e| GenerateError::Media(MediaError::Io(path.to_path_buf(), e));
    let body = serde_json::to_vec(t).map_err(|e| io(std::io::Error::other(e)))?;
    let tmp = path.with_extension("json.part");
    std::fs::write(&tmp, body).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The caption track of a video, when it asks for captions and has words.
fn caption_track(
    p: &VideoParams,
    timeline: &Timeline,
) -> Result<Option<captions::CaptionTrack>, GenerateError> {
    if !p.captions || timeline.words.is_empty() {
        return Ok(None);
    }
    captions::CaptionTrack::build(&timeline.words, p.dimension.width, p.dimension.height)
        .map(Some)
        .map_err(|e| GenerateError::Captions(e.to_string()))
}

/// Timeline frames (those at `at`, in order) as GPU requests, batch by batch. A new caption
/// line starts a batch: its coverage is uploaded once, before the batch's first frame.
struct Feed<'a> {
    timeline: &'a Timeline,
    captions: Option<&'a captions::CaptionTrack>,
    at: &'a [usize],
    next: usize,
    shown_line: Option<usize>,
}

impl<'a> Feed<'a> {
    fn new(
        timeline: &'a Timeline,
        captions: Option<&'a captions::CaptionTrack>,
        at: &'a [usize],
    ) -> Self {
        Self {
            timeline,
            captions,
            at,
            next: 0,
            shown_line: None,
        }
    }

    fn next_batch(&mut self, size: usize) -> Vec<FrameRequest> {
        let size = size.max(1);
        let mut batch = Vec::with_capacity(size);
        while let Some(&i) = self.at.get(self.next) {
            if batch.len() >= size {
                break;
            }
            let params = self.timeline.frames.get(i).copied().unwrap_or_default();
            let mut line = None;
            let caption = self.captions.and_then(|track| {
                let f = track.at(f64::from(params.time))?;
                if self.shown_line != Some(f.line) {
                    line = Some(f.line);
                }
                Some((f.x0, f.x1))
            });
            if let Some(l) = line {
                if !batch.is_empty() {
                    break;
                }
                self.shown_line = Some(l);
            }
            batch.push(FrameRequest {
                params,
                caption,
                line: line.and_then(|l| {
                    let track = self.captions?;
                    Some(Arc::from(track.lines.get(l)?.coverage.as_slice()))
                }),
            });
            self.next += 1;
        }
        batch
    }
}

fn progress(stage: Stage, done: u64, total: u64, since: Instant) -> Progress {
    let secs = since.elapsed().as_secs_f64().max(1e-6);
    let fps = done as f64 / secs;
    Progress {
        stage,
        frames_done: done,
        frames_total: total,
        fps,
        eta_s: if fps > 0.0 {
            (total - done.min(total)) as f64 / fps
        } else {
            0.0
        },
    }
}

pub struct JobHandle {
    cancel: Arc<AtomicBool>,
    thread: std::io::Result<std::thread::JoinHandle<Result<Outcome, GenerateError>>>,
}

impl JobHandle {
    /// Runs `job` on its own (lowered) thread with the cancel flag.
    pub(crate) fn spawn(
        cancel: Arc<AtomicBool>,
        job: impl FnOnce(&AtomicBool) -> Result<Outcome, GenerateError> + Send + 'static,
    ) -> Self {
        let flag = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("reelgen-job".into())
            .spawn(move || {
                crate::render::priority::lower_this_thread();
                job(&flag)
            });
        Self { cancel, thread }
    }

    /// The flag [`cancel`](Self::cancel) sets, for callers that keep it elsewhere.
    pub fn canceller(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Asks the job to stop; it does within one frame.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn join(self) -> Result<Outcome, GenerateError> {
        match self.thread {
            Ok(t) => t
                .join()
                .unwrap_or_else(|_| Err(GenerateError::Thread("it panicked".into()))),
            Err(e) => Err(GenerateError::Thread(format!("it could not start: {e}"))),
        }
    }
}
