#!/usr/bin/env bash
# Measures what deploy/k8s's resource requests and limits (and docker-compose.yml's mem_limit)
# are taken from, on this machine, with the release binary: a cluster of one API replica
# (`serve --no-worker`) and one worker (`worker`, MAX_CONCURRENT_JOBS=2) on PostgreSQL
# (BENCH_POSTGRES_URL, a database of its own, dropped at the end) and a private redis-server.
#   - idle resident memory of each role
#   - the worker rendering two 60-second 1280x720 videos at once: peak resident memory and
#     CPU cores used over the renders
#   - fresh workers rendering two 60-second 1920x1080 videos at once, and (MAX_CONCURRENT_JOBS=4,
#     the GPU overlay's setting) four 720p ones: the same figures
#   - the API replica under `wrk -c100` (then -c400) on GET /api/v1/videos for 15 s each:
#     peak resident memory and CPU cores
# Memory is /proc's VmRSS / VmHWM; CPU is utime+stime over wall time. Run it with
# `scripts/bench.sh resources` (builds the release binary first). Needs wrk, curl, psql,
# redis-server (scripts/bootstrap.sh installs them).
set -euo pipefail
cd "$(dirname "$0")/.."

BIN=${REELGEN_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/reelgen/target}/release/reelgen}
PG=${BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
DB=reelgen_resources_$$
WORK=$(mktemp -d)
PIDS=()

cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    psql -q "$PG" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
mib() { awk -v k="$2:" '$1==k {printf "%.1f", $2/1024}' "/proc/$1/status"; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
now() { date +%s.%N; }
cores() { python3 -c "import os; print(f'{($2-$1)/os.sysconf(\"SC_CLK_TCK\")/($4-$3):.2f}')" ; }

psql -q "$PG" -c "CREATE DATABASE $DB" >/dev/null
DB_URL="${PG%/*}/$DB"
REDIS_PORT=$(free_port)
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
PIDS+=($!)

common=(DATABASE_URL="$DB_URL" REDIS_URL="redis://127.0.0.1:$REDIS_PORT"
        STORAGE_URL="file://$WORK/store" AUTH_MODE=open RATE_LIMIT_PER_MINUTE=1000000000
        ENVIRONMENT=production RUST_LOG=warn HOST=127.0.0.1 STATIC_DIR="$PWD/static")
mkdir -p "$WORK/store"

start() { # name role-args... ; sets STARTED_PID and STARTED_PORT
    local name=$1; shift
    local port; port=$(free_port)
    mkdir -p "$WORK/$name"
    env "${common[@]}" PORT="$port" DATA_DIR="$WORK/$name" MAX_CONCURRENT_JOBS="${JOBS:-2}" \
        "$BIN" "$@" >"$WORK/$name.log" 2>&1 &
    local pid=$!
    PIDS+=("$pid")
    for _ in $(seq 600); do
        curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && break
        sleep 0.1
    done
    curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null || { echo "$name did not become ready" >&2; cat "$WORK/$name.log" >&2; exit 1; }
    STARTED_PID=$pid
    STARTED_PORT=$port
}

SCRIPT=$(python3 -c 'print("Our product turns a written script into a presenter who speaks it clearly. " * 12)')
post() { # api-port width height
    curl -fs -X POST "http://127.0.0.1:$1/api/v1/videos" -H 'Content-Type: application/json' \
        -d "{\"script\": \"$SCRIPT\", \"dimension\": {\"width\": $2, \"height\": $3}, \"fps\": 30, \"quality\": \"draft\"}" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
wait_done() { # api-port id...
    local port=$1; shift
    for id in "$@"; do
        for _ in $(seq 3000); do
            s=$(curl -fs "http://127.0.0.1:$port/api/v1/videos/$id" | python3 -c 'import json,sys; print(json.load(sys.stdin)["status"])')
            [ "$s" = completed ] && break
            [ "$s" = failed ] && { echo "video $id failed" >&2; exit 1; }
            sleep 0.2
        done
    done
}
render() { # label worker-pid api-port width height count
    local label=$1 wpid=$2 port=$3 w=$4 h=$5 n=$6 ids=() t0 c0 t1 c1
    t0=$(now); c0=$(ticks "$wpid")
    for _ in $(seq "$n"); do ids+=("$(post "$port" "$w" "$h")"); done
    wait_done "$port" "${ids[@]}"
    t1=$(now); c1=$(ticks "$wpid")
    printf '%-48s peak RSS %7s MiB   CPU %s cores over %.1f s\n' "$label" \
        "$(mib "$wpid" VmHWM)" "$(cores "$c0" "$c1" "$t0" "$t1")" "$(python3 -c "print($t1-$t0)")"
}

start api serve --no-worker
API_PID=$STARTED_PID API_PORT=$STARTED_PORT
start worker1 worker
W1_PID=$STARTED_PID
sleep 3
printf '%-48s RSS %7s MiB\n' "idle API replica (serve --no-worker)" "$(mib "$API_PID" VmRSS)"
printf '%-48s RSS %7s MiB\n' "idle worker" "$(mib "$W1_PID" VmRSS)"

render "worker: 2 x 720p (60 s) at once" "$W1_PID" "$API_PORT" 1280 720 2
kill "$W1_PID"; wait "$W1_PID" 2>/dev/null || true
start worker2 worker
W2_PID=$STARTED_PID
render "fresh worker: 2 x 1080p (60 s) at once" "$W2_PID" "$API_PORT" 1920 1080 2
kill "$W2_PID"; wait "$W2_PID" 2>/dev/null || true
JOBS=4 start worker3 worker
W3_PID=$STARTED_PID
render "fresh worker, 4 jobs: 4 x 720p (60 s) at once" "$W3_PID" "$API_PORT" 1280 720 4
kill "$W3_PID"; wait "$W3_PID" 2>/dev/null || true

for c in 100 400; do
    t0=$(now); c0=$(ticks "$API_PID")
    rps=$(wrk -t2 -c"$c" -d15s "http://127.0.0.1:$API_PORT/api/v1/videos" | awk '/Requests\/sec/ {print $2}')
    t1=$(now); c1=$(ticks "$API_PID")
    printf '%-48s peak RSS %7s MiB   CPU %s cores   %s req/s\n' "API replica under wrk -c$c (15 s)" \
        "$(mib "$API_PID" VmHWM)" "$(cores "$c0" "$c1" "$t0" "$t1")" "$rps"
done
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
