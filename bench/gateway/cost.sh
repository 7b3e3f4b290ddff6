#!/usr/bin/env bash
# bench/gateway/cost.sh: what one proxied request costs, Tidal's gateway next
# to nginx, on a fast upstream (an nginx `return 200`): CPU instructions per
# request (valgrind's callgrind: deterministic, unlike timings on a shared
# machine) and system calls per request (strace -c), in one run.
#
#   bench/gateway/cost.sh BUILD_DIR          # env: REQUESTS=20000 CONNS=8 HISTORY=0
#
# HISTORY=1 runs the gateway with the dashboard's history recorder (one
# point a second from the gateway's metrics, as in tidald; nobody watching).
#
# Each proxy runs one worker thread / process. Per-request figures are
# marginal: (cost of REQUESTS*2 requests - cost of REQUESTS) / REQUESTS, so
# start-up and shutdown do not count. Needs valgrind, strace, nginx, h2load
# (nghttp2-client). Prints a table and the gateway/nginx ratios.
set -euo pipefail
BUILD=${1:-build}
REQUESTS=${REQUESTS:-20000}
CONNS=${CONNS:-8}
HISTORY=${HISTORY:-0}
GW=$BUILD/bench/gateway/tidal-gateway-bench
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
for tool in valgrind strace h2load "$NGINX" "$GW"; do
  command -v "$tool" >/dev/null || { echo "cost.sh: $tool not found" >&2; exit 1; }
done
TMP=$(mktemp -d)
source "$(dirname "$0")/lib.sh"
HOST=bench.default.tidal.localhost
UP_PORT=$(free_port)

# The upstream (return 200), and the proxy (as run.sh's); one process each,
# so that valgrind and strace see the worker.
SOLO="master_process off;"
start_nginx up 1 "server { listen 127.0.0.1:$UP_PORT reuseport; location / { return 200 \"ok\\n\"; } }" "$SOLO"
wait_port "$UP_PORT"

PROXY_BLOCK="upstream app { server 127.0.0.1:$UP_PORT; keepalive 256; keepalive_requests 1000000; }
  server { listen 127.0.0.1:PORT reuseport; location / { proxy_pass http://app; proxy_http_version 1.1;
    proxy_set_header Connection \"\"; proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
    proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Request-Id \$request_id; } }"

# Runs one proxy ($1: gateway|nginx) under `$2` (callgrind|strace), sends
# $3 requests, and prints the cost: instructions or system calls.
measure() {
  local what=$1 tool=$2 n=$3 port out pid
  port=$(free_port)
  out="$TMP/$what.$tool.$n"
  local cmd
  if [[ $what == gateway ]]; then
    cmd=("$GW" --port "$port" --threads 1 --upstream "127.0.0.1:$UP_PORT" --history "$HISTORY")
  else
    nginx_conf "px$n$tool" 1 "${PROXY_BLOCK//PORT/$port}" "$SOLO"
    cmd=("$NGINX" -p "$TMP/px$n$tool" -c "$TMP/px$n$tool/nginx.conf" -e "$TMP/px$n$tool/logs/error.log")
  fi
  if [[ $tool == callgrind ]]; then
    valgrind --tool=callgrind --callgrind-out-file="$out" "${cmd[@]}" >"$out.log" 2>&1 &
  else
    strace -f -c -o "$out" "${cmd[@]}" >"$out.log" 2>&1 &
  fi
  pid=$!
  wait_port "$port"
  h2load --h1 -n "$n" -c "$CONNS" -H ":authority: $HOST" "http://127.0.0.1:$port/" >"$out.load" 2>&1
  grep -q "succeeded, 0 failed" "$out.load" || { echo "cost.sh: $what: requests failed" >&2; cat "$out.load" >&2; }
  # SIGINT: valgrind and strace write their figures as the process exits.
  pkill -INT -P "$pid" 2>/dev/null || true
  kill -INT "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  if [[ $tool == callgrind ]]; then
    awk '/^summary:/ {print $2}' "$out"
  else
    awk '/^100.00/ {print $4}' "$out"
  fi
}

declare -A COST
for what in gateway nginx; do
  for tool in callgrind strace; do
    a=$(measure "$what" "$tool" "$REQUESTS")
    b=$(measure "$what" "$tool" $((REQUESTS * 2)))
    COST[$what.$tool]=$(python3 -c "print(f'{($b - $a) / $REQUESTS:.1f}')")
  done
done

printf '%-10s %16s %16s\n' target "instr/request" "syscalls/request"
for what in gateway nginx; do
  printf '%-10s %16s %16s\n' "$what" "${COST[$what.callgrind]}" "${COST[$what.strace]}"
done
python3 - "${COST[gateway.callgrind]}" "${COST[nginx.callgrind]}" \
  "${COST[gateway.strace]}" "${COST[nginx.strace]}" <<'PY'
import sys
gi, ni, gs, ns = map(float, sys.argv[1:])
print(f"gateway/nginx instructions per request: {gi / ni:.2f} (target <= 1.00)")
print(f"gateway/nginx system calls per request: {gs / ns:.2f}")
PY
