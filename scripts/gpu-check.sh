#!/usr/bin/env bash
# On a machine with an NVIDIA GPU (driver, Vulkan ICD and GStreamer's nvcodec plugin
# installed): what reelgen does there, in one block —
#   * the device wgpu picks (discrete GPUs rank first) and the H.264 encoder the probe picks
#     (nvh264enc where NVENC works, else the next that encodes),
#   * `reelgen-bench generate`: end to end against the encoder alone, CPU per frame of each
#     stage, the conversion path this device chose by measurement (whole frames by the I420
#     kernel, or changed boxes on the CPU), and the I420 kernel checked against the CPU
#     converter on this device (at most one level apart).
# Without a GPU it runs the same on lavapipe and says so. Release build first; a few minutes.
#   scripts/gpu-check.sh [seconds of video, default 20]
# On a machine without the toolchain (a GPU box you copied a release build to), point
# REELGEN_BENCH at that `reelgen-bench` binary: nothing is installed or built then, and the
# GStreamer, Vulkan and espeak-ng libraries are whatever the environment provides.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-20}"
bench="${REELGEN_BENCH:-}"
if [ -z "$bench" ]; then
  bash scripts/bootstrap.sh >/dev/null
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/reelgen/target}"
  cargo build --release -q -p reelgen -p reelgen-bench --bins
  bench="$CARGO_TARGET_DIR/release/reelgen-bench"
fi
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
{
  echo "== reelgen gpu-check, $(date -u +%FT%TZ), $(nproc) CPUs"
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | sed 's/^/gpu: /'
  else
    echo "gpu: no nvidia-smi here: this run is on whatever Vulkan device there is (lavapipe on a CPU-only machine)"
  fi
  if command -v gst-inspect-1.0 >/dev/null 2>&1; then
    for e in nvh264enc nvcudah264enc x264enc; do
      if gst-inspect-1.0 "$e" >/dev/null 2>&1; then echo "gstreamer: $e present"; else echo "gstreamer: $e absent"; fi
    done
  fi
  "$bench" generate --runs 1 --seconds "$seconds" --rss-seconds 5
} 2>&1 | tee "$log"
grep -q "I420 kernel vs CPU converter: .*ok" "$log" || { echo "gpu-check: the I420 kernel check failed" >&2; exit 1; }
echo "== gpu-check done"
