//! One live session: what its handles share ([`Shared`]: status, the command channel, the
//! events, the queue's room and the speak rate) and a thread that owns its [`LiveTimeline`], its renderer and its streams,
//! and is the only thing that changes them. It runs in the hub style (state behind a command
//! channel, as the GPU scheduler does; not an actix actor: it blocks on the device every
//! frame and must keep real time on a thread of its own, at normal priority). Each frame
//! time it takes the commands that arrived ([`Command`]: speak, interrupt, attach a stream,
//! close), makes the next frame of the timeline, renders it (or drops its picture when it is
//! already a frame late: the sound still goes), hands it to every stream and publishes what
//! happened on it ([`SessionEvent`]). It closes itself after [`Limits::idle_timeout`] with
//! nothing said, and when asked.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;

use crate::platform::telemetry::Metrics;
use crate::render::media::EncoderChoice;
use crate::render::media::live::{LiveFormat, Outlet};
use crate::render::params::VideoParams;
use crate::render::pipeline::LiveRenderer;
use crate::render::timeline::live::{LiveEvent, LiveTimeline, Utterance};
use crate::render::timeline::voice::TtsBackend;
use crate::videos::device::Lease;

/// Characters one `speak` may carry.
pub const SPEAK_MAX_CHARS: usize = 1000;
/// Characters waiting to be said (queued and being said) per session.
pub const QUEUE_MAX_CHARS: usize = 4000;
/// `speak` requests per second per session, with a burst of [`SPEAK_BURST`].
pub const SPEAK_PER_SECOND: u32 = 5;
pub const SPEAK_BURST: u32 = 10;

/// What a session publishes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, utoipa::ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SessionEvent {
    /// An utterance's first frame: `latency_ms` from its `speak` request to that frame.
    SpeakingStarted {
        utterance_id: Uuid,
        text: String,
        frame: u64,
        latency_ms: f64,
    },
    /// A word begins on this frame (`time_s` on the session's clock).
    Word {
        utterance_id: Uuid,
        index: usize,
        text: String,
        frame: u64,
        time_s: f64,
    },
    /// The utterance is over: said to its end, or cut by an interrupt.
    SpeakingEnded {
        utterance_id: Uuid,
        interrupted: bool,
        frame: u64,
    },
    /// The session has closed (`deleted`, `idle_timeout`, `shutting_down`, …).
    Closed { reason: String },
}

/// What a session shows: its look and voice, picture size and rate (`VideoParams` with an
/// empty script).
pub type SessionSpec = VideoParams;

/// A session as its handles see it.
pub struct Shared {
    pub id: Uuid,
    pub tenant: String,
    pub params: SessionSpec,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// The audio encoder family and the voices, for the streams and utterances.
    pub encoder: EncoderChoice,
    pub voices: Arc<dyn TtsBackend>,
    commands: mpsc::Sender<Command>,
    events: tokio::sync::broadcast::Sender<SessionEvent>,
    pub speaking: AtomicBool,
    pub closed: AtomicBool,
    pub frames: AtomicU64,
    pub viewers: AtomicUsize,
    /// Interrupts so far: a speak accepted before the latest is dropped.
    pub epoch: AtomicU64,
    /// Characters of each utterance not yet said to its end.
    waiting: Mutex<HashMap<Uuid, usize>>,
    speak_rate: DefaultDirectRateLimiter,
    /// One speak prepared at a time, so utterances queue in the order they were sent.
    pub speak_order: tokio::sync::Mutex<()>,
}

