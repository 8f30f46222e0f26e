#!/usr/bin/env bash
# HTTP/2 benchmark: cache hits over HTTP/2 (TLS 1.3 and h2c), Palisade beside HAProxy and
# nginx, the way browsers reach an edge.
#
# Each server runs one worker (Palisade `workers = 1`, HAProxy `nbthread 1`, nginx
# `worker_processes 1`) on BENCH_SERVER_CPU, with its cache on, in front of the same origin
# (nginx, every object cacheable for an hour), with the same ECDSA P-256 certificate and TLS
# 1.3 only; h2load and the origin run on BENCH_CLIENT_CPU. Access logs are off everywhere.
# Cases: tls-1k, tls-100k (h2 over TLS, ALPN h2), h2c-1k, h2c-100k (prior knowledge); each
# is BENCH_CONNECTIONS connections with BENCH_STREAMS streams each, for BENCH_DURATION after
# a BENCH_WARMUP warm-up (h2load -D / --warm-up-time). For each case and server it prints
# requests/s, the server's CPU time per request (user + system, /proc/PID/stat, read from the
# end of the warm-up to the end of the run), and p50 and
# p99 latency (from h2load's per-request log). Rounds interleave the servers (the order
# turning each round); the table shows medians.
#
# All traffic goes to 127.0.0.1; every run is bounded in time; everything started here is
# stopped by PID on exit, Ctrl-C included. See bench/README.md ("HTTP/2 benchmark").
#
# Environment (defaults in brackets):
#   BENCH_DURATION     measured time per run, seconds or "10s" [10s]
#   BENCH_WARMUP       h2load warm-up before each run [1s]
#   BENCH_ROUNDS       interleaved rounds; medians shown [3]
#   BENCH_CASES        which cases ["tls-1k tls-100k h2c-1k h2c-100k"]
#   BENCH_SERVERS      which servers ["palisade haproxy nginx"]
#   BENCH_CONNECTIONS  h2load connections [32]
#   BENCH_STREAMS      concurrent streams per connection [10]
#   BENCH_PIN / BENCH_SERVER_CPU / BENCH_CLIENT_CPU  as in bench/cache.sh [1 / 1 / 0]
#   BENCH_KEEP_TMP     1 = keep the temp dir [0]
#   BENCH_OUTPUT       also write the table to this file [unset]
#   PALISADE_BIN       Palisade binary instead of `cargo build --release --bin palisade`
set -euo pipefail

BENCH_TAG=h2-bench
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DURATION=$(secs "${BENCH_DURATION:-10s}")
WARMUP=$(secs "${BENCH_WARMUP:-1s}")
ROUNDS=${BENCH_ROUNDS:-3}
CASES=${BENCH_CASES:-tls-1k tls-100k h2c-1k h2c-100k}
SERVERS=${BENCH_SERVERS:-palisade haproxy nginx}
CONNS=${BENCH_CONNECTIONS:-32}
STREAMS=${BENCH_STREAMS:-10}
PIN=${BENCH_PIN:-1}
SERVER_CPU=${BENCH_SERVER_CPU:-1}
CLIENT_CPU=${BENCH_CLIENT_CPU:-0}
KEEP_TMP=${BENCH_KEEP_TMP:-0}
READY_TIMEOUT=30
HOST_HDR=bench.example

for v in ROUNDS CONNS STREAMS; do
    [[ ${!v} =~ ^[0-9]+$ && ${!v} -gt 0 ]] || die "$v must be a positive integer (got '${!v}')"
done
for c in $CASES; do
    [[ $c =~ ^(tls|h2c)-(1k|100k)$ ]] || die "BENCH_CASES: unknown case '$c'"
done
for s in $SERVERS; do
    [[ $s == palisade || $s == haproxy || $s == nginx ]] || die "BENCH_SERVERS: unknown server '$s'"
done
[[ $PIN == 0 || $PIN == 1 ]] || die "BENCH_PIN must be 0 or 1 (got '$PIN')"

bench_traps
setup_pinning "the server under test (one worker)"
ensure_tools h2load:nghttp2-client nginx:nginx haproxy:haproxy openssl:openssl curl:curl
raise_nofile 16384
make_work

if [[ " $SERVERS " == *" palisade "* ]]; then
    if [[ -n ${PALISADE_BIN:-} ]]; then
        PALISADE=$PALISADE_BIN
    else
        PALISADE=$(cargo_release_bin palisade palisade) || die "cargo build --release --bin palisade failed"
    fi
    [[ -x $PALISADE ]] || die "palisade binary not found/executable: $PALISADE"
fi

