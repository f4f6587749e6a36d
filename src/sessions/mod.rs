//! Live avatar sessions (SPEC §10): an avatar that speaks what it is sent, streamed as it is
//! rendered. [`Sessions`] is the one owner of which sessions exist in this process: it opens
//! them (at most `MAX_SESSIONS`, 429 beyond), finds them for their tenant only (another
//! tenant's is 404, as videos are), and forgets each when its thread ends. A session's own
//! state — timeline, queue, renderer, streams — belongs to its thread ([`session`]); the
//! handles here only send it commands and read what it publishes (status, [`SessionEvent`]s
//! on a broadcast channel for the WebSocket and the WebRTC data channel).
//!
//! Sessions render on a device of their own, opened at normal priority on the first session
//! and closed after `DEVICE_IDLE_RELEASE` without one; batch videos render on the worker's
//! device from lowered threads, so a backlog of videos yields the CPU to a live avatar
//! instead of making it stutter. Sessions live in the process that opened them (a load
//! balancer in front of several replicas routes a session's requests by its id).

pub mod session;

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use serde_json::Value;
use uuid::Uuid;

use crate::platform::error::FieldError;
use crate::platform::telemetry::Metrics;
use crate::render::assets::Catalog;
use crate::render::media::EncoderChoice;
use crate::render::media::live::LiveFormat;
use crate::render::media::webrtc::IceServers;
use crate::render::params::VideoParams;
use crate::render::timeline::voice::TtsBackend;
use crate::videos::device::OnDemand;
pub use session::{Command, Interrupted};

/// Largest live picture.
pub const MAX_WIDTH: u32 = 1280;
pub const MAX_HEIGHT: u32 = 720;
pub const FPS_RANGE: (u32, u32) = (5, 30);
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

/// How sessions are limited.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_sessions: usize,
    pub idle_timeout: Duration,
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
    /// Sends the session thread a command; `false` once it has ended.
    pub fn send(&self, cmd: Command) -> bool {
        self.commands.send(cmd).is_ok()
    }

    /// The session's events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SessionEvent> {
        self.events.subscribe()
    }

    /// Publishes an event; returns its JSON.
    fn publish(&self, e: &SessionEvent) -> String {
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

/// The sessions of this process.
pub struct Registry {
    sessions: Mutex<HashMap<Uuid, Arc<Shared>>>,
    pub limits: Limits,
    pub metrics: Arc<Metrics>,
    pub ice: IceServers,
    device: Arc<OnDemand>,
}

impl Registry {
    fn forget(&self, id: Uuid) {
        if self.sessions.lock().remove(&id).is_some() {
            self.metrics.sessions_open.dec();
        }
    }
}

/// Why a session could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("this server runs at most {0} live sessions at once")]
    Full(usize),
    #[error("no render device for live sessions: {0}")]
    Device(String),
}

#[derive(Clone)]
pub struct Sessions {
    registry: Arc<Registry>,
}

impl Sessions {
    pub fn new(
        device: Arc<OnDemand>,
        limits: Limits,
        metrics: Arc<Metrics>,
        ice: IceServers,
    ) -> Self {
        Self {
            registry: Arc::new(Registry {
                sessions: Mutex::default(),
                limits,
                metrics,
                ice,
                device,
            }),
        }
    }

    /// The ICE servers the peers use.
    pub fn ice(&self) -> &IceServers {
        &self.registry.ice
    }

