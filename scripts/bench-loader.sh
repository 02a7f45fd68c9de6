#!/bin/sh
# Loader decode benchmark: generates the inputs if missing, builds Release in build-bench/,
# runs tests/bench/bench_loader and prints its JSON lines (one per input).
# Usage: scripts/bench-loader.sh [RUNS]   (RUNS >= 20, default 30)
# Environment: BENCH_DATA (default build/bench-data), BENCH_BUILD (default build-bench).
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
data=${BENCH_DATA:-"$root/build/bench-data"}
build=${BENCH_BUILD:-"$root/build-bench"}
runs=${1:-30}

if [ ! -f "$data/phantom_8bit.jpg" ] || [ ! -f "$data/phantom_j2k.j2k" ]; then
    "$root/scripts/make-bench-data.sh" "$data" >&2
fi
cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$build" --target bench_loader -j"$(nproc)" >/dev/null
exec "$build/tests/bench/bench_loader" --runs "$runs" "$data"
