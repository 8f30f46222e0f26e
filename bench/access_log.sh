#!/usr/bin/env bash
# Access-log benchmark: what writing one log line per request costs, Palisade against nginx, in
# the same run, one pinned core for the server.
#
# Rows, for each case (1 KiB cache hit, 100 KiB cache hit, proxied 1 KiB):
#   palisade-off     access_log = "off"
#   palisade-stdout  access_log = "stdout", stdout redirected (appending) to a file: the default
#                    as a service manager or `palisade serve >> access.log` runs it
#   palisade-file    access_log = "<file>"
#   nginx-off        access_log off
#   nginx-log        access_log <file> with a JSON log_format of the same fields, buffer=64k
#                    flush=1s
#   baseline-off / baseline-stdout / baseline-file  the palisade rows again with another binary
#                    (BENCH_BASELINE_BIN, e.g. a build of the commit before a change), in the same
#                    interleaved rounds: a before/after comparison on a shared machine
# Each row: requests/s, CPU per request of the server's processes, and for the log-on rows the
# lines written per request served and the lines the server says it dropped. The ratio column
# is the row's req/s over its own server's log-off row.
#
# One core for the server: every server under test runs on CPU 1 and wrk (and the origin) on
# CPU 0 (taskset), unless BENCH_PIN=0 or the machine has fewer than 2 CPUs. All traffic goes to
# 127.0.0.1. Everything started here runs from a mktemp -d dir and is stopped (by PID) on exit.
# See bench/README.md ("Access-log benchmark").
#
# Environment (defaults in brackets):
#   BENCH_DURATION       wrk duration per measured run, seconds or "10s" [10s]
#   BENCH_WARMUP         unmeasured wrk run before each measured run [1s]
#   BENCH_ROUNDS         interleaved rounds (every server, every case, per round); medians [5]
#   BENCH_CASES          cases to load, from "hit-1k hit-100k proxy-1k" [all three]
#   BENCH_SERVERS        rows to run ["palisade-off palisade-stdout palisade-file nginx-off
#                        nginx-log", and the three baseline-* rows when BENCH_BASELINE_BIN is set]
#   BENCH_BASELINE_BIN   a second Palisade binary for the baseline-* rows [unset]
#   BENCH_CONNECTIONS    wrk connections [64]
#   BENCH_THREADS        wrk threads [1: wrk has one core]
#   BENCH_PIN            1 = server on BENCH_SERVER_CPU, wrk and origin on BENCH_CLIENT_CPU [1]
#   BENCH_SERVER_CPU / BENCH_CLIENT_CPU  the two CPUs [1 / 0]
#   BENCH_LOG_SETTLE     seconds waited after a run before its log lines are counted, so that
#                        buffered lines are on disk (both servers flush at least every second) [2]
#   BENCH_PALISADE_SERVER_EXTRA  extra TOML lines for every Palisade's [server] table [unset]
#   BENCH_KEEP_TMP       1 = keep the temp dir (configs, logs, wrk output) [0]
#   BENCH_OUTPUT         also write the final table to this file [unset]
#   PALISADE_BIN         Palisade binary to use instead of `cargo build --release --bin palisade`
set -euo pipefail

BENCH_TAG=access-log-bench
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=$(secs "${BENCH_DURATION:-10s}")
DURATION_SECS=$(to_secs "$DURATION")
WARMUP=$(secs "${BENCH_WARMUP:-1s}")
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}
ROUNDS=${BENCH_ROUNDS:-5}
CASES=${BENCH_CASES:-hit-1k hit-100k proxy-1k}
BASELINE=${BENCH_BASELINE_BIN:-}
SERVERS=${BENCH_SERVERS:-palisade-off palisade-stdout palisade-file${BASELINE:+ baseline-off baseline-stdout baseline-file} nginx-off nginx-log}
PIN=${BENCH_PIN:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
LOG_SETTLE=${BENCH_LOG_SETTLE:-2}
KEEP_TMP=${BENCH_KEEP_TMP:-0}
PALISADE_EXTRA=${BENCH_PALISADE_SERVER_EXTRA:-}
HOST_HDR="bench.local"
READY_TIMEOUT=30

for c in $CASES; do
    case $c in hit-1k | hit-100k | proxy-1k) ;; *) die "BENCH_CASES: unknown case '$c' (hit-1k hit-100k proxy-1k)" ;; esac