impl Shared {
    /// A new session's shared side; `commands` reaches its thread.
    pub fn new(
        id: Uuid,
        tenant: &str,
        params: SessionSpec,
        encoder: EncoderChoice,
        voices: Arc<dyn TtsBackend>,
        commands: mpsc::Sender<Command>,
    ) -> Self {
        let quota = Quota::per_second(NonZeroU32::new(SPEAK_PER_SECOND).unwrap_or(NonZeroU32::MIN))
            .allow_burst(NonZeroU32::new(SPEAK_BURST).unwrap_or(NonZeroU32::MIN));
        Self {
            id,
            tenant: tenant.to_string(),
            params,
            created_at: chrono::Utc::now(),
            encoder,
            voices,
            commands,
            events: tokio::sync::broadcast::channel(256).0,
            speaking: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            frames: AtomicU64::new(0),
            viewers: AtomicUsize::new(0),
            epoch: AtomicU64::new(0),
            waiting: Mutex::default(),
            speak_rate: RateLimiter::direct(quota),
            speak_order: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends the session thread a command; `false` once it has ended.
    pub fn send(&self, cmd: Command) -> bool {
        self.commands.send(cmd).is_ok()
    }

    /// The session's events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    /// Publishes an event; returns its JSON.
    pub(super) fn publish(&self, e: &SessionEvent) -> String {
        let _ = self.events.send(e.clone());
        serde_json::to_string(e).unwrap_or_default()
    }

    /// The picture the streams carry.
    pub fn format(&self) -> LiveFormat {
        LiveFormat {
            width: self.params.dimension.width,
            height: self.params.dimension.height,
            fps: self.params.fps,
        }
    }

    /// Whether one more `speak` may come now (per-session rate).
    pub fn may_speak(&self) -> bool {
        self.speak_rate.check().is_ok()
    }

    /// Reserves room for `chars` more characters in the queue; `false` when it is full.
    pub fn reserve(&self, id: Uuid, chars: usize) -> bool {
        let mut w = self.waiting.lock();
        if w.values().sum::<usize>() + chars > QUEUE_MAX_CHARS {
            return false;
        }
        w.insert(id, chars);
        true
    }

    /// Frees an utterance's room in the queue (said, dropped or never queued).
    pub fn release(&self, id: Uuid) {
        self.waiting.lock().remove(&id);
    }

    /// Characters waiting to be said.
    pub fn queued_chars(&self) -> usize {
        self.waiting.lock().values().sum()
    }

    /// `idle`, `speaking` or `closed`.
    pub fn status(&self) -> &'static str {
        if self.closed.load(Ordering::Relaxed) {
            "closed"
        } else if self.speaking.load(Ordering::Relaxed) {
            "speaking"
        } else {
            "idle"
        }
    }
}

/// What the session thread is asked to do.
pub enum Command {
    Speak {
        utterance: Box<Utterance>,
        /// The interrupt count when it was accepted: one accepted before an interrupt the
        /// thread has seen since is dropped with the queue.
        epoch: u64,
    },
    Interrupt {
        epoch: u64,
        reply: tokio::sync::oneshot::Sender<Interrupted>,
    },
    Attach(Box<dyn Outlet>),
    Close(&'static str),
}

/// What an interrupt stopped.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Interrupted {
    /// The utterance cut (none when the avatar was idle).
    pub stopped: Option<Uuid>,
    /// Queued utterances dropped unsaid.
    pub dropped: Vec<Uuid>,
    /// The frame on which speech ended (the next one after the request arrived).
    pub frame: u64,
}

/// What a session thread starts from.
pub(super) struct Start {
    pub shared: Arc<Shared>,
    /// The device it renders on, held while it runs.
    pub lease: Lease,
    pub commands: mpsc::Receiver<Command>,
    /// Hears whether it could start (its renderer opened).
    pub ready: mpsc::SyncSender<Result<(), String>>,
    pub idle_timeout: Duration,
    pub metrics: Arc<Metrics>,
    /// Called once the thread ends, before `closed` is published.
    pub on_end: Box<dyn FnOnce() + Send>,
}

/// Runs the session until it closes.
pub(super) fn run(start: Start) {
    let Start {
        shared,
        lease,
        commands,
        ready,
        idle_timeout,
        metrics,
        on_end,
    } = start;
    let params = &shared.params;
    let fps = params.fps.max(1);
    let mut timeline = LiveTimeline::new(fps, params.seed, &params.avatar.expression);
    let rest = timeline.rest();
    let renderer = match lease.live(params, rest) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            on_end();
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let reason = Loop {
        shared: &shared,
        metrics: &metrics,
        idle_timeout,
        renderer,
        outlets: Vec::new(),
        epoch: 0,
        frame: Duration::from_secs_f64(1.0 / f64::from(fps)),
        last_spoken: Instant::now(),
    }
    .run(&mut timeline, &commands);
    // Gone from the registry before anyone hears `closed`: a client that reacts to it finds
    // the session 404 and the gauge down.
    shared.closed.store(true, Ordering::Relaxed);
    on_end();
    shared.publish(&SessionEvent::Closed {
        reason: reason.to_string(),
    });
    tracing::info!(session = %shared.id, reason, "live session closed");
}

struct Loop<'a> {
    shared: &'a Shared,
    metrics: &'a Metrics,
    idle_timeout: Duration,
    renderer: LiveRenderer<'a>,
    outlets: Vec<Box<dyn Outlet>>,
    epoch: u64,
    frame: Duration,
    last_spoken: Instant,
}