    /// Opens a session for `tenant` (blocking: the device may open and the look renders;
    /// call it off the async workers). Returns once its first frame can be made.
    pub fn open(&self, tenant: &str, params: SessionSpec) -> Result<Arc<Shared>, OpenError> {
        let r = &self.registry;
        let id = Uuid::now_v7();
        let (tx, rx) = mpsc::channel();
        {
            let mut all = r.sessions.lock();
            if all.len() >= r.limits.max_sessions {
                return Err(OpenError::Full(r.limits.max_sessions));
            }
            // Held in the count from here, so two opens at the limit cannot both pass.
            let lease = match r.device.acquire() {
                Ok(l) => l,
                Err(e) => return Err(OpenError::Device(e.to_string())),
            };
            let quota =
                Quota::per_second(NonZeroU32::new(SPEAK_PER_SECOND).unwrap_or(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::new(SPEAK_BURST).unwrap_or(NonZeroU32::MIN));
            let shared = Arc::new(Shared {
                id,
                tenant: tenant.to_string(),
                params,
                created_at: chrono::Utc::now(),
                encoder: lease.encoder().clone(),
                voices: lease.voices(),
                commands: tx,
                events: tokio::sync::broadcast::channel(256).0,
                speaking: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                frames: AtomicU64::new(0),
                viewers: AtomicUsize::new(0),
                epoch: AtomicU64::new(0),
                waiting: Mutex::default(),
                speak_rate: RateLimiter::direct(quota),
                speak_order: tokio::sync::Mutex::new(()),
            });
            all.insert(id, shared.clone());
            r.metrics.sessions_open.inc();
            let (ready_tx, ready_rx) = mpsc::sync_channel(1);
            let (me, registry) = (shared.clone(), r.clone());
            let spawned = std::thread::Builder::new()
                .name("reelgen-session".into())
                .spawn(move || session::run(me, registry, lease, rx, ready_tx));
            if let Err(e) = spawned {
                all.remove(&id);
                r.metrics.sessions_open.dec();
                return Err(OpenError::Device(format!("no session thread: {e}")));
            }
            drop(all);
            match ready_rx.recv() {
                Ok(Ok(())) => Ok(shared),
                Ok(Err(e)) => Err(OpenError::Device(e)),
                Err(_) => Err(OpenError::Device("the session thread ended".into())),
            }
        }
    }

    /// The session `id` of `tenant` (another tenant's is none of theirs).
    pub fn get(&self, tenant: &str, id: Uuid) -> Option<Arc<Shared>> {
        self.registry
            .sessions
            .lock()
            .get(&id)
            .filter(|s| s.tenant == tenant)
            .cloned()
    }

    /// The tenant's open sessions, oldest first.
    pub fn list(&self, tenant: &str) -> Vec<Arc<Shared>> {
        let mut all: Vec<Arc<Shared>> = self
            .registry
            .sessions
            .lock()
            .values()
            .filter(|s| s.tenant == tenant)
            .cloned()
            .collect();
        all.sort_by_key(|s| s.id);
        all
    }

    /// Sessions open in this process.
    pub fn count(&self) -> usize {
        self.registry.sessions.lock().len()
    }

    /// Closes a session now: it is gone from the registry at once (a `GET` is 404), and its
    /// thread ends its streams and publishes `closed` with `reason`.
    pub fn close(&self, id: Uuid, reason: &'static str) {
        let gone = self.registry.sessions.lock().remove(&id);
        if let Some(s) = gone {
            self.registry.metrics.sessions_open.dec();
            s.send(Command::Close(reason));
        }
    }

    /// Closes every session (the process is stopping).
    pub fn close_all(&self, reason: &'static str) {
        let all: Vec<Arc<Shared>> = self.registry.sessions.lock().values().cloned().collect();
        for s in all {
            s.send(Command::Close(reason));
        }
    }
}

/// The fields of a session request.
const FIELDS: &[&str] = &["avatar", "voice", "background", "dimension", "fps"];

/// Validates a session request (SPEC §10) with the video request's own rules for the look,
/// voice and background, and the live limits for size (≤ 1280×720, default 640×360) and
/// rate (5–30 fps, default 25).
pub fn parse_request(body: &Value, catalog: &Catalog) -> Result<SessionSpec, Vec<FieldError>> {
    let Some(obj) = body.as_object() else {
        return Err(vec![FieldError::new(
            "body",
            "invalid_body",
            "must be a JSON object",
        )]);
    };
    let mut errors: Vec<FieldError> = obj
        .keys()
        .filter(|k| !FIELDS.contains(&k.as_str()))
        .map(|k| {
            FieldError::new(
                k.clone(),
                "unknown_field",
                format!("unknown field; allowed: {}", FIELDS.join(", ")),
            )
        })
        .collect();
    let mut video = serde_json::Map::new();
    video.insert("script".into(), Value::from("Live session."));
    for k in FIELDS {
        if let Some(v) = obj.get(*k).filter(|v| !v.is_null()) {
            video.insert((*k).into(), v.clone());
        }
    }
    video
        .entry("dimension")
        .or_insert_with(|| serde_json::json!({"width": 640, "height": 360}));
    video.entry("fps").or_insert_with(|| Value::from(25));
    let seed = rand::random::<u64>() & crate::videos::request::SEED_MAX;
    let mut params =
        match crate::videos::request::parse_video_request(&Value::Object(video), catalog, "", seed)
        {
            Ok(p) => p,
            Err(e) => {
                errors.extend(e);
                return Err(errors);
            }
        };
    let d = params.dimension;
    if d.width > MAX_WIDTH || d.height > MAX_HEIGHT {
        errors.push(FieldError::new(
            "dimension",
            "invalid_dimension",
            format!("a live picture is at most {MAX_WIDTH}×{MAX_HEIGHT}"),
        ));
    }
    if !(FPS_RANGE.0..=FPS_RANGE.1).contains(&params.fps) {
        errors.push(FieldError::new(
            "fps",
            "invalid_fps",
            format!(
                "must be between {} and {} for a live session",
                FPS_RANGE.0, FPS_RANGE.1
            ),
        ));
    }
    if params.voice.is_none() {
        errors.push(FieldError::new(
            "voice",
            "invalid_voice",
            "a live session needs a voice",
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    params.script.clear();
    params.title = "Live session".into();
    Ok(params)
}

/// Checks a `speak` text: present, at most [`SPEAK_MAX_CHARS`], valid script markup.
pub fn check_text(text: &str) -> Result<(), FieldError> {
    let chars = text.chars().count();
    if text.trim().is_empty() {
        return Err(FieldError::new(
            "text",
            "invalid_text",
            "is required and must say something",
        ));
    }
    if chars > SPEAK_MAX_CHARS {
        return Err(FieldError::new(
            "text",
            "invalid_text",
            format!("at most {SPEAK_MAX_CHARS} characters per speak ({chars} sent)"),
        ));
    }
    crate::render::timeline::text::parse(text)
        .map(|_| ())
        .map_err(|e| FieldError::new("text", "invalid_script", e.to_string()))
}
