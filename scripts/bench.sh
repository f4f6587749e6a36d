#!/usr/bin/env bash
# The benchmarks live in the `reelgen-bench` workspace member (bench/), outside the product;
# each runs against the release `reelgen` binary, built first.
#   scripts/bench.sh            live path (bench/benches/live.rs): WebSocket fan-out to 1,000
#                               subscribers, first preview fragment, concurrent 720p jobs, batch of 10
#   scripts/bench.sh soak       the 10-minute mixed-load soak (bench/benches/soak.rs;
#                               SOAK_SECONDS shortens or lengthens it)
#   scripts/bench.sh cluster    scale-out (bench/benches/cluster.rs): POST → a worker starts,
#                               progress fan-out to 1,000 sockets over two replicas, 40 videos
#                               on 1 vs 2 workers, idle RSS of a replica and a worker
#                               (needs PostgreSQL at BENCH_POSTGRES_URL and redis-server)
#   scripts/bench.sh resources  what deploy/k8s's requests and limits come from: idle RSS of an
#                               API replica and a worker, a worker's peak RSS and CPU over two
#                               720p renders and one 1080p render, the API under wrk
#                               (scripts/measure-resources.sh; PostgreSQL and redis-server)
#   scripts/bench.sh sessions   live sessions over WebRTC with a real peer (aiortc from the test
#                               tools' virtualenv): speak → first decoded mouth frame, p50/p95;
#                               sessions at once without dropped frames; CPU per session-second
#   scripts/bench.sh http|ratelimit|generate|memory [args]   reelgen-bench's subcommands
#   (scripts/gpu-check.sh: generate on a real GPU, with the I420 kernel checked there)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/reelgen/target}"
ulimit -n 8192
cargo build --release --bin reelgen
case "${1:-}" in
  soak) shift; cargo bench -p reelgen-bench --bench soak "$@" ;;
  cluster) shift; cargo bench -p reelgen-bench --bench cluster "$@" ;;
  resources) bash scripts/measure-resources.sh ;;
  http|ratelimit|generate|memory) cargo run --release -q -p reelgen-bench -- "$@" ;;
  sessions)
    REELGEN_PYTOOLS_BIN="$(bash scripts/pytools.sh)" cargo run --release -q -p reelgen-bench -- "$@" ;;
  *) cargo bench -p reelgen-bench --bench live "$@" ;;
esac
