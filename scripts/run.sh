#!/usr/bin/env bash
# Installs what is missing and runs the server on the embedded defaults: SQLite at
# ./data/reelgen.db, files under ./data, in-process cache and queue, http://127.0.0.1:8000.
# Extra arguments go to `reelgen serve` (e.g. --port 9000).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/reelgen/target}"
exec cargo run --release --bin reelgen -- serve "$@"
