#!/usr/bin/env bash
# bench/gateway/run_protocols.sh: the gateway's h2c and WebSocket rows (issue
# 12), Tidal's gateway vs nginx vs direct, alternating rounds in one run.
#
#   h2c: h2load (prior knowledge) -> upstream nginx `listen ... http2` with
#        `return 200`; through tidal-gateway-bench with an h2c route
#        (--protocol h2c), through nginx relaying HTTP/2 with
#        `grpc_pass grpc://` (keep-alive upstream), and directly.
#   ws:  tidal-ws-load (N connections, each echoing M messages one at a time)
#        -> tidal-sample-app's GET /ws; through tidal-gateway-bench, through
#        nginx proxying the Upgrade, and directly.
#
# Usage: bench/gateway/run_protocols.sh [BUILD_DIR]
#   env: ROWS ("h2c ws")  THREADS (proxy threads/workers, 2)
#        APP_THREADS (upstream threads/workers, 2)  DURATION (s per h2c
#        round, 5)  ROUNDS (3)  H2_CONNS (64)  H2_STREAMS (streams per
#        connection, 10)  H2LOAD_THREADS (2)  WS_CONNS (64)
#        WS_MESSAGES (per connection, 1000)  WS_SIZE (bytes, 64)  WS_THREADS (2)
# Needs: tidal-gateway-bench (GW=path to use another; the h2c row needs its
# --protocol flag), tidal-sample-app, tidal-ws-load built in BUILD_DIR;
# h2load (nghttp2-client); nginx with the http_v2 module.
set -euo pipefail

BUILD=${1:-${TIDAL_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}}
ROWS=${ROWS:-h2c ws}
THREADS=${THREADS:-2}
APP_THREADS=${APP_THREADS:-2}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
H2_CONNS=${H2_CONNS:-64}
H2_STREAMS=${H2_STREAMS:-10}
H2LOAD_THREADS=${H2LOAD_THREADS:-2}
WS_CONNS=${WS_CONNS:-64}
WS_MESSAGES=${WS_MESSAGES:-1000}
WS_SIZE=${WS_SIZE:-64}
WS_THREADS=${WS_THREADS:-2}
APP=$BUILD/examples/tidal-sample-app
GW=${GW:-$BUILD/bench/gateway/tidal-gateway-bench}
WSLOAD=$BUILD/bench/gateway/tidal-ws-load
HOST=bench.default.tidal.localhost

for bin in "$APP" "$GW" "$WSLOAD"; do
  [[ -x $bin ]] || { echo "missing $bin (build tidal-sample-app, tidal-gateway-bench, tidal-ws-load)" >&2; exit 1; }
done
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { echo "nginx not installed" >&2; exit 1; }
if [[ " $ROWS " == *" h2c "* ]]; then
  command -v h2load >/dev/null || { echo "h2load not installed (nghttp2-client)" >&2; exit 1; }
fi

TMP=$(mktemp -d /tmp/tidal-gw-proto-bench.XXXXXX)
source "$(dirname "$0")/lib.sh"

# Runs "measure PORT" for each target in alternating order for ROUNDS rounds,
# then prints the medians and the gateway/nginx ratios.
#   $1: row name  $2: unit  then target=port pairs (gateway first, nginx
#   second). measure prints "rate p50_ms p99_ms errors".
run_row() {
  local row=$1 unit=$2; shift 2
  local -A port RATE P50 P99
  local names=()
  for tp in "$@"; do names+=("${tp%%=*}"); port[${tp%%=*}]=${tp#*=}; done
  echo
  echo "== $row =="
  printf "%-6s %-8s %12s %9s %9s %6s\n" round target "$unit" p50_ms p99_ms errors
  measure "${port[gateway]}" >/dev/null || true  # warm-up
  measure "${port[nginx]}" >/dev/null || true
  for r in $(seq 1 "$ROUNDS"); do
    local order="gateway nginx direct"
    (( r % 2 == 0 )) && order="nginx gateway direct"
    for t in $order; do
      local rate p50 p99 bad
      read -r rate p50 p99 bad < <(measure "${port[$t]}" || true)
      printf "%-6s %-8s %12s %9s %9s %6s\n" "$r" "$t" "$rate" "$p50" "$p99" "$bad"
      RATE[$t]+="$rate "
      P50[$t]+="$p50 "
      P99[$t]+="$p99 "
    done
  done
  echo "median over $ROUNDS rounds:"
  printf "%-8s %12s %9s %9s\n" target "$unit" p50_ms p99_ms
  for t in "${names[@]}"; do
    printf "%-8s %12s %9s %9s\n" "$t" "$(echo "${RATE[$t]}" | median)" \
      "$(echo "${P50[$t]}" | median)" "$(echo "${P99[$t]}" | median)"
  done
  local g n g99 n99
  g=$(echo "${RATE[gateway]}" | median); n=$(echo "${RATE[nginx]}" | median)
  g99=$(echo "${P99[gateway]}" | median); n99=$(echo "${P99[nginx]}" | median)
  awk -v row="$row" -v g="$g" -v n="$n" -v g99="$g99" -v n99="$n99" 'BEGIN {
    printf "%s gateway/nginx throughput ratio: %.2f (target >= 1.00)\n", row, (n > 0 ? g / n : 0)
    printf "%s gateway/nginx p99 ratio:        %.2f (target <= 1.00)\n", row, (n99 > 0 ? g99 / n99 : 0)
  }'
}

