#!/usr/bin/env bash
# Builds the libFuzzer targets with clang (ASan + UBSan) into build-fuzz/ and runs each one for
# SECONDS (default 60) on a copy of its seed corpus, so tests/corpus/ is never modified.
# Crash, leak and timeout inputs land in build-fuzz/artifacts/<target>/; their paths are
# printed and the script exits 1 if any target found one.
#   scripts/fuzz.sh [SECONDS] [TARGET...]     targets: dicom png jpeg npy msm onnx graph json csv (default: all)
# MS_FUZZ_BUILD_DIR picks another build directory (default build-fuzz).
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(dicom png jpeg npy msm onnx graph json csv)
if ! [[ $SECONDS_PER_TARGET =~ ^[0-9]+$ ]] || [ "$SECONDS_PER_TARGET" -lt 1 ]; then
    echo "usage: scripts/fuzz.sh [SECONDS] [dicom|png|jpeg|npy|msm|onnx|graph|json|csv ...]" >&2
    exit 2
fi
for t in "${TARGETS[@]}"; do
    case "$t" in dicom | png | jpeg | npy | msm | onnx | graph | json | csv) ;; *) echo "fuzz.sh: unknown target '$t'" >&2; exit 2 ;; esac
done
command -v clang >/dev/null && command -v clang++ >/dev/null || {
    echo "fuzz.sh: clang and clang++ are needed (scripts/setup-deps.sh installs them)" >&2
    exit 2
}

B=${MS_FUZZ_BUILD_DIR:-build-fuzz}
JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B "$B" -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo -DMS_FUZZ=ON -DMS_WERROR=ON >/dev/null
cmake --build "$B" -j"$JOBS" --target $(printf 'fuzz_%s ' "${TARGETS[@]}")

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
found=0
for t in "${TARGETS[@]}"; do
    work="$B/corpus-run/$t" art="$B/artifacts/$t"
    rm -rf "$work"
    mkdir -p "$work" "$art"
    cp tests/corpus/"$t"/* "$work"/ 2>/dev/null || true
    rm -f "$work"/README*
    log="$B/fuzz-$t.log"
    echo "fuzz.sh: $t for ${SECONDS_PER_TARGET}s (log: $log)"
    before=$(find "$art" -type f | wc -l)
    set +e
    # MS_FUZZ_RUNS makes a run reproducible: a fixed seed and a fixed number of executions
    # give the same inputs on any machine (CI uses it); the time limit stays as a cap.
    runs_opt=()
    [ -n "${MS_FUZZ_RUNS:-}" ] && runs_opt=(-runs="$MS_FUZZ_RUNS")
    "$B/tests/fuzz/fuzz_$t" "$work" "${runs_opt[@]}" -max_total_time="$SECONDS_PER_TARGET" -timeout=25 \
        -seed="${MS_FUZZ_SEED:-1}" -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="$art/" >"$log" 2>&1
    rc=$?
    set -e
    after=$(find "$art" -type f | wc -l)
    grep -E '^(stat::number_of_executed_units|stat::new_units_added)' "$log" | sed "s/^/  $t /" || true
    if [ "$rc" -ne 0 ] || [ "$after" -gt "$before" ]; then
        found=1
        echo "fuzz.sh: $t FAILED (exit $rc); last lines of $log:" >&2
        tail -n 30 "$log" >&2
        find "$art" -type f -newer "$work" | sed 's/^/fuzz.sh: crash input: /' >&2
    fi
done
if [ "$found" -ne 0 ]; then
    echo "fuzz.sh: minimise with: $B/tests/fuzz/fuzz_<target> -minimize_crash=1 -runs=10000 FILE" >&2
    echo "fuzz.sh: then commit it under tests/regress/<target>/ with the fix" >&2
    exit 1
fi
echo "fuzz.sh: no crashes"
