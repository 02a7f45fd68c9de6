#!/usr/bin/env bash
# Builds medscreen and runs its main job: `medscreen scan` with the shipped default model
# (models/cxr-screener.msm) over the sample scans in data/ (synthetic phantoms made by
# scripts/make-sample-data.py; no patient data) and two DICOM samples shipped by Debian's
# python3-pydicom (a CT and an MR, which the chest model refuses: status "skipped").
# Results go to out/ (override with MEDSCREEN_OUT=DIR); open out/report.html in a browser.
# Usage: scripts/run-main.sh [SCAN OPTIONS...]    e.g. scripts/run-main.sh --jsonl
# Installs missing Debian packages first (needs root; otherwise says what to run).
set -euo pipefail

cd "$(dirname "$0")/.."
scripts/setup-deps.sh >&2

JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build >&2
cmake --build build -j"$JOBS" --target medscreen_cli >&2

inputs=()
[ -d data ] && inputs+=(data)
PYDICOM=/usr/lib/python3/dist-packages/pydicom/data/test_files
for f in "$PYDICOM/CT_small.dcm" "$PYDICOM/MR_small.dcm"; do
    [ -r "$f" ] && inputs+=("$f")
done
if [ ${#inputs[@]} -eq 0 ]; then
    echo "run-main: no inputs (data/ is empty and python3-pydicom's samples are missing)" >&2
    exit 3
fi
OUT=${MEDSCREEN_OUT:-out}
rc=0
build/medscreen scan -m models/cxr-screener.msm -o "$OUT" "$@" -- "${inputs[@]}" || rc=$?
echo "run-main: results in $OUT/ (summary.csv, summary.json, report.html); exit $rc" >&2
exit $rc
