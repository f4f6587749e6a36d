//! Generation: one video from [`VideoParams`] to an MP4 on disk, without a server.
//!
//! [`Generator`] holds what is built once per process — the GPU device and kernels, the TTS
//! backend, the probed encoder. [`Generator::run`] drives one job: timeline (text, speech,
//! visemes, motion) → per-frame avatar kernel → readback ring → GStreamer MP4 (+ live fMP4),
//! reporting [`Progress`], honouring a cancel flag between frames (so a cancel stops GPU and
//! encoder work within a frame's time), and writing a thumbnail. [`Generator::spawn`] runs it
//! on its own thread and hands back a [`JobHandle`] (cancel, progress, join) — the API the job
//! dispatcher drives.

pub mod captions;
pub mod espeak;
pub mod script;
pub mod voice;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::assets::Catalog;
use crate::domain::{Background, VideoParams};
use crate::gpu::{AvatarRenderer, Gpu, GpuError, Style, hex_rgba};
use crate::media::{self, EncodeSettings, EncoderChoice, LiveChunk, MediaError, Mp4Writer};

use script::{Timeline, TimelineError};
use voice::{Espeak, TtsBackend};

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
    #[error("cancelled")]
    Cancelled,
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
            Self::Timeline(_) => "speech_failed",
            Self::UnknownAvatar(_) => "invalid_avatar",
            Self::Cancelled => "cancelled",
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
    pub encode_s: f64,
}

pub struct JobSpec {
    pub params: VideoParams,
    pub output: PathBuf,
    pub thumbnail: Option<PathBuf>,
    pub live: bool,
}

pub struct Generator {
    gpu: Arc<Gpu>,
    tts: Arc<dyn TtsBackend>,
    catalog: Arc<Catalog>,
    encoder: EncoderChoice,
    /// Nanoseconds spent on device work (submission + readback), all jobs together.
    busy_ns: Arc<std::sync::atomic::AtomicU64>,
}

/// How often progress is reported at most.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

impl Generator {
    /// Opens the device and probes the encoder: fails clearly when either is missing.
    pub fn new(catalog: Arc<Catalog>) -> Result<Self, GenerateError> {
        let gpu = Arc::new(Gpu::new()?);
        let encoder = media::probe_encoder()?;
        Ok(Self {
            gpu,
            tts: Arc::new(Espeak::new(catalog.clone())),
            catalog,
            encoder,
            busy_ns: Arc::default(),
        })
    }

