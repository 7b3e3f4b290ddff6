#!/usr/bin/env bash
# bench/rollout: 100 sample-app instances released in 10 batches on a fresh
# tidald. Usage: bench/rollout/run.sh [BUILD_DIR] [INSTANCES] [BATCHES]
set -euo pipefail
BUILD=${1:-build}
N=${2:-100}
B=${3:-10}
TMP=$(mktemp -d); echo "data: $TMP" >&2
trap 'kill $TIDALD 2>/dev/null || true; wait 2>/dev/null || true; [ -n "${KEEP:-}" ] || rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=127.0.0.1:$(port)
"$BUILD"/src/daemon/tidald --data-dir "$TMP" --listen "$API" --auth none \
  --gateway-listen 127.0.0.1:$(port) --admin-listen 127.0.0.1:$(port) --log-level warn \
  --stop-instances-on-exit 2>"$TMP/tidald.log" &
TIDALD=$!
for i in $(seq 100); do "$BUILD"/src/cli/tidalctl --server "$API" version >/dev/null 2>&1 && break; sleep 0.1; done
"$BUILD"/bench/rollout/rollout_bench --server "$API" \
  --sample-app "$(realpath "$BUILD"/examples/tidal-sample-app)" --instances "$N" --batches "$B"
