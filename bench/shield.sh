#!/usr/bin/env bash
# What the shield costs: Palisade with the shield off vs on (100 firewall rules,
# 100,000 denied CIDRs and a rate limit), side by side, in the same run, in
# front of the same origin.
#
# Measures, for each of
#   * proxy: a proxied 1 KiB response (the site's cache off: every request goes
#     to the origin), and
#   * hit:   a 1 KiB cache hit,
# requests/s, p50 and p99 latency (wrk --latency) and the CPU time Palisade's
# process spent per request (user and system, from /proc/PID/stat over the
# measured run), for both configurations, and the shield's cost: how much more
# CPU per request the shielded server spends, and how many fewer requests/s it
# answers.
#
# The two configurations differ only in the shield:
#   off: no lists, no rules, no limits; the origin concurrency cap, the cache
#        miss limit and attack detection off.
#   on:  a global deny_files of 100,000 random IPv4 and IPv6 prefixes (none in
#        127.0.0.0/8), 100 rules per site (path prefixes, user-agent and header
#        checks, regexes, method/host/address conditions; block, challenge and
#        log; none matches the benchmark's request, so every one is evaluated),
#        one rate limit per site keyed by address (at 10^9 per 10 s: counted,
#        never reached), and the defaults of the origin concurrency cap (256)
#        and the cache-miss limit (600 per 60 s). Attack detection is off in
#        both: a benchmark is a traffic spike, and under-attack mode would answer
#        it with challenge pages.
#
# Then, unless BENCH_CALLGRIND=0, each configuration once more under valgrind's
# callgrind: instructions per request for each case, and how many of them are
# the shield's own (SiteGuard::check_cleared, inclusive). Instructions do not depend on
# what else the machine is doing; on a shared machine they are the figure to
# trust when the req/s and CPU columns are noisy.
#
# One core for the server: both Palisades run with workers = 1 on CPU 1, wrk
# and the origin on CPU 0 (taskset), unless BENCH_PIN=0 or the machine has
# fewer than 2 CPUs. Both Palisades run for the whole test and the rounds
# interleave them (the order alternating from round to round), so a slow spell
# of this shared machine lands on both. All traffic goes to 127.0.0.1.
# Everything started here runs from a mktemp -d dir and is stopped (by PID) on
# exit, Ctrl-C included. See bench/README.md ("Shield benchmark").
#
# Environment (defaults in brackets):
#   BENCH_DURATION       wrk duration per measured run, seconds or "10s" [10s]
#   BENCH_WARMUP         unmeasured wrk run before each measured run [1s]
#   BENCH_ROUNDS         interleaved rounds; medians are shown [5]
#   BENCH_CASES          which cases, from "proxy hit" ["proxy hit"]
#   BENCH_CONNECTIONS    wrk connections [64]
#   BENCH_THREADS        wrk threads [1: wrk has one core]
#   BENCH_PIN            1 = servers on BENCH_SERVER_CPU, wrk and origin on
#                        BENCH_CLIENT_CPU; 0 = nothing pinned [1]
#   BENCH_SERVER_CPU / BENCH_CLIENT_CPU  the two CPUs [1 / 0]
#   BENCH_CIDRS          denied prefixes in the generated file [100000]
#   BENCH_RULES          rules per site [100]
#   BENCH_CALLGRIND      1 = also count instructions per request under callgrind [1]
#   BENCH_CALLGRIND_DURATION  wrk duration per case under callgrind, seconds [5]
#   BENCH_KEEP_TMP       1 = keep the temp dir (configs, logs, wrk output) [0]
#   BENCH_OUTPUT         also write the final table to this file [unset]
#   PALISADE_BIN         Palisade binary to use instead of
#                        `cargo build --release --bin palisade`
set -euo pipefail

