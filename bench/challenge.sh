#!/usr/bin/env bash
# What the browser challenge costs the server: challenge pages served to a flood, and the
# clearance check on every cleared request, side by side with the cheapest answers a server
# can give; then the cost of each cryptographic operation on its own.
#
# (a) Under load (wrk --latency), requests/s, p50 and p99 latency and the CPU time the
#     server's processes spent per request (user and system, /proc/PID/stat), for
#   * page:    Palisade, a site with state = "under_attack", requests without a cookie: every
#              one gets a freshly signed challenge page (503, about 7.5 KB), as a flood does;
#   * nginx:   nginx answering the same bytes as a static file (open_file_cache, sendfile):
#              the cheapest way a server can answer with a page of that size;
#   * hit:     Palisade, the same site not under attack: a cache hit of a response of the same
#              size (the reference for the next row);
#   * cleared: Palisade, the site under attack, the request carrying a valid
#              palisade_clearance cookie (earned once by solving a challenge in Python): the
#              same cache hit plus the clearance check.
#     Every request carries the same User-Agent (the cookie is bound to it); hit and cleared
#     also carry the same cookie (a site not under attack never reads it).
#     Then, unless BENCH_CALLGRIND=0, Palisade once more under valgrind's callgrind:
#     instructions per request of page, hit and cleared, and how many of page's are the
#     challenge itself (edge::phases::challenge::challenge, inclusive). Instructions do not
#     depend on what else the machine is doing; on a shared machine they are the figure to
#     trust when the req/s and CPU columns are noisy.
# (b) cargo bench -p shield --bench challenge: nanoseconds per operation (issuing a challenge,
#     rendering the page, verifying right, wrong and forged answers, minting and verifying a
#     cookie), without HTTP.
#
# One core for the server: Palisade (workers = 1) and the reference nginx (one worker) on CPU
# 1, wrk and the origin on CPU 0 (taskset), unless BENCH_PIN=0 or the machine has fewer than
# 2 CPUs. The rounds interleave the cases (the order rotating from round to round), so a slow
# spell of a shared machine lands on all of them; the table shows medians. All traffic goes to
# 127.0.0.1. Everything started here runs from a mktemp -d dir and is stopped (by PID) on exit,
# Ctrl-C included. See bench/README.md ("Challenge benchmark").
#
# Environment (defaults in brackets):
#   BENCH_DURATION       wrk duration per measured run, seconds or "10s" [10s]
#   BENCH_WARMUP         unmeasured wrk run before each measured run [1s]
#   BENCH_ROUNDS         interleaved rounds; medians are shown [5]
#   BENCH_CASES          which cases, from "page nginx hit cleared" [all four]
#   BENCH_CONNECTIONS    wrk connections [64]
#   BENCH_THREADS        wrk threads [1: wrk has one core]
#   BENCH_PIN            1 = servers on BENCH_SERVER_CPU, wrk and origin on
#                        BENCH_CLIENT_CPU; 0 = nothing pinned [1]
#   BENCH_SERVER_CPU / BENCH_CLIENT_CPU  the two CPUs [1 / 0]
#   BENCH_CALLGRIND      1 = also count instructions per request of Palisade's cases
#                        under valgrind's callgrind [1]
#   BENCH_CALLGRIND_DURATION  wrk duration per case under callgrind, seconds [5]
#   BENCH_MICRO          1 = also run part (b), cargo bench [1]
#   BENCH_MICRO_ITERATIONS  operations per round in part (b) [20000]
#   BENCH_SKIP_LOAD      1 = skip part (a), the wrk runs (no Palisade build) [0]
#   BENCH_KEEP_TMP       1 = keep the temp dir (configs, logs, wrk output) [0]
#   BENCH_OUTPUT         also write the final tables to this file [unset]
#   PALISADE_BIN         Palisade binary to use instead of
#                        `cargo build --release --bin palisade`
set -euo pipefail

