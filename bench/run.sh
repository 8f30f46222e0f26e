#!/usr/bin/env bash
# Palisade vs nginx vs HAProxy, in front of the same origin, on this machine.
#
# Measures, per proxy (and the origin direct as a reference):
#   * requests/s, p50 and p99 latency (wrk --latency) for a 1 KiB and a
#     100 KiB response, and the CPU time the server's processes spent per
#     request (user and system, from /proc/PID/stat over the measured run);
#   * memory per idle HTTP/1.1 keep-alive connection: RSS of the proxy's
#     processes before and after opening BENCH_IDLE_CONNS idle connections.
#
# All traffic goes to 127.0.0.1 (idle-test clients bind 127.0.0.2..40).
# Everything started here runs from a mktemp -d dir and is stopped on exit.
# See bench/README.md for the fairness choices and how to read the output.
#
# Environment (defaults in brackets):
#   BENCH_DURATION       wrk duration per measured run, seconds or "10s" [10s]
#   BENCH_WARMUP         unmeasured wrk warm-up before each run [2s]
#   BENCH_ROUNDS         interleaved rounds (every server, both sizes, per round);
#                        the table shows each figure's median over the rounds [3]
#   BENCH_SIZES          response sizes to load, from "1k 100k" ["1k 100k"]
#   BENCH_CONNECTIONS    wrk connections [64]
#   BENCH_THREADS        wrk threads [2]
#   BENCH_WORKERS        nginx worker_processes / HAProxy nbthread / Palisade workers [1]
#   BENCH_ORIGIN_WORKERS origin nginx worker_processes [1]
#   BENCH_PALISADE_THREADS  Palisade's `workers` (threads) [BENCH_WORKERS, so every
#                        proxy gets the same number of workers]
#   BENCH_IDLE_CONNS     idle keep-alive connections per proxy [10000]
#   BENCH_IDLE_SETTLE    seconds to wait after the idle conns are open, before
#                        sampling RSS [3]
#   BENCH_IDLE_CONCURRENCY  connects/requests in flight while opening them [64]
#   BENCH_PALISADE_SERVER_EXTRA  extra TOML lines for Palisade's [server] table,
#                        e.g. 'origin_max_idle = 64' [unset]
#   BENCH_PROXIES        which proxies to run, from "nginx haproxy nginx-fwd haproxy-fwd
#                        palisade" ["nginx haproxy nginx-fwd haproxy-fwd palisade"];
#                        the -fwd ones are the same proxy also sending the origin the fields
#                        Palisade sends (X-Forwarded-*, Forwarded, Via) and Via to the client
#   BENCH_PIN            1 = the proxy under test on BENCH_SERVER_CPU, wrk and the
#                        origin on BENCH_CLIENT_CPU (needs BENCH_WORKERS=1); 0 = nothing
#                        pinned [0]
#   BENCH_SERVER_CPU / BENCH_CLIENT_CPU  the two CPUs [1 / 0]
#   BENCH_SKIP_PALISADE  1 = leave Palisade out (no cargo build) [0]
#   BENCH_SKIP_IDLE      1 = skip the idle-connection memory test [0]
#   BENCH_SKIP_LOAD      1 = skip the wrk throughput/latency runs [0]
#   BENCH_KEEP_TMP       1 = keep the temp dir (configs, logs) after exit [0]
#   BENCH_OUTPUT         also write the final table to this file [unset]
#   PALISADE_BIN         use this binary instead of building target/release/palisade
set -euo pipefail

# Shared helpers (process start/stop by PID and the exit trap, wrk runs and
# their parsing, medians, CPU time and memory of a process tree): bench/lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=$(secs "${BENCH_DURATION:-10s}")
DURATION_SECS=$(to_secs "$DURATION")
WARMUP=$(secs "${BENCH_WARMUP:-2s}")
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-2}
WORKERS=${BENCH_WORKERS:-1}
ORIGIN_WORKERS=${BENCH_ORIGIN_WORKERS:-1}
IDLE_CONNS=${BENCH_IDLE_CONNS:-10000}
ROUNDS=${BENCH_ROUNDS:-3}
SIZES=${BENCH_SIZES:-1k 100k}
for size in $SIZES; do
    [[ $size == 1k || $size == 100k ]] || { echo "[bench] ERROR: BENCH_SIZES: unknown size '$size' (use 1k and/or 100k)" >&2; exit 1; }
