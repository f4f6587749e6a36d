//! Video events: the [`EventBus`] seam and the in-process [`Hub`] behind it.
//!
//! The bus is where events are published (status, progress, terminal, and the live fMP4
//! preview: init segment retained for late joiners, then fragments) and where a process's
//! WebSocket sessions subscribe. Subscribing is always local — each process fans out to its
//! own sockets from its hub — so a distributed backend only changes where a publish goes
//! before it reaches every process's hub. Today's one backend is local: a publish goes
//! straight to this process's hub. It is an enum of backends for the reasons given in
//! `videos::queue`.
//!
//! The hub: per-video broadcast of what the WebSocket clients see (SPEC §4). Only the
//! [`super::lifecycle`] publishes state changes (and the pipeline the preview fragments); each WebSocket session subscribes to its
//! video. Channels are bounded: a slow subscriber misses intermediate `progress` messages
//! (it is told it lagged and reads on from the newest), never slows the publisher or others.
//! Channels of videos nobody watches are dropped when their terminal event is published.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::broadcast;
use uuid::Uuid;

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
            Self::Local(hub) => hub,
        }
    }

    pub fn publish(&self, id: Uuid, event: VideoEvent) {
        match self {
            Self::Local(hub) => hub.publish(id, event),
        }
    }

    /// The init segment of a video's live stream (kept for late joiners).
    pub fn publish_init(&self, id: Uuid, data: bytes::Bytes, mime: String) {
        match self {
            Self::Local(hub) => hub.publish_init(id, data, mime),
        }
    }

    /// One media fragment of the live stream (called from a generation thread).
    pub fn publish_fragment(&self, id: Uuid, data: bytes::Bytes) {
        match self {
            Self::Local(hub) => hub.publish_fragment(id, data),
        }
    }

    pub fn subscribe(&self, id: Uuid) -> broadcast::Receiver<VideoEvent> {
        self.hub().subscribe(id)
    }

    /// See [`Hub::subscribe_live`].
    pub fn subscribe_live(&self, id: Uuid) -> LiveSubscription {
        self.hub().subscribe_live(id)
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
