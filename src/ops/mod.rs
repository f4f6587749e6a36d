//! Operating the service: the subsystem actors' supervisor, health checks, the resource
//! monitor, the performance report, the alert engine and the analytics actor that feeds the
//! live dashboard. Reads `videos` (queue depth) and `platform`; nothing below calls it.

pub mod alerts;
pub mod analytics;
pub mod health;
pub mod report;
pub mod resources;
pub mod supervisor;
