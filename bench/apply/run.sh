#!/usr/bin/env bash
# bench/apply: APPS apps applied to a fresh tidald over gRPC, with token
# authentication (tidald's default: every call verified against the store,
# audited) and with --auth=none, ROUNDS times each, alternating; prints each
# run, the ratio of the best applies/s with auth to the best without, and the
# ratio of tidald's CPU time per apply (the least of each).
# Usage: bench/apply/run.sh [BUILD_DIR] [APPS] [ROUNDS]
set -euo pipefail
BUILD=${1:-build}
APPS=${2:-10000}
ROUNDS=${3:-2}
TMP=$(mktemp -d)
TIDALD=
trap 'kill $TIDALD 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# one MODE (token|none) N: prints the bench's report, appends applies/s.
one() {
  local mode=$1 dir="$TMP/$1-$2" api token=""
  api=127.0.0.1:$(port)
  mkdir -p "$dir"
  "$BUILD"/src/daemon/tidald --data-dir "$dir" --listen "$api" --auth "$mode" \
    --gateway-listen 127.0.0.1:$(port) --admin-listen 127.0.0.1:$(port) --log-level warn \
    --stop-instances-on-exit 2>"$dir/tidald.log" &
  TIDALD=$!
  for _ in $(seq 100); do
    [ "$mode" = token ] && [ -s "$dir/admin.token" ] && token=$(cat "$dir/admin.token")
    "$BUILD"/src/cli/tidalctl --server "$api" ${token:+--token "$token"} version >/dev/null 2>&1 && break
    sleep 0.1
  done
  echo "--- --auth=$mode, round $2"
  "$BUILD"/bench/apply/apply_bench --server "$api" --pid "$TIDALD" --apps "$APPS" \
    --threads 10 ${token:+--token "$token"} | tee "$dir/report"
  kill $TIDALD; wait $TIDALD 2>/dev/null || true
  awk '/applies per second/ {print $4}' "$dir/report" >> "$TMP/$mode.rates"
  awk '/CPU per 1000 applies/ {print $6}' "$dir/report" >> "$TMP/$mode.cpu"
}

for r in $(seq "$ROUNDS"); do one none "$r"; one token "$r"; done
best() { sort -n "$TMP/$1.rates" | tail -1; }
least() { sort -n "$TMP/$1.cpu" | head -1; }
python3 - "$(best token)" "$(best none)" "$(least token)" "$(least none)" <<'PY'
import sys
t, n, ct, cn = map(float, sys.argv[1:])
print(f"applies/s with token auth {t:.0f}, with --auth=none {n:.0f}: ratio {t/n:.3f} "
      f"(auth costs {100*(1-t/n):.1f}% of throughput; target < 5%)")
print(f"tidald CPU per 1000 applies with token auth {ct:.3f} s, with --auth=none {cn:.3f} s: "
      f"ratio {ct/cn:.3f} (less sensitive to other load on the machine)")
PY