done
IDLE_SETTLE=${BENCH_IDLE_SETTLE:-3}
IDLE_CONCURRENCY=${BENCH_IDLE_CONCURRENCY:-64}
PALISADE_EXTRA=${BENCH_PALISADE_SERVER_EXTRA:-}
SKIP_PALISADE=${BENCH_SKIP_PALISADE:-0}
SKIP_IDLE=${BENCH_SKIP_IDLE:-0}
SKIP_LOAD=${BENCH_SKIP_LOAD:-0}
KEEP_TMP=${BENCH_KEEP_TMP:-0}
PROXIES=${BENCH_PROXIES:-nginx haproxy nginx-fwd haproxy-fwd palisade}
PIN=${BENCH_PIN:-0}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
HOST_HDR="bench.local"
READY_TIMEOUT=30      # seconds to wait for a server to answer
IDLE_OPEN_TIMEOUT=240 # seconds for the idle client to open all connections

for v in ROUNDS CONNS THREADS WORKERS ORIGIN_WORKERS IDLE_CONNS IDLE_SETTLE IDLE_CONCURRENCY; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || { echo "[bench] ERROR: $v must be a positive integer (got '${!v}')" >&2; exit 2; }
done
if [[ $SKIP_PALISADE == 1 ]]; then
    PROXIES=$(tr ' ' '\n' <<<"$PROXIES" | grep -vx palisade | tr '\n' ' ' || true)
fi
for p in $PROXIES; do
    case $p in nginx | haproxy | nginx-fwd | haproxy-fwd | palisade) ;; *) echo "[bench] ERROR: unknown proxy '$p' in BENCH_PROXIES (nginx haproxy nginx-fwd haproxy-fwd palisade)" >&2; exit 2 ;; esac
done

[[ $PIN == 0 || $PIN == 1 ]] || { echo "[bench] ERROR: BENCH_PIN must be 0 or 1 (got '$PIN')" >&2; exit 2; }
if [[ $PIN == 1 && $WORKERS != 1 ]]; then
    echo "[bench] ERROR: BENCH_PIN=1 gives each proxy one CPU: use BENCH_WORKERS=1" >&2
    exit 2
fi

bench_traps
setup_pinning "the proxy under test"

# ------------------------------------------------------------ prerequisites --
ensure_tools wrk:wrk nginx:nginx haproxy:haproxy curl:curl


PALISADE=""
if [[ " $PROXIES " == *" palisade "* ]]; then
    if [[ -n ${PALISADE_BIN:-} ]]; then
        PALISADE=$PALISADE_BIN
    else
        PALISADE=$(cargo_release_bin palisade palisade) ||
            die "cargo build --release --bin palisade failed (set BENCH_SKIP_PALISADE=1 to bench without it)"
    fi
    [[ -x $PALISADE ]] || die "palisade binary not found/executable: $PALISADE"
fi

# File descriptors: the idle test needs ~1 fd per connection in the proxy and
# in the client, plus upstream connections.
raise_nofile
if ((IDLE_CONNS + 1000 > NOFILE)); then
    log "warning: ulimit -n $NOFILE too low for $IDLE_CONNS idle conns; using $((NOFILE - 1000))"
    IDLE_CONNS=$((NOFILE - 1000))
fi


make_work

read -r ORIGIN_PORT NGINX_PORT HAPROXY_PORT NGINX_FWD_PORT HAPROXY_FWD_PORT PALISADE_PORT PALISADE_ADMIN_PORT < <(free_ports 7) || true
[[ -n ${PALISADE_ADMIN_PORT:-} ]] || die "could not pick free ports"

# ------------------------------------------------------------------ origin --
mkdir -p "$WORK/www" "$WORK/origin" "$WORK/nginx" "$WORK/haproxy" "$WORK/nginx-fwd" "$WORK/haproxy-fwd" "$WORK/palisade-data"
write_bodies "$WORK/www"

cat >"$WORK/origin/nginx.conf" <<EOF
# origin: static files, keep-alive on, no access log
$(nginx_main "$WORK/origin" $ORIGIN_WORKERS 16384)
http {
$(nginx_common_http "$WORK/origin")
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        server_name _;
        root $WORK/www;
        location / { }
    }
}
EOF

# ----------------------------------------------------------------- proxies --
WORKER_CONNS=$((NOFILE - 100))
# What Palisade sends the origin besides the client's own fields, and adds to the response:
# the -fwd peers are configured to do the same work (values from the real peer, replacing
# whatever the client sent).
NGINX_FORWARD_FIELDS='
            proxy_set_header Host $host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
            proxy_set_header Forwarded "for=$remote_addr;proto=$scheme;host=\"$host\"";
            proxy_set_header Via "1.1 nginx";
            add_header Via "1.1 nginx";'
