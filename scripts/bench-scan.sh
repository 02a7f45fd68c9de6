#!/bin/bash
# End-to-end benchmark of `medscreen scan` on generated 2048x2048 DICOM chest phantoms: scans/s
# and peak RSS with 1 and 2 jobs at two batch sizes, against inference-only throughput.
# Targets (issue): end-to-end >= 90% of inference-only throughput (decode and I/O hidden behind
# inference), and peak RSS within 10% between the small and the large batch.
#
# Usage: scripts/bench-scan.sh [--model FILE] [--count N] [--small N] [--quick] [--bin FILE]
#   --model FILE  the .msm model (default models/cxr-screener.msm if present, else the
#                 tiny test model tests/golden/scan/model.msm)
#   --count N     the large batch (default 1000); --small N the small one (default 100)
#   --quick       a smoke run: 20 and 100 scans
#   --bin FILE    time this medscreen binary instead of building Release into $BENCH_BUILD
# Environment: BENCH_BUILD (default build-bench). Inputs go to build-bench/scan-data/ (made once:
# 8 distinct phantoms, half uncompressed, half JPEG lossless or RLE, then N hard-linked names),
# run outputs to a temporary folder under build-bench/ (removed after each run), the figures to
# build-bench/bench-scan.txt and the raw JSON lines to build-bench/bench-scan.jsonl.
# Needs /usr/bin/python3 (numpy, pydicom), dcmtk (dcmcjpeg, dcmcrle) and GNU time.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench="$root/build-bench"
build=${BENCH_BUILD:-"$bench"}
py=/usr/bin/python3
helper="$root/scripts/bench-scan.py"
model=""
count=1000
small=100
bin=""
unique=8

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
    --model) model=$2; shift 2 ;;
    --count) count=$2; shift 2 ;;
    --small) small=$2; shift 2 ;;
    --quick) small=20; count=100; shift ;;
    --bin) bin=$2; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "bench-scan: unknown option $1" >&2; usage >&2; exit 2 ;;
    esac
done
case "$count$small" in *[!0-9]*) echo "bench-scan: --count/--small need numbers" >&2; exit 2 ;; esac
[ "$small" -ge 1 ] && [ "$count" -gt "$small" ] || {
    echo "bench-scan: need 1 <= --small < --count" >&2; exit 2; }
for tool in dcmcjpeg dcmcrle; do
    command -v "$tool" >/dev/null 2>&1 || { echo "bench-scan: $tool (dcmtk) not found" >&2; exit 1; }
done
[ -x /usr/bin/time ] || { echo "bench-scan: GNU time (/usr/bin/time) not found" >&2; exit 1; }

if [ -z "$model" ]; then
    if [ -f "$root/models/cxr-screener.msm" ]; then
        model="$root/models/cxr-screener.msm"
    else
        model="$root/tests/golden/scan/model.msm"
    fi
fi
[ -f "$model" ] || { echo "bench-scan: no model $model" >&2; exit 1; }

if [ -z "$bin" ]; then
    cmake -S "$root" -B "$build" -DCMAKE_BUILD_TYPE=Release >/dev/null
    nice cmake --build "$build" --target medscreen_cli -j"$(nproc)" >/dev/null
    bin="$build/medscreen"
fi
[ -x "$bin" ] || { echo "bench-scan: no binary $bin" >&2; exit 1; }

# ---- inputs ------------------------------------------------------------------------------
data="$bench/scan-data"
mkdir -p "$data/set"
nice "$py" "$helper" phantoms "$data/raw" "$unique"
srcs=()
for ((i = 0; i < unique; i++)); do
    raw=$(printf '%s/raw/u%02d.dcm' "$data" "$i")
    case $((i * 4 / unique)) in
    0 | 1) dst=$(printf '%s/set/p%02d-explicit-le.dcm' "$data" "$i")
           [ -f "$dst" ] || ln "$raw" "$dst" ;;
    2) dst=$(printf '%s/set/p%02d-jpeg-lossless.dcm' "$data" "$i")
       [ -f "$dst" ] || { dcmcjpeg +e1 "$raw" "$dst.tmp" && mv "$dst.tmp" "$dst"; } ;;
    3) dst=$(printf '%s/set/p%02d-rle.dcm' "$data" "$i")
       [ -f "$dst" ] || { dcmcrle "$raw" "$dst.tmp" && mv "$dst.tmp" "$dst"; } ;;
    esac
    srcs+=("$dst")