BENCH_TAG=shield-bench
# Shared helpers (process start/stop by PID and the exit trap, wrk runs and
# their parsing, medians, CPU time of a process tree): bench/lib.sh.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=$(secs "${BENCH_DURATION:-10s}")
DURATION_SECS=$(to_secs "$DURATION")
WARMUP=$(secs "${BENCH_WARMUP:-1s}")
CONNS=${BENCH_CONNECTIONS:-64}
THREADS=${BENCH_THREADS:-1}
ROUNDS=${BENCH_ROUNDS:-5}
CASES=${BENCH_CASES:-proxy hit}
PIN=${BENCH_PIN:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
CIDRS=${BENCH_CIDRS:-100000}
RULES=${BENCH_RULES:-100}
CALLGRIND=${BENCH_CALLGRIND:-1}
CALLGRIND_SECS=${BENCH_CALLGRIND_DURATION:-5}
KEEP_TMP=${BENCH_KEEP_TMP:-0}
READY_TIMEOUT=60 # seconds: the shielded server reads 100,000 prefixes at start

for c in $CASES; do
    [[ $c == proxy || $c == hit ]] || die "BENCH_CASES: unknown case '$c' (use proxy and/or hit)"
done
for v in ROUNDS CONNS THREADS CIDRS RULES CALLGRIND_SECS; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
for v in SERVER_CPU CLIENT_CPU; do
    [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a non-negative integer (got '${!v}')"
done
[[ $PIN == 0 || $PIN == 1 ]] || die "BENCH_PIN must be 0 or 1 (got '$PIN')"
[[ $CALLGRIND == 0 || $CALLGRIND == 1 ]] || die "BENCH_CALLGRIND must be 0 or 1 (got '$CALLGRIND')"

bench_traps

# ------------------------------------------------------------------ pinning --
setup_pinning "both Palisades (workers = 1)"

# ------------------------------------------------------------ prerequisites --
tools=(wrk:wrk nginx:nginx curl:curl)
if [[ $CALLGRIND == 1 ]]; then tools+=(valgrind:valgrind callgrind_control:valgrind callgrind_annotate:valgrind); fi
ensure_tools "${tools[@]}"
raise_nofile 16384
make_work

if [[ -n ${PALISADE_BIN:-} ]]; then
    PALISADE=$PALISADE_BIN
else
    PALISADE=$(cargo_release_bin palisade palisade) || die "cargo build --release --bin palisade failed"
fi
[[ -x $PALISADE ]] || die "palisade binary not found/executable: $PALISADE"

read -r ORIGIN_PORT OFF_PORT ON_PORT OFF_ADMIN ON_ADMIN < <(free_ports 5) || true
[[ -n ${ON_ADMIN:-} ]] || die "could not pick free ports"

# ------------------------------------------------------------------ origin --
mkdir -p "$WORK/www" "$WORK/origin" "$WORK/off/data" "$WORK/on/data"
write_bodies "$WORK/www"
# The same 1 KiB under the name of each case, so that wrk's path (/proxy, /hit)
# names the case in run_wrk's results.
cp "$WORK/www/1k" "$WORK/www/proxy"
cp "$WORK/www/1k" "$WORK/www/hit"
chmod 644 "$WORK/www/proxy" "$WORK/www/hit"
ORIGIN_LOG="$WORK/origin/access.log"
counting_origin_conf "$WORK/origin" "$ORIGIN_PORT" "$WORK/www" "$ORIGIN_LOG" >"$WORK/origin/nginx.conf"
origin_count() { if [[ -e $ORIGIN_LOG ]]; then wc -l <"$ORIGIN_LOG"; else echo 0; fi; }

# ---------------------------------------------------------- shield content --
log "generating $CIDRS denied prefixes and $RULES rules"
python3 - "$WORK/on/deny.txt" "$CIDRS" <<'EOF'
# Random prefixes as a blocklist holds them: mostly IPv4 /16 to /32 (the /24s
# and single addresses most common), some IPv6 /32 to /64; host bits clear;
# nothing in 127.0.0.0/8 (the benchmark's own clients), no duplicates.
import ipaddress, random, sys
random.seed(20261126)
path, n = sys.argv[1], int(sys.argv[2])
seen = set()
v4_lengths = [16] * 3 + [20] * 5 + [22] * 7 + [24] * 45 + [28] * 10 + [32] * 30
v6_lengths = [32, 40, 48, 48, 48, 56, 64, 64]
with open(path, "w") as f:
    f.write("# generated by bench/shield.sh: %d random prefixes, none in 127.0.0.0/8\n" % n)
    while len(seen) < n:
        if random.random() < 0.9:
            first = random.choice([o for o in range(1, 224) if o not in (10, 127)])
            addr = (first << 24) | random.getrandbits(24)
            net = ipaddress.IPv4Network((addr, random.choice(v4_lengths)), strict=False)
        else:
            addr = (0x2000 << 112) | random.getrandbits(116)
            net = ipaddress.IPv6Network((addr, random.choice(v6_lengths)), strict=False)
        text = str(net)
        if text not in seen:
            seen.add(text)
            f.write(text + "\n")
EOF

python3 - "$WORK/rules.toml" "$RULES" <<'EOF'
# Rules a site might really carry, none of which matches the benchmark's
# request (GET /proxy or /hit, Host and nothing else, from 127.0.0.1), so that every one
# is evaluated on every request. Written as TOML literal strings; in the rule
# language a string's only escapes are \" and \\.
import sys
path, n = sys.argv[1], int(sys.argv[2])
paths = ["/wp-admin", "/wp-login.php", "/xmlrpc.php", "/phpmyadmin", "/pma", "/.env", "/.git",
         "/.svn", "/.aws", "/cgi-bin", "/admin", "/administrator", "/manager/html", "/solr",
         "/actuator", "/console", "/debug", "/server-status", "/vendor/phpunit", "/boaform",
         "/HNAP1", "/owa", "/autodiscover", "/remote/login", "/api/v0", "/backup", "/old",
         "/test", "/tmp", "/config"]
agents = ["sqlmap", "nikto", "masscan", "zgrab", "nmap", "dirbuster", "gobuster", "wpscan",
          "acunetix", "nessus", "openvas", "hydra", "python-requests/2.", "Go-http-client/1.1",
          "curl/7.", "libwww-perl", "Java/1.", "okhttp/", "HeadlessChrome", "PhantomJS"]
headers = [("x-forwarded-host", "contains", "evil"), ("x-original-url", "ne", ""),
           ("x-rewrite-url", "ne", ""), ("x-api-version", "eq", "0"),
           ("content-type", "contains", "multipart/form-data; boundary=----WebKitFormBoundaryEvil"),
           ("referer", "contains", "casino-"), ("origin", "eq", "null"),
           ("x-requested-with", "eq", "XMLHttpRequest-legacy"), ("accept-language", "eq", "xx"),
           ("cookie", "contains", "wordpress_logged_in_0"), ("x-debug", "eq", "1"),
           ("x-http-method-override", "in", '{"DELETE" "PUT" "PATCH"}'),
           ("transfer-encoding", "contains", "identity"), ("via", "contains", "loop"),
           ("x-scanner", "ne", "")]
regexes = [("http.request.uri.query", "(?i)union\\\\s+select"),
           ("http.request.uri.query", "(?i)<script"),
           ("http.request.uri.path", "\\\\.(php|asp|aspx|jsp|cgi)$"),
           ("http.request.uri.path", "(?i)/(etc/passwd|win\\\\.ini|boot\\\\.ini)"),
           ("http.request.uri.query", "\\\\.\\\\./\\\\.\\\\./"),
           ("http.user_agent", "(?i)(bot|crawl|spider)[-_ ]?[0-9]{3,}"),
           ("http.request.uri.path", "^/[a-f0-9]{32}\\\\.(zip|tar|gz|sql)$"),
           ("http.request.uri.query", "(?i)(cmd|exec|system)=[a-z]"),
           ("http.cookie", "(?i)session=[^;]{512,}"),
           ("http.request.uri.path", "(?i)/(shell|c99|r57|wso)\\\\.php")]
others = ['http.request.method eq "TRACE"', 'http.request.method in {"TRACK" "DEBUG" "PROPFIND"}',
          'ip.src in {192.0.2.0/24 198.51.100.0/24 203.0.113.0/24}',
          'http.host eq "admin.bench.local"', 'not ssl and http.request.uri.path starts_with "/secure"',
          'http.request.uri.path starts_with "/api/" and http.request.method in {"DELETE" "PUT"} and not ip.src in {10.0.0.0/8}',
          'http.request.uri.path eq "/login" and http.request.method eq "POST"',
          'http.request.uri.query contains "debug=true" or http.request.uri.query contains "XDEBUG_SESSION"',
          'http.request.headers["content-length"] gt 10000000',
          'http.user_agent eq "" and http.request.uri.path starts_with "/checkout"']
exprs = []
exprs += ['http.request.uri.path starts_with "%s"' % p for p in paths]
exprs += ['http.user_agent contains "%s"' % a for a in agents]
exprs += ['http.request.headers["%s"] %s %s' % (h, op, v if v.startswith("{") else '"%s"' % v)
          for h, op, v in headers]
exprs += ['%s matches "%s"' % (f, r) for f, r in regexes]
exprs += others
# Combinations of the above to fill up to n.
i = 0
while len(exprs) < n:
    exprs.append('http.request.uri.path starts_with "%s/" and http.user_agent contains "%s"'
                 % (paths[i % len(paths)], agents[i % len(agents)]))
    i += 1
exprs = exprs[:n]
actions = ["block", "block", "block", "challenge", "log"]
with open(path, "w") as f:
    for k, e in enumerate(exprs):
        f.write("[[site.rule]]\nid = \"r%03d\"\nexpr = '%s'\naction = \"%s\"\n\n" % (k, e, actions[k % len(actions)]))
EOF

# --------------------------------------------------------------- palisades --
# Two sites per server: proxy.local with its cache off, hit.local with it on.
palisade_config() { # name port admin shield(on|off) -> config text
    local name=$1 port=$2 admin=$3 shield=$4 site
    cat <<EOF
[server]
listen = ["127.0.0.1:$port"]
admin = "127.0.0.1:$admin"
data_dir = "$WORK/$name/data"
access_log = "off"
workers = 1
max_connections_per_ip = 100000
# load generators open connections far faster than any one visitor
max_new_connections_per_ip = 100000000
cache_memory = "64MiB"
cache_disk = 0
EOF
    if [[ $shield == on ]]; then
        printf '\n[shield]\ndeny_files = ["deny.txt"]\n'
    fi
    for site in proxy hit; do
        printf '\n[[site]]\nname = "%s"\nhosts = ["%s.local"]\norigins = ["http://127.0.0.1:%s"]\n' "$site" "$site" "$ORIGIN_PORT"
        printf '[site.cache]\nenabled = %s\n' "$([[ $site == hit ]] && echo true || echo false)"
        if [[ $shield == on ]]; then
            cat "$WORK/rules.toml"
            printf '[[site.rate_limit]]\nid = "per-ip"\nkey = "ip"\nrequests = 1000000000\nperiod = "10s"\n'
            printf '[site.shield]\nauto_under_attack = false\n'
        else
            printf '[site.shield]\nauto_under_attack = false\nmax_origin_concurrency = 0\nmax_misses_per_ip = 0\n'
        fi
    done
}
palisade_config off "$OFF_PORT" "$OFF_ADMIN" off >"$WORK/off/palisade.toml"
palisade_config on "$ON_PORT" "$ON_ADMIN" on >"$WORK/on/palisade.toml"
for t in off on; do
    "$PALISADE" check --config "$WORK/$t/palisade.toml" >"$WORK/$t/check.out" 2>&1 ||
        { cat "$WORK/$t/check.out" >&2; die "palisade check refused the $t config"; }
done
# The shield is what we think it is: the deny file's prefixes are refused,
# the benchmark's request is not, and it meets every rule.
first_denied=$(awk '!/^#/ {print; exit}' "$WORK/on/deny.txt")
"$PALISADE" explain --config "$WORK/on/palisade.toml" --ip "${first_denied%/*}" GET http://proxy.local/proxy >"$WORK/on/explain-denied.txt"
grep -q '^verdict: block: 403 (deny_list)' "$WORK/on/explain-denied.txt" || { cat "$WORK/on/explain-denied.txt" >&2; die "a denied address is not refused"; }
"$PALISADE" explain --config "$WORK/on/palisade.toml" --ip 127.0.0.1 GET http://proxy.local/proxy >"$WORK/on/explain-bench.txt"
grep -q '^verdict: pass' "$WORK/on/explain-bench.txt" || { cat "$WORK/on/explain-bench.txt" >&2; die "the benchmark request does not pass the shield"; }
rules_met=$(grep -c '^rule .*: no match$' "$WORK/on/explain-bench.txt" || true)
((rules_met == RULES)) || { cat "$WORK/on/explain-bench.txt" >&2; die "the benchmark request meets $rules_met rules, not $RULES"; }

port_of() { case $1 in off) echo "$OFF_PORT" ;; on) echo "$ON_PORT" ;; origin) echo "$ORIGIN_PORT" ;; esac; }