HAPROXY_FORWARD_FIELDS='
    http-request set-header X-Forwarded-For %[src]
    http-request set-header X-Forwarded-Proto http
    http-request set-header X-Forwarded-Host %[req.hdr(host)]
    http-request set-header Forwarded "for=%[src];proto=http;host=\"%[req.hdr(host)]\""
    http-request set-header Via "1.1 haproxy"
    http-response set-header Via "1.1 haproxy"'

write_nginx_conf() { # name port extra-location-lines
    cat >"$WORK/$1/nginx.conf" <<EOF
# nginx reverse proxy: one master + BENCH_WORKERS workers, upstream keep-alive
$(nginx_main "$WORK/$1" $WORKERS $WORKER_CONNS)
http {
$(nginx_common_http "$WORK/$1")
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    # stream through memory buffers only, never spill responses to disk
    proxy_max_temp_file_size 0;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$2 backlog=4096;
        server_name _;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";$3
        }
    }
}
EOF
}
write_nginx_conf nginx "$NGINX_PORT" ""
write_nginx_conf nginx-fwd "$NGINX_FWD_PORT" "$NGINX_FORWARD_FIELDS"

HAPROXY_MAXCONN=$((IDLE_CONNS + 1000))
HAPROXY_LIMITS=""
# HAProxy sizes its fd budget as ~2 fds per connection and by default refuses
# to start if it cannot raise RLIMIT_NOFILE that far. Idle client connections
# only need one fd each, so where the hard limit is low, allow it to run.
if ((NOFILE < 2 * HAPROXY_MAXCONN + 100)); then
    HAPROXY_LIMITS="    no strict-limits  # ulimit -n is only $NOFILE here"
fi
write_haproxy_conf() { # name port extra-frontend-lines
    cat >"$WORK/$1/haproxy.cfg" <<EOF
# HAProxy: http mode, default http-reuse (safe), no logging
global
    nbthread $WORKERS
    maxconn $HAPROXY_MAXCONN
$HAPROXY_LIMITS
    pidfile $WORK/$1/haproxy.pid

defaults
    mode http
    maxconn $HAPROXY_MAXCONN
    timeout connect 5s
    timeout client 300s
    timeout server 30s
    timeout http-keep-alive 300s
    timeout http-request 30s

frontend fe
    bind 127.0.0.1:$2$3
    default_backend origin

backend origin
    server o1 127.0.0.1:$ORIGIN_PORT
EOF
}
write_haproxy_conf haproxy "$HAPROXY_PORT" ""
write_haproxy_conf haproxy-fwd "$HAPROXY_FWD_PORT" "$HAPROXY_FORWARD_FIELDS"

cat >"$WORK/palisade.toml" <<EOF
[server]
listen = ["127.0.0.1:$PALISADE_PORT"]
admin = "127.0.0.1:$PALISADE_ADMIN_PORT"
data_dir = "$WORK/palisade-data"
access_log = "off"
workers = ${BENCH_PALISADE_THREADS:-$WORKERS}
max_connections = 100000
max_connections_per_ip = 100000
max_new_connections_per_ip = 100000000
$PALISADE_EXTRA

[[site]]
name = "bench"
hosts = ["*"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
# A proxy benchmark: nginx and HAProxy do not cache here, and the origin's static files carry
# Last-Modified, which Palisade's cache would use for heuristic freshness. bench/cache.sh
# measures the cache.
[site.cache]
enabled = false
# Closed-loop load is a flood by any measure: attack detection is off, so that every
# row measures the data path.
[site.shield]
auto_under_attack = false
EOF

port_of() {
    case $1 in
        origin) echo "$ORIGIN_PORT" ;; nginx) echo "$NGINX_PORT" ;;
        haproxy) echo "$HAPROXY_PORT" ;; palisade) echo "$PALISADE_PORT" ;;
        nginx-fwd) echo "$NGINX_FWD_PORT" ;; haproxy-fwd) echo "$HAPROXY_FWD_PORT" ;;
        *) return 1 ;;
    esac
}

