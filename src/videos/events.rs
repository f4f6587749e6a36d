//! Video events: the [`EventBus`] seam and the in-process [`Hub`] behind it.
//!
//! The bus is where events are published (status, progress, terminal, and the live fMP4
//! preview: init segment retained for late joiners, then fragments) and where a process's
//! WebSocket sessions subscribe. Subscribing is always local — each process fans out to its
//! own sockets from its hub — so a backend only changes where a publish goes before it
//! reaches every process's hub. It is an enum of backends for the reasons given in
//! `videos::queue`:
//! - [`EventBus::Local`]: a publish goes straight to this process's hub.
//! - [`EventBus::Cluster`]: a publish goes to Redis (in publish order, through one outbound
//!   task, so the generation thread never waits on the network), and each process's inbound
//!   task hands what arrives to its hub — its own publishes included. The init segment is
//!   also kept in Redis for an hour, so a viewer who joins on a replica that started after
//!   it was cut still gets it. When Redis does not take a publish, this process's hub gets it
//!   directly (its own viewers never miss a terminal event).
//!
//! The hub: per-video broadcast of what the WebSocket clients see (SPEC §4). Only the
//! [`super::lifecycle`] publishes state changes (and the pipeline the preview fragments); each WebSocket session subscribes to its
//! video. Channels are bounded: a slow subscriber misses intermediate `progress` messages
//! (it is told it lagged and reads on from the newest), never slows the publisher or others.
//! Channels of videos nobody watches are dropped when their terminal event is published.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc};
use uuid::Uuid;

use crate::platform::redis::{Redis, channel};
use crate::platform::task::Task;

pub use super::model::VideoEvent;

const CAPACITY: usize = 64;

/// A preview subscription: the init segment and its MIME type when known yet, and the
/// fragments from now on.
pub type LiveSubscription = (
    Option<(bytes::Bytes, String)>,
    broadcast::Receiver<bytes::Bytes>,
);

/// The live fMP4 stream of one rendering video: its init segment (kept for late joiners)
/// and a bounded broadcast of media fragments, each starting on a key frame.
struct Live {
    init: Option<(bytes::Bytes, String)>,
    fragments: broadcast::Sender<bytes::Bytes>,
}

const LIVE_CAPACITY: usize = 8;

#[derive(Clone, Default)]
pub struct Hub {
    channels: Arc<Mutex<HashMap<Uuid, broadcast::Sender<VideoEvent>>>>,
    live: Arc<Mutex<HashMap<Uuid, Live>>>,
}

impl Hub {
    pub fn subscribe(&self, id: Uuid) -> broadcast::Receiver<VideoEvent> {
        self.channels
            .lock()
            .entry(id)
            .or_insert_with(|| broadcast::channel(CAPACITY).0)
            .subscribe()
    }

    /// The preview of a video: its init segment and MIME type when known yet, and the
    /// fragments from now on. A viewer that falls behind skips to newer fragments.
    pub fn subscribe_live(&self, id: Uuid) -> LiveSubscription {
        let mut live = self.live.lock();
        let entry = live.entry(id).or_insert_with(|| Live {
            init: None,
            fragments: broadcast::channel(LIVE_CAPACITY).0,
        });
        (entry.init.clone(), entry.fragments.subscribe())
    }

    /// The init segment of a video's live stream (sent first to every viewer).
    pub fn publish_init(&self, id: Uuid, data: bytes::Bytes, mime: String) {
        let mut live = self.live.lock();
        let entry = live.entry(id).or_insert_with(|| Live {
            init: None,
            fragments: broadcast::channel(LIVE_CAPACITY).0,
        });
        entry.init = Some((data.clone(), mime.clone()));
        drop(live);
        self.publish(id, VideoEvent::Preview { mime, init: data });
    }

    /// Called from a generation (low-priority) thread: the lock is held only to clone the
    /// sender, never while waking viewers, so the API's threads never wait on this one.
    pub fn publish_fragment(&self, id: Uuid, data: bytes::Bytes) {
        let tx = self.live.lock().get(&id).map(|l| l.fragments.clone());
        if let Some(tx) = tx {
            let _ = tx.send(data);
        }
    }

    pub fn publish(&self, id: Uuid, event: VideoEvent) {
        let terminal = event.is_terminal();
        if terminal {
            self.live.lock().remove(&id);
        }
        // Sent outside the lock (see `publish_fragment`); a terminal event closes the channel.
        let tx = {
            let mut channels = self.channels.lock();
            if terminal {
                channels.remove(&id)
            } else {
                channels.get(&id).cloned()
            }
        };
        if let Some(tx) = tx {
            let _ = tx.send(event);
        }
    }

