#!/usr/bin/env bash
# bench/hostile: the hostile-input suite's long form (issue 15). A tidald with
# one app under a steady probe (a GET every 10 ms), quiet and then under each
# attack for SECONDS (60 is the long form): 12 concurrent applies of the
# 200,000-unknown-field spec, spec mutations, hostile HTTP, 2,000 idle
# connections, slowloris. Prints the probe's success rate and p99 (and its
# ratio to the quiet p99), tidald's peak and settled RSS per phase, and
# PASS/FAIL against the bars (success >= 99.9 %, p99 <= 2x quiet, peak RSS
# < 512 MB, RSS back within 50 MB of its start after the 12 applies).
# The short form of the same attacks (behaviour only) is tests/hostile/,
# run by ctest.
# Usage: bench/hostile/run.sh [BUILD_DIR] [SECONDS] [hostile_bench flags...]
#   e.g. bench/hostile/run.sh build 20 --only unknown --tidald-flag=--api-thread-nice=19
set -euo pipefail
BUILD=${1:-build}
SECONDS_PER_PHASE=${2:-60}
shift $(( $# > 2 ? 2 : $# ))
cmake --build "$BUILD" --target hostile_bench tidald tidalctl tidal-sample-app >/dev/null
TIDAL_BUILD_DIR=$(cd "$BUILD" && pwd) "$BUILD"/bench/hostile/hostile_bench --seconds "$SECONDS_PER_PHASE" "$@"
