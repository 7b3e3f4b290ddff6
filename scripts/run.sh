#!/usr/bin/env bash
# `make run`: starts tidald on the embedded defaults (SQLite store, local
# processes), applies the sample app, and stays in the foreground (Ctrl-C
# stops tidald; the instances stop with it).
set -euo pipefail
BUILD=${1:-build}
DATA=${2:-$HOME/.local/share/tidal}
BIN=$(cd "$BUILD" && pwd)
mkdir -p "$DATA"
"$BIN/src/daemon/tidald" --data-dir "$DATA" --instance-path "$BIN/examples" \
  --stop-instances-on-exit &
TIDALD=$!
trap 'kill -TERM $TIDALD 2>/dev/null; wait $TIDALD' INT TERM
for _ in $(seq 100); do
  "$BIN/src/cli/tidalctl" version >/dev/null 2>&1 && break
  kill -0 $TIDALD 2>/dev/null || { echo "tidald exited; see the messages above" >&2; exit 1; }
  sleep 0.1
done
# tidald made a bootstrap admin token (docs/auth.md); tidalctl on this
# machine finds it in the default data directory, else give it:
TOKEN_HINT=""
if [ -r "$DATA/admin.token" ]; then
  export TIDAL_TOKEN=$(cat "$DATA/admin.token")
  [ "$DATA" = "$HOME/.local/share/tidal" ] || TOKEN_HINT="  export TIDAL_TOKEN=\$(cat $DATA/admin.token)
"
fi
"$BIN/src/cli/tidalctl" apply -f examples/hello.yaml
cat <<MSG

tidald is running (API 127.0.0.1:7070, gateway 127.0.0.1:8080, metrics 127.0.0.1:9090/metrics).
Try, in another terminal:
  export PATH=$BIN/src/cli:\$PATH
${TOKEN_HINT}  tidalctl get apps -o wide
  curl http://hello.default.tidal.localhost:8080/
  tidalctl describe app hello
Ctrl-C stops tidald and its instances.
MSG
wait $TIDALD
