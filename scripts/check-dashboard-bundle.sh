#!/usr/bin/env bash
# Fails when src/dashboard/web/dist/app.js (committed, used by builds without
# node) differs from what src/dashboard/web/src compiles to. Fix with:
#   (cd src/dashboard/web && npx tsc -p tsconfig.json)
set -euo pipefail
WEB="$(cd "$(dirname "$0")/../src/dashboard/web" && pwd)"
TSC="$WEB/node_modules/typescript/bin/tsc"
[ -f "$TSC" ] || { echo "no tsc in $WEB/node_modules: bash scripts/install-deps.sh" >&2; exit 1; }
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
node "$TSC" -p "$WEB/tsconfig.json" --outFile "$OUT/app.js"
if ! cmp -s "$OUT/app.js" "$WEB/dist/app.js"; then
  echo "src/dashboard/web/dist/app.js is stale: (cd src/dashboard/web && npx tsc -p tsconfig.json), then commit it" >&2
  diff "$WEB/dist/app.js" "$OUT/app.js" | head -20 >&2
  exit 1
fi
echo "dist/app.js matches src/*.ts"
