#!/usr/bin/env bash
# bench/apply under callgrind: the instructions tidald executes for the same
# APPS applies with --auth=none and with token authentication (the audit log
# on in both). Instruction counts do not depend on what else the machine
# runs, unlike applies/s on a shared 2-core machine. Slow (~2 min for 2000).
# Usage: bench/apply/callgrind.sh [BUILD_DIR] [APPS]
set -euo pipefail
BUILD=$(cd "${1:-build}" && pwd)
APPS=${2:-2000}
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A ir
for mode in none token; do
  d=$TMP/$mode; mkdir -p "$d"; api=127.0.0.1:$(port)
  valgrind --tool=callgrind --callgrind-out-file="$d/cg.out" "$BUILD"/src/daemon/tidald \
    --data-dir "$d" --listen "$api" --auth "$mode" --gateway-listen 127.0.0.1:$(port) \
    --admin-listen 127.0.0.1:$(port) --log-level warn --stop-instances-on-exit 2>"$d/log" &
  pid=$!
  for _ in $(seq 600); do
    "$BUILD"/src/cli/tidalctl --server "$api" version >/dev/null 2>&1 &&
      { [ "$mode" = none ] || [ -s "$d/admin.token" ]; } && break
    sleep 0.2
  done
  tok=(); [ "$mode" = token ] && tok=(--token "$(cat "$d/admin.token")")
  "$BUILD"/bench/apply/apply_bench --server "$api" --pid "$pid" --apps "$APPS" \
    --threads 4 --idle-seconds 1 "${tok[@]}" | head -1
  kill -TERM "$pid"; wait "$pid" || true
  ir[$mode]=$(awk '/^(summary|totals):/ {print $2; exit}' "$d/cg.out")
  echo "--auth=$mode: tidald executed ${ir[$mode]} instructions"
done
python3 -c "import sys; n,t=map(int,sys.argv[1:]); print(f'token auth / --auth=none: {t/n:.3f} (+{100*(t/n-1):.1f}% instructions, startup and shutdown included)')" "${ir[none]}" "${ir[token]}"
