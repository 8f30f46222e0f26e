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
#   BENCH_PROXIES        which proxies to run ["nginx haproxy palisade"]
#   BENCH_SKIP_PALISADE  1 = leave Palisade out (no cargo build) [0]
#   BENCH_SKIP_IDLE      1 = skip the idle-connection memory test [0]
#   BENCH_SKIP_LOAD      1 = skip the wrk throughput/latency runs [0]
#   BENCH_KEEP_TMP       1 = keep the temp dir (configs, logs) after exit [0]
#   BENCH_OUTPUT         also write the final table to this file [unset]
#   PALISADE_BIN         use this binary instead of building target/release/palisade
set -euo pipefail

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)

secs() { # "10" or "10s" -> "10s"; rejects anything else
    local v=$1
    if [[ $v =~ ^[0-9]+$ ]]; then echo "${v}s";
    elif [[ $v =~ ^[0-9]+[smh]$ ]]; then echo "$v";
    else echo "invalid duration: $v" >&2; return 1; fi
}
DURATION=$(secs "${BENCH_DURATION:-10s}")
to_secs() { local v=$1 n=${1%?}; case ${v: -1} in m) echo $((n * 60)) ;; h) echo $((n * 3600)) ;; *) echo "$n" ;; esac; }
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
CLK_TCK=$(getconf CLK_TCK)
IDLE_SETTLE=${BENCH_IDLE_SETTLE:-3}
IDLE_CONCURRENCY=${BENCH_IDLE_CONCURRENCY:-64}
PALISADE_EXTRA=${BENCH_PALISADE_SERVER_EXTRA:-}
SKIP_PALISADE=${BENCH_SKIP_PALISADE:-0}
SKIP_IDLE=${BENCH_SKIP_IDLE:-0}
SKIP_LOAD=${BENCH_SKIP_LOAD:-0}
KEEP_TMP=${BENCH_KEEP_TMP:-0}
PROXIES=${BENCH_PROXIES:-nginx haproxy palisade}
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
    case $p in nginx | haproxy | palisade) ;; *) echo "[bench] ERROR: unknown proxy '$p' in BENCH_PROXIES (nginx haproxy palisade)" >&2; exit 2 ;; esac