declare -A PID_OF
start_palisade() { # off|on
    local t=$1
    start_bg "palisade-$t" "$(logfile_of "palisade-$t")" ${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} \
        "$PALISADE" serve --config "$WORK/$t/palisade.toml"
    PID_OF[$t]=$LAST_PID
}

start_bg origin "$(logfile_of origin)" ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} \
    nginx -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf"
ORIGIN_PID=$LAST_PID
HOST_HDR=origin.local
wait_ready origin "$ORIGIN_PID" "$ORIGIN_PORT" || die "origin nginx did not start"

for t in off on; do
    start_palisade "$t"
    HOST_HDR=proxy.local
    wait_ready "palisade-$t" "${PID_OF[$t]}" "$(port_of "$t")" || die "palisade ($t) did not start"
    check_bodies "palisade-$t" "$(port_of "$t")" || die "palisade ($t) serves wrong bodies"
    HOST_HDR=hit.local
    curl_get "$(port_of "$t")" /hit >/dev/null
    status=$(curl -s -o /dev/null -D - --max-time 5 -H "Host: hit.local" "http://127.0.0.1:$(port_of "$t")/hit" | tr -d '\r' | awk -F': ' 'tolower($1) == "cache-status" {print $2}')
    [[ $status == *"; hit"* ]] || die "palisade ($t): GET /hit on hit.local is not a cache hit (Cache-Status: $status)"
