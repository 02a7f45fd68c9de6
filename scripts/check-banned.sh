#!/usr/bin/env bash
# Fails if banned C functions appear in src/, include/ or tests/ (STYLE.md section 5.6):
# strcpy, strcat, sprintf, atoi, atof, strtok (and their _r/n variants where unsafe in the same
# way: strtok_r, vsprintf). Comments and string literals are stripped first, so prose may name
# them; snprintf/vsnprintf/strncpy-free code passes. VLAs are left to review and -Wvla in CI.
set -euo pipefail

cd "$(dirname "$0")/.."
dirs=()
for d in src include tests; do [ -d "$d" ] && dirs+=("$d"); done
files=$(find "${dirs[@]}" -type f \( -name '*.c' -o -name '*.h' -o -name '*.cpp' -o -name '*.hpp' \) \
    -not -path '*/corpus/*' -not -path '*/regress/*' | sort)
[ -n "$files" ] || { echo "check-banned: no sources"; exit 0; }

PY=""
for p in /usr/bin/python3 python3; do command -v "$p" >/dev/null 2>&1 && { PY=$p; break; }; done
[ -n "$PY" ] || { echo "check-banned: python3 is needed" >&2; exit 2; }

# shellcheck disable=SC2086
"$PY" - $files <<'PY'
import re, sys

BANNED = re.compile(r"(?<![A-Za-z0-9_])(strcpy|strcat|sprintf|vsprintf|atoi|atol|atoll|atof|"
                    r"strtok|strtok_r|gets)\s*\(")

def strip(src):
    """Blank out comments and string/char literals, keeping line numbers."""
    out, i, n = [], 0, len(src)
    while i < n:
        c = src[i]
        if src.startswith("//", i):
            j = src.find("\n", i)
            j = n if j < 0 else j
            i = j
        elif src.startswith("/*", i):
            j = src.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append("\n" * src.count("\n", i, j))
            i = j
        elif c in "\"'":
            j = i + 1
            while j < n and src[j] != c and src[j] != "\n":
                j += 2 if src[j] == "\\" else 1
            out.append(c + c)
            i = j + 1
        else:
            out.append(c)
            i += 1
    return "".join(out)

bad = 0
for path in sys.argv[1:]:
    with open(path, encoding="utf-8", errors="replace") as f:
        text = strip(f.read())
    for no, line in enumerate(text.split("\n"), 1):
        m = BANNED.search(line)
        if m:
            print("%s:%d: banned function %s()" % (path, no, m.group(1)))
            bad += 1
if bad:
    print("check-banned: %d use%s of banned functions (STYLE.md 5.6: use snprintf, "
          "ms_parse_u32/u64/double, ms_str_copy)" % (bad, "" if bad == 1 else "s"))
    sys.exit(1)
print("check-banned: %d files clean" % (len(sys.argv) - 1))
PY