done

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }
die() { echo "[bench] ERROR: $*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup --
WORK=""
FG_PID=""  # bounded foreground command (wrk) currently running, see run_fg
PIDS=()   # every process this script started (servers, clients)

descendants() { # pid -> pid and all its descendants
    local p=$1 c
    echo "$p"
    for c in $(pgrep -P "$p" 2>/dev/null || true); do descendants "$c"; done
}

stop_pid() { # stop one process we started, and its children, TERM then KILL
    local pid=$1 all p i
    kill -0 "$pid" 2>/dev/null || return 0
    all=$(descendants "$pid" | tr '\n' ' ')
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
        local alive=0
        for p in $all; do kill -0 "$p" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for p in $all; do kill -KILL "$p" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    local pid
    if [[ -n $FG_PID ]]; then stop_pid "$FG_PID"; fi
    for pid in "${PIDS[@]}"; do stop_pid "$pid"; done
    if [[ -n $WORK && -d $WORK ]]; then
        if [[ $KEEP_TMP == 1 || $rc -ne 0 ]]; then
            log "temp dir kept: $WORK (configs and logs)"
        else
            rm -rf "$WORK"
        fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

LAST_PID=""
start_bg() { # name logfile cmd... ; sets LAST_PID
    # setsid: own session, so a terminal Ctrl-C reaches only this script (whose
    # trap then stops everything in order), not the servers directly.
    local name=$1 logf=$2; shift 2
    setsid "$@" >"$logf" 2>&1 </dev/null &
    LAST_PID=$!
    PIDS+=("$LAST_PID")
    log "started $name (pid $LAST_PID): $*"
}

run_fg() { # outfile cmd... : run a bounded command (output to outfile) and wait
    # for it. Waiting with the wait builtin (not as a foreground job) lets the
    # INT/TERM traps fire at once. (Don't redirect run_fg itself: the trap
    # would inherit that redirection.)
    local rc=0 out=$1; shift
    "$@" </dev/null >"$out" 2>&1 &
    FG_PID=$!
    wait "$FG_PID" || rc=$?
    FG_PID=""
    return "$rc"
}

# ------------------------------------------------------------ prerequisites --
need_install=()
command -v wrk >/dev/null || need_install+=(wrk)
command -v nginx >/dev/null || need_install+=(nginx)
command -v haproxy >/dev/null || need_install+=(haproxy)
command -v curl >/dev/null || need_install+=(curl)
if ((${#need_install[@]})); then
    [[ $(id -u) == 0 ]] || die "missing ${need_install[*]}; run as root or install them"
    log "installing ${need_install[*]}"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y "${need_install[@]}" >&2; then
        apt-get update >&2 || die "apt-get update failed"
        apt-get install -y "${need_install[@]}" >&2 || die "apt-get install ${need_install[*]} failed"
    fi
fi
command -v python3 >/dev/null || die "python3 is required"
command -v pgrep >/dev/null || die "pgrep (procps) is required"

# Debian starts packaged services on install where systemd runs; we never
# touch them: all our servers use their own ports, configs and pid files.

PALISADE=""
if [[ " $PROXIES " == *" palisade "* ]]; then
    if [[ -n ${PALISADE_BIN:-} ]]; then
        PALISADE=$PALISADE_BIN
    else
        log "building palisade: cargo build --release --bin palisade"
        (cd "$ROOT" && cargo build --release --bin palisade >&2) ||
            die "cargo build --release --bin palisade failed (set BENCH_SKIP_PALISADE=1 to bench without it)"
        PALISADE="${CARGO_TARGET_DIR:-$ROOT/target}/release/palisade"
    fi
    [[ -x $PALISADE ]] || die "palisade binary not found/executable: $PALISADE"
fi

# File descriptors: the idle test needs ~1 fd per connection in the proxy and
# in the client, plus upstream connections.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
NOFILE=$(ulimit -n)
if [[ $NOFILE == unlimited ]]; then NOFILE=1048576; fi
if ((NOFILE < 65536)); then
    log "warning: could not raise ulimit -n to 65536 (hard limit $(ulimit -Hn)); using $NOFILE"
fi
if ((IDLE_CONNS + 1000 > NOFILE)); then
    log "warning: ulimit -n $NOFILE too low for $IDLE_CONNS idle conns; using $((NOFILE - 1000))"
    IDLE_CONNS=$((NOFILE - 1000))
fi

WORK=$(mktemp -d /tmp/palisade-bench.XXXXXX)
chmod 755 "$WORK" # nginx workers run as an unprivileged user when started as root
log "work dir: $WORK"

free_ports() { # n -> n distinct free TCP ports on 127.0.0.1, below the ephemeral range
    python3 - "$1" <<'EOF'
import random, socket, sys
n = int(sys.argv[1]); held = []; out = []
while len(out) < n:
    p = random.randint(20000, 32000)
    if p in out:
        continue
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        s.close(); continue
    held.append(s); out.append(p)
print(" ".join(map(str, out)))
EOF
}
read -r ORIGIN_PORT NGINX_PORT HAPROXY_PORT PALISADE_PORT PALISADE_ADMIN_PORT < <(free_ports 5) || true
[[ -n ${PALISADE_ADMIN_PORT:-} ]] || die "could not pick free ports"

# ------------------------------------------------------------------ origin --
mkdir -p "$WORK/www" "$WORK/origin" "$WORK/nginx" "$WORK/haproxy" "$WORK/palisade-data"
python3 - "$WORK/www" <<'EOF'
import sys, os
d = sys.argv[1]
pattern = b"palisade-bench-0123456789abcdefghijklmnopqrstuvwxyz\n"
for name, size in (("1k", 1024), ("100k", 100 * 1024)):
    data = (pattern * (size // len(pattern) + 1))[:size]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
EOF
chmod 755 "$WORK/www"; chmod 644 "$WORK/www/1k" "$WORK/www/100k"

nginx_common_http() { # prefix dir -> temp paths etc. inside the temp dir
    cat <<EOF
    access_log off;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    default_type application/octet-stream;
EOF
}

cat >"$WORK/origin/nginx.conf" <<EOF
# origin: static files, keep-alive on, no access log
daemon off;
master_process on;
worker_processes $ORIGIN_WORKERS;
worker_rlimit_nofile $NOFILE;
pid $WORK/origin/nginx.pid;
error_log $WORK/origin/error.log warn;
events { worker_connections 16384; }
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
cat >"$WORK/nginx/nginx.conf" <<EOF
# nginx reverse proxy: one master + BENCH_WORKERS workers, upstream keep-alive
daemon off;
master_process on;
worker_processes $WORKERS;
worker_rlimit_nofile $NOFILE;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections $WORKER_CONNS; }
http {
$(nginx_common_http "$WORK/nginx")
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    # stream through memory buffers only, never spill responses to disk
    proxy_max_temp_file_size 0;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT backlog=4096;
        server_name _;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF

HAPROXY_MAXCONN=$((IDLE_CONNS + 1000))
HAPROXY_LIMITS=""
# HAProxy sizes its fd budget as ~2 fds per connection and by default refuses
# to start if it cannot raise RLIMIT_NOFILE that far. Idle client connections
# only need one fd each, so where the hard limit is low, allow it to run.
if ((NOFILE < 2 * HAPROXY_MAXCONN + 100)); then
    HAPROXY_LIMITS="    no strict-limits  # ulimit -n is only $NOFILE here"
fi
cat >"$WORK/haproxy/haproxy.cfg" <<EOF
# HAProxy: http mode, default http-reuse (safe), no logging
global
    nbthread $WORKERS
    maxconn $HAPROXY_MAXCONN
$HAPROXY_LIMITS
    pidfile $WORK/haproxy/haproxy.pid

defaults
    mode http
    maxconn $HAPROXY_MAXCONN
    timeout connect 5s
    timeout client 300s
    timeout server 30s
    timeout http-keep-alive 300s
    timeout http-request 30s

frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend origin

backend origin
    server o1 127.0.0.1:$ORIGIN_PORT
EOF

cat >"$WORK/palisade.toml" <<EOF
[server]
listen = ["127.0.0.1:$PALISADE_PORT"]
admin = "127.0.0.1:$PALISADE_ADMIN_PORT"
data_dir = "$WORK/palisade-data"
access_log = "off"
workers = ${BENCH_PALISADE_THREADS:-$WORKERS}
max_connections = 100000
max_connections_per_ip = 100000
$PALISADE_EXTRA

[[site]]
name = "bench"
hosts = ["*"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
EOF

port_of() {
    case $1 in
        origin) echo "$ORIGIN_PORT" ;; nginx) echo "$NGINX_PORT" ;;
        haproxy) echo "$HAPROXY_PORT" ;; palisade) echo "$PALISADE_PORT" ;;
        *) return 1 ;;
    esac
}
logfile_of() { echo "$WORK/$1.out"; }

SERVER_PID=""
start_server() { # name -> starts it, sets SERVER_PID
    local name=$1 logf
    logf=$(logfile_of "$name")
    case $name in
        origin) start_bg origin "$logf" nginx -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf" ;;
        nginx) start_bg nginx "$logf" nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" ;;
        haproxy) start_bg haproxy "$logf" haproxy -db -f "$WORK/haproxy/haproxy.cfg" ;;
        palisade)
            start_bg palisade "$logf" "$PALISADE" serve --config "$WORK/palisade.toml" ;;
        *) return 1 ;;
    esac
    SERVER_PID=$LAST_PID
}

