#!/usr/bin/env bash
# The live-path benchmark (benches/live.rs) against the release binary: WebSocket fan-out
# to 1,000 subscribers, first preview fragment, concurrent 720p jobs, batch of 10.
# The in-process benchmarks are `reelgen bench http|ratelimit|generate`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/reelgen/target}"
ulimit -n 8192
cargo bench --bench live "$@"