done
# The rules run on the shielded server: a path they block is refused.
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: proxy.local" "http://127.0.0.1:$ON_PORT/wp-admin/")
[[ $code == 403 ]] || die "palisade (on): GET /wp-admin/ answered $code, not 403"
log "shield on: $(grep -c . "$WORK/on/deny.txt") lines of denied prefixes, $RULES rules per site; RSS off $(mem_kib VmRSS "${PID_OF[off]}") KiB, on $(mem_kib VmRSS "${PID_OF[on]}") KiB"

# ------------------------------------------------------------- measurement --
declare -A ORIGIN_REQS
ORIGIN_BEFORE=0
run_wrk_before() { ORIGIN_BEFORE=$(origin_count); }
run_wrk_after() { ORIGIN_REQS[$2,$1,$3]=$(($(origin_count) - ORIGIN_BEFORE)); }

for ((round = 1; round <= ROUNDS; round++)); do
    for c in $CASES; do
        HOST_HDR=$c.local
        # Alternate who goes first, so neither always runs on a machine the
        # other has just warmed (or heated).
        order=(off on)
        if ((round % 2 == 0)); then order=(on off); fi
        for t in "${order[@]}"; do
            # GET /$c: run_wrk keys its results by (path, name, round).
            run_wrk "$t" "$(port_of "$t")" "$c" "$round" "${PID_OF[$t]}" || true
            kill -0 "${PID_OF[$t]}" 2>/dev/null || { show_log "palisade-$t"; die "palisade ($t) died during the $c run"; }
        done
    done
