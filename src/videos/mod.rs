//! Videos, the product: create requests and their validation, the rows and the queue in the
//! database, the [`lifecycle`] that alone changes a video's state, the dispatcher that turns
//! queued videos into files on this process's worker (with the render [`device`] it opens
//! only while jobs use it), the per-video event hub, and webhook delivery. Calls `render` and `platform`.

pub mod avatars;
pub mod device;
pub mod dispatcher;
pub mod events;
pub mod lifecycle;
pub mod model;
pub mod queue;
pub mod recordings;
pub mod request;
pub mod store;
pub mod webhooks;
