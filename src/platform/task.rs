//! Background loops that own no state worth a mailbox (a timer and the call it makes) run as a
//! named [`Task`]: spawned on the current runtime, logged by name when they start, and
//! aborted when their handle is dropped, so a `Context` that goes away (a test's server, a
//! benchmark's ceiling) takes its loops with it instead of leaking them.

use std::future::Future;

pub struct Task {
    name: &'static str,
    handle: tokio::task::JoinHandle<()>,
}

impl Task {
    /// Spawns `work` on the current runtime (an actix arbiter or a tokio runtime).
    pub fn spawn(name: &'static str, work: impl Future<Output = ()> + 'static) -> Self {
        tracing::debug!(task = name, "task started");
        Self {
            name,
            handle: actix::spawn(work),
        }
    }
}

impl Drop for Task {
    fn drop(&mut self) {
        tracing::debug!(task = self.name, "task stopped");
        self.handle.abort();
    }
}
