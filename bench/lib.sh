# shellcheck shell=bash
# Helpers shared by the benchmark scripts (bench/run.sh, bench/cache.sh, bench/shield.sh,
# bench/challenge.sh, bench/access_log.sh, bench/h2.sh, bench/tenants.sh).
# Source it after `set -euo pipefail`; it defines functions and a few globals
# and runs nothing but the trap set-up (bench_traps) when asked to.
#
# What the sourcing script provides (globals and functions these helpers read):
#   WORK            the temp dir (set by make_work)
#   KEEP_TMP        1 = keep WORK on a successful exit
#   HOST_HDR        Host field of every request
#   READY_TIMEOUT   seconds wait_ready waits for a 200
#   ROUNDS          rounds summarize looks at
#   WARMUP DURATION DURATION_SECS THREADS CONNS   wrk parameters of run_wrk
#   logfile_of NAME  -> the file a server's stdout/stderr go to
# Optional:
#   BENCH_TAG       log prefix ["bench"]
#   WRK_PREFIX      array: command words put before wrk (e.g. taskset -c 0) [empty]
#   run_wrk_before / run_wrk_after NAME SIZE ROUND: called right before and
#                   after each measured wrk run (default: do nothing)
#   WRK_URL_PATH    the path run_wrk requests [/SIZE]

BENCH_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$BENCH_DIR/.." && pwd)
BENCH_TAG=${BENCH_TAG:-bench}
WRK_PREFIX=()
CLK_TCK=$(getconf CLK_TCK)

secs() { # "10" or "10s" -> "10s"; rejects anything else
    local v=$1
    if [[ $v =~ ^[0-9]+$ ]]; then echo "${v}s";
    elif [[ $v =~ ^[0-9]+[smh]$ ]]; then echo "$v";
    else echo "invalid duration: $v" >&2; return 1; fi
}
to_secs() { local v=$1 n=${1%?}; case ${v: -1} in m) echo $((n * 60)) ;; h) echo $((n * 3600)) ;; *) echo "$n" ;; esac; }

log() { echo "[$BENCH_TAG $(date +%H:%M:%S)] $*" >&2; }
die() { echo "[$BENCH_TAG] ERROR: $*" >&2; exit 1; }

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

bench_traps() { # stop everything we started on exit, Ctrl-C or TERM
    trap cleanup EXIT
    trap 'log "interrupted"; exit 130' INT
    trap 'log "terminated"; exit 143' TERM
}

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
ensure_tools() { # command:package ... -> apt-get install the packages of missing commands
    local spec need_install=()
    for spec in "$@"; do
        command -v "${spec%%:*}" >/dev/null || need_install+=("${spec#*:}")
    done
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
}

cargo_release_bin() { # package bin -> path of the built release binary; 1 if the build fails
    local pkg=$1 bin=$2
    log "building $bin: cargo build --release -p $pkg --bin $bin"
    (cd "$ROOT" && cargo build --release -p "$pkg" --bin "$bin" >&2) || return 1
    echo "${CARGO_TARGET_DIR:-$ROOT/target}/release/$bin"
}

setup_pinning() { # SERVER_WHAT -> NCPU, PIN, SERVER_PREFIX, CLIENT_PREFIX, WRK_PREFIX, PIN_DESC
    # With PIN=1, the server under test gets CPU SERVER_CPU and the load generator (and the
    # origin) CPU CLIENT_CPU, so neither steals the other's core; SERVER_WHAT says what runs on
    # the server's CPU, for the results' header.
    local server_what=$1
    NCPU=$(nproc)
    SERVER_PREFIX=()
    CLIENT_PREFIX=()
    if [[ $PIN == 1 ]] && ((NCPU < 2)); then
        log "only $NCPU CPU available: nothing is pinned"
        PIN_DESC="NOT pinned: only $NCPU CPU on this machine; wrk, origin and servers share it"
        PIN=0
    elif [[ $PIN == 1 ]]; then
        ((SERVER_CPU != CLIENT_CPU)) || die "BENCH_SERVER_CPU and BENCH_CLIENT_CPU must differ"
        taskset -c "$SERVER_CPU" true 2>/dev/null && taskset -c "$CLIENT_CPU" true 2>/dev/null ||
            die "cannot pin to CPUs $SERVER_CPU and $CLIENT_CPU (allowed: $(taskset -pc $$ | sed 's/.*: //')); set BENCH_SERVER_CPU/BENCH_CLIENT_CPU or BENCH_PIN=0"
        SERVER_PREFIX=(taskset -c "$SERVER_CPU")
        CLIENT_PREFIX=(taskset -c "$CLIENT_CPU")
        WRK_PREFIX=("${CLIENT_PREFIX[@]}")
        PIN_DESC="$server_what on CPU $SERVER_CPU, wrk and origin on CPU $CLIENT_CPU (taskset); $NCPU CPUs"
    else
        PIN_DESC="nothing pinned (BENCH_PIN=0): wrk, origin and servers share all $NCPU CPUs"
    fi
}