done

declare -A CPU CPU_COST RPS_COST
for c in $CASES; do
    for t in off on; do
        summarize "$c" "$t"
        total=0 cpus=()
        for ((round = 1; round <= ROUNDS; round++)); do
            total=$((total + ${ORIGIN_REQS[$c,$t,$round]:-0}))
            [[ -n ${CPU_USER[$c,$t,$round]:-} ]] || continue
            CPU[$c,$t,$round]=$(awk -v u="${CPU_USER[$c,$t,$round]}" -v s="${CPU_SYS[$c,$t,$round]}" 'BEGIN {printf "%.1f", u + s}')
            cpus+=("${CPU[$c,$t,$round]}")
        done
        ORIGIN_REQS[$c,$t]=$total
        if ((${#cpus[@]})); then CPU[$c,$t]=$(median "${cpus[@]}"); fi
    done
    # The shield's cost round by round: off and on ran back to back, so a slow
    # spell of the machine mostly hits both; the median of these is steadier
    # than a ratio of medians.
    cc=() rc=()
    for ((round = 1; round <= ROUNDS; round++)); do
        [[ -n ${CPU[$c,off,$round]:-} && -n ${CPU[$c,on,$round]:-} ]] || continue
        cc+=("$(awk -v a="${CPU[$c,off,$round]}" -v b="${CPU[$c,on,$round]}" 'BEGIN {printf "%.1f", (b - a) * 100 / a}')")
        rc+=("$(awk -v a="${RPS[$c,off,$round]}" -v b="${RPS[$c,on,$round]}" 'BEGIN {printf "%.1f", (b - a) * 100 / a}')")
    done
    if ((${#cc[@]})); then
        CPU_COST[$c]="$(median "${cc[@]}")% (rounds: $(printf '%s%% ' "${cc[@]}"))"
        RPS_COST[$c]="$(median "${rc[@]}")% (rounds: $(printf '%s%% ' "${rc[@]}"))"
    fi
done

# ---------------------------------------------------------------- callgrind --
declare -A INSTR SHIELD_INSTR CG_REQS
callgrind_run() { # off|on -> INSTR/SHIELD_INSTR/CG_REQS[case,t] for every case
    local t=$1 port admin cfg vpid c n dump i
    read -r port admin < <(free_ports 2)
    cfg="$WORK/$t/callgrind.toml"
    sed -e "s/^listen = .*/listen = [\"127.0.0.1:$port\"]/" -e "s/^admin = .*/admin = \"127.0.0.1:$admin\"/" \
        -e "s|^data_dir = .*|data_dir = \"$WORK/$t/cg-data\"|" "$WORK/$t/palisade.toml" >"$cfg"
    start_bg "callgrind palisade-$t" "$WORK/$t/callgrind.log" ${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} \
        valgrind --tool=callgrind --callgrind-out-file="$WORK/$t/callgrind.out" "$PALISADE" serve --config "$cfg"
    vpid=$LAST_PID
    local deadline=$((SECONDS + 120))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H "Host: hit.local" "http://127.0.0.1:$port/hit") == 200 ]]; do
        ((SECONDS < deadline)) && kill -0 "$vpid" 2>/dev/null || { tail -20 "$WORK/$t/callgrind.log" >&2; die "palisade ($t) under callgrind did not start"; }
        sleep 1
    done
    dump=0
    for c in $CASES; do
        # a few requests to warm the path (and store the hit), then count from zero
        for i in 1 2 3; do curl -s -o /dev/null --max-time 10 -H "Host: $c.local" "http://127.0.0.1:$port/$c"; done
        callgrind_control -z "$vpid" >/dev/null 2>&1
        run_fg "$WORK/$t/callgrind-wrk-$c.txt" timeout $((CALLGRIND_SECS + 60)) ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} \
            wrk -t1 -c8 -d"${CALLGRIND_SECS}s" -H "Host: $c.local" "http://127.0.0.1:$port/$c" || die "wrk under callgrind failed"
        callgrind_control -d "$vpid" >/dev/null 2>&1
        dump=$((dump + 1))
        n=$(awk '/requests in/ {print $1; exit}' "$WORK/$t/callgrind-wrk-$c.txt")
        local file
        file=$(ls "$WORK/$t/callgrind.out".*."$dump" "$WORK/$t/callgrind.out.$dump" 2>/dev/null | head -1 || true)
        [[ -n $file && -s $file && ${n:-0} -gt 0 ]] || die "no callgrind dump for $t $c"
        CG_REQS[$c,$t]=$n
        INSTR[$c,$t]=$(awk -v n="$n" '/^summary:/ {printf "%.0f", $2 / n; exit}' "$file")
        # callgrind_annotate splits a function by the files its inlined code comes from; the
        # largest inclusive entry of SiteGuard::check is the whole call. (awk reads to the end:
        # leaving early would kill callgrind_annotate with SIGPIPE, which pipefail turns into
        # this script's exit.)
        SHIELD_INSTR[$c,$t]=$(callgrind_annotate --inclusive=yes --threshold=100 "$file" 2>/dev/null |
            awk -v n="$n" '/:shield::guard::SiteGuard::check(_cleared)?( |$)/ {gsub(/,/, "", $1); if ($1 + 0 > v) v = $1 + 0}
                END {printf "%.0f", v / n}')
        log "callgrind $t $c: $n requests, ${INSTR[$c,$t]} instructions per request, ${SHIELD_INSTR[$c,$t]} in SiteGuard::check_cleared"
    done
    stop_pid "$vpid"
}
if [[ $CALLGRIND == 1 ]]; then
    for t in off on; do callgrind_run "$t"; done
fi

# ------------------------------------------------------------------ report --
pct() { awk -v a="$1" -v b="$2" 'BEGIN {if (a > 0) printf "%+.1f%%", (b - a) * 100 / a; else print "-"}'; }
CPU_MODEL=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo 2>/dev/null || echo unknown)
{
    echo
    echo "# Palisade shield benchmark ($(date -u +%Y-%m-%dT%H:%MZ))"
    echo "machine : $NCPU cores ($CPU_MODEL), $(uname -r)"
    echo "pinning : $PIN_DESC"
    echo "load    : ${WRK_PREFIX[*]+${WRK_PREFIX[*]} }wrk -t$THREADS -c$CONNS -d$DURATION --latency, warm-up $WARMUP, GET /proxy (Host proxy.local, cache off) or /hit (Host hit.local, cache on), 1 KiB each, 127.0.0.1 only; $ROUNDS interleaved rounds, medians shown"
    echo "origin  : nginx, 1 worker, static 1 KiB, Cache-Control: public, max-age=3600"
    echo "off     : no lists, rules or limits; origin concurrency cap, miss limit, attack detection off"
    echo "on      : $CIDRS denied prefixes (deny_files), $RULES rules per site (none matches), 1 rate limit per site, default cap (256) and miss limit (600/60s); attack detection off"
    echo
    fmt='%-6s %-7s %9s %8s %8s %9s %9s %9s %6s %7s  %s\n'
    printf "$fmt" case shield "req/s" "p50 ms" "p99 ms" "usr us/r" "sys us/r" "cpu us/r" errors origin note
    printf "$fmt" ------ ------- --------- -------- -------- --------- --------- --------- ------ -------
    for c in $CASES; do
        for t in off on; do
            if [[ -n ${RPS[$c,$t]:-} ]]; then
                printf "$fmt" "$c" "$t" "${RPS[$c,$t]}" "${P50[$c,$t]}" "${P99[$c,$t]}" "${CPU_USER[$c,$t]}" \
                    "${CPU_SYS[$c,$t]}" "${CPU[$c,$t]}" "${ERRS[$c,$t]}" "${ORIGIN_REQS[$c,$t]}" "${NOTE[$c,$t]:-}"
            else
                printf "$fmt" "$c" "$t" - - - - - - - - "FAILED: ${NOTE[$c,$t]:-no result}"
            fi
        done
    done
    echo
    echo "  cpu us/r: user + system CPU time of the server's process per request, the median over the"
    echo "    rounds of each round's sum. origin: requests that reached the origin during the measured"
    echo "    runs (all rounds): every proxied request, and none (or the odd one) for cache hits."
    echo
    echo "the shield's cost, on vs off: the median over the rounds of each round's difference"
    for c in $CASES; do
        [[ -n ${CPU_COST[$c]:-} ]] || continue
        printf '  %-6s CPU per request %s\n' "$c" "${CPU_COST[$c]}"
        printf '  %-6s req/s           %s\n' "" "${RPS_COST[$c]}"
    done
    if [[ $CALLGRIND == 1 ]]; then
        echo
        echo "instructions per request under callgrind (wrk -t1 -c8 -d${CALLGRIND_SECS}s per case; the shield = SiteGuard::check_cleared, inclusive):"
        fmt2='  %-6s %-7s %9s %14s %9s\n'
        printf "$fmt2" case shield requests "instr/request" "shield"
        for c in $CASES; do
            for t in off on; do
                printf "$fmt2" "$c" "$t" "${CG_REQS[$c,$t]:--}" "${INSTR[$c,$t]:--}" "${SHIELD_INSTR[$c,$t]:--}"
            done
            if [[ -n ${INSTR[$c,off]:-} && -n ${INSTR[$c,on]:-} ]]; then
                printf '  %-6s on vs off: %s instructions per request\n' "$c" "$(pct "${INSTR[$c,off]}" "${INSTR[$c,on]}")"
            fi
        done
    fi
} | tee ${BENCH_OUTPUT:+"$BENCH_OUTPUT"}
if ((FAILED_ANY)); then
    log "some runs failed (see above); exit status 1"
    exit 1
fi
