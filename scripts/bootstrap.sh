#!/usr/bin/env bash
# Installs the system packages reelgen needs (idempotent, apt-based, Debian 12).
# Called by `scripts/run.sh` and `scripts/test.sh`; safe to run any number of times.
set -euo pipefail

PKGS=(
  pkg-config
  # GStreamer 1.22: encoding, muxing, audio (the pipeline)
  libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools
  # live sessions over WebRTC: webrtcbin (plugins-bad) finds its ICE candidates with libnice
  gstreamer1.0-nice libgstreamer-plugins-bad1.0-dev
  # Vulkan: Mesa's lavapipe software device where there is no GPU
  mesa-vulkan-drivers libvulkan1 vulkan-tools
  # speech
  libespeak-ng-dev espeak-ng-data
  # the espeak-ng command: tests make real recordings with it (`espeak-ng -w`)
  espeak-ng
  # benchmarks and test tooling (the scale-out tests start their own redis-server)
  gstreamer1.0-plugins-base-apps wrk curl postgresql-client
  # deploy kit checks (promtool) and the real-Prometheus integration test
  prometheus
  # the browser test: Debian's Chromium driven by playwright-core (Node.js is on the machine)
  chromium
)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# The scale-out tests start their own redis-server (the machine's Redis may come from
# elsewhere than Debian's package: only a missing binary installs it).
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)

if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "bootstrap: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "bootstrap: cargo not found; install Rust 1.95 (rustup) first" >&2
  exit 1
fi
