#!/usr/bin/env bash
# The live-path benchmark (benches/live.rs) against the release binary: WebSocket fan-out
# to 1,000 subscribers, first preview fragment, concurrent 720p jobs, batch of 10.
# `scripts/bench.sh soak` runs the 10-minute mixed-load soak instead (benches/soak.rs;
# SOAK_SECONDS shortens or lengthens it).
# The in-process benchmarks are `reelgen bench http|ratelimit|generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/reelgen/target}"
ulimit -n 8192
if [ "${1:-}" = soak ]; then
  shift
  cargo bench --bench soak "$@"
else
  cargo bench --bench live "$@"
fi