declare -A FAIL_REASON
FAILED_ANY=0
fail() { # name reason -> remember why name failed (first reason wins) and its output
    local name=$1 f
    FAILED_ANY=1
    [[ -n ${FAIL_REASON[$name]:-} ]] && return 0
    FAIL_REASON[$name]=$2
    f=$(logfile_of "$name")
    if [[ -s $f ]]; then tail -n 15 "$f" >"$WORK/$name.fail-tail"; fi
    return 0
}

show_log() { # name -> print the tail of its output (and error log) to stderr
    local name=$1 f
    for f in "$(logfile_of "$name")" "$WORK/$name/error.log"; do
        [[ -s $f ]] || continue
        echo "----- $name: $f (last 30 lines) -----" >&2
        tail -n 30 "$f" >&2
        echo "-----" >&2
    done
}

curl_get() { # port path -> "http_code size" (never fails)
    curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 \
        -H "Host: $HOST_HDR" "http://127.0.0.1:$1$2" 2>/dev/null || echo "000 0"
}

wait_ready() { # name pid port -> 0 once GET /1k returns 200, 1 on death/timeout
    local name=$1 pid=$2 port=$3 deadline=$((SECONDS + READY_TIMEOUT)) r
    while ((SECONDS < deadline)); do
        if ! kill -0 "$pid" 2>/dev/null; then
            log "$name exited during startup"
            show_log "$name"
            fail "$name" "exited during startup"
            return 1
        fi
        r=$(curl_get "$port" /1k)
        [[ ${r%% *} == 200 ]] && return 0
        sleep 0.2
    done
    log "$name did not answer 200 on 127.0.0.1:$port/1k within ${READY_TIMEOUT}s (last: $r)"
    show_log "$name"
    fail "$name" "no 200 for GET /1k within ${READY_TIMEOUT}s (last: status ${r%% *})"
    return 1
}