done
for s in $SERVERS; do
    case $s in palisade-off | palisade-stdout | palisade-file | nginx-off | nginx-log) ;;
        baseline-off | baseline-stdout | baseline-file) [[ -n $BASELINE ]] || die "$s needs BENCH_BASELINE_BIN" ;;
        *) die "BENCH_SERVERS: unknown server '$s'" ;;
    esac
done
for v in ROUNDS CONNS THREADS LOG_SETTLE; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
[[ $PIN == 0 || $PIN == 1 ]] || die "BENCH_PIN must be 0 or 1 (got '$PIN')"
PROXIES=$SERVERS # has_proxy reads PROXIES

bench_traps
setup_pinning "server under test (one worker/thread)"
ensure_tools wrk:wrk nginx:nginx curl:curl
raise_nofile 16384
make_work

PALISADE=""
if [[ " $SERVERS " == *" palisade-"* ]]; then
    if [[ -n ${PALISADE_BIN:-} ]]; then
        PALISADE=$PALISADE_BIN
    else
        PALISADE=$(cargo_release_bin palisade palisade) || die "cargo build --release failed"
    fi
fi

read -r ORIGIN_PORT P_OFF P_OFF_ADMIN P_STDOUT P_STDOUT_ADMIN P_FILE P_FILE_ADMIN NGINX_OFF NGINX_LOG \
    B_OFF B_OFF_ADMIN B_STDOUT B_STDOUT_ADMIN B_FILE B_FILE_ADMIN < <(free_ports 15) || true
[[ -n ${B_FILE_ADMIN:-} ]] || die "could not pick free ports"

# ------------------------------------------------------------------ origin --
mkdir -p "$WORK/www" "$WORK/origin"
write_bodies "$WORK/www"
counting_origin_conf "$WORK/origin" "$ORIGIN_PORT" "$WORK/www" "$WORK/origin/access.log" >"$WORK/origin/nginx.conf"

