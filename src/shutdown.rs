//! Graceful shutdown of `serve`: owns the process-wide "we are stopping" signal and the order
//! of the steps taken on SIGTERM (or Ctrl-C).
//!
//! 1. Stop accepting connections; requests in flight finish (actix's graceful stop).
//! 2. Every WebSocket session sees [`Shutdown`] fire and closes with 1001 (going away).
//! 3. The embedded worker claims nothing more; running renders go on for `SHUTDOWN_GRACE`,
//!    then whatever still runs is stopped within a frame and handed back to the queue
//!    (it finishes after the restart, its attempt not counted).
//! 4. Webhook deliveries that are due are sent once more (bounded); the rest stay in
//!    their rows for the next start.
//! 5. The server's future resolves and `reelgen serve` exits 0.
//!
//! It may call the dispatcher's [`Drain`]/[`HandBack`] messages and the webhook deliverer;
//! nothing calls into it but [`crate::Application::run_until_stopped`].

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use tokio::sync::watch;

use crate::actors::job_dispatcher::{Drain, HandBack};
use crate::state::AppState;

/// How long handed-back jobs get to stop and record themselves (they stop within a frame).
const HAND_BACK_WAIT: Duration = Duration::from_secs(15);
/// How long the final webhook round may take.
const WEBHOOK_FLUSH: Duration = Duration::from_secs(5);

/// Fires once, when the process starts to stop. Cheap to clone.
#[derive(Clone)]
pub struct Shutdown(Arc<watch::Sender<bool>>);

impl Default for Shutdown {
    fn default() -> Self {
        Self(Arc::new(watch::channel(false).0))
    }
}

impl Shutdown {
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }

    /// A receiver for [`stopping`]; take it before the loop that selects on it.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

/// Resolves once shutdown has begun (at once if it already has).
pub async fn stopping(rx: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: the server is gone too.
    let _ = rx.wait_for(|stopping| *stopping).await;
}

/// Resolves on SIGTERM or SIGINT.
pub async fn signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => tracing::info!("SIGTERM: shutting down"),
                    _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
                }
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops gracefully")
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("SIGINT: shutting down");
}

/// Runs the steps in the module's order; returns once the HTTP server has stopped.
pub async fn run(state: &AppState, server: ServerHandle) {
    let stopped = server.stop(true);
    state.shutdown.trigger();
    if let Some(dispatcher) = &state.dispatcher
        && let Ok(mut running) = dispatcher.send(Drain).await
    {
        let grace = state.config.shutdown_grace;
        let timed_out = tokio::time::timeout(grace, running.wait_for(|n| *n == 0))
            .await
            .is_err();
        if timed_out {
            let n = dispatcher.send(HandBack).await.unwrap_or(0);
            tracing::info!(
                jobs = n,
                grace_s = grace.as_secs_f64(),
                "grace over: handing running renders back to the queue"
            );
            if tokio::time::timeout(HAND_BACK_WAIT, running.wait_for(|n| *n == 0))
                .await
                .is_err()
            {
                tracing::warn!("a render did not stop in time; it is recovered at the next start");
            }
        }
    }
    state.webhooks.flush(WEBHOOK_FLUSH).await;
    stopped.await;
    tracing::info!("stopped");
}
