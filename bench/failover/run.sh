#!/usr/bin/env bash
# bench/failover: 20 kill -9 trials of the leader of a three-node HA cluster
# (3 etcd members + 3 tidald on 127.0.0.21-23), with requests through every
# node's gateway. Usage: bench/failover/run.sh [BUILD_DIR] [TRIALS] [TTL_S]
set -euo pipefail
BUILD=$(realpath "${1:-build}")
TIDAL_BUILD_DIR="$BUILD" TIDAL_SOURCE_DIR="$(cd "$(dirname "$0")/../.." && pwd)" \
  "$BUILD"/bench/failover/failover_bench --trials "${2:-20}" --ttl "${3:-10}" --graceful 3
