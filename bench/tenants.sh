#!/usr/bin/env bash
# Tenant isolation: two sites on one edge, one flooded, the other browsed. How much slower do
# the quiet site's visitors get while the other site is flooded?
#
# Two sites, shop.example and blog.example, behind one server, in front of the same origin
# (nginx; every page cacheable for an hour, so both sites are answered from the edge's cache
# and the server's own CPU is what they share). For each server:
#   quiet:   the blog is browsed alone: BENCH_BROWSERS connections, each one request every
#            BENCH_BROWSE_EVERY ms (wrk with a paced script, at a higher priority than the
#            flood so that its own CPU does not count against the server), for BENCH_DURATION;
#   flooded: the same browsing, while a closed-loop tool floods the shop's home page with
#            BENCH_FLOOD_CONNECTIONS connections (wrk, as fast as it is answered).
# and prints the blog's p50 and p99 in both, their ratio (the figure: the issue asks for the
# flooded p99 within 1.5 times the quiet one), and the flood's rate.
#
# Servers:
#   palisade:      the defaults, with `overload_lag` on (500 µs): while the edge is short of CPU,
#                  the site with far more than its share of requests waits its turn;
#   palisade-off:  the same with `overload_lag = "0s"`: what the edge did before;
#   haproxy:       HAProxy with its cache on for both backends (the same hits), no per-site
#                  limit (it has no notion of a site's share of its CPU).
# Automatic attack detection is off on both Palisade sites (as in every benchmark here): it
# would answer the flood with a mitigation within seconds, and this measures what holds
# before it does (or when a flood is nothing detection would call an attack). Access logs
# off on every server.
#
# One core for the server (workers = 1, nbthread 1, on BENCH_SERVER_CPU), the clients and the
# origin on BENCH_CLIENT_CPU, unless BENCH_PIN=0. Rounds interleave the servers. All traffic
# goes to 127.0.0.1; every load run is bounded in time; everything started here is stopped by
# PID on exit, Ctrl-C included. See bench/README.md ("Tenant-isolation benchmark").
#
# Environment (defaults in brackets):
#   BENCH_DURATION          each measured run, seconds or "10s" [10s]
#   BENCH_ROUNDS            interleaved rounds; medians are shown [3]
#   BENCH_BROWSERS          the blog's browsing connections [10]
#   BENCH_BROWSE_EVERY      ms between one browsing connection's requests [20]
#   BENCH_FLOOD_CONNECTIONS the flood's connections [64]
#   BENCH_SERVERS           which servers ["palisade palisade-off haproxy"]
#   BENCH_OVERLOAD_LAG      the palisade row's overload_lag [unset: the default]
#   BENCH_PIN / BENCH_SERVER_CPU / BENCH_CLIENT_CPU   as in bench/shield.sh [1 / 1 / 0]
#   BENCH_KEEP_TMP          1 = keep the temp dir [0]
#   BENCH_OUTPUT            also write the final table to this file [unset]
#   PALISADE_BIN            Palisade binary instead of `cargo build --release --bin palisade`
set -euo pipefail

BENCH_TAG=tenants-bench
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=$(secs "${BENCH_DURATION:-10s}")
ROUNDS=${BENCH_ROUNDS:-3}
BROWSERS=${BENCH_BROWSERS:-10}
BROWSE_EVERY=${BENCH_BROWSE_EVERY:-20}
FLOOD_CONNS=${BENCH_FLOOD_CONNECTIONS:-64}
SERVERS=${BENCH_SERVERS:-palisade palisade-off haproxy}
PIN=${BENCH_PIN:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
KEEP_TMP=${BENCH_KEEP_TMP:-0}
READY_TIMEOUT=30
HOST_HDR=blog.example

for v in ROUNDS BROWSERS BROWSE_EVERY FLOOD_CONNS; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
for s in $SERVERS; do
    [[ $s == palisade || $s == palisade-off || $s == haproxy ]] ||
        die "BENCH_SERVERS: unknown server '$s' (use palisade, palisade-off, haproxy)"
done
[[ $PIN == 0 || $PIN == 1 ]] || die "BENCH_PIN must be 0 or 1 (got '$PIN')"

bench_traps
setup_pinning "the server under test (one worker)"
tools=(wrk:wrk nginx:nginx curl:curl)
[[ " $SERVERS " == *" haproxy "* ]] && tools+=(haproxy:haproxy)
ensure_tools "${tools[@]}"
raise_nofile 16384
make_work

if [[ " $SERVERS " == *" palisade"* ]]; then
    if [[ -n ${PALISADE_BIN:-} ]]; then
        PALISADE=$PALISADE_BIN
    else
        PALISADE=$(cargo_release_bin palisade palisade) || die "cargo build --release --bin palisade failed"
    fi
    [[ -x $PALISADE ]] || die "palisade binary not found/executable: $PALISADE"
fi

read -r ORIGIN_PORT PORT ADMIN_PORT < <(free_ports 3) || true
[[ -n ${ADMIN_PORT:-} ]] || die "could not pick free ports"

# ------------------------------------------------------------------ origin --
mkdir -p "$WORK/www" "$WORK/origin"
write_bodies "$WORK/www"
counting_origin_conf "$WORK/origin" "$ORIGIN_PORT" "$WORK/www" /dev/null >"$WORK/origin/nginx.conf"
start_bg origin "$(logfile_of origin)" ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} nginx -c "$WORK/origin/nginx.conf"