SERVER_PID=""
start_server() { # name -> starts it, sets SERVER_PID
    local name=$1 logf pin
    logf=$(logfile_of "$name")
    # With BENCH_PIN=1 the origin shares wrk's CPU and every proxy gets the other one.
    if [[ $name == origin ]]; then
        pin=(${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"})
    else
        pin=(${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"})
    fi
    case $name in
        origin) start_bg origin "$logf" ${pin[@]+"${pin[@]}"} nginx -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf" ;;
        nginx | nginx-fwd) start_bg "$name" "$logf" ${pin[@]+"${pin[@]}"} nginx -p "$WORK/$name" -e "$WORK/$name/error.log" -c "$WORK/$name/nginx.conf" ;;
        haproxy | haproxy-fwd) start_bg "$name" "$logf" ${pin[@]+"${pin[@]}"} haproxy -db -f "$WORK/$name/haproxy.cfg" ;;
        palisade)
            start_bg palisade "$logf" ${pin[@]+"${pin[@]}"} "$PALISADE" serve --config "$WORK/palisade.toml" ;;
        *) return 1 ;;
    esac
    SERVER_PID=$LAST_PID
}

# ------------------------------------------------------------- measurement --
declare -A MEM_RSS MEM_PSS MEM_NOTE DIED

idle_test() { # name pid port -> fills MEM_RSS/MEM_PSS/MEM_NOTE[name]
    local name=$1 pid=$2 port=$3
    local ready="$WORK/idle-$name.ready" release="$WORK/idle-$name.release" out="$WORK/idle-$name.json"
    rm -f "$ready" "$release"
    # warm the proxy a little (lazy init, upstream pool) before the baseline
    run_fg /dev/null timeout 30 wrk -t1 -c4 -d1s -H "Host: $HOST_HDR" "http://127.0.0.1:$port/1k" || true
    sleep 1
    local rss0 pss0 rss1 pss1 i cpid
    rss0=$(mem_kib VmRSS "$pid"); pss0=$(mem_kib Pss "$pid")
    log "$name idle: baseline RSS ${rss0} KiB, PSS ${pss0} KiB (pids: $(descendants "$pid" | tr '\n' ' '))"
    start_bg "idle client -> $name" "$out" python3 "$BENCH_DIR/idle_conns.py" --port "$port" \
        --conns "$IDLE_CONNS" --concurrency "$IDLE_CONCURRENCY" --path /1k --host-header "$HOST_HDR" \
        --open-timeout "$IDLE_OPEN_TIMEOUT" --hold $((IDLE_SETTLE + 120)) \
        --ready-file "$ready" --release-file "$release"
    cpid=$LAST_PID
    local deadline=$((SECONDS + IDLE_OPEN_TIMEOUT + 30))
    while [[ ! -e $ready ]]; do
        if ! kill -0 "$cpid" 2>/dev/null; then
            log "$name idle: client exited early"; cat "$out" >&2
            MEM_NOTE[$name]="idle client failed"; fail "$name" "idle client failed"; return 1
        fi
        if ((SECONDS >= deadline)); then
            log "$name idle: client did not get ready in time"
            stop_pid "$cpid"; MEM_NOTE[$name]="idle client timeout"; fail "$name" "idle client timeout"; return 1
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name died during the idle test"; show_log "$name"
            stop_pid "$cpid"; MEM_NOTE[$name]="$name died"; fail "$name" "died during the idle test"; return 1
        fi
        sleep 0.5
    done
    local opened failed okflag
    read -r opened failed okflag < <(python3 -c 'import json,sys; d = json.load(open(sys.argv[1])); print(d["opened"], d["failed"], int(d["ok"]))' "$ready") || true
    if [[ ${okflag:-0} != 1 ]]; then
        local errs
        errs=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["errors"])' "$ready" 2>/dev/null || true)
        log "$name idle: only ${opened:-?} of $IDLE_CONNS connections opened, ${failed:-?} failed: $errs"
        stop_pid "$cpid"; show_log "$name"
        MEM_NOTE[$name]="only ${opened:-?}/$IDLE_CONNS opened, ${failed:-?} failed: ${errs:0:150}"
        fail "$name" "idle test: ${failed:-?} connections failed"
        return 1
    fi
    log "$name idle: $opened connections open ($failed failed); settling ${IDLE_SETTLE}s"
    run_fg /dev/null sleep "$IDLE_SETTLE"
    for i in 1 2 3; do
        rss1=$(mem_kib VmRSS "$pid"); pss1=$(mem_kib Pss "$pid")
        log "$name idle: sample $i RSS ${rss1} KiB, PSS ${pss1} KiB"
        if ((i < 3)); then sleep 1; fi
    done
    touch "$release"
    local j=0
    while kill -0 "$cpid" 2>/dev/null && ((j < 300)); do sleep 0.1; j=$((j + 1)); done
    stop_pid "$cpid"
    local alive
    alive=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("alive_at_release", -1))' "$out" 2>/dev/null || echo -1)
    if ((opened <= 0)); then MEM_NOTE[$name]="no connections opened"; fail "$name" "idle test: no connections opened"; return 1; fi
    MEM_RSS[$name]=$(awk -v a="$rss0" -v b="$rss1" -v n="$opened" 'BEGIN {printf "%.2f", (b - a) / n}')
    MEM_PSS[$name]=$(awk -v a="$pss0" -v b="$pss1" -v n="$opened" 'BEGIN {printf "%.2f", (b - a) / n}')
    local note="$opened conns, RSS ${rss0}->${rss1} KiB"
    if ((failed > 0)); then note+=", $failed failed"; fi
    if ((alive >= 0 && alive < opened)); then note+=", only $alive still open at release"; fi
    MEM_NOTE[$name]=$note
    log "$name idle: ${MEM_RSS[$name]} KiB/conn (RSS), ${MEM_PSS[$name]} KiB/conn (PSS); $note"
}

