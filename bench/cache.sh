#!/usr/bin/env bash
# Cache-hit benchmark: Palisade's cache vs nginx proxy_cache vs Varnish vs
# HAProxy's cache, with a bare hyper server as the reference, all in front of
# the same origin on this machine, in the same run.
#
# Measures, per server:
#   * cache-hit requests/s, p50 and p99 latency (wrk --latency) for a 1 KiB
#     and a 100 KiB object, the CPU time the server's processes spent per
#     request, and how many requests reached the origin during the measured
#     runs (more than BENCH_MAX_ORIGIN_REQS in a run: the row is marked
#     NOT HITS);
#   * memory per cached small object (caches only): RSS of a fresh process
#     before and after filling BENCH_OBJECTS distinct ~100-byte objects.
#
# One core for the server: each server under test runs on CPU 1 and wrk (and
# the origin) on CPU 0 (taskset), unless BENCH_PIN=0 or the machine has fewer
# than 2 CPUs. All traffic goes to 127.0.0.1. Everything started here runs
# from a mktemp -d dir and is stopped (by PID) on exit, Ctrl-C included.
# See bench/README.md ("Cache-hit benchmark") for the configurations and how to
# read the output.
#
# Environment (defaults in brackets):
#   BENCH_DURATION       wrk duration per measured run, seconds or "10s" [10s]
#   BENCH_WARMUP         unmeasured wrk run before each measured run [1s]
#   BENCH_ROUNDS         interleaved rounds (every server, both sizes, per round);
#                        the table shows each figure's median over the rounds [3]
#   BENCH_SIZES          object sizes to load, from "1k 100k" ["1k 100k"]
#   BENCH_CONNECTIONS    wrk connections [64]
#   BENCH_THREADS        wrk threads [1: wrk has one core]
#   BENCH_PIN            1 = server on CPU BENCH_SERVER_CPU, wrk and origin on
#                        BENCH_CLIENT_CPU; 0 = nothing pinned [1]
#   BENCH_SERVER_CPU / BENCH_CLIENT_CPU  the two CPUs [1 / 0]
#   BENCH_MAX_ORIGIN_REQS  origin requests allowed in one measured run before
#                        the row is marked NOT HITS [10]
#   BENCH_OBJECTS        distinct small objects for the memory test [100000]
#   BENCH_FILL_CONNECTIONS  wrk connections filling them [64]
#   BENCH_FILL_TIMEOUT   seconds one fill (or re-walk) may take at most [180]
#   BENCH_MEM_SETTLE     seconds between the fill and the RSS samples [2]
#   BENCH_PROXIES        servers to run ["bare-hyper palisade nginx varnish haproxy"]
#   BENCH_SKIP_PALISADE  1 = leave Palisade out (no cargo build) [0]
#   BENCH_SKIP_LOAD      1 = skip the cache-hit wrk runs [0]
#   BENCH_SKIP_MEMORY    1 = skip the memory-per-object test [0]
#   BENCH_PALISADE_SERVER_EXTRA  extra TOML lines for Palisade's [server] table [unset]
#   BENCH_KEEP_TMP       1 = keep the temp dir (configs, logs, wrk output) [0]
#   BENCH_OUTPUT         also write the final tables to this file [unset]
#   PALISADE_BIN         Palisade binary to use instead of
#                        `cargo build --release --bin palisade`
#   BARE_HYPER_BIN       bare-hyper binary to use instead of
#                        `cargo build --release -p bare-hyper`
set -euo pipefail