done
for n in "$small" "$count"; do
    "$py" "$helper" links "$data/n$n" "$n" "${srcs[@]}"
done

# ---- machine -----------------------------------------------------------------------------
out_txt="$bench/bench-scan.txt"
jsonl="$bench/bench-scan.jsonl"
: >"$jsonl"
tmp=$(mktemp -d "$bench/scan-run.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

report() {
cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n1)
blas=$(dpkg-query -W -f='${Version}' libopenblas0 2>/dev/null || echo unknown)
echo "medscreen scan benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "machine: $(nproc) CPUs, $cpu; OpenBLAS $blas; $(uname -sr)"
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "busiest other processes (%CPU):"
ps -eo pcpu=,comm= --sort=-pcpu | head -n3 | sed 's/^/  /'
echo "binary: $bin ($("$bin" --version 2>/dev/null | head -n1), built $(date -u -r "$bin" '+%H:%M UTC'));" \
    "tree: $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo '?')" \
    "$(git -C "$root" diff --quiet HEAD -- src include 2>/dev/null || echo '+ uncommitted src changes')"
minfo=$("$bin" model info "$model" 2>/dev/null || true)
echo "model: $model"
echo "  $(printf '%s\n' "$minfo" | sed -n 's/^  model *//p' | head -n1);" \
    "$(printf '%s\n' "$minfo" | sed -n 's/^  graph *//p' | head -n1);" \
    "input $(printf '%s\n' "$minfo" | sed -n 's/^  input *//p' | head -n1)"
case "$model" in */tests/golden/*)
    echo "  NOTE: the tiny test model; inference is a sliver of the work, so the 90% target"
    echo "  cannot be met and mainly shows the cost of everything around inference." ;;
esac
echo "inputs: $data/set: $unique distinct 2048x2048 12-bit DX/CR phantoms:"
for f in "${srcs[@]}"; do printf '  %s (%s bytes)\n' "${f##*/}" "$(stat -c %s "$f")"; done
echo "  batches of $small and $count names in $data/n*/, hard links to these files in turn:"
echo "  the disk holds $unique files, yet every scan is read, hashed and decoded on its own"
echo "  (from the page cache after the first pass: cold-disk I/O is not measured)."
echo "NOTE: a shared 2-CPU virtual machine; other work (see the load above) slows the runs"
echo "  and inflates the per-stage times. Compare only runs on the same machine and load."
echo

# ---- runs --------------------------------------------------------------------------------
run() { # N JOBS OVERLAYS(1|0)
    local n=$1 jobs=$2 ov=$3 rc=0
    local extra=()
    [ "$ov" = 1 ] || extra=(--no-overlays)
    rm -rf "$tmp/out"
    echo "running: $n scans, $jobs job(s), overlays $([ "$ov" = 1 ] && echo on || echo off)" >&2
    nice /usr/bin/time -v -o "$tmp/time.txt" "$bin" scan -q -m "$model" --jobs "$jobs" \
        "${extra[@]}" "$data/n$n" -o "$tmp/out" 2>"$tmp/stderr.txt" || rc=$?
    if [ "$rc" -ne 0 ]; then
        echo "bench-scan: medscreen scan exited $rc; its stderr:" >&2
        head -n 20 "$tmp/stderr.txt" >&2
    fi
    "$py" "$helper" stats "$tmp/time.txt" "$tmp/out" "$n" "$jobs" "$ov" "$rc" >>"$jsonl"
}
run "$small" 1 1
run "$small" 2 1
run "$small" 1 0
run "$small" 2 0
run "$count" 1 1
run "$count" 2 1
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$py" "$helper" table "$jsonl"
echo
echo "figures: $out_txt; raw JSON lines: $jsonl"
}
report | tee "$out_txt"