# --------------------------------------------------------------------- run --
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
PALISADE_THREADS_DESC="workers = ${BENCH_PALISADE_THREADS:-$WORKERS} (tokio worker threads; the product's default is one per core)"
HEADER=$(cat <<EOF
# Palisade edge benchmark ($(date -u +%Y-%m-%dT%H:%MZ))
machine : $(nproc) cores ($CPU_MODEL), $(uname -r)
pinning : $PIN_DESC
load    : wrk -t$THREADS -c$CONNS -d$DURATION --latency, warm-up $WARMUP, Host: $HOST_HDR, 127.0.0.1 only; $ROUNDS interleaved rounds, medians shown
origin  : nginx $(nginx -v 2>&1 | sed 's|.*/||'), worker_processes $ORIGIN_WORKERS, static 1 KiB / 100 KiB files, keep-alive, access_log off
nginx   : $(has_proxy nginx && echo "worker_processes $WORKERS (+ master), upstream keepalive 64, proxy_http_version 1.1, access_log off" || echo skipped)
haproxy : $(has_proxy haproxy && echo "$(haproxy -v 2>/dev/null | head -1 | awk '{print $3}'), nbthread $WORKERS, mode http, default http-reuse (safe), no log" || echo skipped)
-fwd    : $(has_proxy nginx-fwd || has_proxy haproxy-fwd && echo "the same, also sending the origin X-Forwarded-For/-Proto/-Host, Forwarded and Via, and Via to the client, as Palisade does" || echo skipped)
palisade: $(has_proxy palisade && echo "$PALISADE_THREADS_DESC, access_log off${PALISADE_EXTRA:+, extra: $PALISADE_EXTRA}" || echo skipped)
idle    : $([[ $SKIP_IDLE == 1 ]] && echo skipped || echo "$IDLE_CONNS keep-alive conns per proxy (fresh process), one GET /1k each, $IDLE_CONCURRENCY at a time, from 127.0.0.2-40; KiB/conn = RSS delta / open conns")
EOF
)
echo "$HEADER" >&2

TARGETS=(origin $PROXIES)

start_server origin
ORIGIN_PID=$SERVER_PID
wait_ready origin "$ORIGIN_PID" "$ORIGIN_PORT" || die "origin nginx did not start"
check_bodies origin "$ORIGIN_PORT" || die "origin serves wrong bodies"