read -r ORIGIN_PORT TLS_PORT H2C_PORT ADMIN_PORT < <(free_ports 4) || true
[[ -n ${ADMIN_PORT:-} ]] || die "could not pick free ports"

# ------------------------------------------------------ origin, certificate --
mkdir -p "$WORK/www" "$WORK/origin" "$WORK/nginx" "$WORK/haproxy" "$WORK/tls"
write_bodies "$WORK/www"
counting_origin_conf "$WORK/origin" "$ORIGIN_PORT" "$WORK/www" /dev/null >"$WORK/origin/nginx.conf"
start_bg origin "$(logfile_of origin)" ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} \
    nginx -p "$WORK/origin" -e "$WORK/origin/error.log" -c "$WORK/origin/nginx.conf"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
    -subj "/CN=bench.example" -addext "subjectAltName=DNS:bench.example" \
    -keyout "$WORK/tls/key.pem" -out "$WORK/tls/cert.pem" 2>/dev/null
cat "$WORK/tls/cert.pem" "$WORK/tls/key.pem" >"$WORK/tls/combined.pem"
chmod 644 "$WORK/tls/"*.pem

# ----------------------------------------------------------------- servers --
cat >"$WORK/palisade.toml" <<EOF
[server]
listen = ["127.0.0.1:$H2C_PORT"]
listen_tls = ["127.0.0.1:$TLS_PORT"]
admin = "127.0.0.1:$ADMIN_PORT"
data_dir = "$WORK/palisade-data"
access_log = "off"
workers = 1
max_connections_per_ip = 100000
max_new_connections_per_ip = 100000000

[[site]]
name = "bench"
hosts = ["bench.example"]
origins = ["http://127.0.0.1:$ORIGIN_PORT"]
tls = { cert = "$WORK/tls/cert.pem", key = "$WORK/tls/key.pem" }
# Closed-loop load is a flood by any measure: attack detection is off, so that every row
# measures the data path.
[site.shield]
auto_under_attack = false
EOF

cat >"$WORK/haproxy/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 4000
    ssl-default-bind-options ssl-min-ver TLSv1.3
defaults
    mode http
    maxconn 4000
    timeout connect 5s
    timeout client 300s
    timeout server 30s
    timeout http-keep-alive 300s
cache bench
    total-max-size 256
    max-object-size 1048576
    max-age 3600
frontend tls
    bind 127.0.0.1:$TLS_PORT ssl crt $WORK/tls/combined.pem alpn h2,http/1.1
    default_backend origin
frontend h2c
    bind 127.0.0.1:$H2C_PORT proto h2
    default_backend origin
backend origin
    http-request cache-use bench
    http-response cache-store bench
    server o1 127.0.0.1:$ORIGIN_PORT
EOF

cat >"$WORK/nginx/nginx.conf" <<EOF
$(nginx_main "$WORK/nginx" 1 16384)
http {
$(nginx_common_http "$WORK/nginx")
    sendfile on;
    keepalive_timeout 300s;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    proxy_cache_path $WORK/nginx/cache levels=1:2 keys_zone=bench:64m max_size=1g inactive=1h use_temp_path=off;
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
    }
    server {
        listen 127.0.0.1:$TLS_PORT ssl http2 backlog=4096;
        listen 127.0.0.1:$H2C_PORT http2 backlog=4096;
        server_name _;
        ssl_certificate $WORK/tls/cert.pem;
        ssl_certificate_key $WORK/tls/key.pem;
        ssl_protocols TLSv1.3;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache bench;
            proxy_cache_valid 200 1h;
            proxy_cache_lock on;
        }
    }
}
EOF

start_server() { # name -> SERVER_PID, caches filled with both objects
    local name=$1 pin=(${SERVER_PREFIX[@]+"${SERVER_PREFIX[@]}"})
    case $name in
        palisade)
            rm -rf "$WORK/palisade-data"
            start_bg "$name" "$(logfile_of "$name")" ${pin[@]+"${pin[@]}"} \
                "$PALISADE" serve --config "$WORK/palisade.toml" ;;
        haproxy)
            start_bg "$name" "$(logfile_of "$name")" ${pin[@]+"${pin[@]}"} \
                haproxy -db -f "$WORK/haproxy/haproxy.cfg" ;;
        nginx)
            rm -rf "$WORK/nginx/cache"; mkdir -p "$WORK/nginx/cache"
            start_bg "$name" "$(logfile_of "$name")" ${pin[@]+"${pin[@]}"} \
                nginx -p "$WORK/nginx" -e "$WORK/nginx/error.log" -c "$WORK/nginx/nginx.conf" ;;
    esac
    SERVER_PID=$LAST_PID
    wait_ready "$name" "$SERVER_PID" "$H2C_PORT" || die "$name did not start"
    local size
    for size in 1k 100k; do
        curl -s -o /dev/null --http2-prior-knowledge -H "Host: bench.example" "http://127.0.0.1:$H2C_PORT/$size" || true
        curl -s -o /dev/null -k --http2 --connect-to "bench.example:$TLS_PORT:127.0.0.1:$TLS_PORT" \
            "https://bench.example:$TLS_PORT/$size" || true
    done
}

