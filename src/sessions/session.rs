//! One live session: a thread that owns its [`LiveTimeline`], its renderer and its streams,
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

use super::{Registry, SessionEvent, Shared};
use crate::render::media::live::Outlet;
use crate::render::pipeline::LiveRenderer;
use crate::render::timeline::live::{LiveEvent, LiveTimeline, Utterance};
use crate::videos::device::Lease;

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

/// Runs the session until it closes; `ready` hears whether it could start.
pub(super) fn run(
    shared: Arc<Shared>,
    registry: Arc<Registry>,
    lease: Lease,
    commands: mpsc::Receiver<Command>,
    ready: mpsc::SyncSender<Result<(), String>>,
) {
    let params = &shared.params;
    let fps = params.fps.max(1);
    let mut timeline = LiveTimeline::new(fps, params.seed, &params.avatar.expression);
    let rest = timeline.rest();
    let renderer = match lease.live(params, rest) {
        Ok(r) => r,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            registry.forget(shared.id);
            return;
        }
    };
    let _ = ready.send(Ok(()));
    let reason = Loop {
        shared: &shared,
        registry: &registry,
        renderer,
        outlets: Vec::new(),
        epoch: 0,
        frame: Duration::from_secs_f64(1.0 / f64::from(fps)),
        last_spoken: Instant::now(),
    }
    .run(&mut timeline, &commands);
    shared.publish(&SessionEvent::Closed {
        reason: reason.to_string(),
    });
    shared.closed.store(true, Ordering::Relaxed);
    registry.forget(shared.id);
    tracing::info!(session = %shared.id, reason, "live session closed");
}

struct Loop<'a> {
    shared: &'a Shared,
    registry: &'a Registry,
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
        let metrics = &self.registry.metrics;
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
                    && self.last_spoken.elapsed() >= self.registry.limits.idle_timeout
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
