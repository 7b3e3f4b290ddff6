#!/usr/bin/env bash
# Installs the Debian packages Tidal needs to build, test and benchmark.
# Idempotent and quiet when everything is already there.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libabsl-dev libspdlog-dev libfmt-dev libyaml-cpp-dev libyaml-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libboost1.81-dev libsqlite3-dev libcli11-dev libcurl4-openssl-dev libssl-dev libnghttp2-dev
  etcd-server nginx wrk nghttp2-client curl strace valgrind procps python3 iproute2 openssl
  clang-14 libclang-rt-14-dev
  chromium chromium-driver
)
# Node.js and npm build the dashboard's page and run its browser test
# (src/dashboard/web). A machine with Node.js from elsewhere (its own npm
# inside) keeps it: Debian's npm would conflict with it.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  PKGS+=(nodejs npm)
fi
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The dashboard's npm packages (TypeScript, playwright-core), as locked in
# package-lock.json; nothing when they are there already.
WEB="$(dirname "$0")/../src/dashboard/web"
if ! node -e '
  const lock = require(process.argv[1] + "/package-lock.json");
  for (const [p, v] of Object.entries(lock.packages)) {
    if (!p) continue;
    const got = require(process.argv[1] + "/" + p + "/package.json").version;
    if (got !== v.version) process.exit(1);
  }' "$(cd "$WEB" && pwd)" 2>/dev/null; then
  echo "install-deps: npm ci in src/dashboard/web"
  (cd "$WEB" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