# ----------------------------------------------------------------- servers --
# Palisade: one site caching (bench.local) and one passing through (proxy.local), the same
# origin. Everything but the access log is the same in the three.
palisade_conf() { # name port admin-port access_log-value
    mkdir -p "$WORK/$1/data"
    cat >"$WORK/$1/palisade.toml" <<EOF
[server]
listen = ["127.0.0.1:$2"]
admin = "127.0.0.1:$3"
data_dir = "$WORK/$1/data"
access_log = "$4"
workers = 1
max_connections_per_ip = 100000
max_new_connections_per_ip = 100000000
$PALISADE_EXTRA

[[site]]
name = "bench"
hosts = ["bench.local"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
[site.cache]
enabled = true
# Closed-loop load is a flood by any measure: attack detection is off, so that every
# row measures the data path.
[site.shield]
auto_under_attack = false

[[site]]
name = "proxied"
hosts = ["proxy.local"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
[site.cache]
enabled = false
# Closed-loop load is a flood by any measure: attack detection is off, so that every
# row measures the data path.
[site.shield]
auto_under_attack = false
EOF
}
palisade_conf palisade-off "$P_OFF" "$P_OFF_ADMIN" off
palisade_conf palisade-stdout "$P_STDOUT" "$P_STDOUT_ADMIN" stdout
palisade_conf palisade-file "$P_FILE" "$P_FILE_ADMIN" "$WORK/palisade-file/access.log"
palisade_conf baseline-off "$B_OFF" "$B_OFF_ADMIN" off
palisade_conf baseline-stdout "$B_STDOUT" "$B_STDOUT_ADMIN" stdout
palisade_conf baseline-file "$B_FILE" "$B_FILE_ADMIN" "$WORK/baseline-file/access.log"

# nginx: proxy_cache for bench.local, plain proxying for proxy.local. nginx-log writes the
# fields Palisade's line has, as JSON, through a 64 KiB buffer flushed at least every second.
nginx_conf() { # name port access-log-line
    mkdir -p "$WORK/$1/cache"
    cat >"$WORK/$1/nginx.conf" <<EOF
$(nginx_main "$WORK/$1" 1 16384)
http {
$(nginx_common_http "$WORK/$1")
    log_format palisade escape=json '{"time":"\$time_iso8601","site":"\$server_name","client_ip":"\$remote_addr","method":"\$request_method","host":"\$host","path":"\$uri","protocol":"\$server_protocol","status":\$status,"bytes_in":\$request_length,"bytes_out":\$body_bytes_sent,"duration_ms":\$request_time,"origin":"\$upstream_addr","upstream_ms":"\$upstream_header_time"}';
    sendfile on;
    tcp_nopush off;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    proxy_cache_path $WORK/$1/cache levels=1:2 keys_zone=bench:64m max_size=1g inactive=1h use_temp_path=off;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$2 backlog=4096;
        server_name bench.local;
        # in the server block: the common "access_log off" at the http level cancels any
        # other access_log written at that level
        $3
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
        }
    }
    server {
        listen 127.0.0.1:$2;
        server_name proxy.local;
        $3
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
}
nginx_conf nginx-off "$NGINX_OFF" "access_log off;"
nginx_conf nginx-log "$NGINX_LOG" "access_log $WORK/nginx-log/access.log palisade buffer=64k flush=1s;"

port_of() {
    case $1 in
        palisade-off) echo "$P_OFF" ;; palisade-stdout) echo "$P_STDOUT" ;; palisade-file) echo "$P_FILE" ;;
        baseline-off) echo "$B_OFF" ;; baseline-stdout) echo "$B_STDOUT" ;; baseline-file) echo "$B_FILE" ;;
        nginx-off) echo "$NGINX_OFF" ;; nginx-log) echo "$NGINX_LOG" ;; *) return 1 ;;
    esac
}
admin_of() {
    case $1 in
        palisade-off) echo "$P_OFF_ADMIN" ;; palisade-stdout) echo "$P_STDOUT_ADMIN" ;; palisade-file) echo "$P_FILE_ADMIN" ;;
        baseline-off) echo "$B_OFF_ADMIN" ;; baseline-stdout) echo "$B_STDOUT_ADMIN" ;; baseline-file) echo "$B_FILE_ADMIN" ;;
        *) return 1 ;;
    esac
}
log_of() { # name -> the access log file it writes, or nothing
    case $1 in
        *-stdout | *-file | nginx-log) echo "$WORK/$1/access.log" ;;
        *) ;;
    esac
}
off_row_of() { # name -> its server's log-off row
    case $1 in palisade-*) echo palisade-off ;; baseline-*) echo baseline-off ;; nginx-*) echo nginx-off ;; esac
}

binary_of() { # name -> the Palisade binary that row runs
    case $1 in baseline-*) echo "$BASELINE" ;; *) echo "$PALISADE" ;; esac
}

SERVER_PID=""
start_server() { # name -> starts it pinned, sets SERVER_PID
    local name=$1 logf pin=(${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"})
    logf=$(logfile_of "$name")
    case $name in
        origin)
            start_bg origin "$logf" ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} \
                nginx -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf" ;;
        palisade-stdout | baseline-stdout)
            # stdout appends to its own file (as `>>` would), stderr goes to the server's log
            start_bg "$name" "$logf" ${pin[@]+"${pin[@]}"} bash -c 'out=$1; shift; exec "$@" >>"$out"' _ \
                "$WORK/$name/access.log" "$(binary_of "$name")" serve --config "$WORK/$name/palisade.toml" ;;
        palisade-* | baseline-*)
            start_bg "$name" "$logf" ${pin[@]+"${pin[@]}"} "$(binary_of "$name")" serve --config "$WORK/$name/palisade.toml" ;;
        nginx-*)
            start_bg "$name" "$logf" ${pin[@]+"${pin[@]}"} \
                nginx -p "$WORK/$name" -e "$WORK/$name/error.log" -c "$WORK/$name/nginx.conf" ;;
    esac
    SERVER_PID=$LAST_PID
}