# ----------------------------------------------------------------- clients --
cat >"$WORK/browse.lua" <<EOF
-- A browser of the quiet site: one page, then a pause.
wrk.headers["Host"] = "blog.example"
wrk.headers["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
wrk.headers["Accept"] = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
wrk.headers["Accept-Language"] = "en-GB,en;q=0.9"
function delay() return $BROWSE_EVERY end
EOF
cat >"$WORK/flood.lua" <<'EOF'
-- The flood: a tool asking for the shop's home page in a closed loop.
wrk.headers["Host"] = "shop.example"
wrk.headers["User-Agent"] = "python-requests/2.31.0"
wrk.headers["Accept"] = "*/*"
EOF

# ----------------------------------------------------------------- servers --
palisade_conf() { # overload_lag -> config
    cat <<EOF
[server]
listen = ["127.0.0.1:$PORT"]
admin = "127.0.0.1:$ADMIN_PORT"
data_dir = "$WORK/palisade-data"
access_log = "off"
workers = 1
cache_disk = 0
$([[ -n $1 ]] && echo "overload_lag = \"$1\"")

[[site]]
name = "shop"
hosts = ["shop.example"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
[site.shield]
auto_under_attack = false

[[site]]
name = "blog"
hosts = ["blog.example"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
[site.shield]
auto_under_attack = false
EOF
}

haproxy_conf() {
    cat <<EOF
global
    nbthread 1
    maxconn 4000
defaults
    mode http
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    option http-keep-alive
cache pages
    total-max-size 64
    max-age 3600
frontend edge
    bind 127.0.0.1:$PORT
    use_backend shop if { hdr(host) -i shop.example }
    default_backend blog
backend shop
    http-request cache-use pages
    http-response cache-store pages
    server origin 127.0.0.1:$ORIGIN_PORT
backend blog
    http-request cache-use pages
    http-response cache-store pages
    server origin 127.0.0.1:$ORIGIN_PORT
EOF
}

start_server() { # name -> SERVER_PID
    local name=$1
    case $name in
        palisade | palisade-off)
            rm -rf "$WORK/palisade-data"
            local lag=${BENCH_OVERLOAD_LAG:-}
            [[ $name == palisade-off ]] && lag=0s
            palisade_conf "$lag" >"$WORK/$name.toml"
            start_bg "$name" "$(logfile_of "$name")" ${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} \
                "$PALISADE" serve --config "$WORK/$name.toml"
            ;;
        haproxy)
            haproxy_conf >"$WORK/haproxy.cfg"
            start_bg haproxy "$(logfile_of haproxy)" ${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"} haproxy -db -f "$WORK/haproxy.cfg"
            ;;
    esac
    SERVER_PID=$LAST_PID
    wait_ready "$name" "$SERVER_PID" "$PORT" || die "$name did not start"
    # Fill both caches before anything is measured.
    curl -s -o /dev/null -H "Host: shop.example" "http://127.0.0.1:$PORT/1k" || true
    curl -s -o /dev/null -H "Host: blog.example" "http://127.0.0.1:$PORT/1k" || true
}

browse() { # outfile -> wrk --latency output of the blog's browsers over DURATION
    run_fg "$1" ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} nice -n -10 wrk --latency -t1 -c"$BROWSERS" -d"$DURATION" \
        -s "$WORK/browse.lua" "http://127.0.0.1:$PORT/1k" || true
}

declare -A QP50 QP99 FP50 FP99 FRPS
for ((round = 1; round <= ROUNDS; round++)); do
    for name in $SERVERS; do
        log "round $round: $name"
        start_server "$name"
        browse "$WORK/$name.$round.quiet"
        wrk_figures "$WORK/$name.$round.quiet" || die "$name: no figures from the quiet run"
        QP50[$name,$round]=$(to_ms "$W_P50")
        QP99[$name,$round]=$(to_ms "$W_P99")
        # The flood runs two seconds longer than the browsing, which starts a second into it.
        flood_secs=$(($(to_secs "$DURATION") + 2))
        start_bg flood "$WORK/$name.$round.flood" ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} wrk -t1 -c"$FLOOD_CONNS" \
            -d"${flood_secs}s" -s "$WORK/flood.lua" "http://127.0.0.1:$PORT/1k"
        flood_pid=$LAST_PID
        sleep 1
        browse "$WORK/$name.$round.flooded"
        wait "$flood_pid" 2>/dev/null || true
        wrk_figures "$WORK/$name.$round.flooded" || die "$name: no figures from the flooded run"
        FP50[$name,$round]=$(to_ms "$W_P50")
        FP99[$name,$round]=$(to_ms "$W_P99")
        FRPS[$name,$round]=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$WORK/$name.$round.flood")
        stop_server "$SERVER_PID"
    done
done

{
    echo
    echo "Tenant isolation: the blog browsed ($BROWSERS connections, one request each every ${BROWSE_EVERY} ms), the shop flooded by $FLOOD_CONNS closed-loop connections; both answered from cache"
    echo "$PIN_DESC; $DURATION per run; medians of $ROUNDS rounds"
    echo
    printf '%-14s %12s %12s %12s %12s %10s %12s\n' server "quiet p50" "quiet p99" "flooded p50" "flooded p99" "p99 ratio" "flood req/s"
    for name in $SERVERS; do
        qp50=$(median_of_rounds QP50 "$name"); qp99=$(median_of_rounds QP99 "$name")
        fp50=$(median_of_rounds FP50 "$name"); fp99=$(median_of_rounds FP99 "$name")
        ratio=$(awk -v a="$fp99" -v b="$qp99" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}')
        printf '%-14s %10sms %10sms %10sms %10sms %10s %12s\n' "$name" "$qp50" "$qp99" "$fp50" "$fp99" "$ratio" "$(median_of_rounds FRPS "$name")"
    done
} | tee "${BENCH_OUTPUT:-/dev/null}"
