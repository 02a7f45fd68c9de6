#!/usr/bin/env bash
# Builds medscreen and runs every test:
#   1. plain build in build/ (-Werror), ctest;
#   2. ASan + UBSan build in build-asan/ (-Werror), ctest (leak detection on);
#   3. if clang is installed, a short libFuzzer run of every target (scripts/fuzz.sh).
# Usage: scripts/test.sh [--no-asan] [--no-fuzz]
#   MS_FUZZ_RUNS (default 100000) executions per target, capped at MS_FUZZ_SECONDS (default 120).
# Installs missing Debian packages first (needs root; otherwise says what to run).
set -euo pipefail

cd "$(dirname "$0")/.."
asan=1 fuzz=1
for a in "$@"; do
    case "$a" in
    --no-asan) asan=0 ;;
    --no-fuzz) fuzz=0 ;;
    -h | --help)
        sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "test.sh: unknown option '$a'" >&2
        exit 2
        ;;
    esac
done

scripts/setup-deps.sh

JOBS=$(nproc 2>/dev/null || echo 2)
CTEST_JOBS=${CTEST_JOBS:-2}
failed=()

stage() { printf '\n==== %s\n' "$*"; }

stage "plain build (build/)"
cmake -S . -B build -DMS_WERROR=ON
cmake --build build -j"$JOBS"
ctest --test-dir build --output-on-failure -j"$CTEST_JOBS" || failed+=("ctest build/")

if [ "$asan" -eq 1 ]; then
    stage "ASan + UBSan build (build-asan/)"
    cmake -S . -B build-asan -DMS_SANITIZE=ON -DMS_WERROR=ON
    cmake --build build-asan -j"$JOBS"
    ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        ctest --test-dir build-asan --output-on-failure -j"$CTEST_JOBS" ||
        failed+=("ctest build-asan/")
fi

if [ "$fuzz" -eq 1 ]; then
    if command -v clang >/dev/null 2>&1 && command -v clang++ >/dev/null 2>&1; then
        # Reproducible by default (seed 1, a fixed number of executions, at most
        # MS_FUZZ_SECONDS each), so the same commit passes or fails the same way anywhere.
        stage "fuzzing, ${MS_FUZZ_RUNS:-100000} runs per target (build-fuzz/)"
        MS_FUZZ_RUNS=${MS_FUZZ_RUNS:-100000} scripts/fuzz.sh "${MS_FUZZ_SECONDS:-120}" ||
            failed+=("scripts/fuzz.sh")
    else
        stage "fuzzing skipped: clang is not installed"
    fi
fi

echo
if [ ${#failed[@]} -gt 0 ]; then
    printf 'test.sh: FAILED: %s\n' "${failed[*]}" >&2
    exit 1
fi
echo "test.sh: all tests passed"