# ------------------------------------------------------------- measurement --
declare -A LINES_PER_REQ DROPPED DIED
dropped_total() { # name -> palisade_access_log_dropped_total on its admin listener (0 for nginx)
    local admin
    admin=$(admin_of "$1") || { echo 0; return; }
    curl -s --max-time 5 "http://127.0.0.1:$admin/metrics" 2>/dev/null |
        awk '$1 == "palisade_access_log_dropped_total" {printf "%.0f", $2; found = 1} END {if (!found) print 0}'
}
D0=0
run_wrk_before() { # name case round: the warm-up's lines are written; start a fresh file
    local name=$1 f
    f=$(log_of "$name")
    [[ -n $f ]] || return 0
    sleep "$LOG_SETTLE"
    : >"$f" # every writer opened it for appending: the next write lands at offset 0
    D0=$(dropped_total "$name")
}
run_wrk_after() { # name case round: lines written per request wrk completed, lines dropped
    local name=$1 key=$2,$1,$3 f reqs lines d1
    f=$(log_of "$name")
    [[ -n $f ]] || return 0
    sleep "$LOG_SETTLE"
    lines=$(wc -l <"$f")
    : >"$f"
    d1=$(dropped_total "$name")
    reqs=$(awk '/requests in/ {print $1; exit}' "$WORK/wrk-$name-$2-$3.txt")
    # wrk counts the responses it read; up to one per connection was still on its way when the
    # run ended, and the server logged it
    LINES_PER_REQ[$key]=$(awk -v l="$lines" -v r="${reqs:-0}" 'BEGIN {if (r > 0) printf "%.4f", l / r; else print "-"}')
    DROPPED[$key]=$((d1 - D0))
    log "$name $2 round $3: $lines lines for $reqs requests, ${DROPPED[$key]} dropped"
}

summarize_log() { # case name -> LINES_PER_REQ, DROPPED over the rounds
    local c=$1 name=$2 r lpr=() dropped=0
    for ((r = 1; r <= ROUNDS; r++)); do
        [[ -n ${LINES_PER_REQ[$c,$name,$r]:-} ]] || continue
        lpr+=("${LINES_PER_REQ[$c,$name,$r]}")
        dropped=$((dropped + DROPPED[$c,$name,$r]))
    done
    ((${#lpr[@]})) || return 0
    LINES_PER_REQ[$c,$name]="$(printf '%s\n' "${lpr[@]}" | sort -g | head -1)-$(printf '%s\n' "${lpr[@]}" | sort -g | tail -1)"
    DROPPED[$c,$name]=$dropped
}

# --------------------------------------------------------------------- run --
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
HEADER=$(cat <<EOF
# Palisade access-log benchmark ($(date -u +%Y-%m-%dT%H:%MZ))
machine : $NCPU cores ($CPU_MODEL), $(uname -r)
pinning : $PIN_DESC
load    : ${WRK_PREFIX[*]+${WRK_PREFIX[*]} }wrk -t$THREADS -c$CONNS -d$DURATION --latency, warm-up $WARMUP, 127.0.0.1 only; $ROUNDS interleaved rounds, medians shown
cases   : hit-1k / hit-100k: GET /1k, /100k, Host bench.local, a cache hit; proxy-1k: GET /1k, Host proxy.local, cache off
palisade: ${PALISADE:-skipped}; workers = 1; two sites (bench.local cached, proxy.local not)${PALISADE_EXTRA:+; extra: $PALISADE_EXTRA}
baseline: ${BASELINE:-none}
nginx   : $(nginx -v 2>&1 | sed 's|.*/||'), worker_processes 1, proxy_cache for bench.local, upstream keepalive 64; nginx-log: the same fields as JSON (escape=json), buffer=64k flush=1s
origin  : nginx, 1 worker, on wrk's CPU, static files with Cache-Control: public, max-age=3600
EOF
)
echo "$HEADER" >&2

start_server origin
ORIGIN_PID=$SERVER_PID
HOST_HDR=bench.local
wait_ready origin "$ORIGIN_PID" "$ORIGIN_PORT" || die "origin nginx did not start"

declare -A LOAD_PID
LIVE=()
for s in $SERVERS; do
    start_server "$s"
    if ! wait_ready "$s" "$SERVER_PID" "$(port_of "$s")" || ! check_bodies "$s" "$(port_of "$s")"; then
        stop_server "$SERVER_PID"; continue
    fi
    LOAD_PID[$s]=$SERVER_PID
    LIVE+=("$s")
done

for ((round = 1; round <= ROUNDS; round++)); do
    for c in $CASES; do
        case $c in
            hit-1k) HOST_HDR=bench.local WRK_URL_PATH=/1k ;;
            hit-100k) HOST_HDR=bench.local WRK_URL_PATH=/100k ;;
            proxy-1k) HOST_HDR=proxy.local WRK_URL_PATH=/1k ;;
        esac
        for s in ${LIVE[@]+"${LIVE[@]}"}; do
            [[ -z ${DIED[$s]:-} ]] || continue
            run_wrk "$s" "$(port_of "$s")" "$c" "$round" "${LOAD_PID[$s]}" || true
            if ! kill -0 "${LOAD_PID[$s]}" 2>/dev/null; then
                log "$s died during the $c run"; show_log "$s"
                NOTE[$c,$s]="${NOTE[$c,$s]:-} (process died)"; fail "$s" "died during the $c run"
                DIED[$s]=1
            fi
        done
    done