check_bodies() { # name port -> verify sizes through the server
    local name=$1 port=$2 r
    r=$(curl_get "$port" /1k)
    [[ $r == "200 1024" ]] || { log "$name: GET /1k returned '$r' (want '200 1024')"; fail "$name" "GET /1k: status/bytes $r, want 200 1024"; return 1; }
    r=$(curl_get "$port" /100k)
    [[ $r == "200 102400" ]] || { log "$name: GET /100k returned '$r' (want '200 102400')"; fail "$name" "GET /100k: status/bytes $r, want 200 102400"; return 1; }
}

stop_server() { # pid
    stop_pid "$1"
}

# ------------------------------------------------------------- measurement --
declare -A RPS P50 P99 ERRS CPU_USER CPU_SYS NOTE MEM_RSS MEM_PSS MEM_NOTE DIED

to_ms() { # wrk latency "512.00us" / "1.23ms" / "1.02s" / "1.00m" -> ms
    awk -v v="$1" 'BEGIN {
        n = v + 0; u = v; sub(/^[0-9.]+/, "", u);
        if (u == "us") n /= 1000; else if (u == "s") n *= 1000; else if (u == "m") n *= 60000;
        printf "%.3f", n }'
}

cpu_ticks() { # pid -> "utime stime" in clock ticks, summed over pid and its descendants
    local p u=0 s=0 a b
    for p in $(descendants "$1"); do
        read -r a b < <(awk '{print $14, $15}' "/proc/$p/stat" 2>/dev/null || echo "0 0")
        u=$((u + a)); s=$((s + b))
    done
    echo "$u $s"
}

us_per_req() { # ticks requests -> microseconds per request, one decimal
    awk -v t="$1" -v n="$2" -v hz="$CLK_TCK" 'BEGIN {if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "-"}'
}

