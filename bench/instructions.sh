#!/usr/bin/env bash
# Instructions per request on Palisade's hot paths, counted by callgrind: a figure that does not
# move with the machine's load, for comparing two builds of Palisade (a refactor must not cost
# the hot path). Wall-clock throughput beside peers is bench/run.sh and bench/cache.sh.
#
# For each path, Palisade (workers = 1, access log off unless BENCH_ACCESS_LOG is set) runs
# under valgrind --tool=callgrind; the client sends BENCH_WARM requests, callgrind's counters
# are zeroed, BENCH_REQUESTS more are sent, and the counters dumped: instructions per request
# are the dump's total divided by BENCH_REQUESTS. Paths:
#   h1-proxy   HTTP/1.1 keep-alive GET of a 1 KiB response the origin marks no-store (proxied)
#   h1-hit     HTTP/1.1 keep-alive GET of a 1 KiB cached response
#   h2c-hit    h2c GET of the same cached response (h2load, one connection, one stream at a time)
#
# Usage: bench/instructions.sh BIN_A [BIN_B]   (prints a row per path; with two binaries, both
# side by side and B's change against A)
#
# Environment: BENCH_WARM [500], BENCH_REQUESTS [3000], BENCH_PATHS ["h1-proxy h1-hit h2c-hit"],
#              BENCH_ACCESS_LOG [off] (e.g. "stdout" to count the log's cost too),
#              BENCH_KEEP_DUMPS [unset]: a directory to keep each measured callgrind dump in,
#              named PATH.A.out / PATH.B.out, for callgrind_annotate.
set -euo pipefail
BENCH_TAG=instructions
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

KEEP_TMP=${BENCH_KEEP_TMP:-0}
WARM=${BENCH_WARM:-500}
REQUESTS=${BENCH_REQUESTS:-3000}
PATHS=${BENCH_PATHS:-"h1-proxy h1-hit h2c-hit"}
ACCESS_LOG=${BENCH_ACCESS_LOG:-off}
(($# >= 1)) || die "usage: $0 BIN_A [BIN_B]"
BINS=("$@")
for bin in "${BINS[@]}"; do [[ -x $bin ]] || die "not an executable: $bin"; done
ensure_tools valgrind:valgrind nginx:nginx h2load:nghttp2-client python3:python3

bench_traps
raise_nofile 4096 >/dev/null
make_work
read -r ORIGIN_PORT PAL_PORT ADMIN_PORT < <(free_ports 3)
mkdir -p "$WORK/origin" "$WORK/www/proxy" "$WORK/www/hit"
head -c 1024 /dev/zero | tr '\0' 'p' >"$WORK/www/proxy/1k"
head -c 1024 /dev/zero | tr '\0' 'h' >"$WORK/www/hit/1k"
cat >"$WORK/origin/nginx.conf" <<EOF
$(nginx_main "$WORK/origin" 1 4096)
http {
$(nginx_common_http "$WORK/origin")
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT;
        root $WORK/www;
        location /proxy/ { add_header Cache-Control "no-store"; }
        location /hit/ { add_header Cache-Control "public, max-age=3600"; }
    }
}
EOF
start_bg origin "$WORK/origin.out" nginx -c "$WORK/origin/nginx.conf"

# Sends n sequential keep-alive HTTP/1.1 GETs of path; fails on any answer but 200.
h1_client() { # port path n
    python3 - "$@" <<'PY'
import http.client, sys
port, path, n = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
for _ in range(n):
    conn.request("GET", path, headers={"Host": "bench.example"})
    response = conn.getresponse()
    response.read()
    if response.status != 200:
        sys.exit(f"GET {path}: {response.status}")
PY
}

send() { # path-kind n
    case $1 in
        h1-proxy) h1_client "$PAL_PORT" /proxy/1k "$2" ;;
        h1-hit) h1_client "$PAL_PORT" /hit/1k "$2" ;;
        h2c-hit) h2load -n "$2" -c 1 -m 1 "http://127.0.0.1:$PAL_PORT/hit/1k" \
            >"$WORK/h2load.out" 2>&1 ||
            die "h2load failed: $(tail -3 "$WORK/h2load.out")"
            grep -q "$2 succeeded" "$WORK/h2load.out" || die "h2load: $(grep succeeded "$WORK/h2load.out")" ;;
        *) die "unknown path $1" ;;
    esac
}

measure() { # bin path-kind build-name -> instructions per request
    local bin=$1 kind=$2 build=$3 out="$WORK/cg.$RANDOM"
    rm -rf "$WORK/data"
    cat >"$WORK/palisade.toml" <<EOF
[server]
listen = ["127.0.0.1:$PAL_PORT"]
admin = "127.0.0.1:$ADMIN_PORT"
data_dir = "$WORK/data"
access_log = "$ACCESS_LOG"
workers = 1
cache_disk = 0

[[site]]
name = "bench"
hosts = ["*"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
[site.cache]
enabled = true
# Closed-loop load is a flood by any measure: attack detection is off, so that every
# row measures the data path.
[site.shield]
auto_under_attack = false
EOF
    start_bg palisade "$WORK/palisade.out" valgrind --tool=callgrind --callgrind-out-file="$out.%p" \
        --dump-instr=no "$bin" serve --config "$WORK/palisade.toml"
    local pid=$LAST_PID deadline=$((SECONDS + 120))
    until curl -s -o /dev/null -H "host: bench.example" "http://127.0.0.1:$PAL_PORT/hit/1k"; do
        ((SECONDS < deadline)) || die "palisade did not start: $(tail -5 "$WORK/palisade.out")"
        sleep 1
    done
    send "$kind" "$WARM"
    callgrind_control --zero "$pid" >/dev/null 2>&1
    send "$kind" "$REQUESTS"
    callgrind_control --dump "$pid" >/dev/null 2>&1
    stop_pid "$pid"
    # The dump holds the counts since --zero, every thread included.
    local total
    total=$(cat "$out".*.* 2>/dev/null | awk '/^summary:/ {s += $2} END {print s + 0}')
    ((total > 0)) || die "no callgrind dump for $kind"
    if [[ -n ${BENCH_KEEP_DUMPS:-} ]]; then
        mkdir -p "$BENCH_KEEP_DUMPS"
        cat "$out".*.* >"$BENCH_KEEP_DUMPS/$kind.$build.out"
    fi
    rm -f "$out".*
    echo $((total / REQUESTS))
}

NAMES=(A B)
for i in "${!BINS[@]}"; do echo "${NAMES[$i]}: ${BINS[$i]}"; done
echo "instructions per request (callgrind, $REQUESTS requests after $WARM, access_log = $ACCESS_LOG)"
printf '%-10s' path
for i in "${!BINS[@]}"; do printf '%12s' "${NAMES[$i]}"; done
((${#BINS[@]} == 2)) && printf '%10s' 'B vs A'
echo
for kind in $PATHS; do
    printf '%-10s' "$kind"
    results=()
    for i in "${!BINS[@]}"; do
        results+=("$(measure "${BINS[$i]}" "$kind" "${NAMES[$i]}")")
        printf '%12s' "${results[-1]}"
    done
    if ((${#BINS[@]} == 2)); then
        awk -v a="${results[0]}" -v b="${results[1]}" 'BEGIN { printf "%+9.2f%%", (b - a) * 100 / a }'
    fi
    echo
done