done
for s in ${LIVE[@]+"${LIVE[@]}"}; do
    for c in $CASES; do summarize "$c" "$s"; summarize_log "$c" "$s"; done
    if [[ -z ${DIED[$s]:-} ]]; then stop_server "${LOAD_PID[$s]}"; fi
done

# ------------------------------------------------------------------ report --
{
    echo
    echo "$HEADER"
    echo
    fmt='%-9s %-16s %9s %6s %8s %8s %8s %-15s %8s %6s  %s\n'
    printf "$fmt" case server "req/s" ratio "p99 ms" "usr us/r" "sys us/r" "lines/req" dropped errors note
    printf "$fmt" --------- ---------------- --------- ------ -------- -------- -------- --------------- -------- ------
    for c in $CASES; do
        for s in $SERVERS; do
            if [[ -z ${RPS[$c,$s]:-} ]]; then
                printf "$fmt" "$c" "$s" - - - - - - - - "FAILED: ${NOTE[$c,$s]:-${FAIL_REASON[$s]:-no result}}"
                continue
            fi
            off=$(off_row_of "$s")
            ratio=$(awk -v a="${RPS[$c,$s]}" -v b="${RPS[$c,$off]:-0}" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')
            printf "$fmt" "$c" "$s" "${RPS[$c,$s]}" "$ratio" "${P99[$c,$s]}" "${CPU_USER[$c,$s]}" "${CPU_SYS[$c,$s]}" \
                "${LINES_PER_REQ[$c,$s]:--}" "${DROPPED[$c,$s]:--}" "${ERRS[$c,$s]}" "${NOTE[$c,$s]:-}"
        done
    done
    echo "  ratio: req/s over the same server's (or binary's) log-off row. lines/req: lines in the log over the"
    echo "    responses wrk read, lowest-highest over the rounds (a little over 1: the requests still"
    echo "    in flight when wrk stopped were logged too). dropped: lines the server counted as lost"
    echo "    (palisade_access_log_dropped_total), all rounds."
    for s in $SERVERS; do
        [[ -n ${FAIL_REASON[$s]:-} ]] || continue
        echo "$s FAILED: ${FAIL_REASON[$s]}"
        if [[ -s $WORK/$s.fail-tail ]]; then sed 's/^/  | /' "$WORK/$s.fail-tail"; fi
    done
} | tee ${BENCH_OUTPUT:+"$BENCH_OUTPUT"}
if ((FAILED_ANY)); then
    log "some servers failed (see above); exit status 1"
    exit 1
fi