BENCH_TAG=cache-bench
# Shared helpers (process start/stop by PID and the exit trap, wrk runs and
# their parsing, medians, CPU time and memory of a process tree): bench/lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=$(secs "${BENCH_DURATION:-10s}")
DURATION_SECS=$(to_secs "$DURATION")
WARMUP=$(secs "${BENCH_WARMUP:-1s}")
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}
ROUNDS=${BENCH_ROUNDS:-3}
SIZES=${BENCH_SIZES:-1k 100k}
PIN=${BENCH_PIN:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
MAX_ORIGIN=${BENCH_MAX_ORIGIN_REQS:-10}
OBJECTS=${BENCH_OBJECTS:-100000}
FILL_CONNS=${BENCH_FILL_CONNECTIONS:-64}
FILL_TIMEOUT=${BENCH_FILL_TIMEOUT:-180}
MEM_SETTLE=${BENCH_MEM_SETTLE:-2}
SKIP_PALISADE=${BENCH_SKIP_PALISADE:-0}
SKIP_LOAD=${BENCH_SKIP_LOAD:-0}
SKIP_MEMORY=${BENCH_SKIP_MEMORY:-0}
KEEP_TMP=${BENCH_KEEP_TMP:-0}
PALISADE_EXTRA=${BENCH_PALISADE_SERVER_EXTRA:-}
PROXIES=${BENCH_PROXIES:-bare-hyper palisade nginx varnish haproxy}
HOST_HDR="bench.local"
READY_TIMEOUT=30 # seconds to wait for a server to answer

for size in $SIZES; do
    [[ $size == 1k || $size == 100k ]] || die "BENCH_SIZES: unknown size '$size' (use 1k and/or 100k)"
done
for v in ROUNDS CONNS THREADS OBJECTS FILL_CONNS FILL_TIMEOUT; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
for v in MAX_ORIGIN MEM_SETTLE SERVER_CPU CLIENT_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
[[ $PIN == 0 || $PIN == 1 ]] || die "BENCH_PIN must be 0 or 1 (got '$PIN')"
if [[ $SKIP_PALISADE == 1 ]]; then
    PROXIES=$(tr ' ' '\n' <<<"$PROXIES" | grep -vx palisade | tr '\n' ' ' || true)
fi
for p in $PROXIES; do
    case $p in bare-hyper | palisade | nginx | varnish | haproxy) ;;
        *) die "unknown server '$p' in BENCH_PROXIES (bare-hyper palisade nginx varnish haproxy)" ;;
    esac
done
CACHES=$(tr ' ' '\n' <<<"$PROXIES" | grep -vx -e bare-hyper -e '' | tr '\n' ' ' || true)

bench_traps

# ------------------------------------------------------------------ pinning --
# One core for the server under test, the other for the load generator (and
# the origin, which sees no requests during a cache-hit run).
setup_pinning "server under test (one worker/thread)"

# ------------------------------------------------------------ prerequisites --
tools=(wrk:wrk nginx:nginx curl:curl)
if has_proxy haproxy; then tools+=(haproxy:haproxy); fi
if has_proxy varnish; then tools+=(varnishd:varnish varnishstat:varnish); fi
ensure_tools "${tools[@]}"

raise_nofile 16384 # a few hundred connections at most
make_work

# Binaries we build: a failed build is that server's FAILED row, not the end.
PALISADE=""
BARE_HYPER=""
if has_proxy palisade; then
    if [[ -n ${PALISADE_BIN:-} ]]; then
        PALISADE=$PALISADE_BIN
    elif ! PALISADE=$(cargo_release_bin palisade palisade); then
        PALISADE=""
    fi
fi
if has_proxy bare-hyper; then
    if [[ -n ${BARE_HYPER_BIN:-} ]]; then
        BARE_HYPER=$BARE_HYPER_BIN
    elif ! BARE_HYPER=$(cargo_release_bin bare-hyper bare-hyper); then
        BARE_HYPER=""
    fi
fi

read -r ORIGIN_PORT BARE_PORT PALISADE_PORT PALISADE_ADMIN_PORT NGINX_PORT VARNISH_PORT HAPROXY_PORT < <(free_ports 7) || true
[[ -n ${HAPROXY_PORT:-} ]] || die "could not pick free ports"

# ------------------------------------------------------------------ origin --
mkdir -p "$WORK/www" "$WORK/origin" "$WORK/nginx/cache" "$WORK/haproxy" "$WORK/varnish" "$WORK/palisade-data"
write_bodies "$WORK/www"
# The small objects of the memory test: 100 bytes each, the same for every URL.
OBJ_BODY=$(python3 -c 'p = "palisade-bench-cached-object-0123456789abcdefghijklmnopqrstuvwxyz-"; print((p * 2)[:99])')
ORIGIN_LOG="$WORK/origin/access.log"

cat >"$WORK/origin/nginx.conf" <<EOF
# origin: static /1k and /100k, and /obj/N small objects, all cacheable for an
# hour; keep-alive on; an access log, so that we can count what reached it
$(nginx_main "$WORK/origin" 1 16384)
http {
$(nginx_common_http "$WORK/origin")
    log_format counted '\$request_uri \$status';
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        server_name _;
        access_log $ORIGIN_LOG counted;
        root $WORK/www;
        location / {
            add_header Cache-Control "public, max-age=3600";
        }
        location /obj/ {
            add_header Cache-Control "public, max-age=3600";
            return 200 "$OBJ_BODY\n";
        }
    }
}
EOF

origin_count() { # -> requests the origin has logged so far
    if [[ -e $ORIGIN_LOG ]]; then wc -l <"$ORIGIN_LOG"; else echo 0; fi
}

