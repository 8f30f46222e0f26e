#!/usr/bin/env bash
# Provider scale (issue 26): a generated file of 10,000 and 100,000 sites (two host names, one
# origin, one rule each), beside the same sites as nginx server blocks. Prints startup time,
# resident memory idle and after one request to each of 1,000 sites, the time one API change
# takes (p50/p99 over BENCH_CHANGES of each kind: create, update, delete, suspend, state,
# purge), how long a suspension takes to be in force at the edge, nginx's reload time for one
# change, and the routing cost per request against a file of 10 sites. The measuring is
# bench/sites.py; this script builds, picks ports and starts the origin.
#
# Usage: bench/sites.sh
# Environment: BENCH_SIZES ["10000 100000"], BENCH_CHANGES [200], BENCH_ROUTE_SECS [5],
#              PALISADE_BIN [a release build of this tree], BENCH_KEEP_TMP [0]
set -euo pipefail
BENCH_TAG=sites
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEEP_TMP=${BENCH_KEEP_TMP:-0}
HOST_HDR=origin.example
SIZES=${BENCH_SIZES:-"10000 100000"}
CHANGES=${BENCH_CHANGES:-200}
ROUTE_SECS=${BENCH_ROUTE_SECS:-5}
ensure_tools nginx:nginx wrk:wrk python3:python3

bench_traps
raise_nofile 65536 >/dev/null
make_work
BIN=${PALISADE_BIN:-}
if [[ -z $BIN ]]; then
    log "building palisade (release)"
    BIN=$(cargo_release_bin palisade palisade) || die "cargo build failed"
fi
[[ -x $BIN ]] || die "not an executable: $BIN"
read -r ORIGIN_PORT PAL_PORT ADMIN_PORT NGINX_PORT < <(free_ports 4)

start_counting_origin "$ORIGIN_PORT"

log "sizes: $SIZES; $CHANGES changes of each kind; binary $BIN"
python3 "$BENCH_DIR/sites.py" "$BIN" "$WORK" "$ORIGIN_PORT" "$PAL_PORT" "$ADMIN_PORT" \
    "$NGINX_PORT" "$SIZES" "$CHANGES" "$ROUTE_SECS"
