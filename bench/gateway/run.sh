#!/usr/bin/env bash
# bench/gateway/run.sh: wrk through Tidal's gateway, through nginx (keep-alive
# reverse proxy, as many workers as the gateway has threads) and directly, to
# the same tidal-sample-app instance, in alternating rounds within one run.
#
# Usage: bench/gateway/run.sh [BUILD_DIR]
#   env: THREADS (proxy threads/workers, 2)  APP_THREADS (2)  CONNS (64)
#        WRK_THREADS (2)  DURATION (s per round, 5)  ROUNDS (3)  PATH_Q (/)
#        UPSTREAM (app: tidal-sample-app; nginx: a fast upstream, an nginx
#        `return 200` with APP_THREADS workers)
# Needs: tidal-sample-app and tidal-gateway-bench built in BUILD_DIR, wrk, nginx.
set -euo pipefail

BUILD=${1:-${TIDAL_BUILD_DIR:-$(cd "$(dirname "$0")/../.." && pwd)/build}}
THREADS=${THREADS:-2}
APP_THREADS=${APP_THREADS:-2}
CONNS=${CONNS:-64}
WRK_THREADS=${WRK_THREADS:-2}
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
PATH_Q=${PATH_Q:-/}
APP=$BUILD/examples/tidal-sample-app
GW=$BUILD/bench/gateway/tidal-gateway-bench
HOST=bench.default.tidal.localhost

for bin in "$APP" "$GW"; do
  [[ -x $bin ]] || { echo "missing $bin (build tidal-sample-app and tidal-gateway-bench)" >&2; exit 1; }
done
command -v wrk >/dev/null || { echo "wrk not installed" >&2; exit 1; }
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
[[ -x $NGINX ]] || { echo "nginx not installed" >&2; exit 1; }

TMP=$(mktemp -d /tmp/tidal-gw-bench.XXXXXX)
source "$(dirname "$0")/lib.sh"
wait_http() {  # url host
  for _ in $(seq 1 500); do
    if curl -s -o /dev/null -H "Host: $2" "$1"; then return 0; fi
    sleep 0.01
  done
  echo "no answer from $1" >&2
  exit 1
}

APP_PORT=$(free_port)
if [[ ${UPSTREAM:-app} == nginx ]]; then
  start_nginx up "$APP_THREADS" \
    "server { listen 127.0.0.1:$APP_PORT reuseport; location / { return 200 \"ok\\n\"; } }"
else
  "$APP" --port "$APP_PORT" --threads "$APP_THREADS" >"$TMP/app.log" 2>&1 &
  PIDS+=($!)
fi
wait_http "http://127.0.0.1:$APP_PORT/" x

GW_PORT=$(free_port)
"$GW" --port "$GW_PORT" --threads "$THREADS" --upstream "127.0.0.1:$APP_PORT" >"$TMP/gw.log" 2>&1 &
PIDS+=($!)
wait_http "http://127.0.0.1:$GW_PORT/" "$HOST"

NGX_PORT=$(free_port)
mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<NGX
worker_processes $THREADS;
daemon off;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 8192; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $TMP/nginx/body;
  proxy_temp_path $TMP/nginx/proxy;
  fastcgi_temp_path $TMP/nginx/fastcgi;
  uwsgi_temp_path $TMP/nginx/uwsgi;
  scgi_temp_path $TMP/nginx/scgi;
  keepalive_requests 1000000;
  upstream app {
    server 127.0.0.1:$APP_PORT;
    keepalive 256;
    keepalive_requests 1000000;
  }
  server {
    listen 127.0.0.1:$NGX_PORT reuseport backlog=4096;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host \$host;
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme;
      proxy_set_header X-Request-Id \$request_id;
    }
  }
}
NGX
"$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" &
PIDS+=($!)
wait_http "http://127.0.0.1:$NGX_PORT/" "$HOST"

# One wrk run: prints "rps p50_ms p99_ms".
run_wrk() {  # port
  local out
  out=$(wrk -t"$WRK_THREADS" -c"$CONNS" -d"${DURATION}s" --latency -H "Host: $HOST" \
    "http://127.0.0.1:$1$PATH_Q")
  echo "$out" | awk '
    function ms(v) {
      if (v ~ /us$/) { sub(/us$/, "", v); return v / 1000 }
      if (v ~ /ms$/) { sub(/ms$/, "", v); return v + 0 }
      if (v ~ /s$/)  { sub(/s$/, "", v);  return v * 1000 }
      return v
    }
    /Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Non-2xx/ { bad = $NF }
    END { printf "%.0f %.3f %.3f %s\n", rps, p50, p99, (bad == "" ? 0 : bad) }'
}

declare -A RPS P50 P99
echo "upstream=${UPSTREAM:-app} threads=$THREADS app_threads=$APP_THREADS conns=$CONNS wrk_threads=$WRK_THREADS duration=${DURATION}s rounds=$ROUNDS path=$PATH_Q"
printf "%-6s %-8s %10s %9s %9s %6s\n" round target req/s p50_ms p99_ms non2xx
run_wrk "$GW_PORT" >/dev/null  # warm-up
run_wrk "$NGX_PORT" >/dev/null
for r in $(seq 1 "$ROUNDS"); do
  order="gateway nginx direct"
  (( r % 2 == 0 )) && order="nginx gateway direct"
  for t in $order; do
    case $t in gateway) p=$GW_PORT ;; nginx) p=$NGX_PORT ;; direct) p=$APP_PORT ;; esac
    read -r rps p50 p99 bad < <(run_wrk "$p")
    printf "%-6s %-8s %10s %9s %9s %6s\n" "$r" "$t" "$rps" "$p50" "$p99" "$bad"
    RPS[$t]+="$rps "
    P50[$t]+="$p50 "
    P99[$t]+="$p99 "
  done
done

echo
echo "median over $ROUNDS rounds:"
printf "%-8s %10s %9s %9s\n" target req/s p50_ms p99_ms
for t in gateway nginx direct; do
  printf "%-8s %10s %9s %9s\n" "$t" "$(echo "${RPS[$t]}" | median)" "$(echo "${P50[$t]}" | median)" \
    "$(echo "${P99[$t]}" | median)"
done
g=$(echo "${RPS[gateway]}" | median); n=$(echo "${RPS[nginx]}" | median)
g99=$(echo "${P99[gateway]}" | median); n99=$(echo "${P99[nginx]}" | median)
awk -v g="$g" -v n="$n" -v g99="$g99" -v n99="$n99" 'BEGIN {
  printf "gateway/nginx throughput ratio: %.2f (target >= 1.00)\n", g / n
  printf "gateway/nginx p99 ratio:        %.2f (target <= 1.00)\n", g99 / n99
}'