# ------------------------------------------------------------------ servers --
cat >"$WORK/nginx/nginx.conf" <<EOF
# nginx proxy_cache: one worker, cache keys in a shared-memory zone, bodies in
# files under the temp dir, keep-alive to the origin
$(nginx_main "$WORK/nginx" 1 16384)
http {
$(nginx_common_http "$WORK/nginx")
    sendfile on;
    tcp_nopush off;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    # 64 MiB of keys (about 8,000 per MiB), up to 1 GiB of bodies on disk
    proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=bench:64m max_size=1g inactive=1h use_temp_path=off;
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
            proxy_cache bench;
            # the origin's Cache-Control (max-age=3600) decides; this is only
            # the fallback for responses without one
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
        }
    }
}
EOF

cat >"$WORK/haproxy/haproxy.cfg" <<EOF
# HAProxy with its cache: one thread, no logging
global
    nbthread 1
    maxconn 4096
    pidfile $WORK/haproxy/haproxy.pid
    stats socket $WORK/haproxy/admin.sock mode 600 level admin

defaults
    mode http
    maxconn 4096
    timeout connect 5s
    timeout client 300s
    timeout server 30s
    timeout http-keep-alive 300s
    timeout http-request 30s

cache bench
    # MB of shared memory, allocated at start-up
    total-max-size 256
    # bytes; the 100 KiB object must fit
    max-object-size 1048576
    # seconds; an upper bound on the origin's max-age
    max-age 3600

frontend fe
    bind 127.0.0.1:$HAPROXY_PORT
    default_backend origin

backend origin
    http-request cache-use bench
    http-response cache-store bench
    server o1 127.0.0.1:$ORIGIN_PORT
EOF

cat >"$WORK/varnish/bench.vcl" <<EOF
# Varnish: the built-in VCL (cache what the origin allows, for its max-age),
# one backend
vcl 4.1;
backend origin {
    .host = "127.0.0.1";
    .port = "$ORIGIN_PORT";
}
EOF

cat >"$WORK/palisade.toml" <<EOF
[server]
listen = ["127.0.0.1:$PALISADE_PORT"]
admin = "127.0.0.1:$PALISADE_ADMIN_PORT"
data_dir = "$WORK/palisade-data"
access_log = "off"
workers = 1
max_connections_per_ip = 100000
max_new_connections_per_ip = 100000000
cache_memory = "256MiB"
cache_disk = "1GiB"
$PALISADE_EXTRA

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

port_of() {
    case $1 in
        origin) echo "$ORIGIN_PORT" ;; bare-hyper) echo "$BARE_PORT" ;;
        palisade) echo "$PALISADE_PORT" ;; nginx) echo "$NGINX_PORT" ;;
        varnish) echo "$VARNISH_PORT" ;; haproxy) echo "$HAPROXY_PORT" ;;
        *) return 1 ;;
    esac
}

VARNISH_N=0
SERVER_PID=""
start_server() { # name -> starts it (pinned), sets SERVER_PID; 1 if it has no binary
    local name=$1 logf
    logf=$(logfile_of "$name")
    local pin=(${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"})
    case $name in
        origin)
            start_bg origin "$logf" ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} \
                nginx -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf" ;;
        bare-hyper)
            [[ -n $BARE_HYPER && -x $BARE_HYPER ]] || { fail "$name" "no binary (cargo build -p bare-hyper failed?)"; return 1; }
            start_bg "$name" "$logf" ${pin[@]+"${pin[@]}"} "$BARE_HYPER" "127.0.0.1:$BARE_PORT" ;;
        palisade)
            [[ -n $PALISADE && -x $PALISADE ]] || { fail "$name" "no binary (cargo build --release --bin palisade failed?)"; return 1; }
            start_bg "$name" "$logf" ${pin[@]+"${pin[@]}"} "$PALISADE" serve --config "$WORK/palisade.toml" ;;
        nginx)
            # a fresh, empty cache for every start
            rm -rf "$WORK/nginx/cache"; mkdir -p "$WORK/nginx/cache"
            start_bg "$name" "$logf" ${pin[@]+"${pin[@]}"} \
                nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" ;;
        varnish)
            # its own working dir (-n) for every start; -F: foreground, so the
            # PID we hold is the manager's and stopping it stops the child.
            # -T none: no management port; -s malloc: objects in memory.
            VARNISH_N=$((VARNISH_N + 1))
            VARNISH_DIR="$WORK/varnish/n$VARNISH_N"
            start_bg "$name" "$logf" ${pin[@]+"${pin[@]}"} \
                varnishd -F -n "$VARNISH_DIR" -a "127.0.0.1:$VARNISH_PORT" -T none \
                -f "$WORK/varnish/bench.vcl" -s malloc,256m -p thread_pools=1 ;;
        haproxy)
            start_bg "$name" "$logf" ${pin[@]+"${pin[@]}"} haproxy -db -f "$WORK/haproxy/haproxy.cfg" ;;
        *) return 1 ;;
    esac
    SERVER_PID=$LAST_PID
}

