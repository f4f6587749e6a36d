//! The one WebSocket session runner both sockets use (video events, alerts): it answers the
//! client's pings, sends a ping every heartbeat and ends a session whose client has been
//! silent past the timeout, ends on the client's close or a broken connection, and closes
//! with 1001 (going away) when the server starts to stop. A socket's own loop selects on
//! [`Socket::upkeep`] next to its event sources and sends through [`Socket::text`] and
//! [`Socket::binary`]; when the loop ends, [`Socket::close`] says goodbye with 1000.

use std::time::{Duration, Instant};

use actix_ws::{CloseCode, CloseReason, Message, MessageStream, Session};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::Interval;

use crate::platform::error::ApiError;
use crate::platform::shutdown::stopping;

/// Largest frame a client may send (it only sends pings and closes).
const MAX_INCOMING_FRAME: usize = 64 * 1024;

/// What one round of upkeep decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upkeep {
    /// Nothing to do: the connection is alive.
    Alive,
    /// The session is over (client gone, timed out, or the server stopping; already closed
    /// where a close was due): return without sending more.
    Ended,
}

pub struct Socket {
    session: Session,
    incoming: actix_ws::MessageStream,
    heartbeat: Interval,
    client_timeout: Duration,
    last_seen: Instant,
    stop: watch::Receiver<bool>,
}

impl Socket {
    /// Answers the handshake (101) and makes the session; a handshake actix refuses is 400.
    /// `stop` fires when the process starts to stop (see `platform::shutdown`).
    pub fn upgrade(
        req: &actix_web::HttpRequest,
        body: actix_web::web::Payload,
        stop: watch::Receiver<bool>,
        heartbeat: Duration,
        client_timeout: Duration,
    ) -> Result<(actix_web::HttpResponse, Self), ApiError> {
        let (response, session, incoming) =
            actix_ws::handle(req, body).map_err(|e| ApiError::BadHandshake(e.to_string()))?;
        Ok((
            response,
            Self::new(session, incoming, stop, heartbeat, client_timeout),
        ))
    }

    fn new(
        session: Session,
        incoming: MessageStream,
        stop: watch::Receiver<bool>,
        heartbeat: Duration,
        client_timeout: Duration,
    ) -> Self {
        Self {
            session,
            incoming: incoming.max_frame_size(MAX_INCOMING_FRAME),
            heartbeat: tokio::time::interval(heartbeat),
            client_timeout,
            last_seen: Instant::now(),
            stop,
        }
    }

    /// Waits for the next thing the connection itself needs (a client frame, a heartbeat,
    /// the shutdown signal) and handles it.
    pub async fn upkeep(&mut self) -> Upkeep {
        tokio::select! {
            msg = self.incoming.next() => match msg {
                Some(Ok(Message::Ping(bytes))) => {
                    self.last_seen = Instant::now();
                    if self.session.pong(&bytes).await.is_err() {
                        return Upkeep::Ended;
                    }
                    Upkeep::Alive
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Upkeep::Ended,
                Some(Ok(_)) => {
                    self.last_seen = Instant::now();
                    Upkeep::Alive
                }
            },
            _ = self.heartbeat.tick() => {
                if self.last_seen.elapsed() > self.client_timeout
                    || self.session.ping(b"").await.is_err()
                {
                    return Upkeep::Ended;
                }
                Upkeep::Alive
            }
            () = stopping(&mut self.stop) => {
                let _ = self.session.clone().close(Some(CloseReason::from(CloseCode::Away))).await;
                Upkeep::Ended
            }
        }
    }

    /// Sends a text frame; `false` when the connection is gone.
    pub async fn text(&mut self, text: String) -> bool {
        self.session.text(text).await.is_ok()
    }

    /// Sends a binary frame; `false` when the connection is gone.
    pub async fn binary(&mut self, data: bytes::Bytes) -> bool {
        self.session.binary(data).await.is_ok()
    }

    /// Ends the session normally (1000).
    pub async fn close(self) {
        let _ = self
            .session
            .close(Some(CloseReason::from(CloseCode::Normal)))
            .await;
    }
}