BENCH_TAG=challenge-bench
# Shared helpers (process start/stop by PID and the exit trap, wrk output parsing, medians,
# CPU time of a process tree, pinning): bench/lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=$(secs "${BENCH_DURATION:-10s}")
DURATION_SECS=$(to_secs "$DURATION")
WARMUP=$(secs "${BENCH_WARMUP:-1s}")
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}
ROUNDS=${BENCH_ROUNDS:-5}
CASES=${BENCH_CASES:-page nginx hit cleared}
PIN=${BENCH_PIN:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
CALLGRIND=${BENCH_CALLGRIND:-1}
CALLGRIND_SECS=${BENCH_CALLGRIND_DURATION:-5}
MICRO=${BENCH_MICRO:-1}
MICRO_ITERATIONS=${BENCH_MICRO_ITERATIONS:-20000}
SKIP_LOAD=${BENCH_SKIP_LOAD:-0}
KEEP_TMP=${BENCH_KEEP_TMP:-0}
READY_TIMEOUT=30
# Every request's User-Agent. wrk sends none of its own; the clearance cookie is bound to this
# one, so the solver and every wrk run send it.
USER_AGENT="palisade-challenge-bench/1"

for c in $CASES; do
    [[ $c == page || $c == nginx || $c == hit || $c == cleared ]] ||
        die "BENCH_CASES: unknown case '$c' (use page, nginx, hit and/or cleared)"
done
for v in ROUNDS CONNS THREADS MICRO_ITERATIONS CALLGRIND_SECS; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
for v in SERVER_CPU CLIENT_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
for v in PIN CALLGRIND MICRO SKIP_LOAD; do
    [[ ${!v} == 0 || ${!v} == 1 ]] || die "$v must be 0 or 1 (got '${!v}')"
done
((SKIP_LOAD == 0 || MICRO == 1)) || die "BENCH_SKIP_LOAD=1 with BENCH_MICRO=0 leaves nothing to do"

bench_traps

# ------------------------------------------------------------------ pinning --
setup_pinning "Palisade (workers = 1) and the reference nginx (1 worker)"

# ------------------------------------------------------------ prerequisites --
if ((SKIP_LOAD == 0)); then
    tools=(wrk:wrk nginx:nginx curl:curl)
    if ((CALLGRIND == 1)); then tools+=(valgrind:valgrind callgrind_control:valgrind callgrind_annotate:valgrind); fi
    ensure_tools "${tools[@]}"
    raise_nofile 16384
fi
make_work

if ((MICRO == 1)); then
    # Built first, so that a failing build stops the script before the long part.
    log "building the micro-benchmark: cargo bench --no-run -p shield --bench challenge"
    (cd "$ROOT" && cargo bench --no-run -p shield --bench challenge >&2) ||
        die "cargo bench --no-run -p shield --bench challenge failed"
fi

# ------------------------------------------------------------ (a) under load --
declare -A PID_OF PORT_OF HOST_OF SERVER_OF CPU BPR CHECK PROC_PCT SRV_BUSY CLI_BUSY

if ((SKIP_LOAD == 0)); then
    if [[ -n ${PALISADE_BIN:-} ]]; then
        PALISADE=$PALISADE_BIN
    else
        PALISADE=$(cargo_release_bin palisade palisade) || die "cargo build --release --bin palisade failed"
    fi
    [[ -x $PALISADE ]] || die "palisade binary not found/executable: $PALISADE"

    read -r ORIGIN_PORT STATIC_PORT PAL_PORT PAL_ADMIN < <(free_ports 4) || true
    [[ -n ${PAL_ADMIN:-} ]] || die "could not pick free ports"

    # ---------------------------------------------------------------- origin --
    mkdir -p "$WORK/www" "$WORK/origin" "$WORK/static" "$WORK/nginx" "$WORK/palisade/data"
    write_bodies "$WORK/www"
    ORIGIN_LOG="$WORK/origin/access.log"
    counting_origin_conf "$WORK/origin" "$ORIGIN_PORT" "$WORK/www" "$ORIGIN_LOG" >"$WORK/origin/nginx.conf"
    origin_count() { if [[ -e $ORIGIN_LOG ]]; then wc -l <"$ORIGIN_LOG"; else echo 0; fi; }

    # -------------------------------------------------------------- palisade --
    # One server, two sites that differ only in their state: attack.local under attack,
    # calm.local not. Attack detection off on both: it would put calm.local under attack too.
    cat >"$WORK/palisade/palisade.toml" <<EOF
[server]
listen = ["127.0.0.1:$PAL_PORT"]
admin = "127.0.0.1:$PAL_ADMIN"
data_dir = "$WORK/palisade/data"
access_log = "off"
workers = 1
max_connections_per_ip = 100000
# load generators open connections far faster than any one visitor
max_new_connections_per_ip = 100000000
cache_memory = "64MiB"
cache_disk = 0

[[site]]
name = "attack"
hosts = ["attack.local"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
state = "under_attack"
[site.cache]
enabled = true
[site.shield]
auto_under_attack = false
[site.challenge]
# the cookie earned at the start must outlive the longest run (the default is 30m)
clearance_ttl = "12h"

[[site]]
name = "calm"
hosts = ["calm.local"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
[site.cache]
enabled = true
[site.shield]
auto_under_attack = false
EOF
    "$PALISADE" check --config "$WORK/palisade/palisade.toml" >"$WORK/palisade/check.out" 2>&1 ||
        { cat "$WORK/palisade/check.out" >&2; die "palisade check refused the config"; }

    start_bg origin "$(logfile_of origin)" ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} \
        nginx -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf"
    HOST_HDR=origin.local
    wait_ready origin "$LAST_PID" "$ORIGIN_PORT" || die "origin nginx did not start"

    start_bg palisade "$(logfile_of palisade)" ${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} \
        "$PALISADE" serve --config "$WORK/palisade/palisade.toml"
    PID_OF[palisade]=$LAST_PID
    HOST_HDR=calm.local
    wait_ready palisade "$LAST_PID" "$PAL_PORT" || die "palisade did not start"

    # ------------------------------------------- a challenge page, solved once --
    # The page as a browser gets it (saved: the nginx row serves the same bytes), solved the
    # way the page's worker solves it (docs/challenge.md), and the answer posted for the cookie.
    log "solving one challenge for the clearance cookie (Python, at the site's difficulty)"
    COOKIE=$(python3 - "$PAL_PORT" attack.local "$USER_AGENT" /page "$WORK/challenge-page.html" <<'EOF'
import hashlib, http.client, json, re, sys, time
port, host, agent, path, save = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
conn = http.client.HTTPConnection("127.0.0.1", int(port), timeout=10)
conn.request("GET", path, headers={"Host": host, "User-Agent": agent})
resp = conn.getresponse()
page = resp.read()
if resp.status != 503:
    sys.exit("GET %s: status %d, not the challenge's 503" % (path, resp.status))
with open(save, "wb") as f:
    f.write(page)
m = re.search(rb'<script type="application/json" id="palisade-challenge">(.*?)</script>', page, re.S)
if not m:
    sys.exit("no challenge parameters in the page")
p = json.loads(m.group(1))
c, bits, parts = p["c"], int(p["bits"]), int(p["parts"])
start, hashes, answers = time.monotonic(), 0, []
for i in range(parts):
    n = 0
    while True:
        hashes += 1
        h = hashlib.sha256(("%s:%d:%d" % (c, i, n)).encode()).digest()
        if int.from_bytes(h, "big") >> (256 - bits) == 0:
            break
        n += 1
    answers.append(n)
took = time.monotonic() - start
body = json.dumps({"c": c, "n": answers, "return": p["return"]})
conn.request("POST", p["verify"], body=body,
             headers={"Host": host, "User-Agent": agent, "Content-Type": "application/json"})
resp = conn.getresponse()
answer = resp.read()
if resp.status != 200:
    sys.exit("answer refused: %d %s" % (resp.status, answer[:200]))
cookie = resp.getheader("Set-Cookie") or ""
m = re.match(r"palisade_clearance=([^;]+)", cookie)
if not m:
    sys.exit("no clearance cookie in the answer: %r" % cookie)
print("solved %d bits x %d parts: %d hashes in %.2f s; %s" % (bits, parts, hashes, took, cookie),
      file=sys.stderr)
print(m.group(1))
EOF
    ) || die "could not earn a clearance cookie"
    PAGE_BYTES=$(wc -c <"$WORK/challenge-page.html")
    log "challenge page: $PAGE_BYTES bytes; clearance cookie: ${COOKIE:0:12}..."
    # The hit rows' object: a response of the same size, from the origin.
    cp "$WORK/challenge-page.html" "$WORK/www/page"
    cp "$WORK/challenge-page.html" "$WORK/static/page"
    chmod 644 "$WORK/www/page" "$WORK/static/page"
    write_bodies "$WORK/static" # /1k, for wait_ready

    # ------------------------------------------------------------ reference --
    cat >"$WORK/nginx/nginx.conf" <<EOF
# the reference: the challenge page's bytes as a static file, the open file cached
$(nginx_main "$WORK/nginx" 1 16384)
http {
$(nginx_common_http "$WORK/nginx")
    sendfile on;
    tcp_nopush on;
    open_file_cache max=16 inactive=1h;
    open_file_cache_valid 1h;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$STATIC_PORT backlog=4096;
        server_name _;
        root $WORK/static;
        location / {
            default_type "text/html; charset=utf-8";
            add_header Cache-Control "no-store";
        }
    }
}
EOF
    start_bg nginx "$(logfile_of nginx)" ${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} \
        nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf"
    PID_OF[nginx]=$LAST_PID
    HOST_HDR=static.local
    wait_ready nginx "$LAST_PID" "$STATIC_PORT" || die "reference nginx did not start"

    SERVER_OF=([page]=palisade [nginx]=nginx [hit]=palisade [cleared]=palisade)
    PORT_OF=([page]=$PAL_PORT [nginx]=$STATIC_PORT [hit]=$PAL_PORT [cleared]=$PAL_PORT)
    HOST_OF=([page]=attack.local [nginx]=static.local [hit]=calm.local [cleared]=attack.local)
    # The request of each case (GET /page): its header fields, as curl's and wrk's -H arguments.
    case_headers() { # case -> HDRS
        HDRS=(-H "Host: ${HOST_OF[$1]}" -H "User-Agent: $USER_AGENT")
        if [[ $1 == hit || $1 == cleared ]]; then HDRS+=(-H "Cookie: palisade_clearance=$COOKIE"); fi
    }
    curl_case() { # case curl-args... -> curl with the case's request
        local c=$1
        shift
        case_headers "$c"
        curl -s --max-time 5 "${HDRS[@]}" "$@" "http://127.0.0.1:${PORT_OF[$c]}/page"
    }

    # ----------------------------------------- every case answers what it should --
    # page: a fresh challenge page each time, kept alive (a flood's connections are reused).
    read -r code size ctype < <(curl_case page -o "$WORK/check-page.html" \
        -w '%{http_code} %{size_download} %{content_type}\n' || true)
    [[ $code == 503 ]] || die "page: GET /page on attack.local answered $code, not 503"
    [[ $ctype == text/html* ]] || die "page: Content-Type '$ctype', not text/html"
    grep -q 'id="palisade-challenge"' "$WORK/check-page.html" || die "page: the 503 is not the challenge page"
    cmp -s "$WORK/check-page.html" "$WORK/challenge-page.html" && die "page: the same page twice (the challenge is not fresh)"
    ((size > PAGE_BYTES - 64 && size < PAGE_BYTES + 64)) || die "page: $size bytes, the first was $PAGE_BYTES"
    reuse=$(curl -s --max-time 5 -o /dev/null -o /dev/null -w '%{num_connects} ' -H "Host: attack.local" \
        -H "User-Agent: $USER_AGENT" "http://127.0.0.1:$PAL_PORT/page" "http://127.0.0.1:$PAL_PORT/page" || true)
    [[ $reuse == "1 0 " ]] || log "warning: Palisade did not keep the connection open after a challenge page (connects: $reuse)"
    CHECK[page]="503, ${size} B, a fresh challenge each"
    # nginx: the same bytes.
    read -r code size < <(curl_case nginx -o /dev/null -w '%{http_code} %{size_download}\n' || true)
    [[ $code == 200 && $size == "$PAGE_BYTES" ]] || die "nginx: GET /page answered '$code $size', not '200 $PAGE_BYTES'"
    CHECK[nginx]="200, $size B"
    # hit and cleared: a cache hit of the same size, through the gate for cleared.
    for c in hit cleared; do
        for i in 1 2; do curl_case "$c" -o /dev/null || true; done
        status=$(curl_case "$c" -o "$WORK/check-$c.out" -D - | tr -d '\r' |
            awk 'NR == 1 {print $2} tolower($1) == "cache-status:" {sub(/^[^:]*: /, ""); print}' | tr '\n' ' ')
        [[ $status == "200 "*"; hit"* ]] || die "$c: GET /page on ${HOST_OF[$c]} is not a 200 cache hit (status and Cache-Status: $status)"
        size=$(wc -c <"$WORK/check-$c.out")
        [[ $size == "$PAGE_BYTES" ]] || die "$c: $size bytes, want $PAGE_BYTES"
        CHECK[$c]="200, $size B, cache hit"
    done
    # And without the cookie, or with it from another browser, cleared's request is challenged.
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: attack.local" -H "User-Agent: other" \
        -H "Cookie: palisade_clearance=$COOKIE" "http://127.0.0.1:$PAL_PORT/page" || true)
    [[ $code == 503 ]] || die "cleared: the cookie let another User-Agent through ($code)"
    log "checked: page ${CHECK[page]}; nginx ${CHECK[nginx]}; hit ${CHECK[hit]}; cleared ${CHECK[cleared]}"

    # ---------------------------------------------------------- measurement --
    issued() { # -> challenge pages the attack site has served so far
        curl -s --max-time 5 "http://127.0.0.1:$PAL_ADMIN/metrics" |
            awk '/^palisade_challenges_total\{/ && /site="attack"/ && /outcome="issued"/ {print $NF; found = 1}
                 END {if (!found) print "-"}'
    }
    [[ $(issued) =~ ^[0-9]+$ ]] || die "no palisade_challenges_total{site=\"attack\",outcome=\"issued\"} in Palisade's metrics"
    declare -A ORIGIN_REQS
    run_case() { # case round -> RPS/P50/P99/ERRS/CPU_*/CPU/BPR[case,server,round]
        local c=$1 round=$2 server=${SERVER_OF[$1]} out u0 s0 u1 s1 i0 i1 o0 sb0 cb0 sb1 cb1
        local pid=${PID_OF[$server]}
        out="$WORK/wrk-$c-$round.txt"
        case_headers "$c"
        local wrk=(wrk -t"$THREADS" -c"$CONNS" "${HDRS[@]}")
        local url="http://127.0.0.1:${PORT_OF[$c]}/page"
        log "$c: warm-up $WARMUP"
        run_fg /dev/null timeout 120 ${WRK_PREFIX[@]+"${WRK_PREFIX[@]}"} "${wrk[@]}" -d"$WARMUP" "$url" || true
        log "$c round $round: ${WRK_PREFIX[*]+${WRK_PREFIX[*]} }wrk -t$THREADS -c$CONNS -d$DURATION --latency"
        o0=$(origin_count)
        if [[ $c == page ]]; then i0=$(issued); fi
        read -r u0 s0 < <(cpu_ticks "$pid")
        sb0=$(cpu_times "$SERVER_CPU") cb0=$(cpu_times "$CLIENT_CPU")
        if ! run_fg "$out" timeout $((DURATION_SECS * 2 + 60)) ${WRK_PREFIX[@]+"${WRK_PREFIX[@]}"} \
            "${wrk[@]}" -d"$DURATION" --latency "$url"; then
            log "$c: wrk failed"; cat "$out" >&2
            note "$c" "round $round: wrk failed"; fail "$c" "wrk failed"
            return 1
        fi
        read -r u1 s1 < <(cpu_ticks "$pid")
        sb1=$(cpu_times "$SERVER_CPU") cb1=$(cpu_times "$CLIENT_CPU")
        if [[ $c == page ]]; then i1=$(issued); fi
        local key=$c,$server,$round
        ORIGIN_REQS[$key]=$(($(origin_count) - o0))
        if ! wrk_figures "$out"; then
            log "$c: could not parse wrk output"; cat "$out" >&2
            note "$c" "round $round: unparsable wrk output"; fail "$c" "unparsable wrk output"
            return 1
        fi
        local reqs=${W_REQS:-0} non2xx=${W_NON2XX:-0} wrong
        # Answers other than the case's: every response of the page case is a 503 (which wrk
        # counts as non-2xx), none of the others' is.
        if [[ $c == page ]]; then wrong=$((reqs - non2xx)); else wrong=$non2xx; fi
        if ((wrong > 0)); then
            note "$c" "round $round: $wrong answers not $([[ $c == page ]] && echo 503 || echo 2xx)"
            fail "$c" "answers other than the case's"
        fi
        RPS[$key]=$(printf '%.0f' "$W_RPS")
        P50[$key]=$(to_ms "$W_P50")
        P99[$key]=$(to_ms "$W_P99")
        ERRS[$key]=$((${W_SOCK:-0} + wrong))
        CPU_USER[$key]=$(us_per_req $((u1 - u0)) "$reqs")
        CPU_SYS[$key]=$(us_per_req $((s1 - s0)) "$reqs")
        CPU[$key]=$(us_per_req $((u1 - u0 + s1 - s0)) "$reqs")
        # The server's processes' share of one CPU; how busy the server's and wrk's CPUs were.
        PROC_PCT[$key]=$(awk -v c="${CPU[$key]}" -v r="$W_RPS" 'BEGIN {printf "%.0f", c * r / 1e4}')
        SRV_BUSY[$key]=$(busy_pct "$sb0" "$sb1")
        CLI_BUSY[$key]=$(busy_pct "$cb0" "$cb1")
        BPR[$key]=$(awk -v b="${W_BYTES:-0}" -v n="$reqs" 'BEGIN {if (n > 0) printf "%.0f", b / n; else print "-"}')
        local issued_note=""
        if [[ $c == page ]]; then
            # Each 503 wrk counted is a challenge the server signed during the run: at least
            # as many issued as 503s, and at most the requests in flight at either end more.
            local n=$((i1 - i0))
            issued_note=", $n challenges issued"
            if ((n < non2xx || n > reqs + 2 * CONNS)); then
                note "$c" "round $round: $n challenges issued for $non2xx 503s"
                fail "$c" "challenges issued do not match the 503s"
            fi
        elif ((ORIGIN_REQS[$key] > 10)); then
            note "$c" "round $round: ${ORIGIN_REQS[$key]} requests reached the origin (not hits)"
            fail "$c" "not cache hits"
        fi
        log "$c round $round: ${RPS[$key]} req/s, p50 ${P50[$key]} ms, p99 ${P99[$key]} ms, errors ${ERRS[$key]}, CPU/req ${CPU[$key]} us (user ${CPU_USER[$key]}, sys ${CPU_SYS[$key]}), ${BPR[$key]} B/response$issued_note; server ${PROC_PCT[$key]}% of a CPU, CPU $SERVER_CPU ${SRV_BUSY[$key]}% busy, CPU $CLIENT_CPU ${CLI_BUSY[$key]}% busy"
    }
    note() { # case text -> appended to the case's note in the table
        local key=$1,${SERVER_OF[$1]}
        NOTE[$key]="${NOTE[$key]:+${NOTE[$key]}; }$2"
    }

    read -r -a CASE_LIST <<<"$CASES"
    for ((round = 1; round <= ROUNDS; round++)); do
        # Rotate who goes first, so that no case always runs on a machine another has just
        # warmed (or heated).
        n=${#CASE_LIST[@]}
        for ((k = 0; k < n; k++)); do
            c=${CASE_LIST[$(((k + round - 1) % n))]}
            run_case "$c" "$round" || true
            kill -0 "${PID_OF[${SERVER_OF[$c]}]}" 2>/dev/null || { show_log "${SERVER_OF[$c]}"; die "${SERVER_OF[$c]} died during the $c run"; }
        done
    done

    rounds_median() { # array case server -> the median of array[case,server,round] over the rounds
        local -n figure=$1
        local r vals=()
        for ((r = 1; r <= ROUNDS; r++)); do
            if [[ -n ${figure[$2,$3,$r]:-} ]]; then vals+=("${figure[$2,$3,$r]}"); fi
        done
        if ((${#vals[@]})); then median "${vals[@]}"; fi
    }
    declare -A CLEAR_COST
    for c in "${CASE_LIST[@]}"; do
        t=${SERVER_OF[$c]}
        summarize "$c" "$t" # medians of RPS, P50, P99, CPU_USER, CPU_SYS; ERRS summed
        CPU[$c,$t]=$(rounds_median CPU "$c" "$t")
        BPR[$c,$t]=$(rounds_median BPR "$c" "$t")
        PROC_PCT[$c,$t]=$(rounds_median PROC_PCT "$c" "$t")
        SRV_BUSY[$c,$t]=$(rounds_median SRV_BUSY "$c" "$t")
        CLI_BUSY[$c,$t]=$(rounds_median CLI_BUSY "$c" "$t")
    done
    # The clearance check's cost, round by round: hit and cleared ran seconds apart, so a slow
    # spell of the machine mostly hits both; the median of these is steadier than a ratio of
    # medians.
    cc=() rc=()
    for ((round = 1; round <= ROUNDS; round++)); do
        [[ -n ${CPU[hit,palisade,$round]:-} && -n ${CPU[cleared,palisade,$round]:-} ]] || continue
        cc+=("$(awk -v a="${CPU[hit,palisade,$round]}" -v b="${CPU[cleared,palisade,$round]}" 'BEGIN {printf "%+.1f", (b - a) * 100 / a}')")
        rc+=("$(awk -v a="${RPS[hit,palisade,$round]}" -v b="${RPS[cleared,palisade,$round]}" 'BEGIN {printf "%+.1f", (b - a) * 100 / a}')")
    done
    if ((${#cc[@]})); then
        CLEAR_COST[cpu]="$(median "${cc[@]}")% (rounds: $(printf '%s%% ' "${cc[@]}"))"
        CLEAR_COST[rps]="$(median "${rc[@]}")% (rounds: $(printf '%s%% ' "${rc[@]}"))"
    fi
    for c in nginx palisade; do stop_pid "${PID_OF[$c]}"; done

    # ---------------------------------------------------------- callgrind --
    declare -A INSTR CG_REQS
    CHALLENGE_INSTR=""
    callgrind_run() { # -> INSTR/CG_REQS[case] for Palisade's cases, CHALLENGE_INSTR (page)
        local port admin cfg vpid c n file out dump=0 i wrong
        read -r port admin < <(free_ports 2)
        cfg="$WORK/palisade/callgrind.toml"
        # The same server (and data dir: the same keys, so the same cookie) on other ports.
        sed -e "s/^listen = .*/listen = [\"127.0.0.1:$port\"]/" -e "s/^admin = .*/admin = \"127.0.0.1:$admin\"/" \
            "$WORK/palisade/palisade.toml" >"$cfg"
        start_bg "callgrind palisade" "$WORK/palisade/callgrind.log" ${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} \
            valgrind --tool=callgrind --callgrind-out-file="$WORK/palisade/callgrind.out" "$PALISADE" serve --config "$cfg"
        vpid=$LAST_PID
        local deadline=$((SECONDS + 120))
        until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: calm.local" "http://127.0.0.1:$port/1k") == 200 ]]; do
            if ((SECONDS >= deadline)) || ! kill -0 "$vpid" 2>/dev/null; then
                tail -20 "$WORK/palisade/callgrind.log" >&2
                die "palisade under callgrind did not start"
            fi
            sleep 1
        done
        PORT_OF=([page]=$port [hit]=$port [cleared]=$port)
        for c in "${CASE_LIST[@]}"; do
            [[ ${SERVER_OF[$c]} == palisade ]] || continue
            # a few requests to warm the path (and store the hit), then count from zero
            for i in 1 2 3; do curl_case "$c" -o /dev/null --max-time 10 || true; done
            callgrind_control -z "$vpid" >/dev/null 2>&1
            out="$WORK/palisade/callgrind-wrk-$c.txt"
            case_headers "$c"
            run_fg "$out" timeout $((CALLGRIND_SECS + 60)) ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} \
                wrk -t1 -c8 -d"${CALLGRIND_SECS}s" "${HDRS[@]}" "http://127.0.0.1:$port/page" || die "wrk under callgrind failed"
            callgrind_control -d "$vpid" >/dev/null 2>&1
            dump=$((dump + 1))
            wrk_figures "$out" || true
            n=${W_REQS:-0}
            if [[ $c == page ]]; then wrong=$((n - ${W_NON2XX:-0})); else wrong=${W_NON2XX:-0}; fi
            ((wrong == 0)) || die "under callgrind, $wrong of the $c case's answers were not what it expects"
            file="$WORK/palisade/callgrind.out.$dump"
            [[ -s $file && $n -gt 0 ]] || die "no callgrind dump for $c"
            CG_REQS[$c]=$n
            INSTR[$c]=$(awk -v n="$n" '/^summary:/ {printf "%.0f", $2 / n; exit}' "$file")
            if [[ $c == page ]]; then
                # callgrind_annotate splits a function by the files its inlined code comes
                # from; the largest inclusive entry is the whole call. (awk reads to the end:
                # leaving early would kill callgrind_annotate with SIGPIPE.)
                CHALLENGE_INSTR=$(callgrind_annotate --inclusive=yes --threshold=100 "$file" 2>/dev/null |
                    awk -v n="$n" '/:edge::phases::challenge::challenge( |$)/ {gsub(/,/, "", $1); if ($1 + 0 > v) v = $1 + 0}
                        END {if (v > 0) printf "%.0f", v / n}')
            fi
            log "callgrind $c: $n requests, ${INSTR[$c]} instructions per request"
        done
        stop_pid "$vpid"
    }
    if ((CALLGRIND == 1)); then callgrind_run; fi
fi

# ------------------------------------------------------- (b) per operation --
if ((MICRO == 1)); then
    log "per operation: ${SERVER_PREFIX[*]+${SERVER_PREFIX[*]} }cargo bench -p shield --bench challenge"
    # The build is done (above); pinned, cargo only checks it and runs the benchmark.
    if ! run_fg "$WORK/micro.txt" ${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} \
        env CHALLENGE_BENCH_ITERATIONS="$MICRO_ITERATIONS" \
        cargo bench -q --manifest-path "$ROOT/Cargo.toml" -p shield --bench challenge; then
        cat "$WORK/micro.txt" >&2
        die "cargo bench -p shield --bench challenge failed"
    fi
    # The benchmark's table: its header line and the rows under it ("ns/op per core/s what").
    awk '/ns\/op/ {t = 1} t && NF' "$WORK/micro.txt" >"$WORK/micro-table.txt"
    [[ -s $WORK/micro-table.txt ]] || { cat "$WORK/micro.txt" >&2; die "no table in the benchmark's output"; }
    MICRO_HEAD=$(awk '/^challenge operations:/ {sub(/^challenge operations: /, ""); print; exit}' "$WORK/micro.txt")
    micro_ns() { awk -v what="$1" 'index($0, what) {print $1; exit}' "$WORK/micro-table.txt"; }
fi

# ------------------------------------------------------------------ report --
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
{
    echo
    echo "# Palisade challenge benchmark ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo "machine : $NCPU cores ($CPU_MODEL), $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
    if ((SKIP_LOAD == 0)); then
        echo "pinning : $PIN_DESC"
        echo "load    : ${WRK_PREFIX[*]+${WRK_PREFIX[*]} }wrk -t$THREADS -c$CONNS -d$DURATION --latency, warm-up $WARMUP, GET /page, User-Agent: $USER_AGENT, 127.0.0.1 only; $ROUNDS interleaved rounds, medians shown"
        echo "page    : Palisade, site state = \"under_attack\", no cookie: a signed challenge page each (503, $PAGE_BYTES bytes)"
        echo "nginx   : nginx, 1 worker, the same $PAGE_BYTES bytes as a static file (open_file_cache, sendfile)"
        echo "hit     : Palisade, the site not under attack: a cache hit of $PAGE_BYTES bytes"
        echo "cleared : Palisade, the site under attack, a valid palisade_clearance cookie: the same hit through the clearance check"
        echo
        row() { printf '%-8s %-8s %8s %7s %7s %8s %8s %8s %5s %5s %5s %6s %6s  %s\n' "$@"; }
        row case server "req/s" "p50 ms" "p99 ms" "usr us/r" "sys us/r" "cpu us/r" "proc%" "cpuS%" "cpuC%" B/resp errors note
        row -------- -------- -------- ------- ------- -------- -------- -------- ----- ----- ----- ------ ------
        for c in "${CASE_LIST[@]}"; do
            k=$c,${SERVER_OF[$c]}
            if [[ -n ${RPS[$k]:-} ]]; then
                busy=("${SRV_BUSY[$k]}" "${CLI_BUSY[$k]}")
                if [[ $PIN != 1 ]]; then busy=(- -); fi
                row "$c" "${SERVER_OF[$c]}" "${RPS[$k]}" "${P50[$k]}" "${P99[$k]}" "${CPU_USER[$k]}" \
                    "${CPU_SYS[$k]}" "${CPU[$k]}" "${PROC_PCT[$k]}" "${busy[@]}" "${BPR[$k]}" "${ERRS[$k]}" "${NOTE[$k]:-}"
            else
                row "$c" "${SERVER_OF[$c]}" - - - - - - - - - - - "FAILED: ${FAIL_REASON[$c]:-${NOTE[$k]:-no result}}"
            fi
        done
        echo
        echo "  cpu us/r: user + system CPU time of the server's processes per response, the median over"
        echo "    the rounds of each round's sum. proc%: the server's processes' CPU time, in % of one CPU."
        echo "    cpuS% / cpuC%: how busy the server's CPU ($SERVER_CPU) / wrk's CPU ($CLIENT_CPU) were, all tasks and"
        echo "    interrupts included: a cpuC% near 100 means the client was the limit, and the req/s column"
        echo "    then says little about the server (compare cpu us/r). B/resp: bytes wrk read per response,"
        echo "    headers included."
        echo "    errors: socket errors and answers other than the case's (page: anything but a 503;"
        echo "    the others: anything but 2xx), all rounds. Every page round also checks that the server"
        echo "    issued as many challenges as wrk counted 503s; the hit rounds that the origin saw none."
        if [[ -n ${CLEAR_COST[cpu]:-} ]]; then
            echo
            echo "the clearance check's cost, cleared vs hit: the median over the rounds of each round's difference"
            echo "  CPU per request ${CLEAR_COST[cpu]}"
            echo "  req/s           ${CLEAR_COST[rps]}"
        fi
        if [[ -n ${RPS[page,palisade]:-} && -n ${RPS[nginx,nginx]:-} ]]; then
            echo "challenge pages vs nginx's static copy: $(awk -v a="${RPS[nginx,nginx]}" -v b="${RPS[page,palisade]}" 'BEGIN {printf "%.2f", b / a}')x the req/s, $(awk -v a="${CPU[nginx,nginx]}" -v b="${CPU[page,palisade]}" 'BEGIN {printf "%.2f", b / a}')x the CPU per response"
        fi
        if ((CALLGRIND == 1)); then
            echo
            echo "instructions per request under callgrind (wrk -t1 -c8 -d${CALLGRIND_SECS}s per case):"
            row2() { printf '  %-8s %9s %14s %9s  %s\n' "$@"; }
            row2 case requests "instr/request" "vs hit" ""
            for c in "${CASE_LIST[@]}"; do
                [[ ${SERVER_OF[$c]} == palisade ]] || continue
                vs=-
                if [[ $c != hit && -n ${INSTR[hit]:-} && -n ${INSTR[$c]:-} ]]; then
                    vs=$(awk -v a="${INSTR[hit]}" -v b="${INSTR[$c]}" 'BEGIN {printf "%+.0f", b - a}')
                fi
                extra=""
                if [[ $c == page && -n $CHALLENGE_INSTR ]]; then
                    extra="of which the challenge (edge::phases::challenge::challenge: issue, render, headers): $CHALLENGE_INSTR"
                fi
                row2 "$c" "${CG_REQS[$c]:--}" "${INSTR[$c]:--}" "$vs" "$extra"
            done
        fi
    fi
    if ((MICRO == 1)); then
        echo
        echo "per operation, without HTTP (cargo bench -p shield --bench challenge; ${SERVER_PREFIX[*]:-not pinned}; $MICRO_HEAD):"
        sed 's/^/  /' "$WORK/micro-table.txt"
        page_ns=$(micro_ns "issue + render")
        cookie_ns=$(micro_ns "clearance::verify")
        if ((SKIP_LOAD == 0)) && [[ -n $page_ns && -n ${CPU[page,palisade]:-} ]]; then
            echo "  of page's ${CPU[page,palisade]} us of CPU per response, issue + render are $(awk -v n="$page_ns" 'BEGIN {printf "%.2f", n / 1000}') us; the rest is HTTP, the kernel's socket work and the 7.5 KB write"
        fi
        if ((SKIP_LOAD == 0)) && [[ -n $cookie_ns && -n ${CPU[hit,palisade]:-} ]]; then
            echo "  of hit's ${CPU[hit,palisade]} us per response, the clearance check would be $(awk -v n="$cookie_ns" 'BEGIN {printf "%.2f", n / 1000}') us"
        fi
    fi
} | tee ${BENCH_OUTPUT:+"$BENCH_OUTPUT"}
if ((FAILED_ANY)); then
    log "some runs failed (see above); exit status 1"
    exit 1
fi