start_checked() { # name -> start it, wait for GET /1k, check both bodies; sets SERVER_PID; 1 on failure
    local name=$1
    start_server "$name" || return 1
    if ! wait_ready "$name" "$SERVER_PID" "$(port_of "$name")" || ! check_bodies "$name" "$(port_of "$name")"; then
        stop_server "$SERVER_PID"
        return 1
    fi
}

# ------------------------------------------------------------- measurement --
declare -A ORIGIN_REQS ORIGIN_TOTAL NOT_HITS SRV_BUSY SRV_TASKS CLI_BUSY PROC_PCT OTHER_PCT LOADAVG DIED
declare -A MEM_NOTE MEM_RSS MEM_PSS MEM_B_RSS MEM_B_PSS MEM_CACHED MEM_WHERE

ORIGIN_BEFORE=0
SB0="" CB0=""
run_wrk_before() { # name size round: remember the origin's count and the CPUs' times
    ORIGIN_BEFORE=$(origin_count)
    SB0=$(cpu_times "$SERVER_CPU"); CB0=$(cpu_times "$CLIENT_CPU")
}
run_wrk_after() { # name size round: requests the origin saw, how busy each CPU was
    local name=$1 size=$2 round=$3 key=$2,$1,$3 n sb1 cb1
    sb1=$(cpu_times "$SERVER_CPU"); cb1=$(cpu_times "$CLIENT_CPU")
    n=$(($(origin_count) - ORIGIN_BEFORE))
    ORIGIN_REQS[$key]=$n
    SRV_BUSY[$key]=$(busy_pct "$SB0" "$sb1")
    SRV_TASKS[$key]=$(busy_pct "$SB0" "$sb1" 3)
    CLI_BUSY[$key]=$(busy_pct "$CB0" "$cb1")
    LOADAVG[$key]=$(awk '{print $1}' /proc/loadavg)
    log "$name $size round $round: origin saw $n requests; CPU $SERVER_CPU ${SRV_BUSY[$key]}% busy, CPU $CLIENT_CPU ${CLI_BUSY[$key]}% busy, load average ${LOADAVG[$key]}"
}
summarize_cache() { # size name -> ORIGIN_TOTAL, NOT_HITS; medians of PROC_PCT, SRV_BUSY, CLI_BUSY, LOADAVG
    local size=$1 name=$2 r key total=0 worst=0 sb=() cb=() pp=() la=() ot=() proc
    for ((r = 1; r <= ROUNDS; r++)); do
        key=$size,$name,$r
        [[ -n ${ORIGIN_REQS[$key]:-} && -n ${RPS[$key]:-} ]] || continue
        total=$((total + ORIGIN_REQS[$key]))
        ((ORIGIN_REQS[$key] > worst)) && worst=${ORIGIN_REQS[$key]}
        sb+=("${SRV_BUSY[$key]}"); cb+=("${CLI_BUSY[$key]}"); la+=("${LOADAVG[$key]}")
        # the server's processes' share of one CPU: CPU time per request x requests per second
        proc=$(awk -v u="${CPU_USER[$key]}" -v s="${CPU_SYS[$key]}" -v r="${RPS[$key]}" 'BEGIN {printf "%.0f", (u + s) * r / 1e4}')
        pp+=("$proc")
        # the rest of the tasks' time on the server's CPU: work that is not the server's
        ot+=("$(awk -v t="${SRV_TASKS[$key]}" -v p="$proc" 'BEGIN {d = t - p; printf "%.0f", d < 0 ? 0 : d}')")
    done
    ((${#sb[@]})) || return 0
    ORIGIN_TOTAL[$size,$name]=$total
    SRV_BUSY[$size,$name]=$(median "${sb[@]}")
    CLI_BUSY[$size,$name]=$(median "${cb[@]}")
    PROC_PCT[$size,$name]=$(median "${pp[@]}")
    OTHER_PCT[$size,$name]=$(median "${ot[@]}")
    LOADAVG[$size,$name]=$(median "${la[@]}")
    if [[ $name != bare-hyper ]] && ((worst > MAX_ORIGIN)); then
        NOT_HITS[$size,$name]=1
        fail "$name" "NOT HITS: the origin saw up to $worst requests in one measured $size run"
    fi
}

# Memory of a server's processes, summed. nginx's cache loader is left out:
# it sleeps for a minute after start and then exits, which would drop its RSS
# from the "after" sample.
mem_sum() { # pid -> "rss_kib pss_kib anon_kib file_kib shmem_kib nprocs"
    local p rss=0 pss=0 anon=0 file=0 shm=0 n=0 a b c d e
    for p in $(descendants "$1"); do
        [[ -r /proc/$p/status ]] || continue
        if grep -q 'cache loader' "/proc/$p/cmdline" 2>/dev/null; then continue; fi
        read -r a c d e < <(awk '/^VmRSS:/ {r = $2} /^RssAnon:/ {an = $2} /^RssFile:/ {f = $2} /^RssShmem:/ {s = $2}
            END {print r + 0, an + 0, f + 0, s + 0}' "/proc/$p/status" 2>/dev/null || echo "0 0 0 0")
        b=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || true)
        rss=$((rss + a)); pss=$((pss + ${b:-0})); anon=$((anon + c)); file=$((file + d)); shm=$((shm + e)); n=$((n + 1))
    done
    echo "$rss $pss $anon $file $shm $n"
}

WALK_GOT=0 WALK_NON2XX=0 WALK_SOCKERR=0
walk_objects() { # name port out -> wrk walks /obj/0..OBJECTS-1 once; sets WALK_GOT/NON2XX/SOCKERR
    local name=$1 port=$2 out=$3 done_file="$3.done" rc=0
    WALK_GOT=0 WALK_NON2XX=0 WALK_SOCKERR=0
    rm -f "$done_file"
    # Like run_fg, but wrk's main thread would sleep for all of -d: once the
    # script has seen the N-th response (done file), SIGINT ends wrk (through
    # timeout, which passes the signal on) and it prints its summary.
    timeout $((FILL_TIMEOUT + 30)) ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} \
        wrk -t1 -c"$FILL_CONNS" -d"${FILL_TIMEOUT}s" -H "Host: $HOST_HDR" \
        -s "$BENCH_DIR/walk_objects.lua" "http://127.0.0.1:$port" -- "$OBJECTS" /obj/ "$done_file" \
        </dev/null >"$out" 2>&1 &
    FG_PID=$!
    while kill -0 "$FG_PID" 2>/dev/null && [[ ! -e $done_file ]]; do sleep 0.1; done
    kill -INT "$FG_PID" 2>/dev/null || true
    wait "$FG_PID" || rc=$?
    FG_PID=""
    # 130: wrk ended by our SIGINT, as planned
    if ((rc != 0 && rc != 130)) || ! grep -q 'requests in' "$out"; then
        log "$name: wrk walking the objects failed (exit $rc)"; cat "$out" >&2
        return 1
    fi
    read -r WALK_GOT WALK_NON2XX WALK_SOCKERR < <(awk '/requests in/ {r = $1} /Non-2xx or 3xx responses:/ {x = $NF}
         /Socket errors:/ {gsub(/[^0-9]+/, " "); for (i = 1; i <= NF; i++) s += $i}
         END {print r + 0, x + 0, s + 0}' "$out")
}

server_extra() { # name baseline-mem_sum -> one line about where the cached objects are, after the fill
    local name=$1 base=$2
    case $name in
        palisade)
            local files kib
            files=$(find "$WORK/palisade-data" -type f 2>/dev/null | wc -l)
            kib=$(du -sk "$WORK/palisade-data" 2>/dev/null | awk '{print $1}')
            echo "data_dir after the fill: $files files, ${kib:-?} KiB allocated (disk tier; page cache, not in RSS)"
            ;;
        nginx)
            local files kib app
            files=$(find "$WORK/nginx/cache" -type f 2>/dev/null | wc -l)
            kib=$(du -sk "$WORK/nginx/cache" 2>/dev/null | awk '{print $1}')
            app=$(du -sk --apparent-size "$WORK/nginx/cache" 2>/dev/null | awk '{print $1}')
            echo "bodies on disk: $files files, ${app:-?} KiB apparent, ${kib:-?} KiB allocated (page cache, not in RSS); keys in the 64 MiB shared zone"
            ;;
        varnish)
            varnishstat -n "$VARNISH_DIR" -1 -f MAIN.n_object -f SMA.s0.g_bytes -f SMA.Transient.g_bytes 2>/dev/null |
                awk '{printf "%s%s=%s", (NR > 1 ? ", " : "varnishstat "), $1, $2} END {if (NR) print ""}' || true
            ;;
        haproxy)
            # Its cache is one shared-memory area of total-max-size, allocated
            # and touched at start-up (so in the RSS baseline): count what the
            # objects took of it instead, from the "show cache" listing.
            local shm
            read -r _ _ _ _ shm _ <<<"$base"
            python3 - "$WORK/haproxy/admin.sock" "$WORK/haproxy/show-cache.txt" "$shm" <<'EOF' || true
