#!/usr/bin/env bash
# Installs the Debian packages Tidal needs to build, test and benchmark.
# Idempotent and quiet when everything is already there.
set -euo pipefail
PKGS=(
  build-essential cmake pkg-config
  protobuf-compiler protobuf-compiler-grpc libprotobuf-dev libgrpc++-dev
  libabsl-dev libspdlog-dev libfmt-dev libyaml-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libboost1.81-dev libsqlite3-dev libcli11-dev libcurl4-openssl-dev libssl-dev libnghttp2-dev
  etcd-server nginx wrk nghttp2-client curl strace valgrind procps python3 iproute2 openssl
  clang-14 libclang-rt-14-dev
)
missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