    /// Drops a video's channels when nobody listens any more (a session ended, or its job did).
    pub fn release(&self, id: Uuid) {
        let mut channels = self.channels.lock();
        if channels.get(&id).is_some_and(|tx| tx.receiver_count() == 0) {
            channels.remove(&id);
        }
        drop(channels);
        let mut live = self.live.lock();
        if live
            .get(&id)
            .is_some_and(|l| l.fragments.receiver_count() == 0)
        {
            live.remove(&id);
        }
    }

    /// Sessions subscribed to one video's events now.
    pub fn watchers(&self, id: Uuid) -> usize {
        self.channels
            .lock()
            .get(&id)
            .map_or(0, broadcast::Sender::receiver_count)
    }

    /// Videos with a channel (someone subscribed since the last terminal event).
    pub fn watched(&self) -> usize {
        self.channels.lock().len()
    }
}

/// The seam through which video events are published and subscribed (see the module doc).
#[derive(Clone)]
pub enum EventBus {
    /// One process: a publish reaches this process's hub directly.
    Local(Hub),
    /// Processes sharing Redis (see the module doc).
    Cluster {
        hub: Hub,
        redis: Redis,
        out: mpsc::UnboundedSender<(Uuid, Outbound)>,
    },
}

/// What a process sends to the others.
pub enum Outbound {
    Event(VideoEvent),
    Init { mime: String, data: bytes::Bytes },
    Fragment(bytes::Bytes),
}

/// How long a live preview's init segment stays in Redis for late joiners.
const INIT_TTL: std::time::Duration = std::time::Duration::from_secs(3600);
const KIND_INIT: u8 = 0;
const KIND_FRAGMENT: u8 = 1;

fn init_key(id: Uuid) -> String {
    format!("reelgen:preview:init:{id}")
}

/// `[kind][16-byte id][body]`; an init's body is `[u16 BE mime length][mime][data]`.
fn encode_preview(kind: u8, id: Uuid, body: &[&[u8]]) -> bytes::Bytes {
    let len = 17 + body.iter().map(|b| b.len()).sum::<usize>();
    let mut buf = Vec::with_capacity(len);
    buf.push(kind);
    buf.extend_from_slice(id.as_bytes());
    for b in body {
        buf.extend_from_slice(b);
    }
    buf.into()
}

fn encode_init_body(mime: &str, data: &[u8]) -> Vec<u8> {
    let mime = &mime.as_bytes()[..mime.len().min(u16::MAX as usize)];
    let mut body = Vec::with_capacity(2 + mime.len() + data.len());
    body.extend_from_slice(&(mime.len() as u16).to_be_bytes());
    body.extend_from_slice(mime);
    body.extend_from_slice(data);
    body
}

fn decode_init_body(body: &bytes::Bytes) -> Option<(bytes::Bytes, String)> {
    let n = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    let mime = std::str::from_utf8(body.get(2..2 + n)?).ok()?.to_string();
    Some((body.slice(2 + n..), mime))
}

#[derive(serde::Serialize, serde::Deserialize)]
struct WireEvent {
    id: Uuid,
    event: VideoEvent,
}

impl EventBus {
    /// A bus shared with the other processes through `redis`, and its two tasks (outbound
    /// publishes in order; inbound messages to this process's hub).
    pub fn cluster(redis: Redis) -> (Self, Vec<Task>) {
        let hub = Hub::default();
        let (out, mut rx) = mpsc::unbounded_channel::<(Uuid, Outbound)>();
        let (r, local) = (redis.clone(), hub.clone());
        let outbound = Task::spawn("cluster events out", async move {
            while let Some((id, item)) = rx.recv().await {
                let sent = match &item {
                    Outbound::Event(event) => {
                        let wire = serde_json::to_vec(&WireEvent {
                            id,
                            event: event.clone(),
                        })
                        .unwrap_or_default();
                        r.publish(channel::EVENTS, wire.into()).await
                    }
                    Outbound::Init { mime, data } => {
                        let body = encode_init_body(mime, data);
                        r.set_ex(&init_key(id), body.clone().into(), INIT_TTL).await;
                        r.publish(channel::PREVIEW, encode_preview(KIND_INIT, id, &[&body]))
                            .await
                    }
                    Outbound::Fragment(data) => {
                        r.publish(channel::PREVIEW, encode_preview(KIND_FRAGMENT, id, &[data]))
                            .await
                    }
                };
                if !sent {
                    deliver(&local, id, item);
                }
            }
        });
        let mut messages = redis.messages();
        let local = hub.clone();
        let inbound = Task::spawn("cluster events in", async move {
            loop {
                let m = match messages.recv().await {
                    Ok(m) => m,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "cluster events lagged");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                };
                if m.channel == channel::EVENTS {
                    if let Ok(w) = serde_json::from_slice::<WireEvent>(&m.payload) {
                        local.publish(w.id, w.event);
                    }
                } else if m.channel == channel::PREVIEW && m.payload.len() >= 17 {
                    let Ok(id) = Uuid::from_slice(&m.payload[1..17]) else {
                        continue;
                    };
                    let body = m.payload.slice(17..);
                    match m.payload[0] {
                        KIND_INIT => {
                            if let Some((data, mime)) = decode_init_body(&body) {
                                local.publish_init(id, data, mime);
                            }
                        }
                        KIND_FRAGMENT => local.publish_fragment(id, body),
                        _ => {}
                    }
                }
            }
        });
        (Self::Cluster { hub, redis, out }, vec![outbound, inbound])
    }
}

