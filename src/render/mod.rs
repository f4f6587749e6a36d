//! Making a video from its parameters, with no server around it: the catalog of assets, the
//! timeline (script, speech, captions), the GPU kernels and their scheduler, the GStreamer
//! encoder and muxers, and the [`pipeline`] that drives them. The bottom layer: it calls
//! nothing else in the crate, so `reelgen generate` and the server share it unchanged.

pub mod assets;
pub mod gpu;
pub mod media;
pub mod params;
pub mod pipeline;
pub mod priority;
pub mod timeline;