raise_nofile() { # [wanted, 65536] -> NOFILE: the open-files limit after raising it where allowed
    local want=${1:-65536}
    ulimit -n "$want" 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    NOFILE=$(ulimit -n)
    if [[ $NOFILE == unlimited ]]; then NOFILE=1048576; fi
    if ((NOFILE < want)); then
        log "warning: could not raise ulimit -n to $want (hard limit $(ulimit -Hn)); using $NOFILE"
    fi
}

make_work() { # -> WORK: a fresh temp dir, removed on a successful exit
    WORK=$(mktemp -d /tmp/palisade-bench.XXXXXX)
    chmod 755 "$WORK" # nginx workers run as an unprivileged user when started as root
    log "work dir: $WORK"
}

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

write_bodies() { # dir -> /1k (1024 bytes) and /100k (102400 bytes) in dir
    python3 - "$1" <<'EOF'
import sys, os
d = sys.argv[1]
pattern = b"palisade-bench-0123456789abcdefghijklmnopqrstuvwxyz\n"
for name, size in (("1k", 1024), ("100k", 100 * 1024)):
    data = (pattern * (size // len(pattern) + 1))[:size]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
EOF
    chmod 755 "$1"; chmod 644 "$1/1k" "$1/100k"
}

nginx_main() { # dir workers worker_connections -> the lines every nginx config here opens with
    cat <<EOF
daemon off;
master_process on;
worker_processes $2;
worker_rlimit_nofile $NOFILE;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { worker_connections $3; }
EOF
}

counting_origin_conf() { # dir port www log -> an nginx.conf: static files of www, cacheable for
    # an hour, keep-alive on, and an access log (one line per request) to count what reached it
    cat <<EOF
# origin: static files, cacheable for an hour, keep-alive on; an access log, so that we can
# count what reached it
$(nginx_main "$1" 1 16384)
http {
$(nginx_common_http "$1")
    log_format counted '\$host \$request_uri \$status';
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$2 backlog=4096;
        server_name _;
        access_log $4 counted;
        root $3;
        location / {
            add_header Cache-Control "public, max-age=3600";
        }
    }
}
EOF
}

start_counting_origin() { # port -> nginx serving /1k and /100k on port (cacheable, counted in
    # $WORK/origin/access.log), started and answering
    mkdir -p "$WORK/origin/www"
    write_bodies "$WORK/origin/www"
    counting_origin_conf "$WORK/origin" "$1" "$WORK/origin/www" "$WORK/origin/access.log" \
        >"$WORK/origin/nginx.conf"
    start_bg origin "$WORK/origin.out" nginx -p "$WORK/origin" -c "$WORK/origin/nginx.conf"
    for _ in $(seq 50); do
        [[ $(curl_get "$1" /1k) == "200 1024" ]] && return 0
        sleep 0.1
    done
    die "the origin did not answer on port $1"
}

has_proxy() { [[ " $PROXIES " == *" $1 "* ]]; }

logfile_of() { echo "$WORK/$1.out"; }

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

# ----------------------------------------------------------------- servers --
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
declare -A RPS P50 P99 ERRS CPU_USER CPU_SYS NOTE

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

wrk_figures() { # wrk --latency output file -> W_REQS W_RPS W_P50 W_P99 W_SOCK W_NON2XX W_BYTES;
    # 1 when req/s or a latency is missing. W_P50/W_P99 as wrk prints them ("1.23ms", see to_ms);
    # W_SOCK: all socket errors summed; W_NON2XX: responses outside 2xx/3xx (empty when none);
    # W_BYTES: bytes read (from wrk's "2.03GB read": rounded to two decimals of its unit).
    local out=$1
    W_REQS=$(awk '/requests in/ {print $1; exit}' "$out")
    W_RPS=$(awk '/^Requests\/sec:/ {print $2}' "$out")
    W_P50=$(awk '/Latency Distribution/ {d=1} d && $1=="50%" {print $2; exit}' "$out")
    W_P99=$(awk '/Latency Distribution/ {d=1} d && $1=="99%" {print $2; exit}' "$out")
    W_SOCK=$(awk '/Socket errors:/ {gsub(/[^0-9]+/, " "); n = 0; for (i = 1; i <= NF; i++) n += $i; print n}' "$out")
    W_NON2XX=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$out")
    W_BYTES=$(awk '/requests in/ && / read$/ {
        v = $(NF - 1); n = v + 0; u = v; sub(/^[0-9.]+/, "", u)
        m = 1; if (u == "KB") m = 1024; else if (u == "MB") m = 1024^2; else if (u == "GB") m = 1024^3; else if (u == "TB") m = 1024^4
        printf "%.0f", n * m; exit }' "$out")
    [[ -n $W_RPS && -n $W_P50 && -n $W_P99 ]]
}

cpu_times() { # cpu -> "busy total tasks" jiffies of that CPU from /proc/stat: busy = all
    # but idle and iowait; tasks = user, nice, system and steal (interrupts left out)
    awk -v c="cpu$1" '$1 == c {print $2 + $3 + $4 + $7 + $8 + $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $2 + $3 + $4 + $9; exit}' /proc/stat
}

busy_pct() { # cpu_times-before cpu_times-after [field, 1 = busy] -> that field in % of the time between
    awk -v a="$1" -v b="$2" -v f="${3:-1}" 'BEGIN {split(a, x, " "); split(b, y, " "); t = y[2] - x[2];
        if (t > 0) printf "%.0f", 100 * (y[f] - x[f]) / t; else print "-"}'
}