import re, socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(30)
s.connect(sys.argv[1])
s.sendall(b"show cache\n")
chunks = []
while True:
    chunk = s.recv(1 << 16)
    if not chunk:
        break
    chunks.append(chunk)
s.close()
text = b"".join(chunks).decode(errors="replace")
open(sys.argv[2], "w").write(text)
blocks = [int(b) for b in re.findall(r"\((\d+) blocks?\)", text)]
sizes = [int(b) for b in re.findall(r"size:(\d+)", text)]
small = [b for b, z in zip(blocks, sizes) if z < 1024]
total = int((re.findall(r"available blocks:(\d+)", text) or ["0"])[0])
# a block's size in memory, with its header: the shared memory touched at
# start-up (RssShmem of the baseline) over the number of blocks
per_block = int(sys.argv[3]) * 1024 / total if total else 0
per_small = sum(small) / max(1, len(small))
print("show cache lists %d entries in %d blocks; the %d small ones (under 1 KiB stored) take %.2f blocks each;"
      " %d blocks were allocated at start-up in %d KiB of shared memory (%.0f B per block with its header):"
      " %.0f B/object"
      % (len(blocks), sum(blocks), len(small), per_small, total, int(sys.argv[3]), per_block, per_small * per_block))
EOF
            ;;
    esac
}

