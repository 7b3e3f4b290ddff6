#!/usr/bin/env bash
# bench/apply: APPS apps applied to a fresh tidald over gRPC, with token
# authentication (tidald's default: every call verified against the store,
# audited) and with --auth=none, ROUNDS times each, alternating; prints each
# run, the ratio of the median applies/s with auth to the median without, and
# the ratio of tidald's median CPU time per apply.
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
  # Up when the API answers (Version needs no token) and, with tokens, the
  # bootstrap token is written (it is, before the API starts).
  for _ in $(seq 100); do
    "$BUILD"/src/cli/tidalctl --server "$api" version >/dev/null 2>&1 &&
      { [ "$mode" = none ] || [ -s "$dir/admin.token" ]; } && break
    sleep 0.1
  done
  [ "$mode" = token ] && token=$(cat "$dir/admin.token")
  echo "--- --auth=$mode, round $2"
  "$BUILD"/bench/apply/apply_bench --server "$api" --pid "$TIDALD" --apps "$APPS" \
    --threads 10 ${token:+--token "$token"} | tee "$dir/report"
  kill $TIDALD; wait $TIDALD 2>/dev/null || true
  awk '/applies per second/ {print $4}' "$dir/report" >> "$TMP/$mode.rates"
  awk '/CPU per 1000 applies/ {print $6}' "$dir/report" >> "$TMP/$mode.cpu"
}

for r in $(seq "$ROUNDS"); do one none "$r"; one token "$r"; done
# The median of each mode's rounds: single runs on a shared 2-core machine
# vary by +-10%, more than the effect measured.
median() { sort -n "$TMP/$1" | awk '{v[NR]=$1} END {print (NR%2 ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2)}'; }
python3 - "$(median token.rates)" "$(median none.rates)" "$(median token.cpu)" "$(median none.cpu)" "$ROUNDS" <<'PY'
import sys
t, n, ct, cn, r = map(float, sys.argv[1:])
print(f"median of {r:.0f} rounds: applies/s with token auth {t:.0f}, with --auth=none {n:.0f}: "
      f"ratio {t/n:.3f} (target > 0.95)")
print(f"median of {r:.0f} rounds: tidald CPU per 1000 applies with token auth {ct:.3f} s, "
      f"with --auth=none {cn:.3f} s: ratio {ct/cn:.3f}")
PY