/// Straight to this process's hub.
fn deliver(hub: &Hub, id: Uuid, item: Outbound) {
    match item {
        Outbound::Event(event) => hub.publish(id, event),
        Outbound::Init { mime, data } => hub.publish_init(id, data, mime),
        Outbound::Fragment(data) => hub.publish_fragment(id, data),
    }
}

impl Default for EventBus {
    fn default() -> Self {
        Self::Local(Hub::default())
    }
}

impl EventBus {
    /// This process's hub: what its WebSocket sessions read.
    fn hub(&self) -> &Hub {
        match self {
            Self::Local(hub) | Self::Cluster { hub, .. } => hub,
        }
    }

    fn send(&self, id: Uuid, item: Outbound) {
        match self {
            Self::Local(hub) => deliver(hub, id, item),
            Self::Cluster { hub, out, .. } => {
                if let Err(mpsc::error::SendError((id, item))) = out.send((id, item)) {
                    deliver(hub, id, item);
                }
            }
        }
    }

    pub fn publish(&self, id: Uuid, event: VideoEvent) {
        self.send(id, Outbound::Event(event));
    }

    /// The init segment of a video's live stream (kept for late joiners).
    pub fn publish_init(&self, id: Uuid, data: bytes::Bytes, mime: String) {
        self.send(id, Outbound::Init { mime, data });
    }

    /// One media fragment of the live stream (called from a generation thread).
    pub fn publish_fragment(&self, id: Uuid, data: bytes::Bytes) {
        self.send(id, Outbound::Fragment(data));
    }

    pub fn subscribe(&self, id: Uuid) -> broadcast::Receiver<VideoEvent> {
        self.hub().subscribe(id)
    }

    /// See [`Hub::subscribe_live`]; in a cluster, an init segment this process has not seen
    /// is read from Redis.
    pub async fn subscribe_live(&self, id: Uuid) -> LiveSubscription {
        let (init, fragments) = self.hub().subscribe_live(id);
        if init.is_some() {
            return (init, fragments);
        }
        let Self::Cluster { redis, .. } = self else {
            return (init, fragments);
        };
        let stored = redis
            .get(&init_key(id))
            .await
            .and_then(|body| decode_init_body(&body));
        (stored, fragments)
    }

    /// See [`Hub::release`].
    pub fn release(&self, id: Uuid) {
        self.hub().release(id);
    }

    /// Sessions of this process subscribed to one video's events now.
    pub fn watchers(&self, id: Uuid) -> usize {
        self.hub().watchers(id)
    }

    /// Videos with a channel in this process.
    pub fn watched(&self) -> usize {
        self.hub().watched()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn subscribers_get_events_in_order_and_terminal_closes_the_channel() {
        let hub = Hub::default();
        let id = Uuid::now_v7();
        let mut rx = hub.subscribe(id);
        hub.publish(
            id,
            VideoEvent::Status {
                status: crate::videos::model::VideoStatus::Rendering,
                queue_position: None,
            },
        );
        hub.publish(id, VideoEvent::Cancelled);
        assert_eq!(
            rx.recv().await.ok(),
            Some(VideoEvent::Status {
                status: crate::videos::model::VideoStatus::Rendering,
                queue_position: None
            })
        );
        assert_eq!(rx.recv().await.ok(), Some(VideoEvent::Cancelled));
        assert_eq!(hub.watched(), 0);
        let json = serde_json::to_value(VideoEvent::Cancelled).expect("json");
        assert_eq!(json, serde_json::json!({"type": "cancelled"}));
    }
}
