//! The process-wide "we are stopping" signal ([`Shutdown`]) and the OS signals that start it.
//! The order of the shutdown steps is `Application::run_until_stopped`'s; WebSocket sessions
//! select on [`stopping`] to close with 1001.

use std::sync::Arc;

use tokio::sync::watch;

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