run_wrk() { # name port size round pid -> fills RPS/P50/P99/ERRS/CPU_*[size,name,round]
    local name=$1 port=$2 size=$3 round=$4 pid=$5 out url u0 s0 u1 s1
    url="http://127.0.0.1:$port/$size"
    out="$WORK/wrk-$name-$size-$round.txt"
    log "$name $size: warm-up $WARMUP"
    run_fg /dev/null timeout 120 wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -H "Host: $HOST_HDR" "$url" || true
    log "$name $size: wrk -t$THREADS -c$CONNS -d$DURATION --latency"
    read -r u0 s0 < <(cpu_ticks "$pid")
    if ! run_fg "$out" timeout $((DURATION_SECS * 2 + 60)) wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
        -H "Host: $HOST_HDR" "$url"; then
        log "$name $size: wrk failed"; cat "$out" >&2
        NOTE[$size,$name]="wrk failed"; fail "$name" "wrk failed ($size)"
        return 1
    fi
    read -r u1 s1 < <(cpu_ticks "$pid")
    local rps p50 p99 sock non2xx reqs
    reqs=$(awk '/requests in/ {print $1; exit}' "$out")
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    p50=$(awk '/Latency Distribution/ {d=1} d && $1=="50%" {print $2; exit}' "$out")
    p99=$(awk '/Latency Distribution/ {d=1} d && $1=="99%" {print $2; exit}' "$out")
    sock=$(awk '/Socket errors:/ {gsub(/[^0-9]+/, " "); n = 0; for (i = 1; i <= NF; i++) n += $i; print n}' "$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    if [[ -z $rps || -z $p50 || -z $p99 ]]; then
        log "$name $size: could not parse wrk output"; cat "$out" >&2
        NOTE[$size,$name]="unparsable wrk output"; fail "$name" "unparsable wrk output ($size)"
        return 1
    fi
    local key=$size,$name,$round
    RPS[$key]=$(printf '%.0f' "$rps")
    P50[$key]=$(to_ms "$p50")
    P99[$key]=$(to_ms "$p99")
    ERRS[$key]=$((${sock:-0} + ${non2xx:-0}))
    CPU_USER[$key]=$(us_per_req $((u1 - u0)) "${reqs:-0}")
    CPU_SYS[$key]=$(us_per_req $((s1 - s0)) "${reqs:-0}")
    log "$name $size round $round: ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms, errors ${ERRS[$key]}, CPU/req user ${CPU_USER[$key]} us sys ${CPU_SYS[$key]} us"
}

median() { # values... -> the median (the lower middle one for an even count)
    printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR) print v[int((NR + 1) / 2)]}'
}

