#!/usr/bin/env bash
# A cluster (issue 19): one control node and three edge nodes over a local redis-server, all a
# release build. Prints how long a site creation and a purge take to hold on every edge (p50,
# p99, max over BENCH_CHANGES of each), how long a write with ?wait=applied takes, and the CPU
# per request of an edge node beside the same binary alone. The measuring is bench/cluster.py;
# this script builds, starts the origin and checks the tools.
#
# Usage: bench/cluster.sh
# Environment: BENCH_CHANGES [200], BENCH_COST_SECS [10], PALISADE_BIN [a release build of
#              this tree], BENCH_KEEP_TMP [0]
set -euo pipefail
BENCH_TAG=cluster
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEEP_TMP=${BENCH_KEEP_TMP:-0}
HOST_HDR=origin.example
CHANGES=${BENCH_CHANGES:-200}
COST_SECS=${BENCH_COST_SECS:-10}
ensure_tools nginx:nginx wrk:wrk python3:python3 redis-server:redis-server

bench_traps
raise_nofile 65536 >/dev/null
make_work
BIN=${PALISADE_BIN:-}
if [[ -z $BIN ]]; then
    log "building palisade (release)"
    BIN=$(cargo_release_bin palisade palisade) || die "cargo build failed"
fi
[[ -x $BIN ]] || die "not an executable: $BIN"
read -r ORIGIN_PORT < <(free_ports 1)

start_counting_origin "$ORIGIN_PORT"

log "$CHANGES changes of each kind; binary $BIN"
python3 "$BENCH_DIR/cluster.py" "$BIN" "$WORK" "$ORIGIN_PORT" "$CHANGES" "$COST_SECS"
