//! Pipeline tests: the renderer, its GPU kernels and the GStreamer encoder, driven directly
//! with no server (`tests/api` covers the HTTP surface). Tests that need a device take the
//! shared generator from [`generate::generator`], which skips them with the reason printed
//! where this machine has no Vulkan adapter or H.264 encoder — unless
//! `REELGEN_REQUIRE_GPU=1` (set by `scripts/test.sh`, whose bootstrap installs lavapipe),
//! which makes a missing device a failure.

mod generate;
mod golden;
mod recording;
mod words;
