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
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use uuid::Uuid;

use crate::platform::error::FieldError;
use crate::platform::telemetry::Metrics;
use crate::render::assets::Catalog;
use crate::render::media::webrtc::IceServers;
use crate::videos::device::OnDemand;
pub use session::{
    Command, Interrupted, QUEUE_MAX_CHARS, SPEAK_BURST, SPEAK_MAX_CHARS, SPEAK_PER_SECOND,
    SessionEvent, SessionSpec, Shared,
};

/// Largest live picture.
pub const MAX_WIDTH: u32 = 1280;
pub const MAX_HEIGHT: u32 = 720;
pub const FPS_RANGE: (u32, u32) = (5, 30);
/// How sessions are limited.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_sessions: usize,
    pub idle_timeout: Duration,
}

/// The sessions of this process.
struct Registry {
    sessions: Mutex<HashMap<Uuid, Arc<Shared>>>,
    limits: Limits,
    metrics: Arc<Metrics>,
    ice: IceServers,
    device: Arc<OnDemand>,
    /// Sessions being opened (counted against the limit).
    opening: AtomicUsize,
}

impl Registry {
    /// A session has ended (or never started): it is no longer one of ours.
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
                opening: AtomicUsize::new(0),
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
        {
            // A place is taken before the device opens, so two opens at the limit cannot both
            // pass; it is given back if the open fails.
            let all = r.sessions.lock();
            let opening = r.opening.load(Ordering::Relaxed);
            if all.len() + opening >= r.limits.max_sessions {
                return Err(OpenError::Full(r.limits.max_sessions));
            }
            r.opening.fetch_add(1, Ordering::Relaxed);
        }
        let opened = self.start(tenant, params);
        r.opening.fetch_sub(1, Ordering::Relaxed);
        opened
    }

    fn start(&self, tenant: &str, params: SessionSpec) -> Result<Arc<Shared>, OpenError> {
        let r = &self.registry;
        let lease = r
            .device
            .acquire()
            .map_err(|e| OpenError::Device(e.to_string()))?;
        let id = Uuid::now_v7();
        let (tx, rx) = mpsc::channel();
        let shared = Arc::new(Shared::new(
            id,
            tenant,
            params,
            lease.encoder().clone(),
            lease.voices(),
            tx,
        ));
        r.sessions.lock().insert(id, shared.clone());
        r.metrics.sessions_open.inc();
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let registry = r.clone();
        let start = session::Start {
            shared: shared.clone(),
            lease,
            commands: rx,
            ready: ready_tx,
            idle_timeout: r.limits.idle_timeout,
            metrics: r.metrics.clone(),
            on_end: Box::new(move || registry.forget(id)),
        };
        let spawned = std::thread::Builder::new()
            .name("reelgen-session".into())
            .spawn(move || session::run(start));
        if let Err(e) = spawned {
            r.forget(id);
            return Err(OpenError::Device(format!("no session thread: {e}")));
        }
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(shared),
            Ok(Err(e)) => Err(OpenError::Device(e)),
            Err(_) => Err(OpenError::Device("the session thread ended".into())),
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