summarize() { # size name -> RPS/P50/P99/ERRS[size,name] from the rounds it completed
    local size=$1 name=$2 r rps=() p50=() p99=() cu=() cs=() errs=0
    for ((r = 1; r <= ROUNDS; r++)); do
        [[ -n ${RPS[$size,$name,$r]:-} ]] || continue
        rps+=("${RPS[$size,$name,$r]}"); p50+=("${P50[$size,$name,$r]}"); p99+=("${P99[$size,$name,$r]}")
        cu+=("${CPU_USER[$size,$name,$r]}"); cs+=("${CPU_SYS[$size,$name,$r]}")
        errs=$((errs + ERRS[$size,$name,$r]))
    done
    ((${#rps[@]})) || return 0
    RPS[$size,$name]=$(median "${rps[@]}")
    P50[$size,$name]=$(median "${p50[@]}")
    P99[$size,$name]=$(median "${p99[@]}")
    CPU_USER[$size,$name]=$(median "${cu[@]}")
    CPU_SYS[$size,$name]=$(median "${cs[@]}")
    ERRS[$size,$name]=$errs
    if ((${#rps[@]} > 1)); then
        local sorted
        sorted=$(printf '%s\n' "${rps[@]}" | sort -g | tr '\n' ' ')
        NOTE[$size,$name]="${NOTE[$size,$name]:+${NOTE[$size,$name]}; }req/s per round: ${sorted% }"
    fi
}

mem_kib() { # field(VmRSS|Pss) pid -> KiB summed over pid and its descendants
    local field=$1 pid=$2 p total=0 v
    for p in $(descendants "$pid"); do
        if [[ $field == VmRSS ]]; then
            v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || true)
        else
            v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
        fi
        total=$((total + ${v:-0}))
    done
    echo "$total"
}

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
has_proxy() { [[ " $PROXIES " == *" $1 "* ]]; }
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
PALISADE_THREADS_DESC="workers = ${BENCH_PALISADE_THREADS:-$WORKERS} (tokio worker threads; the product's default is one per core)"
HEADER=$(cat <<EOF
# Palisade edge benchmark ($(date -u +%Y-%m-%dT%H:%MZ))
machine : $(nproc) cores ($CPU_MODEL), $(uname -r); nothing is pinned: wrk, origin and proxy share all cores
load    : wrk -t$THREADS -c$CONNS -d$DURATION --latency, warm-up $WARMUP, Host: $HOST_HDR, 127.0.0.1 only; $ROUNDS interleaved rounds, medians shown
origin  : nginx $(nginx -v 2>&1 | sed 's|.*/||'), worker_processes $ORIGIN_WORKERS, static 1 KiB / 100 KiB files, keep-alive, access_log off
nginx   : $(has_proxy nginx && echo "worker_processes $WORKERS (+ master), upstream keepalive 64, proxy_http_version 1.1, access_log off" || echo skipped)
haproxy : $(has_proxy haproxy && echo "$(haproxy -v 2>/dev/null | head -1 | awk '{print $3}'), nbthread $WORKERS, mode http, default http-reuse (safe), no log" || echo skipped)
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

if [[ $SKIP_IDLE != 1 ]]; then
    for t in $PROXIES; do
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
        printf '%-6s %-9s %10s %10s %10s %9s %9s %7s  %s\n' size proxy "req/s" "p50 ms" "p99 ms" "usr us/r" "sys us/r" errors note
        printf '%-6s %-9s %10s %10s %10s %9s %9s %7s\n' ------ --------- ---------- ---------- ---------- --------- --------- -------
        for size in $SIZES; do
            for t in "${TARGETS[@]}"; do
                if [[ -n ${RPS[$size,$t]:-} ]]; then
                    printf '%-6s %-9s %10s %10s %10s %9s %9s %7s  %s\n' "$size" "$t" "${RPS[$size,$t]}" \
                        "${P50[$size,$t]}" "${P99[$size,$t]}" "${CPU_USER[$size,$t]}" "${CPU_SYS[$size,$t]}" \
                        "${ERRS[$size,$t]}" "${NOTE[$size,$t]:-}"
                else
                    printf '%-6s %-9s %10s %10s %10s %9s %9s %7s  %s\n' "$size" "$t" - - - - - - "FAILED: ${NOTE[$size,$t]:-no result}"
                fi
            done
        done
        echo
    fi
    if [[ $SKIP_IDLE != 1 && -n ${PROXIES// /} ]]; then
        line="idle keep-alive memory ($IDLE_CONNS conns):"
        sep=" "
        for t in $PROXIES; do
            line+="$sep$t ${MEM_RSS[$t]:-n/a} KiB/conn"; sep=", "
        done
        echo "$line"
        echo "  (RSS delta / open connections; reference: nginx 0.6, HAProxy 1.3, Varnish 10, default hyper 11; Palisade target < 4)"
        for t in $PROXIES; do
            printf '  %-9s RSS %8s KiB/conn  PSS %8s KiB/conn  %s\n' "$t" "${MEM_RSS[$t]:-n/a}" "${MEM_PSS[$t]:-n/a}" "${MEM_NOTE[$t]:-}"
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