memory_test() { # name -> MEM_* for name, on a fresh process
    local name=$1 port pid
    port=$(port_of "$name")
    if ! start_checked "$name"; then
        MEM_NOTE[$name]="failed to start: ${FAIL_REASON[$name]:-?}"; return 1
    fi
    pid=$SERVER_PID
    # connections, buffers, threads: what a fill at this concurrency needs
    # besides the objects, touched before the baseline
    run_fg /dev/null timeout 30 ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} wrk -t1 -c"$FILL_CONNS" -d1s \
        -H "Host: $HOST_HDR" "http://127.0.0.1:$port/1k" || true
    sleep 1
    local m0 m1 o0 o1 o2 i
    m0=$(mem_sum "$pid"); o0=$(origin_count)
    log "$name memory: baseline rss/pss/anon/file/shmem KiB, processes: $m0"
    log "$name memory: filling $OBJECTS objects (wrk -t1 -c$FILL_CONNS, walk_objects.lua)"
    local t0=$SECONDS got non2xx sockerr
    walk_objects "$name" "$port" "$WORK/fill-$name.txt" || true
    got=$WALK_GOT non2xx=$WALK_NON2XX sockerr=$WALK_SOCKERR
    o1=$(origin_count)
    log "$name memory: fill took $((SECONDS - t0))s: $got responses, $non2xx non-2xx, $sockerr socket errors; origin saw $((o1 - o0))"
    if ! kill -0 "$pid" 2>/dev/null; then
        show_log "$name"; fail "$name" "died during the fill"; MEM_NOTE[$name]="died during the fill"; return 1
    fi
    run_fg /dev/null sleep "$MEM_SETTLE"
    for i in 1 2 3; do
        m1=$(mem_sum "$pid")
        log "$name memory: sample $i: $m1"
        if ((i < 3)); then sleep 1; fi
    done
    MEM_WHERE[$name]=$(server_extra "$name" "$m0")
    # walk again: what reaches the origin now was not kept
    local got2
    walk_objects "$name" "$port" "$WORK/rewalk-$name.txt" || true
    got2=$WALK_GOT
    o2=$(origin_count)
    local missed=$((o2 - o1))
    MEM_CACHED[$name]=$((OBJECTS - missed < 0 ? 0 : OBJECTS - missed))
    log "$name memory: second walk: $got2 responses, origin saw $missed: ${MEM_CACHED[$name]} of $OBJECTS kept"
    stop_server "$pid"
    local r0 p0 r1 p1
    read -r r0 p0 _ <<<"$m0"; read -r r1 p1 _ <<<"$m1"
    MEM_RSS[$name]="$r0 $r1"
    MEM_B_RSS[$name]=$(awk -v a="$r0" -v b="$r1" -v n="$OBJECTS" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}')
    MEM_B_PSS[$name]=$(awk -v a="$p0" -v b="$p1" -v n="$OBJECTS" 'BEGIN {printf "%.0f", (b - a) * 1024 / n}')
    local note=""
    if ((got < OBJECTS)); then note+="fill incomplete ($got of $OBJECTS responses); "; fi
    if ((non2xx + sockerr > 0)); then note+="fill: $non2xx non-2xx, $sockerr socket errors; "; fi
    if ((MEM_CACHED[$name] < OBJECTS * 99 / 100)); then
        note+="NOT ALL CACHED; "
        fail "$name" "memory test: only ${MEM_CACHED[$name]} of $OBJECTS objects were served from the cache on the second walk"
    fi
    if [[ $name == haproxy ]]; then
        note+="RSS: its whole cache area is touched at start-up, so it is in the baseline (own count below); "
    fi
    local an0 an1 f0 f1 s0 s1
    read -r _ _ an0 f0 s0 _ <<<"$m0"; read -r _ _ an1 f1 s1 _ <<<"$m1"
    note+="anon $(((an1 - an0) * 1024 / OBJECTS)) + file $(((f1 - f0) * 1024 / OBJECTS)) + shmem $(((s1 - s0) * 1024 / OBJECTS)) B/obj"
    MEM_NOTE[$name]=$note
    log "$name memory: ${MEM_B_RSS[$name]} B/object (RSS), ${MEM_B_PSS[$name]} (PSS); $note"
}

