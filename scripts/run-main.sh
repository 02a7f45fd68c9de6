#!/usr/bin/env bash
# Builds medscreen and runs its main job. Today that is `medscreen info` over the sample images:
# data/ (synthetic or de-identified images only) and two DICOM samples shipped by Debian's
# python3-pydicom. It becomes `medscreen scan` once the CNN model lands.
# Usage: scripts/run-main.sh [INFO OPTIONS...]    e.g. scripts/run-main.sh --json
# Installs missing Debian packages first (needs root; otherwise says what to run).
set -euo pipefail

cd "$(dirname "$0")/.."
scripts/setup-deps.sh >&2

JOBS=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build >&2
cmake --build build -j"$JOBS" --target medscreen_cli >&2

inputs=()
if [ -d data ]; then
    while IFS= read -r -d '' f; do
        inputs+=("$f")
    done < <(find data -type f ! -name '.*' ! -name 'README*' ! -name '*.md' ! -name '*.txt' \
        ! -name '*.csv' ! -name '*.json' -print0 | sort -z)
fi
PYDICOM=/usr/lib/python3/dist-packages/pydicom/data/test_files
for f in "$PYDICOM/CT_small.dcm" "$PYDICOM/MR_small.dcm"; do
    [ -r "$f" ] && inputs+=("$f")
done
if [ ${#inputs[@]} -eq 0 ]; then
    echo "run-main: no inputs (data/ is empty and python3-pydicom's samples are missing)" >&2
    exit 3
fi
exec build/medscreen info "$@" -- "${inputs[@]}"
