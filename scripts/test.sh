#!/usr/bin/env bash
# Runs every test: installs missing system packages, makes sure PostgreSQL is up (tests create
# and drop their own databases on it), checks the deploy kit offline (scripts/check-deploy.sh),
# then runs the whole workspace with cargo-nextest. A failing kit check fails the run after the
# suite has run too.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/bootstrap.sh
bash scripts/services.sh

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/reelgen/target}"
mkdir -p "$CARGO_TARGET_DIR"
# The browser test drives Debian's Chromium with playwright-core (no bundled browser).
if [ ! -d tests/browser/node_modules/playwright-core ]; then
  (cd tests/browser && npm ci --silent --no-audit --no-fund)
fi

# Python test tools (schemathesis) from PyPI into a virtualenv outside the clone.
REELGEN_PYTOOLS_BIN="$(bash scripts/pytools.sh)"
export REELGEN_PYTOOLS_BIN

deploy_kit=0
bash scripts/check-deploy.sh || deploy_kit=$?

export TEST_POSTGRES_URL="${TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
# bootstrap installed lavapipe and x264: a pipeline test that finds no device is a failure
# here, not a skip (tests/pipeline skips with the reason printed where no adapter exists).
export REELGEN_REQUIRE_GPU="${REELGEN_REQUIRE_GPU:-1}"
# What the binaries set before their first thread (render::gpu::HEADLESS_ENV), for the tests
# that open the device in-process: Mesa's device-select layer stays away from display servers.
export NODEVICE_SELECT="${NODEVICE_SELECT:-1}"

# nextest's closing `Summary [ N s ]` line is the suite's wall time.
suite=0
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@" || suite=$?
else
  cargo test --workspace --no-fail-fast "$@" || suite=$?
fi
if [ "$deploy_kit" -ne 0 ]; then
  echo "test.sh: scripts/check-deploy.sh failed (see its output above)" >&2
  exit "$deploy_kit"
fi
exit "$suite"
