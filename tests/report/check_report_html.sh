#!/bin/bash
# Checks a medscreen report.html in headless Chromium (see check_report_html.py).
# Usage: check_report_html.sh REPORT_HTML [SCREENSHOT_PNG] [--count N]
# Exit: 0 pass, 1 fail, 2 usage, 77 chromium or python3 missing (ctest's skip code).
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
[ $# -ge 1 ] || { echo "usage: $0 REPORT_HTML [SCREENSHOT_PNG] [--count N]" >&2; exit 2; }
PY=/usr/bin/python3
[ -x "$PY" ] || PY=$(command -v python3) || { echo "check_report_html: no python3; skipping" >&2; exit 77; }
REPORT=$1
shift
ARGS=()
if [ $# -ge 1 ] && [ "${1#--}" = "$1" ]; then
    ARGS+=(--screenshot "$1")
    shift
fi
exec "$PY" "$HERE/check_report_html.py" "$REPORT" "${ARGS[@]}" "$@"