echo "threads=$THREADS app_threads=$APP_THREADS rounds=$ROUNDS rows=\"$ROWS\""

if [[ " $ROWS " == *" h2c "* ]]; then
  UP_PORT=$(free_port)
  start_nginx h2-upstream "$APP_THREADS" "
  server {
    listen 127.0.0.1:$UP_PORT http2 reuseport backlog=4096;
    location / { return 200 \"ok\n\"; }
  }"
  wait_port "$UP_PORT"

  H2GW_PORT=$(free_port)
  "$GW" --port "$H2GW_PORT" --threads "$THREADS" --protocol h2c \
    --upstream "127.0.0.1:$UP_PORT" >"$TMP/h2gw.log" 2>&1 &
  PIDS+=($!)
  wait_port "$H2GW_PORT"

  H2NGX_PORT=$(free_port)
  start_nginx h2-proxy "$THREADS" "
  upstream h2up {
    server 127.0.0.1:$UP_PORT;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$H2NGX_PORT http2 reuseport backlog=4096;
    location / { grpc_pass grpc://h2up; }
  }"
  wait_port "$H2NGX_PORT"

  # h2load: prints "req/s p50_ms p99_ms errors" (latencies from its
  # per-request log; errors: non-2xx, failed and errored requests).
  measure() {  # port
    local log=$TMP/h2load.log out
    rm -f "$log"
    out=$(h2load -c "$H2_CONNS" -m "$H2_STREAMS" -t "$H2LOAD_THREADS" -D "$DURATION" \
      -H ":authority: $HOST" --log-file="$log" "http://127.0.0.1:$1/" 2>&1) || true
    local rps bad
    rps=$(echo "$out" | awk '/^finished in/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^req\/s/) print $i + 0 }')
    bad=$(echo "$out" | awk '
      /^requests:/ {
        split($0, f, ",")
        for (i in f) {
          split(f[i], w, " ")
          if (f[i] ~ /failed|errored/) e += w[1]
          if (f[i] ~ /started/) started = w[1]
          if (f[i] ~ /done/) done = w[1]
        }
      }
      /^status codes:/ { gsub(/,/, ""); e += $5 + $7 + $9 }
      END { if (done == 0) e += started; print e + 0 }')  # none done: all failed
    local lat
    lat=$(awk -F'\t' '{print $3}' "$log" 2>/dev/null | sort -n | awk '
      {a[NR] = $1} END {
        if (NR == 0) { print "0 0"; exit }
        i50 = int(NR * 0.50); if (i50 < 1) i50 = 1
        i99 = int(NR * 0.99); if (i99 < 1) i99 = 1
        printf "%.3f %.3f\n", a[i50] / 1000, a[i99] / 1000 }')
    echo "${rps:-0} $lat $bad"
  }
  echo "h2c: h2load -c $H2_CONNS -m $H2_STREAMS -t $H2LOAD_THREADS -D $DURATION; upstream nginx return 200 (h2c)"
  run_row h2c req/s gateway="$H2GW_PORT" nginx="$H2NGX_PORT" direct="$UP_PORT"
fi

if [[ " $ROWS " == *" ws "* ]]; then
  APP_PORT=$(free_port)
  "$APP" --port "$APP_PORT" --threads "$APP_THREADS" >"$TMP/app.log" 2>&1 &
  PIDS+=($!)
  wait_port "$APP_PORT"

  WSGW_PORT=$(free_port)
  "$GW" --port "$WSGW_PORT" --threads "$THREADS" --upstream "127.0.0.1:$APP_PORT" \
    >"$TMP/wsgw.log" 2>&1 &
  PIDS+=($!)
  wait_port "$WSGW_PORT"

  WSNGX_PORT=$(free_port)
  start_nginx ws-proxy "$THREADS" "
  upstream app {
    server 127.0.0.1:$APP_PORT;
  }
  server {
    listen 127.0.0.1:$WSNGX_PORT reuseport backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Upgrade \$http_upgrade;
      proxy_set_header Connection \"upgrade\";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_read_timeout 3600s;
    }
  }"
  wait_port "$WSNGX_PORT"

  measure() {  # port
    "$WSLOAD" --port "$1" --host "$HOST" --path /ws --conns "$WS_CONNS" \
      --messages "$WS_MESSAGES" --size "$WS_SIZE" --threads "$WS_THREADS" || true
  }
  echo "ws: tidal-ws-load --conns $WS_CONNS --messages $WS_MESSAGES --size $WS_SIZE --threads $WS_THREADS; upstream tidal-sample-app /ws"
  run_row ws msgs/s gateway="$WSGW_PORT" nginx="$WSNGX_PORT" direct="$APP_PORT"
fi