# --------------------------------------------------------------------- run --
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
desc() { # name -> one line on its configuration, or "skipped"
    has_proxy "$1" || { echo skipped; return; }
    case $1 in
        bare-hyper) echo "hyper 1.x HTTP/1.1 server, current-thread tokio runtime, /1k and /100k from memory (reference, no cache)" ;;
        palisade) echo "workers = 1, cache_memory 256MiB, cache_disk 1GiB, [site.cache] enabled, access_log off${PALISADE_EXTRA:+, extra: $PALISADE_EXTRA}" ;;
        nginx) echo "nginx $(nginx -v 2>&1 | sed 's|.*/||'), worker_processes 1, proxy_cache (keys_zone 64m, bodies on disk), proxy_cache_lock, sendfile on, tcp_nopush off, upstream keepalive 64, access_log off" ;;
        varnish) echo "$(varnishd -V 2>&1 | head -1 | sed 's/^varnishd (//; s/ .*//'), built-in VCL, -s malloc,256m, -p thread_pools=1 (default thread counts), no log reader" ;;
        haproxy) echo "$(haproxy -v 2>/dev/null | head -1 | awk '{print $3}'), nbthread 1, cache total-max-size 256 MB, max-object-size 1 MiB, max-age 3600, no log" ;;
    esac
}
HEADER=$(cat <<EOF
# Palisade cache-hit benchmark ($(date -u +%Y-%m-%dT%H:%MZ))
machine : $NCPU cores ($CPU_MODEL), $(uname -r)
pinning : $PIN_DESC
load    : ${WRK_PREFIX[*]+${WRK_PREFIX[*]} }wrk -t$THREADS -c$CONNS -d$DURATION --latency, warm-up $WARMUP, Host: $HOST_HDR, 127.0.0.1 only; $ROUNDS interleaved rounds, medians shown
origin  : nginx, 1 worker, static 1 KiB / 100 KiB and /obj/N 100-byte objects, Cache-Control: public, max-age=3600, access log counted
bare-hyper: $(desc bare-hyper)
palisade: $(desc palisade)
nginx   : $(desc nginx)
varnish : $(desc varnish)
haproxy : $(desc haproxy)
memory  : $([[ $SKIP_MEMORY == 1 ]] && echo skipped || echo "fresh process per cache; $OBJECTS distinct /obj/N (100-byte body) filled by wrk -t1 -c$FILL_CONNS; bytes/object = RSS delta (summed over the server's processes) / $OBJECTS")
EOF
)
echo "$HEADER" >&2

start_server origin
ORIGIN_PID=$SERVER_PID
wait_ready origin "$ORIGIN_PID" "$ORIGIN_PORT" || die "origin nginx did not start"
check_bodies origin "$ORIGIN_PORT" || die "origin serves wrong bodies"

if [[ $SKIP_LOAD != 1 ]]; then
    # Every server runs for the whole load test and the rounds interleave them;
    # only the one under load is busy.
    declare -A LOAD_PID
    LIVE=()
    for t in $PROXIES; do
        if ! start_checked "$t"; then
            NOTE[1k,$t]="${FAIL_REASON[$t]:-failed to start/serve}"; NOTE[100k,$t]="${NOTE[1k,$t]}"
            continue
        fi
        LOAD_PID[$t]=$SERVER_PID
        LIVE+=("$t")
    done
    for ((round = 1; round <= ROUNDS; round++)); do
        for size in $SIZES; do
            for t in ${LIVE[@]+"${LIVE[@]}"}; do
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
    for t in ${LIVE[@]+"${LIVE[@]}"}; do
        for size in $SIZES; do summarize "$size" "$t"; summarize_cache "$size" "$t"; done
        if [[ -z ${DIED[$t]:-} ]]; then stop_server "${LOAD_PID[$t]}"; fi
    done