impl Loop<'_> {
    fn run(
        &mut self,
        timeline: &mut LiveTimeline,
        commands: &mpsc::Receiver<Command>,
    ) -> &'static str {
        let start = Instant::now();
        let metrics = self.metrics;
        loop {
            let index = timeline.position();
            let due = start + self.frame * u32::try_from(index).unwrap_or(u32::MAX);
            // Until the frame is due, take commands as they come.
            loop {
                let wait = due.saturating_duration_since(Instant::now());
                let cmd = if wait.is_zero() {
                    match commands.try_recv() {
                        Ok(c) => c,
                        Err(mpsc::TryRecvError::Empty) => break,
                        Err(mpsc::TryRecvError::Disconnected) => return "closed",
                    }
                } else {
                    match commands.recv_timeout(wait) {
                        Ok(c) => c,
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return "closed",
                    }
                };
                if let Some(reason) = self.handle(cmd, timeline) {
                    return reason;
                }
            }
            let frame = timeline.advance();
            let late = Instant::now().saturating_duration_since(due);
            // A frame behind already: skip this picture to catch up (its sound still goes).
            let picture = if late >= self.frame {
                metrics.session_frames_dropped_total.inc();
                None
            } else {
                match self.renderer.render(frame.params) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        tracing::warn!(session = %self.shared.id, error = %e, "live frame failed");
                        return "render_failed";
                    }
                }
            };
            if picture.is_some() {
                metrics.session_frames_total.inc();
                if Instant::now() > due + self.frame {
                    metrics.session_frames_late_total.inc();
                }
            }
            self.outlets.retain_mut(|o| {
                !o.closed() && o.push(picture.as_ref(), &frame.audio, frame.index).is_ok()
            });
            for e in frame.events {
                let event = match e {
                    LiveEvent::Started { id, text, waited } => {
                        metrics
                            .session_speak_latency_seconds
                            .observe(waited.as_secs_f64());
                        self.shared.speaking.store(true, Ordering::Relaxed);
                        SessionEvent::SpeakingStarted {
                            utterance_id: id,
                            text,
                            frame: frame.index,
                            latency_ms: waited.as_secs_f64() * 1000.0,
                        }
                    }
                    LiveEvent::Word { id, index, text } => SessionEvent::Word {
                        utterance_id: id,
                        index,
                        text,
                        frame: frame.index,
                        time_s: frame.index as f64 * self.frame.as_secs_f64(),
                    },
                    LiveEvent::Ended { id, interrupted } => {
                        self.shared.release(id);
                        SessionEvent::SpeakingEnded {
                            utterance_id: id,
                            interrupted,
                            frame: frame.index,
                        }
                    }
                };
                let json = self.shared.publish(&event);
                for o in &mut self.outlets {
                    o.message(&json);
                }
            }
            if !timeline.speaking() {
                self.shared.speaking.store(false, Ordering::Relaxed);
                if timeline.queued().next().is_none()
                    && self.last_spoken.elapsed() >= self.idle_timeout
                {
                    return "idle_timeout";
                }
            } else {
                self.last_spoken = Instant::now();
            }
            self.shared
                .viewers
                .store(self.outlets.len(), Ordering::Relaxed);
            self.shared.frames.store(frame.index + 1, Ordering::Relaxed);
        }
    }

    /// Carries out one command; `Some(reason)` ends the session.
    fn handle(&mut self, cmd: Command, timeline: &mut LiveTimeline) -> Option<&'static str> {
        match cmd {
            Command::Speak { utterance, epoch } => {
                if epoch == self.epoch {
                    self.last_spoken = Instant::now();
                    timeline.push(*utterance);
                } else {
                    self.shared.release(utterance.id);
                }
            }
            Command::Interrupt { epoch, reply } => {
                self.epoch = epoch;
                let (stopped, dropped) = timeline.interrupt();
                for id in &dropped {
                    self.shared.release(*id);
                }
                let _ = reply.send(Interrupted {
                    stopped,
                    dropped,
                    frame: timeline.position(),
                });
            }
            Command::Attach(outlet) => self.outlets.push(outlet),
            Command::Close(reason) => return Some(reason),
        }
        None
    }
}
