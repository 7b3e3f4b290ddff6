#!/usr/bin/env bash
# bench/apply: 10,000 apps applied to a fresh tidald over gRPC.
# Usage: bench/apply/run.sh [BUILD_DIR] [APPS]
set -euo pipefail
BUILD=${1:-build}
APPS=${2:-10000}
TMP=$(mktemp -d)
trap 'kill $TIDALD 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$TMP"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
API=127.0.0.1:$(port)
"$BUILD"/src/daemon/tidald --data-dir "$TMP" --listen "$API" \
  --gateway-listen 127.0.0.1:$(port) --admin-listen 127.0.0.1:$(port) --log-level warn \
  --stop-instances-on-exit 2>"$TMP/tidald.log" &
TIDALD=$!
for i in $(seq 100); do "$BUILD"/src/cli/tidalctl --server "$API" version >/dev/null 2>&1 && break; sleep 0.1; done
"$BUILD"/bench/apply/apply_bench --server "$API" --pid "$TIDALD" --apps "$APPS" --threads 10