fi

if [[ $SKIP_MEMORY != 1 ]]; then
    for t in $CACHES; do
        memory_test "$t" || true
    done
fi

# ------------------------------------------------------------------ report --
{
    echo
    echo "$HEADER"
    echo
    if [[ $SKIP_LOAD != 1 ]]; then
        fmt='%-6s %-10s %9s %8s %8s %8s %8s %5s %5s %5s %5s %6s %7s  %s\n'
        printf "$fmt" size server "req/s" "p50 ms" "p99 ms" "usr us/r" "sys us/r" "proc%" "oth%" "cpuS%" "cpuC%" errors origin note
        printf "$fmt" ------ ---------- --------- -------- -------- -------- -------- ----- ----- ----- ----- ------ -------
        for size in $SIZES; do
            for t in $PROXIES; do
                if [[ -n ${RPS[$size,$t]:-} ]]; then
                    local_note=${NOTE[$size,$t]:-}
                    origin_col=${ORIGIN_TOTAL[$size,$t]:--}
                    if [[ $t == bare-hyper ]]; then origin_col="-"; fi
                    if [[ -n ${NOT_HITS[$size,$t]:-} ]]; then local_note="NOT HITS${local_note:+; $local_note}"; fi
                    srv=${SRV_BUSY[$size,$t]:--}; cli=${CLI_BUSY[$size,$t]:--}; oth=${OTHER_PCT[$size,$t]:--}
                    if [[ $PIN != 1 ]]; then srv="-"; cli="-"; oth="-"; fi
                    printf "$fmt" "$size" "$t" "${RPS[$size,$t]}" "${P50[$size,$t]}" "${P99[$size,$t]}" \
                        "${CPU_USER[$size,$t]}" "${CPU_SYS[$size,$t]}" "${PROC_PCT[$size,$t]:--}" "$oth" "$srv" "$cli" \
                        "${ERRS[$size,$t]}" "$origin_col" "$local_note"
                else
                    printf "$fmt" "$size" "$t" - - - - - - - - - - - "FAILED: ${NOTE[$size,$t]:-no result}"
                fi
            done
        done
        echo "  origin: requests that reached the origin during the measured runs (all rounds); more than"
        echo "    $MAX_ORIGIN in one run marks the row NOT HITS."
        echo "  proc%: the server's processes' CPU time over the run, in % of one CPU. oth%: time the server's"
        echo "    CPU ($SERVER_CPU) spent on other tasks (other processes on this shared machine, steal): CPU the"
        echo "    server did not get. cpuS% / cpuC%: how busy the server's CPU / wrk's CPU ($CLIENT_CPU) were, all"
        echo "    tasks and interrupts included (a cpuC% near 100: the client was the limit). Medians over the rounds."
        echo
    fi
    if [[ $SKIP_MEMORY != 1 && -n ${CACHES// /} ]]; then
        echo "memory per cached small object ($OBJECTS objects, 100-byte bodies, fresh process each):"
        fmt='  %-9s %10s %10s %9s %9s  %s\n'
        printf "$fmt" server "RSS before" "RSS after" "B/obj" "PSS B/obj" "cached / note"
        for t in $CACHES; do
            if [[ -n ${MEM_B_RSS[$t]:-} ]]; then
                read -r r0 r1 <<<"${MEM_RSS[$t]}"
                printf "$fmt" "$t" "$((r0 / 1024)) MiB" "$((r1 / 1024)) MiB" "${MEM_B_RSS[$t]}" "${MEM_B_PSS[$t]}" \
                    "${MEM_CACHED[$t]}/$OBJECTS kept; ${MEM_NOTE[$t]}"
            else
                printf "$fmt" "$t" - - - - "FAILED: ${MEM_NOTE[$t]:-no result}"
            fi
        done
        for t in $CACHES; do
            [[ -n ${MEM_WHERE[$t]:-} ]] || continue
            printf '  %-9s %s\n' "$t" "${MEM_WHERE[$t]}"
        done
        echo
    fi
    for t in $PROXIES; do
        [[ -n ${FAIL_REASON[$t]:-} ]] || continue
        echo "$t FAILED: ${FAIL_REASON[$t]}"
        if [[ -s $WORK/$t.fail-tail ]]; then
            echo "  its output (last lines):"
            sed 's/^/  | /' "$WORK/$t.fail-tail"
        fi
    done
} | tee ${BENCH_OUTPUT:+"$BENCH_OUTPUT"}
if ((FAILED_ANY)); then
    log "some servers failed or were not cache hits (see above); exit status 1"
    exit 1
fi