    /// Adds device busy time to `counter` (the analytics' GPU utilisation source).
    pub fn with_busy_counter(mut self, counter: Arc<std::sync::atomic::AtomicU64>) -> Self {
        self.busy_ns = counter;
        self
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub fn encoder(&self) -> &EncoderChoice {
        &self.encoder
    }

    pub fn timeline(&self, params: &VideoParams) -> Result<Timeline, GenerateError> {
        Ok(script::build(params, self.tts.as_ref())?)
    }

    /// Colours and shapes of the requested avatar and background.
    pub fn style(&self, params: &VideoParams) -> Result<Style, GenerateError> {
        let a = self
            .catalog
            .avatar(&params.avatar.id)
            .ok_or_else(|| GenerateError::UnknownAvatar(params.avatar.id.clone()))?;
        let field = |k: &str| a.extra.get(k).and_then(|v| v.as_str()).unwrap_or("#888888");
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

    /// Renders single frames (RGBA) of `params` at the given timeline frame indices.
    pub fn still_frames(
        &self,
        params: &VideoParams,
        timeline: &Timeline,
        at: &[usize],
    ) -> Result<Vec<Vec<u8>>, GenerateError> {
        let (w, h) = (params.dimension.width, params.dimension.height);
        let mut renderer = AvatarRenderer::new(
            self.gpu.clone(),
            w,
            h,
            self.style(params)?,
            &timeline.frames.first().copied().unwrap_or_default(),
            None,
        );
        let mut out = Vec::with_capacity(at.len());
        for &i in at {
            let frame = timeline.frames.get(i).copied().unwrap_or_default();
            renderer.submit(&frame, None);
            let mut rgba = vec![0u8; renderer.frame_bytes()];
            renderer.read_oldest(&mut rgba)?;
            out.push(rgba);
        }
        Ok(out)
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
        let timeline = self.timeline(p)?;
        let style = self.style(p)?;
        let timeline_s = started.elapsed().as_secs_f64();
        if cancel.load(Ordering::Relaxed) {
            return Err(GenerateError::Cancelled);
        }

        let (w, h) = (p.dimension.width, p.dimension.height);
        let captions = if p.captions && !timeline.words.is_empty() {
            Some(
                captions::CaptionTrack::build(&timeline.words, w, h)
                    .map_err(|e| GenerateError::Media(MediaError::Pipeline(e.to_string())))?,
            )
        } else {
            None
        };
        let mut renderer = AvatarRenderer::new(
            self.gpu.clone(),
            w,
            h,
            style,
            &timeline.frames.first().copied().unwrap_or_default(),
            captions.as_ref().map(|c| c.area),
        );
        let mut shown_line: Option<usize> = None;
        let settings = EncodeSettings {
            width: w,
            height: h,
            fps: timeline.fps,
            quality: p.quality,
            audio_rate: timeline.speech.as_ref().map(|s| s.sample_rate),
            live: spec.live,
        };
        let mut writer = Mp4Writer::start(&settings, &self.encoder, &spec.output)?;
        let live_rx = writer.live.take();
        if let Some(s) = &timeline.speech
            && let Err(e) = writer.push_audio(&s.samples, s.sample_rate)
        {
            writer.abort();
            return Err(e.into());
        }

        let total = timeline.frames.len() as u64;
        let thumb_at = u64::from(timeline.fps).min(total.saturating_sub(1));
        let mut thumb: Option<Vec<u8>> = None;
        let render_start = Instant::now();
        let mut last_report = Instant::now();
        let mut done = 0u64;
        let pool = media::FramePool::new(renderer.frame_bytes());
        let busy = self.busy_ns.clone();
        let add_busy = move |d: std::time::Duration| {
            busy.fetch_add(d.as_nanos() as u64, Ordering::Relaxed);
        };
        let (mut submit_t, mut readback_t, mut encode_t) = (
            std::time::Duration::ZERO,
            std::time::Duration::ZERO,
            std::time::Duration::ZERO,
        );
        let mut drain = |renderer: &mut AvatarRenderer,
                         writer: &Mp4Writer,
                         keep: usize,
                         done: &mut u64|
         -> Result<(), GenerateError> {
            while renderer.pending() > keep {
                let mut frame = pool.get();
                let t = Instant::now();
                renderer.read_oldest(frame.as_mut())?;
                let read = t.elapsed();
                readback_t += read;
                add_busy(read);
                if *done == thumb_at {
                    thumb = Some(frame.as_ref().to_vec());
                }
                let t = Instant::now();
                writer.push_frame(frame, *done)?;
                encode_t += t.elapsed();
                *done += 1;
            }
            Ok(())
        };
        for params in &timeline.frames {
            if cancel.load(Ordering::Relaxed) {
                writer.abort();
                return Err(GenerateError::Cancelled);
            }
            let caption = captions.as_ref().and_then(|track| {
                let f = track.at(f64::from(params.time))?;
                if shown_line != Some(f.line) {
                    shown_line = Some(f.line);
                    renderer.set_caption_line(&track.lines[f.line].coverage);
                }
                Some((f.x0, f.x1))
            });
            let t = Instant::now();
            renderer.submit(params, caption);
            let sub = t.elapsed();
            submit_t += sub;
            self.busy_ns
                .fetch_add(sub.as_nanos() as u64, Ordering::Relaxed);
            if !renderer.can_submit()
                && let Err(e) = drain(&mut renderer, &writer, 1, &mut done)
            {
                writer.abort();
                return Err(e);
            }
            if let Some(rx) = &live_rx {
                while let Ok(chunk) = rx.try_recv() {
                    on_live(chunk);
                }
            }
            if last_report.elapsed() >= PROGRESS_EVERY {
                last_report = Instant::now();
                on_progress(&progress(Stage::Rendering, done, total, render_start));
            }
        }
        if let Err(e) = drain(&mut renderer, &writer, 0, &mut done) {
            writer.abort();
            return Err(e);
        }
        let render_s = render_start.elapsed().as_secs_f64();
        on_progress(&progress(Stage::Finishing, done, total, render_start));
        let finish_start = Instant::now();
        let size_bytes = writer.finish()?;
        if let Some(rx) = live_rx {
            while let Ok(chunk) = rx.recv() {
                on_live(chunk);
            }
        }
        if let (Some(path), Some(frame)) = (&spec.thumbnail, thumb) {
            media::write_thumbnail(&frame, w, h, path)?;
        }
        on_progress(&progress(Stage::Done, done, total, render_start));
        Ok(Outcome {
            frames: done,
            duration_s: done as f64 / f64::from(timeline.fps),
            size_bytes,
            encoder: self.encoder.element.to_string(),
            timeline_s,
            render_s,
            finish_s: finish_start.elapsed().as_secs_f64(),
            submit_s: submit_t.as_secs_f64(),
            readback_s: readback_t.as_secs_f64(),
            encode_s: encode_t.as_secs_f64(),
        })
    }

    /// Runs a job on its own thread.
    pub fn spawn(
        self: &Arc<Self>,
        spec: JobSpec,
        mut on_progress: impl FnMut(&Progress) + Send + 'static,
        mut on_live: impl FnMut(LiveChunk) + Send + 'static,
    ) -> JobHandle {
        let cancel = Arc::new(AtomicBool::new(false));
        let me = self.clone();
        let flag = cancel.clone();
        let thread = std::thread::Builder::new()
            .name("reelgen-job".into())
            .spawn(move || me.run(&spec, &flag, &mut on_progress, &mut on_live));
        JobHandle { cancel, thread }
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
            Ok(t) => t.join().unwrap_or_else(|_| {
                Err(GenerateError::Media(MediaError::Pipeline(
                    "job thread panicked".into(),
                )))
            }),
            Err(e) => Err(GenerateError::Media(MediaError::Pipeline(format!(
                "cannot start job thread: {e}"
            )))),
        }
    }
}