run_wrk_before() { :; }
run_wrk_after() { :; }

run_wrk() { # name port size round pid -> fills RPS/P50/P99/ERRS/CPU_*[size,name,round]
    local name=$1 port=$2 size=$3 round=$4 pid=$5 out url u0 s0 u1 s1
    url="http://127.0.0.1:$port${WRK_URL_PATH:-/$size}"
    out="$WORK/wrk-$name-$size-$round.txt"
    log "$name $size: warm-up $WARMUP"
    run_fg /dev/null timeout 120 ${WRK_PREFIX[@]+"${WRK_PREFIX[@]}"} wrk -t"$THREADS" -c"$CONNS" -d"$WARMUP" -H "Host: $HOST_HDR" "$url" || true
    log "$name $size: ${WRK_PREFIX[*]+${WRK_PREFIX[*]} }wrk -t$THREADS -c$CONNS -d$DURATION --latency"
    run_wrk_before "$name" "$size" "$round"
    read -r u0 s0 < <(cpu_ticks "$pid")
    if ! run_fg "$out" timeout $((DURATION_SECS * 2 + 60)) ${WRK_PREFIX[@]+"${WRK_PREFIX[@]}"} wrk -t"$THREADS" -c"$CONNS" -d"$DURATION" --latency \
        -H "Host: $HOST_HDR" "$url"; then
        log "$name $size: wrk failed"; cat "$out" >&2
        NOTE[$size,$name]="wrk failed"; fail "$name" "wrk failed ($size)"
        return 1
    fi
    read -r u1 s1 < <(cpu_ticks "$pid")
    run_wrk_after "$name" "$size" "$round"
    local rps p50 p99 sock non2xx reqs
    wrk_figures "$out" || true
    reqs=$W_REQS rps=$W_RPS p50=$W_P50 p99=$W_P99 sock=$W_SOCK non2xx=$W_NON2XX
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

median_of_rounds() { # array-name key -> the median of array[key,1..ROUNDS]
    local -n values=$1
    local r all=()
    for ((r = 1; r <= ROUNDS; r++)); do all+=("${values[$2,$r]}"); done
    median "${all[@]}"
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