# wait_ready asks for /1k over HTTP/1.1 on the cleartext port: HAProxy's and nginx's h2c
# listeners speak only HTTP/2, so readiness is checked with curl's prior knowledge instead.
curl_get() { # port path -> "http_code size"
    curl -s -o /dev/null -w '%{http_code} %{size_download}' --max-time 5 --http2-prior-knowledge \
        -H "Host: $HOST_HDR" "http://127.0.0.1:$1$2" 2>/dev/null || echo "000 0"
}

declare -A RPS CPU P50 P99 FAILED
run_case() { # name case round
    local name=$1 case=$2 round=$3 url port out log before after
    local size=${case#*-}
    case $case in
        tls-*) port=$TLS_PORT; url="https://bench.example:$port/$size" ;;
        h2c-*) port=$H2C_PORT; url="http://bench.example:$port/$size" ;;
    esac
    out="$WORK/$name.$case.$round.out"
    log="$WORK/$name.$case.$round.log"
    # The server's CPU is read after the warm-up, so that it covers the requests h2load
    # counts (it counts none of the warm-up's).
    ${CLIENT_PREFIX[@]+"${CLIENT_PREFIX[@]}"} h2load -t1 -c"$CONNS" -m"$STREAMS" \
        -D "$(to_secs "$DURATION")" --warm-up-time="$(to_secs "$WARMUP")" \
        --connect-to="127.0.0.1:$port" --log-file="$log" "$url" </dev/null >"$out" 2>&1 &
    FG_PID=$!
    sleep "$WARMUP"
    before=$(cpu_ticks "$SERVER_PID")
    wait "$FG_PID" || true
    FG_PID=""
    after=$(cpu_ticks "$SERVER_PID")
    local done failed rps
    done=$(awk '/^requests:/ {print $8; exit}' "$out")
    failed=$(awk '/^requests:/ {print $10; exit}' "$out")
    rps=$(awk '/^finished in/ {gsub(",", "", $4); printf "%.0f", $4; exit}' "$out")
    [[ -n $done && -n $rps ]] || die "$name $case: no figures from h2load (see $out)"
    RPS[$case,$name,$round]=$rps
    FAILED[$case,$name,$round]=${failed:-0}
    read -r bu bs <<<"$before"; read -r au as <<<"$after"
    CPU[$case,$name,$round]=$(us_per_req $((au + as - bu - bs)) "$done")
    read -r P50[$case,$name,$round] P99[$case,$name,$round] < <(
        cut -f3 "$log" | sort -n | awk '{v[NR] = $1} END {
            if (NR == 0) { print "- -"; exit }
            printf "%.3f %.3f\n", v[int(NR * 0.50) + (NR * 0.50 > int(NR * 0.50))] / 1000,
                v[int(NR * 0.99) + (NR * 0.99 > int(NR * 0.99))] / 1000 }')
}

read -r -a order <<<"$SERVERS"
for ((round = 1; round <= ROUNDS; round++)); do
    for name in "${order[@]}"; do
        log "round $round: $name"
        start_server "$name"
        for case in $CASES; do run_case "$name" "$case" "$round"; done
        stop_server "$SERVER_PID"
    done
    order=("${order[@]:1}" "${order[0]}")
done

{
    echo
    echo "HTTP/2 cache hits: $CONNS connections x $STREAMS streams, h2load; TLS 1.3, ECDSA P-256; access logs off"
    echo "$PIN_DESC; $DURATION per run after $WARMUP of warm-up; medians of $ROUNDS rounds"
    for case in $CASES; do
        echo
        printf '%-10s %-10s %10s %10s %10s %10s %8s\n' "$case" server "req/s" "CPU us/req" "p50 ms" "p99 ms" failed
        for name in $SERVERS; do
            printf '%-10s %-10s %10s %10s %10s %10s %8s\n' "" "$name" \
                "$(median_of_rounds RPS "$case,$name")" "$(median_of_rounds CPU "$case,$name")" \
                "$(median_of_rounds P50 "$case,$name")" "$(median_of_rounds P99 "$case,$name")" \
                "$(median_of_rounds FAILED "$case,$name")"
        done
    done
} | tee "${BENCH_OUTPUT:-/dev/null}"