if [[ $SKIP_LOAD != 1 ]]; then
    # Every server runs for the whole load test and the rounds interleave them, so a slow
    # spell of this (shared) machine lands on all of them rather than on one.
    declare -A LOAD_PID=([origin]=$ORIGIN_PID)
    LIVE=()
    for t in "${TARGETS[@]}"; do
        if [[ $t != origin ]]; then
            start_server "$t"; LOAD_PID[$t]=$SERVER_PID
            if ! wait_ready "$t" "$SERVER_PID" "$(port_of "$t")" || ! check_bodies "$t" "$(port_of "$t")"; then
                NOTE[1k,$t]="${FAIL_REASON[$t]:-failed to start/serve}"; NOTE[100k,$t]="${NOTE[1k,$t]}"
                stop_server "$SERVER_PID"; continue
            fi
        fi
        LIVE+=("$t")
    done
    for ((round = 1; round <= ROUNDS; round++)); do
        for size in $SIZES; do
            for t in "${LIVE[@]}"; do
                [[ -z ${DIED[$t]:-} ]] || continue
                run_wrk "$t" "$(port_of "$t")" "$size" "$round" "${LOAD_PID[$t]}" || true
                if ! kill -0 "${LOAD_PID[$t]}" 2>/dev/null; then
                    log "$t died during the $size run"; show_log "$t"
                    NOTE[$size,$t]="${NOTE[$size,$t]:-} (process died)"; fail "$t" "died during the $size run"
                    DIED[$t]=1
                fi
            done
        done
    done
    for t in "${LIVE[@]}"; do
        for size in $SIZES; do summarize "$size" "$t"; done
        if [[ $t != origin && -z ${DIED[$t]:-} ]]; then stop_server "${LOAD_PID[$t]}"; fi
    done
fi

# The -fwd peers hold idle connections exactly as their plain configuration does.
IDLE_PROXIES=$(tr ' ' '\n' <<<"$PROXIES" | grep -v -- '-fwd$' | tr '\n' ' ' || true)
if [[ $SKIP_IDLE != 1 ]]; then
    for t in $IDLE_PROXIES; do
        port=$(port_of "$t")
        start_server "$t"; pid=$SERVER_PID   # fresh process for each memory test
        if ! wait_ready "$t" "$pid" "$port"; then
            MEM_NOTE[$t]="failed to start: ${FAIL_REASON[$t]:-?}"; stop_server "$pid"; continue
        fi
        idle_test "$t" "$pid" "$port" || true
        stop_server "$pid"
    done
fi

# ------------------------------------------------------------------ report --
{
    echo
    echo "$HEADER"
    echo
    if [[ $SKIP_LOAD != 1 ]]; then
        printf '%-6s %-11s %10s %10s %10s %9s %9s %7s  %s\n' size proxy "req/s" "p50 ms" "p99 ms" "usr us/r" "sys us/r" errors note
        printf '%-6s %-11s %10s %10s %10s %9s %9s %7s\n' ------ ----------- ---------- ---------- ---------- --------- --------- -------
        for size in $SIZES; do
            for t in "${TARGETS[@]}"; do
                if [[ -n ${RPS[$size,$t]:-} ]]; then
                    printf '%-6s %-11s %10s %10s %10s %9s %9s %7s  %s\n' "$size" "$t" "${RPS[$size,$t]}" \
                        "${P50[$size,$t]}" "${P99[$size,$t]}" "${CPU_USER[$size,$t]}" "${CPU_SYS[$size,$t]}" \
                        "${ERRS[$size,$t]}" "${NOTE[$size,$t]:-}"
                else
                    printf '%-6s %-11s %10s %10s %10s %9s %9s %7s  %s\n' "$size" "$t" - - - - - - "FAILED: ${NOTE[$size,$t]:-no result}"
                fi
            done
        done
        echo
    fi
    if [[ $SKIP_IDLE != 1 && -n ${IDLE_PROXIES// /} ]]; then
        line="idle keep-alive memory ($IDLE_CONNS conns):"
        sep=" "
        for t in $IDLE_PROXIES; do
            line+="$sep$t ${MEM_RSS[$t]:-n/a} KiB/conn"; sep=", "
        done
        echo "$line"
        echo "  (RSS delta / open connections; reference: nginx 0.6, HAProxy 1.3, Varnish 10, default hyper 11; Palisade target < 4)"
        for t in $IDLE_PROXIES; do
            printf '  %-11s RSS %8s KiB/conn  PSS %8s KiB/conn  %s\n' "$t" "${MEM_RSS[$t]:-n/a}" "${MEM_PSS[$t]:-n/a}" "${MEM_NOTE[$t]:-}"
        done
    fi
    for t in "${TARGETS[@]}"; do
        [[ -n ${FAIL_REASON[$t]:-} ]] || continue
        echo
        echo "$t FAILED: ${FAIL_REASON[$t]}"
        if [[ -s $WORK/$t.fail-tail ]]; then
            echo "  its output (last lines):"
            sed 's/^/  | /' "$WORK/$t.fail-tail"
        fi
    done
} | tee ${BENCH_OUTPUT:+"$BENCH_OUTPUT"}
if ((FAILED_ANY)); then
    log "some runs failed (see above); exit status 1"
    exit 1
fi
