#!/usr/bin/env bash
# End-to-end tests of the medscreen binary. One ctest test per case:
#   cli_test.sh CASE MEDSCREEN GEN_FIXTURES WORKDIR SOURCE_DIR
# Exit 0 pass, 1 fail, 77 skipped (a decoder that has not landed yet, or no python3).
set -uo pipefail

CASE=$1 MS=$2 GEN=$3 WORK=$4 SRC=$5
PYDICOM_FILES=${MS_PYDICOM_FILES:-/usr/lib/python3/dist-packages/pydicom/data/test_files}
PY=""
for p in /usr/bin/python3 python3; do
    if command -v "$p" >/dev/null 2>&1; then PY=$p; break; fi
done

D="$WORK/$CASE"
rm -rf "$D"
mkdir -p "$D"
cd "$D" || exit 1
FX="$D/fx"

fail() {
    echo "FAIL [$CASE]: $*" >&2
    for f in out err; do
        if [ -s "$D/$f" ]; then
            echo "---- $f" >&2
            head -c 4000 "$D/$f" >&2
        fi
    done
    exit 1
}
skip() {
    echo "SKIP [$CASE]: $*"
    exit 77
}

# run ARGS...: runs medscreen with stdout in $D/out, stderr in $D/err, status in $RC.
RC=0
run() {
    "$MS" "$@" >"$D/out" 2>"$D/err"
    RC=$?
    if [ "$RC" -ge 128 ]; then fail "medscreen $* died with signal $((RC - 128))"; fi
}
expect_rc() { [ "$RC" -eq "$1" ] || fail "expected exit $1, got $RC"; }
out_has() { grep -qF -- "$1" "$D/out" || fail "stdout lacks '$1'"; }
err_has() { grep -qF -- "$1" "$D/err" || fail "stderr lacks '$1'"; }
out_empty() { [ ! -s "$D/out" ] || fail "stdout should be empty"; }
err_empty() { [ ! -s "$D/err" ] || fail "stderr should be empty"; }
# Every stderr line is a diagnostic with the documented prefix (usage hints excepted).
err_prefixed() {
    if grep -v -e '^medscreen: ' -e "^Try 'medscreen --help'" "$D/err" | grep -q .; then
        fail "stderr has lines without the 'medscreen: ' prefix"
    fi
}

need_python() { [ -n "$PY" ] || skip "python3 is needed to validate JSON"; }

# Skips the case while a decoder is still the placeholder ("... decoding is not built yet").
need_decoder() {
    local file=$1
    "$MS" info "$file" >/dev/null 2>"$D/probe"
    if grep -q "not built yet" "$D/probe"; then skip "$(head -n1 "$D/probe")"; fi
}

# pycheck CODE: runs CODE with `recs` = the parsed JSON lines of $D/out and `ok`/`errs` =
# the records with status ok / error; common schema checks first.
pycheck() {
    need_python
    "$PY" - "$D/out" "$1" <<'PY' || fail "JSON check failed (see above)"
import json, sys
path, code = sys.argv[1], sys.argv[2]
with open(path, "rb") as f:
    raw = f.read()
raw.decode("utf-8")  # every byte written must be valid UTF-8
lines = raw.split(b"\n")
assert lines[-1] == b"", "output does not end with a newline"
recs = [json.loads(l) for l in lines[:-1]]

def sorted_keys(o, where):
    if isinstance(o, dict):
        k = list(o.keys())
        assert k == sorted(k), "keys not sorted in %s: %s" % (where, k)
        for kk, v in o.items():
            sorted_keys(v, where + "." + kk)

OK_KEYS = {"schema_version", "path", "status", "format", "frame", "frame_count", "width",
           "height", "channels", "transfer_syntax", "photometric", "color_conversion",
           "bits_allocated", "bits_stored", "high_bit", "signed", "samples_per_pixel",
           "planar_configuration", "interlaced", "modality_lut", "voi", "inversion",
           "pixel_spacing", "modality", "body_part", "view_position", "study_uid",
           "series_uid", "sop_uid", "sop_class_uid", "stats"}
CODES = {"invalid_argument", "out_of_memory", "io", "format", "limit", "overflow",
         "unsupported", "internal", "not_image", "no_pixel_data"}
for i, r in enumerate(recs):
    sorted_keys(r, "record %d" % i)
    assert r["schema_version"] == 1, r
    assert isinstance(r["path"], str), r
    assert r["status"] in ("ok", "error"), r
    if r["status"] == "ok":
        assert set(r) == OK_KEYS, "keys differ: %s" % (set(r) ^ OK_KEYS)
        assert set(r["modality_lut"]) == {"kind", "slope", "intercept"}, r
        assert set(r["voi"]) == {"kind", "function", "center", "width", "index"}, r
        assert set(r["pixel_spacing"]) == {"source", "row_mm", "col_mm"}, r
        assert set(r["stats"]) == {"min", "mean", "max"}, r
        s = r["stats"]
        assert 0 <= s["min"] <= s["mean"] <= s["max"] <= 1, s
        assert r["width"] > 0 and r["height"] > 0 and r["channels"] in (1, 3), r
        assert 0 <= r["frame"] < r["frame_count"], r
    else:
        assert set(r["error"]) == {"code", "message"}, r
        assert r["error"]["code"] in CODES, r
        assert r["error"]["message"], r
ok = [r for r in recs if r["status"] == "ok"]
errs = [r for r in recs if r["status"] == "error"]
exec(code)
PY
}

# scan_check DIR CODE: loads DIR's per-scan reports (`reports`, by file name), summary.json
# (`summary`) and $D/out's JSON lines (`jsonl`), checks them against the schemas when
# python3-jsonschema is there, checks the overlays decode, then runs CODE.
scan_check() {
    need_python
    G="${G:-}" "$PY" - "$1" "$D/out" "$SRC" "$2" <<'PY' || fail "scan output check failed (see above)"
import json, os, sys
d, outp, src, code = sys.argv[1:5]
reports = {}
for n in sorted(os.listdir(os.path.join(d, "scans"))):
    raw = open(os.path.join(d, "scans", n), "rb").read()
    reports[n] = json.loads(raw)
    assert reports[n]["schema"] == "medscreen.scan/1", n
summary = json.load(open(os.path.join(d, "summary.json")))
assert summary["schema"] == "medscreen.summary/1"
jsonl = [json.loads(l) for l in open(outp, "rb").read().split(b"\n") if l.strip()]
try:
    import jsonschema
except ImportError:
    jsonschema = None
if jsonschema:
    rs = json.load(open(os.path.join(src, "src/report/scan-report.schema.json")))
    ss = json.load(open(os.path.join(src, "src/report/summary.schema.json")))
    for n, r in reports.items():
        jsonschema.validate(r, rs)
    jsonschema.validate(summary, ss)
for n, r in reports.items():
    if r["status"] == "ok" and os.path.isdir(os.path.join(d, "overlays")):
        png = open(os.path.join(d, "overlays", n[:-5] + ".png"), "rb").read()
        assert png[:8] == b"\x89PNG\r\n\x1a\n", n
        jpg = open(os.path.join(d, "thumbs", n[:-5] + ".jpg"), "rb").read()
        assert jpg[:2] == b"\xff\xd8", n
        try:
            from PIL import Image
            import io
            for blob in (png, jpg):
                im = Image.open(io.BytesIO(blob))
                im.load()  # decodes every byte
                w, h = im.size
                W, H = r["decode"]["width"], r["decode"]["height"]
                assert abs(w / h - W / H) < 0.02 and max(w, h) <= max(W, H), (n, im.size, W, H)
        except ImportError:
            pass
exec(code)
PY
}

mkdir -p "$FX"
"$GEN" "$FX" || fail "cannot generate fixtures"
VERSION=$(sed -n 's/^#define MS_VERSION_STRING "\(.*\)"/\1/p' "$SRC/include/medscreen/medscreen.h")

case "$CASE" in
help)
    for args in "--help" "-h" "help"; do
        run $args
        expect_rc 0
        out_has "Usage: medscreen"
        out_has "Exit status"
        out_has "--fail-on-finding"
        err_empty
    done
    run info --help
    expect_rc 0
    out_has "Usage: medscreen info"
    out_has "--json"
    out_has "--max-file-bytes"
    err_empty
    run help info
    expect_rc 0
    out_has "Usage: medscreen info"
    ;;
version)
    [ -n "$VERSION" ] || fail "cannot read MS_VERSION_STRING"
    run --version
    expect_rc 0
    [ "$(cat "$D/out")" = "medscreen $VERSION" ] || fail "version output '$(cat "$D/out")'"
    err_empty
    ;;
usage)
    # Each of these is a usage error: exit 2, nothing on stdout, a prefixed message on stderr.
    bad=(
        "--bogus" "frobnicate" "" "info" "info --bogus $FX/gray8.png" "-x info"
        "info --frame" "info --frame abc $FX/gray8.png" "info --frame -1 $FX/gray8.png"
        "info --frame 4294967296 $FX/gray8.png" "info --frame 1 --all-frames $FX/gray8.png"
        "info --window 40 $FX/gray8.png" "info --window 40,0 $FX/gray8.png"
        "info --window 40,-5 $FX/gray8.png" "info --window nan,10 $FX/gray8.png"
        "info --window 1,2,3 $FX/gray8.png" "info --window ,10 $FX/gray8.png"
        "info --max-pixels 0 $FX/gray8.png" "info --max-pixels -5 $FX/gray8.png"
        "info --max-pixels 12abc $FX/gray8.png" "info --max-file-bytes 1e3 $FX/gray8.png"
        "info --max-file-bytes 99999999999999999999999 $FX/gray8.png"
        "info --voi-index -1 $FX/gray8.png" "info --json=yes $FX/gray8.png" "help nosuchcommand"
    )
    for args in "${bad[@]}"; do
        # shellcheck disable=SC2086
        run $args
        [ "$RC" -eq 2 ] || fail "'medscreen $args': expected exit 2, got $RC"
        out_empty
        grep -q '^medscreen: ' "$D/err" || [ -z "$args" ] || fail "'$args': no 'medscreen:' message"
        err_prefixed
    done
    run info --frame=abc "$FX/gray8.png"
    expect_rc 2
    err_has "abc"
    # Valid forms are accepted (the input itself may fail: exit 3, never 2).
    for args in "-v info $FX/notimage.txt" "info -v --verbose $FX/notimage.txt" \
        "info --window=-600,1500.5 --voi-index=2 --max-pixels=10 $FX/notimage.txt" \
        "info --max-file-bytes 1000000 --rgb --frame 0 $FX/notimage.txt" \
        "info $FX/notimage.txt --all-frames"; do
        # shellcheck disable=SC2086
        run $args
        [ "$RC" -eq 3 ] || fail "'medscreen $args': expected exit 3, got $RC"
    done
    ;;
png_jpeg)
    need_decoder "$FX/gray8.png"
    need_decoder "$FX/gray.jpg"
    run info "$FX/gray8.png" "$FX/rgb.jpg"
    expect_rc 0
    err_empty
    out_has "$FX/gray8.png"
    out_has "$FX/rgb.jpg"
    out_has "png"
    out_has "jpeg"
    out_has "16x16 x 1 channel"
    out_has "pixels min/mean/max"
    all=("$FX"/*.png "$FX"/*.jpg)
    good=()
    for f in "${all[@]}"; do case "$f" in */truncated.*) ;; *) good+=("$f") ;; esac; done
    run info --json "${good[@]}"
    expect_rc 0
    err_empty
    pycheck '
assert len(recs) == '${#good[@]}' and not errs, recs
for r in recs:
    assert (r["width"], r["height"], r["channels"]) == (16, 16, 1), r
    assert r["frame"] == 0 and r["frame_count"] == 1, r
    assert r["format"] == ("png" if r["path"].endswith(".png") else "jpeg"), r
'
    run info --json --rgb "$FX/rgb8.png" "$FX/gray.jpg"
    expect_rc 0
    pycheck '
assert [r["channels"] for r in recs] == [3, 3], recs
'
    ;;
batch_errors)
    need_decoder "$FX/gray8.png"
    need_decoder "$FX/gray.jpg"
    run info "$FX/gray8.png" "$FX/notimage.txt" "$FX/empty.bin" "$FX/truncated.png" \
        "$FX/missing.png" "$FX/rgb.jpg"
    expect_rc 3
    out_has "$FX/gray8.png"
    out_has "$FX/rgb.jpg"
    grep -qF "$FX/notimage.txt" "$D/out" && fail "a failed input appears in the table"
    err_prefixed
    for bad in notimage.txt empty.bin truncated.png missing.png; do
        n=$(grep -cF "$FX/$bad" "$D/err")
        [ "$n" -eq 1 ] || fail "expected one stderr line naming $bad, got $n"
        line=$(grep -F "$FX/$bad" "$D/err")
        case "$line" in "medscreen: $FX/$bad: "*) ;; *) fail "bad diagnostic '$line'" ;; esac
        # The path is named once, not twice.
        rest=${line#"medscreen: $FX/$bad: "}
        case "$rest" in *"$FX/$bad"*) fail "path repeated in '$line'" ;; esac
    done
    [ "$(wc -l <"$D/err")" -eq 4 ] || fail "expected 4 diagnostics"
    ;;
json)
    need_decoder "$FX/gray8.png"
    need_decoder "$FX/gray.jpg"
    run info --json "$FX/gray8.png" "$FX/notimage.txt" "$FX/empty.bin" "$FX/truncated.png" \
        "$FX/missing.png" "$FX/gray.jpg" "$FX/truncated.jpg"
    [ "$RC" -eq 3 ] || fail "expected exit 3, got $RC"
    err_prefixed
    pycheck '
fx = "'"$FX"'"
names = [r["path"][len(fx) + 1:] for r in recs]
assert names == ["gray8.png", "notimage.txt", "empty.bin", "truncated.png", "missing.png",
                 "gray.jpg", "truncated.jpg"], names
st = {n: r for n, r in zip(names, recs)}
assert st["gray8.png"]["status"] == "ok" and st["gray.jpg"]["status"] == "ok"
assert st["notimage.txt"]["error"]["code"] == "not_image", st["notimage.txt"]
assert st["empty.bin"]["error"]["code"] == "not_image", st["empty.bin"]
assert st["missing.png"]["error"]["code"] == "io", st["missing.png"]
for n in ("truncated.png", "truncated.jpg"):
    assert st[n]["status"] == "error", st[n]
    assert st[n]["format"] in ("png", "jpeg"), st[n]
    assert st[n]["error"]["code"] in ("format", "io"), st[n]
g = st["gray8.png"]
assert g["format"] == "png" and g["photometric"] == "MONOCHROME2", g
assert g["bits_allocated"] == 8 and g["samples_per_pixel"] == 1, g
assert g["stats"]["max"] == 1, g["stats"]
'
    # Same decode twice gives byte-identical output (deterministic).
    cp "$D/out" "$D/out1"
    run info --json "$FX/gray8.png" "$FX/notimage.txt" "$FX/empty.bin" "$FX/truncated.png" \
        "$FX/missing.png" "$FX/gray.jpg" "$FX/truncated.jpg"
    cmp -s "$D/out" "$D/out1" || fail "JSON output differs between two runs"
    ;;
odd_names)
    need_decoder "$FX/gray8.png"
    mkdir -p "$D/odd"
    names=("with space.png" $'new\nline.png' $'\xff\xfe bytes.png' "-dash.png" "--json"
        $'tab\there.png' 'quote"back\slash.png' $'esc\e[31mred.png')
    files=()
    for n in "${names[@]}"; do
        cp "$FX/gray8.png" "$D/odd/$n" || fail "cannot create '$n'"
        files+=("odd/$n")
    done
    cp "$FX/gray8.png" "$D/-lead.png"
    cp "$FX/gray8.png" "$D/--json"
    run info --json -- "${files[@]}" "-lead.png" "--json"
    expect_rc 0
    err_empty
    pycheck '
paths = [r["path"] for r in recs]
want = ["odd/with space.png", "odd/new\nline.png", "odd/\ufffd\ufffd bytes.png", "odd/-dash.png",
        "odd/--json", "odd/tab\there.png", "odd/quote\"back\\slash.png", "odd/esc\x1b[31mred.png",
        "-lead.png", "--json"]
assert paths == want, paths
assert all(r["status"] == "ok" for r in recs)
'
    # Table output: one block per file, and the control characters are escaped.
    run info -- "${files[@]}" "-lead.png"
    expect_rc 0
    out_has 'odd/new\nline.png'
    out_has 'odd/\xff\xfe bytes.png'
    out_has 'odd/esc\x1b[31mred.png'
    grep -q $'\e' "$D/out" && fail "raw ESC reached stdout"
    # A missing odd name: one escaped diagnostic line.
    run info -- $'odd/no\nsuch\e.png'
    expect_rc 3
    [ "$(wc -l <"$D/err")" -eq 1 ] || fail "diagnostic spans several lines"
    err_has 'medscreen: odd/no\nsuch\x1b.png: '
    # Without --, a leading dash is an option.
    run info "-lead.png"
    expect_rc 2
    ;;
directory)
    mkdir -p "$D/adir"
    run info "$D/adir"
    expect_rc 3
    err_has "medscreen: $D/adir: "
    run info --json "$D/adir" "$FX/notimage.txt" "$D/adir"
    expect_rc 3
    pycheck '
assert len(recs) == 3 and not ok, recs
assert recs[0]["error"]["code"] == "io", recs[0]
'
    ;;
limits)
    run info --json --max-file-bytes 10 "$FX/gray8.png"
    expect_rc 3
    err_has "medscreen: $FX/gray8.png: "
    pycheck '
assert recs[0]["error"]["code"] == "limit", recs
'
    need_decoder "$FX/gray8.png"
    run info --json --max-pixels 255 "$FX/gray8.png"
    expect_rc 3
    pycheck '
assert recs[0]["error"]["code"] == "limit", recs
'
    run info --json --max-pixels 256 --max-file-bytes 100000 "$FX/gray8.png"
    expect_rc 0
    ;;
frames)
    run info --json --frame 1 "$FX/notimage.txt"
    expect_rc 3
    need_decoder "$FX/gray8.png"
    need_decoder "$FX/gray.jpg"
    run info --json --frame 1 "$FX/gray8.png"
    expect_rc 3
    pycheck '
assert recs[0]["error"]["code"] == "invalid_argument", recs
assert recs[0]["format"] == "png", recs
'
    run info --json --all-frames "$FX/gray8.png" "$FX/gray.jpg"
    expect_rc 0
    pycheck '
assert [r["frame"] for r in recs] == [0, 0], recs
'
    ;;
dicom)
    CT="$PYDICOM_FILES/CT_small.dcm" MR="$PYDICOM_FILES/MR_small.dcm"
    [ -r "$CT" ] && [ -r "$MR" ] || skip "pydicom test files not installed ($PYDICOM_FILES)"
    need_decoder "$CT"
    run info "$CT" "$MR"
    expect_rc 0
    out_has "dicom"
    out_has "1.2.840.10008.1.2.1"
    out_has "128x128 x 1 channel"
    run info --json "$CT" "$MR"
    expect_rc 0
    pycheck '
ct, mr = recs
assert ct["format"] == "dicom" and ct["transfer_syntax"] == "1.2.840.10008.1.2.1", ct
assert (ct["width"], ct["height"], ct["channels"]) == (128, 128, 1), ct
assert ct["modality"] == "CT" and ct["photometric"] == "MONOCHROME2", ct
assert (ct["bits_allocated"], ct["bits_stored"], ct["high_bit"]) == (16, 16, 15), ct
assert ct["signed"] is True, ct
assert ct["modality_lut"] == {"kind": "rescale", "slope": 1, "intercept": -1024}, ct
assert ct["pixel_spacing"]["source"] == "pixel_spacing", ct
assert abs(ct["pixel_spacing"]["row_mm"] - 0.661468) < 1e-5, ct
assert ct["sop_uid"] and ct["study_uid"] and ct["series_uid"], ct
assert (mr["width"], mr["height"], mr["modality"]) == (64, 64, "MR"), mr
assert mr["voi"]["kind"] == "window", mr
assert (mr["voi"]["center"], mr["voi"]["width"]) == (600, 1600), mr
'
    run info --json --window=40,400 --rgb "$CT"
    expect_rc 0
    pycheck '
r = recs[0]
assert r["voi"]["kind"] == "user_window" and r["voi"]["center"] == 40, r
assert r["voi"]["width"] == 400 and r["channels"] == 3, r
'
    RT="$PYDICOM_FILES/rtplan.dcm" RLE2="$PYDICOM_FILES/SC_rgb_rle_2frame.dcm"
    if [ -r "$RT" ] && [ -r "$RLE2" ]; then
        run info --json --all-frames "$RLE2" "$RT"
        expect_rc 3
        pycheck '
assert [(r["status"], r.get("frame")) for r in recs] == [("ok", 0), ("ok", 1), ("error", None)], recs
assert recs[0]["frame_count"] == 2 and recs[0]["width"] == 100, recs[0]
assert recs[2]["error"]["code"] == "no_pixel_data", recs[2]
'
        run info --json --frame 1 "$RLE2"
        expect_rc 0
        pycheck 'assert recs[0]["frame"] == 1, recs'
    fi
    ;;
verbose)
    # A DICOM with an invalid window: the library warns through the log callback, which the
    # CLI prints on stderr only with -v.
    need_python
    "$PY" - "$D/badwin.dcm" <<'PY' || skip "python3-pydicom is needed to write the fixture"
import sys
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian
m = FileMetaDataset()
m.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
m.MediaStorageSOPInstanceUID = "1.2.826.0.1.3680043.10.1234.9.1"
m.TransferSyntaxUID = ExplicitVRLittleEndian
ds = Dataset()
ds.file_meta, ds.preamble = m, b"\0" * 128
ds.is_little_endian, ds.is_implicit_VR = True, False
ds.SOPClassUID, ds.SOPInstanceUID = m.MediaStorageSOPClassUID, m.MediaStorageSOPInstanceUID
ds.Modality, ds.Rows, ds.Columns, ds.SamplesPerPixel = "OT", 2, 2, 1
ds.PhotometricInterpretation = "MONOCHROME2"
ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
ds.WindowCenter, ds.WindowWidth = "10", "0"
ds.PixelData = bytes([0, 50, 100, 200])
ds.save_as(sys.argv[1])
PY
    need_decoder "$D/badwin.dcm"
    run info "$D/badwin.dcm"
    expect_rc 0
    err_empty
    run -v info "$D/badwin.dcm"
    expect_rc 0
    err_has "medscreen: warning: $D/badwin.dcm: "
    err_prefixed
    run info --verbose "$D/badwin.dcm"
    expect_rc 0
    err_has "medscreen: warning: "
    ;;
fatal_output)
    [ -w /dev/full ] || skip "no /dev/full"
    "$MS" info --json "$FX/notimage.txt" >/dev/full 2>"$D/err"
    RC=$?
    expect_rc 4
    err_has "medscreen: "
    "$MS" --version >/dev/full 2>"$D/err"
    RC=$?
    expect_rc 4
    ;;
model_info)
    need_python
    # A model written from models/FORMAT.md by an independent Python writer.
    "$PY" - "$D/m.msm" <<'PY' || fail "could not write the test model"
import struct, sys, zlib
tensors = [("c1.weight", 1, [2, 1, 3, 3], struct.pack("<18f", *[i * 0.5 - 4 for i in range(18)])),
           ("meta", 2, [25], b"name=tiny\nlicence=MIT\nx=1\n"[:25])]
table, payload = b"", b""
for name, dtype, dims, data in tensors:
    payload += b"\0" * (-len(payload) % 64)
    table += struct.pack("<H", len(name)) + name.encode() + bytes([dtype, len(dims)])
    table += struct.pack("<%dI" % len(dims), *dims) + struct.pack("<QQ", len(payload), len(data))
    payload += data
head = b"MSMODEL\0" + struct.pack("<IIQQ", 1, len(tensors), len(table), len(payload))
body = head + table
body += b"\0" * (-len(body) % 64) + payload
open(sys.argv[1], "wb").write(body + struct.pack("<I", zlib.crc32(body)))
PY
    run model info --json "$D/m.msm"
    expect_rc 0
    err_empty
    want=$(sha256sum "$D/m.msm" | cut -d' ' -f1)
    "$PY" - "$D/out" "$want" <<'PY' || fail "model JSON check failed (see above)"
import json, sys
raw = open(sys.argv[1], "rb").read()
lines = raw.decode("utf-8").split("\n")
assert lines[-1] == "" and len(lines) == 2, lines
o = json.loads(lines[0])
assert list(o) == sorted(o), list(o)
assert o["sha256"] == sys.argv[2], o["sha256"]
assert o["format_version"] == 1 and o["parameters"] == 18 and o["schema_version"] == 1
assert o["status"] == "ok" and o["bytes"] > 0
assert [t["name"] for t in o["tensors"]] == ["c1.weight", "meta"]
assert o["tensors"][0]["shape"] == [2, 1, 3, 3] and o["tensors"][0]["dtype"] == "float32"
assert o["meta"][:2] == [["name", "tiny"], ["licence", "MIT"]], o["meta"]
PY
    run model info "$D/m.msm"
    expect_rc 0
    out_has "sha256             $want"
    out_has "tensor             c1.weight  float32  [2x1x3x3]"
    out_has "graph              none"
    out_has "metadata           legacy (no meta_format line; not checked)"
    out_has "scan               not ready: the model has no graph"
    # A graph and meta format 1 metadata (models/FORMAT.md), written independently: x [3,16,12],
    # a 1x1 convolution to 2 channels (the map), a global average pool (the score).
    "$PY" - "$D/g.msm" "$D/badmeta.msm" <<'PY' || fail "could not write the test models"
import struct, sys, zlib
graph = (b"graph 1\ninput x 3 16 12\nnode conv2d c in=x out=map weight=w\n"
         b"node globalavgpool g in=map out=score\noutput score\noutput map\n")
meta = ("meta_format=1\nname=tiny screen\nversion=1.0.0\ntask=screen\ninput_size=16x12\n"
        "input_channels=3\nresize=letterbox\nnorm_mean=0.485,0.456,0.406\n"
        "norm_std=0.229,0.224,0.225\nwindow=-600,1500\noutput_score=score\nscore_channel=1\n"
        "score_kind=logit\ntemperature=1.5\noutput_map=map\nmap_kind=probability\n"
        "operating_points=sens90:0.31,spec90:0.62\ndefault_operating_point=sens90\n"
        "modalities=CR,DX\nbody_parts=CHEST\ntrained=2024-02-29\nlicence=MIT\nx-note=a=b\n")
def write(path, meta):
    tensors = [("graph", 2, [len(graph)], graph), ("meta", 2, [len(meta)], meta.encode()),
               ("w", 1, [2, 3, 1, 1], struct.pack("<6f", 1, 2, 3, 4, 5, 6))]
    table, payload = b"", b""
    for name, dtype, dims, data in tensors:
        payload += b"\0" * (-len(payload) % 64)
        table += struct.pack("<H", len(name)) + name.encode() + bytes([dtype, len(dims)])
        table += struct.pack("<%dI" % len(dims), *dims) + struct.pack("<QQ", len(payload), len(data))
        payload += data
    body = b"MSMODEL\0" + struct.pack("<IIQQ", 1, len(tensors), len(table), len(payload)) + table
    body += b"\0" * (-len(body) % 64) + payload
    open(path, "wb").write(body + struct.pack("<I", zlib.crc32(body)))
write(sys.argv[1], meta)
write(sys.argv[2], meta.replace("input_size=16x12", "input_size=16x13"))
PY
    run model info --json "$D/g.msm"
    expect_rc 0
    err_empty
    "$PY" - "$D/out" <<'PY' || fail "model JSON (graph, metadata) check failed (see above)"
import json, sys
o = json.loads(open(sys.argv[1], encoding="utf-8").read())
def sorted_keys(v):
    if isinstance(v, dict):
        assert list(v) == sorted(v), list(v)
        for x in v.values(): sorted_keys(x)
    elif isinstance(v, list):
        for x in v: sorted_keys(x)
sorted_keys(o)
g = o["graph"]
assert g["inputs"] == [{"name": "x", "channels": 3, "height": 16, "width": 12}], g
assert g["outputs"] == [{"name": "score", "channels": 2, "height": 1, "width": 1},
                        {"name": "map", "channels": 2, "height": 16, "width": 12}], g
assert g["nodes"] == 2, g
assert abs(g["gflop"] - 2 * 3 * 2 * 16 * 12 / 1e9) < 1e-12, g  # the 1x1 conv's multiply-adds x 2
m = o["metadata"]
assert m["meta_format"] == 1 and m["name"] == "tiny screen" and m["version"] == "1.0.0", m
assert m["input"] == "x" and m["input_size"] == [16, 12] and m["input_channels"] == 3, m
assert m["colour"] == "grey" and m["resize"] == "letterbox" and m["resize_filter"] == "area", m
assert m["pad_value"] == 0, m
assert m["norm_mean"] == [0.485, 0.456, 0.406] and m["norm_std"] == [0.229, 0.224, 0.225], m
assert m["window"] == {"kind": "fixed", "center": -600, "width": 1500}, m
assert m["output_score"] == "score" and m["score_channel"] == 1 and m["score_kind"] == "logit"
assert m["temperature"] == 1.5, m
assert m["output_map"] == "map" and m["map_channel"] == 0 and m["map_kind"] == "probability"
assert m["map_threshold"] == 0.5, m
assert m["operating_points"] == {"sens90": 0.31, "spec90": 0.62}, m
assert m["default_operating_point"] == "sens90", m
assert m["modalities"] == ["CR", "DX"] and m["body_parts"] == ["CHEST"] and m["views"] is None
assert m["trained"] == "2024-02-29" and m["licence"] == "MIT" and m["card"] is None, m
assert m["onnx_opset"] is None and m["extra"] == {"x-note": "a=b"}, m
assert o["scan"] == {"ready": True, "reason": None}, o["scan"]
assert ["operating_points", "sens90:0.31,spec90:0.62"] in o["meta"], o["meta"]
PY
    run model info "$D/g.msm"
    expect_rc 0
    out_has "graph              1 input, 2 outputs, 2 nodes, 2.304e-06 GFLOP per image"
    out_has "input              x  [3x16x12]"
    out_has "output             map  [2x16x12]"
    out_has "metadata           meta format 1, checked"
    out_has "model              tiny screen 1.0.0, task screen"
    out_has "preprocess         input x 16x12, 3 channels from grey, letterbox (area, pad 0), mean 0.485,0.456,0.406 std 0.229,0.224,0.225, window -600,1500"
    out_has "score              output score channel 1, logit, temperature 1.5"
    out_has "region map         output map channel 0, probability, threshold 0.5"
    out_has "operating points   sens90=0.31 (default), spec90=0.62"
    out_has "applies to         modalities CR,DX; body parts CHEST; views any"
    out_has "scan               ready"
    # the golden screener: legacy metadata, a graph
    run model info --json "$SRC/tests/golden/net/screener/model.msm"
    expect_rc 0
    "$PY" - "$D/out" <<'PY' || fail "screener JSON check failed (see above)"
import json, sys
o = json.loads(open(sys.argv[1], encoding="utf-8").read())
assert o["graph"]["inputs"] == [{"name": "x", "channels": 3, "height": 32, "width": 32}], o
assert o["graph"]["nodes"] == 7 and o["graph"]["gflop"] > 0, o["graph"]
assert o["metadata"] is None and o["scan"]["ready"] is False, o
assert "meta_format=1" in o["scan"]["reason"], o["scan"]
assert dict(o["meta"])["name"] == "screener", o["meta"]
PY
    # invalid meta format 1 metadata makes the model invalid: exit 4, naming the key and value
    run model info "$D/badmeta.msm"
    expect_rc 4
    out_empty
    err_has "medscreen: $D/badmeta.msm: meta line 5: input_size=16x13: the graph input 'x' is 16x12 (HxW)"
    # one flipped byte: the CRC catches it; a model that cannot be read is fatal (4)
    cp "$D/m.msm" "$D/bad.msm"
    printf '\x55' | dd of="$D/bad.msm" bs=1 seek=200 conv=notrunc 2>/dev/null
    run model info "$D/bad.msm"
    expect_rc 4
    err_has "medscreen: $D/bad.msm: CRC-32 mismatch"
    run model info "$D/missing.msm"
    expect_rc 4
    err_prefixed
    run model info
    expect_rc 2
    run model list "$D/m.msm"
    expect_rc 2
    run model info --bogus "$D/m.msm"
    expect_rc 2
    ;;
convert)
    need_python
    # a committed PyTorch export (scripts/export-onnx-models.py)
    G="$SRC/tests/golden/onnx"
    printf '# model card\nname=fcn test\n\nlicence=MIT\n' >"$D/meta.txt"
    run convert "$G/fcn/model.onnx" -o "$D/fcn.msm" --meta-file "$D/meta.txt" --meta task=screen
    expect_rc 0
    out_empty
    err_empty
    run model info --json "$D/fcn.msm"
    expect_rc 0
    "$PY" - "$D/out" <<'PY' || fail "converted model JSON check failed (see above)"
import json, sys
o = json.loads(open(sys.argv[1], encoding="utf-8").read())
meta = dict(o["meta"])
assert meta["source"] == "onnx" and meta["onnx_opset"] == "13", meta
assert meta["producer"].startswith("pytorch"), meta
assert meta["name"] == "fcn test" and meta["licence"] == "MIT" and meta["task"] == "screen", meta
assert meta["meta_format"] == "1", meta  # convert writes meta format 1
m = o["metadata"]
assert m["onnx_opset"] == 13 and m["source"] == "onnx" and m["name"] == "fcn test", m
assert o["scan"]["ready"] is False and "lacks version" in o["scan"]["reason"], o["scan"]
names = [t["name"] for t in o["tensors"]]
assert "graph" in names and "meta" in names, names
assert "conv1/Conv.weight" in names and "conv1/Conv.bias" in names, names
PY
    "$PY" - "$D/fcn.msm" <<'PY' || fail "graph text check failed"
import struct, sys
b = open(sys.argv[1], "rb").read()
n, tsize = struct.unpack_from("<IQ", b, 12)
p, off = 32, []
while p < 32 + tsize:
    (nl,) = struct.unpack_from("<H", b, p); name = b[p + 2:p + 2 + nl].decode(); p += 2 + nl
    dt, nd = b[p], b[p + 1]; p += 2 + 4 * nd
    o, sz = struct.unpack_from("<QQ", b, p); p += 16
    off.append((name, o, sz))
base = (32 + tsize + 63) // 64 * 64
g = [b[base + o:base + o + sz] for name, o, sz in off if name == "graph"][0].decode()
ops = [l.split()[1] for l in g.splitlines() if l.startswith("node ")]
assert ops == ["conv2d", "conv2d", "maxpool", "conv2d", "conv2d", "softmax"], ops
assert "act=silu" in g and "act=relu" in g and "act=leaky_relu" in g, g
PY
    # errors: not ONNX, an unsupported operator, usage
    printf 'not an onnx file\n' >"$D/bad.onnx"
    run convert "$D/bad.onnx" -o "$D/bad.msm"
    expect_rc 4
    err_has "medscreen: $D/bad.onnx: not an ONNX model"
    [ ! -e "$D/bad.msm" ] || fail "a failed conversion left an output file"
    run convert "$G/fcn/unsupported.onnx" -o "$D/u.msm"
    expect_rc 4
    err_has "unsupported operator 'Abs'"
    err_has "node '/Abs'"
    err_prefixed
    run convert "$G/fcn/model.onnx"
    expect_rc 2
    run convert "$G/fcn/model.onnx" -o "$D/x.msm" --meta novalue
    expect_rc 2
    run convert "$G/fcn/model.onnx" -o "$D/x.msm" --meta source=me
    expect_rc 4
    err_has "set by the importer"
    # metadata is checked against the imported graph before anything is written: exit 4, the
    # key and the value named, no file
    for bad in "input_size=48x41|input_size=48x41: the graph input 'input' is 48x40 (HxW)" \
               "output_map=nope|output_map=nope: the graph has no output named 'nope'" \
               "norm_men=0|unknown key 'norm_men'" \
               "version=1|version=1: expected MAJOR.MINOR" \
               "operating_points=a:2|threshold '2' is not a probability" \
               "modalities=cr|'cr' is not a DICOM code string" \
               "meta_format=2|meta_format=2: newer than this medscreen reads (1)"; do
        run convert "$G/fcn/model.onnx" -o "$D/x.msm" --meta "${bad%%|*}"
        expect_rc 4
        err_has "medscreen: $D/x.msm: meta line "
        err_has "${bad#*|}"
        err_prefixed
        [ ! -e "$D/x.msm" ] || fail "convert wrote a model with bad metadata (${bad%%|*})"
    done
    # --meta replaces a --meta-file line with the same key; -v says what scan still needs
    run -v convert "$G/fcn/model.onnx" -o "$D/fcn2.msm" --meta-file "$D/meta.txt" \
        --meta "name=other name"
    expect_rc 0
    err_has "medscreen: warning: $D/fcn2.msm: not usable by scan: metadata lacks version, task,"
    run model info --json "$D/fcn2.msm"
    "$PY" -c 'import json,sys; o = json.load(open(sys.argv[1])); n = [v for k, v in o["meta"] if k == "name"]; assert n == ["other name"], n' \
        "$D/out" || fail "--meta did not replace the --meta-file line"
    # everything scan needs: a score output (resnet: softmax over 3 classes, 3x1x1)
    printf '%s\n' meta_format=1 "name=resnet demo" version=0.1.0 task=screen input_size=64x64 \
        input_channels=3 resize=crop norm_mean=0.5 norm_std=0.25 window=auto \
        output_score=output score_channel=2 score_kind=probability \
        operating_points=sens90:0.31,spec90:0.62 default_operating_point=spec90 modalities=any \
        body_parts=CHEST >"$D/card.txt"
    run -v convert "$G/resnet/model.onnx" -o "$D/resnet.msm" --meta-file "$D/card.txt"
    expect_rc 0
    ! grep -q "not usable by scan" "$D/err" || fail "a complete card was reported incomplete"
    run model info --json "$D/resnet.msm"
    expect_rc 0
    "$PY" -c 'import json,sys; o = json.load(open(sys.argv[1])); m = o["metadata"]; assert o["scan"]["ready"] is True and m["operating_points"] == {"sens90": 0.31, "spec90": 0.62} and m["modalities"] == ["any"] and m["score_channel"] == 2 and m["window"]["kind"] == "auto" and m["meta_format"] == 1, o' \
        "$D/out" || fail "scan-ready conversion check failed"
    "$PY" -c 'import json,sys; o = json.load(open(sys.argv[1])); n = [k for k, v in o["meta"] if k == "meta_format"]; assert n == ["meta_format"], n' \
        "$D/out" || fail "a meta_format line in the card was doubled"
    run help convert
    expect_rc 0
    out_has "Usage: medscreen convert"
    ;;
model_run)
    need_python
    G="$SRC/tests/golden/net/unet"
    run model run "$G/model.msm" --input "$G/input.npy" --output "$D/y.npy"
    expect_rc 0
    out_empty
    err_empty
    "$PY" - "$D/y.npy" "$G/output.npy" <<'PY' || fail "model run output differs from the golden"
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert a.dtype == np.float32 and a.shape == b.shape, (a.dtype, a.shape, b.shape)
r = np.abs(a - b).max() / np.abs(b).max()
assert r <= 1e-5, r
PY
    # OpenBLAS kernels: with OPENBLAS_CORETYPE unset, a CPU with AVX2+FMA must not be left on
    # OpenBLAS's pre-AVX kernels (Debian's 0.3.21 misdetects newer Xeons; we start again with
    # the right OPENBLAS_CORETYPE); a user's own setting is kept.
    OLD_CORE="${OPENBLAS_CORETYPE-}"
    unset OPENBLAS_CORETYPE
    run -v -v model run "$G/model.msm" --input "$G/input.npy" --output "$D/yk.npy"
    expect_rc 0
    err_has "OpenBLAS kernels "
    if grep -qw avx2 /proc/cpuinfo && grep -qw fma /proc/cpuinfo; then
        ! grep -qE "OpenBLAS kernels (Prescott|Core2|Penryn|Dunnington|Nehalem|Atom|Sandybridge)" \
            "$D/err" || fail "OpenBLAS left on pre-AVX2 kernels: $(grep -o 'OpenBLAS kernels [A-Za-z]*' "$D/err")"
    fi
    OPENBLAS_CORETYPE=Prescott run -v -v model run "$G/model.msm" --input "$G/input.npy" \
        --output "$D/yk.npy"
    expect_rc 0
    err_has "OpenBLAS kernels Prescott"
    cmp -s "$D/y.npy" "$D/yk.npy" || "$PY" - "$D/yk.npy" "$G/output.npy" <<'PY' || fail "Prescott kernels: output differs"
import sys
import numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
assert np.abs(a - b).max() / np.abs(b).max() <= 1e-5
PY
    [ -z "$OLD_CORE" ] || export OPENBLAS_CORETYPE="$OLD_CORE"
    run model run --batch-check --output-name v29 "$G/model.msm" --input="$G/input.npy" \
        --output "$D/y2.npy"
    expect_rc 0
    cmp -s "$D/y.npy" "$D/y2.npy" || fail "--output-name of the first output changed the result"
    # --threads N gives the same bits as one thread; --direct is the reference arithmetic
    # (within the fast-path bound of the default run); bad thread counts are usage errors
    for t in 2 3; do
        run model run "$G/model.msm" --input "$G/input.npy" --output "$D/yt$t.npy" --threads $t
        expect_rc 0
        cmp -s "$D/y.npy" "$D/yt$t.npy" || fail "--threads $t changed the output"
    done
    run model run "$G/model.msm" --input "$G/input.npy" --output "$D/yd.npy" --direct --threads 2
    expect_rc 0
    "$PY" - "$D/yd.npy" "$D/y.npy" "$G/output.npy" <<'PY' || fail "--direct output wrong"
import sys
import numpy as np
d, f, ref = (np.load(p) for p in sys.argv[1:])
assert np.abs(d - ref).max() / np.abs(ref).max() <= 1e-5
assert np.abs(d - f).max() / np.abs(ref).max() <= 1e-4
PY
    for bad in 0 -1 x 257; do
        run model run "$G/model.msm" --input "$G/input.npy" --output "$D/yb.npy" --threads "$bad"
        expect_rc 2
        err_has "--threads '$bad' is not a number from 1 to 256"
    done
    [ ! -e "$D/yb.npy" ] || fail "a usage error wrote an output"
    run model run "$G/model.msm" --input "$G/input.npy" --output "$D/y3.npy" --output-name nope
    expect_rc 4
    err_has "no output named 'nope'"
    [ ! -e "$D/y3.npy" ] || fail "an output was written after an error"
    # a wrong input shape, a missing input, a missing or damaged model, a bad graph
    "$PY" -c "import numpy as np; np.save('$D/bad.npy', np.zeros((1, 3, 8, 8), np.float32))" ||
        fail "numpy is needed"
    run model run "$G/model.msm" --input "$D/bad.npy" --output "$D/y3.npy"
    expect_rc 4
    err_has "medscreen: $D/bad.npy: array of shape (1, 3, 8, 8), the model 'x' needs (N, 3, 16, 16)"
    run model run "$G/model.msm" --input "$D/missing.npy" --output "$D/y3.npy"
    expect_rc 4
    err_prefixed
    err_has "$D/missing.npy"
    run model run "$D/missing.msm" --input "$G/input.npy" --output "$D/y3.npy"
    expect_rc 4
    err_has "$D/missing.msm"
    cp "$G/model.msm" "$D/bad.msm"
    printf '\x55' | dd of="$D/bad.msm" bs=1 seek=300 conv=notrunc 2>/dev/null
    run model run "$D/bad.msm" --input "$G/input.npy" --output "$D/y3.npy"
    expect_rc 4
    err_has "medscreen: $D/bad.msm: CRC-32 mismatch"
    "$PY" - "$D/badgraph.msm" <<'PY' || fail "could not write the test model"
import struct, sys, zlib
tensors = [("graph", 2, b"graph 1\ninput x 1 4 4\nnode act a in=x out=y act=swish\noutput y\n")]
table, payload = b"", b""
for name, dtype, data in tensors:
    table += struct.pack("<H", len(name)) + name.encode() + bytes([dtype, 1])
    table += struct.pack("<I", len(data)) + struct.pack("<QQ", len(payload), len(data))
    payload += data
body = b"MSMODEL\0" + struct.pack("<IIQQ", 1, len(tensors), len(table), len(payload)) + table
body += b"\0" * (-len(body) % 64) + payload
open(sys.argv[1], "wb").write(body + struct.pack("<I", zlib.crc32(body)))
PY
    run model run "$D/badgraph.msm" --input "$G/input.npy" --output "$D/y3.npy"
    expect_rc 4
    err_has "medscreen: $D/badgraph.msm: graph line 3: act=swish: unknown activation"
    # usage errors
    run model run "$G/model.msm" --output "$D/y3.npy"
    expect_rc 2
    err_has "--input X.npy is required"
    run model run "$G/model.msm" --input "$G/input.npy"
    expect_rc 2
    run model run --bogus "$G/model.msm" --input "$G/input.npy" --output "$D/y3.npy"
    expect_rc 2
    run help model
    expect_rc 0
    out_has "Usage: medscreen model run"
    ;;
scan_golden)
    # The whole pipeline against PyTorch: decode, area resize, normalisation, inference and
    # calibration of the golden images (scripts/make-scan-goldens.py) within 1e-4.
    need_python
    G="$SRC/tests/golden/scan"
    run scan -q -m "$G/model.msm" "$G/images" -o "$D/o"
    expect_rc 0
    err_empty
    scan_check "$D/o" '
exp = json.load(open(os.path.join(os.environ["G"], "expected.json")))
assert len(reports) == 3, list(reports)
for r in reports.values():
    name = os.path.basename(r["input"]["path"])
    e = exp["images"][name]
    assert r["status"] == "ok", r
    assert r["model"]["sha256"] == exp["model_sha256"], r["model"]
    assert abs(r["score"]["probability"] - e["probability"]) <= 1e-4, (name, r["score"], e)
    assert abs(r["score"]["value"] - e["score_logit"]) <= 1e-4 * max(1, abs(e["score_logit"])), name
    assert r["decode"]["width"] == e["width"] and r["decode"]["height"] == e["height"], r["decode"]
    assert r["score"]["flagged"] == (r["score"]["probability"] >= 0.5), r["score"]
    assert r["operating_point"] == {"name": "mid", "threshold": 0.5}, r["operating_point"]
    # every region lies inside the image and is ranked
    for k, g in enumerate(r["regions"]):
        b = g["bbox"]
        assert g["rank"] == k + 1 and b["x"] >= 0 and b["y"] >= 0, g
        assert b["x"] + b["w"] <= e["width"] and b["y"] + b["h"] <= e["height"], g
        assert g["peak"] >= r["region_threshold"]["high"] - 1e-6, g
assert summary["totals"]["scans"] == 3 and summary["totals"]["ok"] == 3, summary["totals"]
'
    # another operating point and an explicit threshold change the decision, not the score
    run scan -q -m "$G/model.msm" "$G/images" -o "$D/o2" --operating-point high
    expect_rc 0
    scan_check "$D/o2" '
for r in reports.values():
    assert r["operating_point"] == {"name": "high", "threshold": 0.8}, r["operating_point"]
    assert r["score"]["flagged"] is False, r["score"]
'
    # a region threshold above every map value: no regions, overlays still written
    run scan -q -m "$G/model.msm" "$G/images" -o "$D/o5" --region-threshold 1
    expect_rc 0
    scan_check "$D/o5" '
for r in reports.values():
    assert r["status"] == "ok" and r["regions"] == [], r["regions"]
    assert r["region_threshold"]["high"] == 1 and r["region_threshold"]["low"] == 0.75, r
'
    run scan -q -m "$G/model.msm" "$G/images" -o "$D/o3" --threshold 0.01 --fail-on-finding
    expect_rc 1
    run scan -q -m "$G/model.msm" "$G/images" -o "$D/o4" --operating-point nope
    expect_rc 2
    err_has "no operating point 'nope' (it has: low, mid, high)"
    # 1 and 2 jobs give the same reports (timings aside) and the same overlays
    run scan -q -j 1 -m "$G/model.msm" "$G/images" -o "$D/j1"
    expect_rc 0
    run scan -q -j 2 -m "$G/model.msm" "$G/images" -o "$D/j2"
    expect_rc 0
    "$PY" - "$D/j1" "$D/j2" <<'PY' || fail "1 and 2 jobs differ"
import json, os, sys
a, b = sys.argv[1], sys.argv[2]
names = sorted(os.listdir(os.path.join(a, "scans")))
assert names == sorted(os.listdir(os.path.join(b, "scans"))) and len(names) == 3, names
for n in names:
    ra, rb = (json.load(open(os.path.join(d, "scans", n))) for d in (a, b))
    ra.pop("timings_ms"); rb.pop("timings_ms")
    assert ra == rb, n
for n in os.listdir(os.path.join(a, "overlays")):
    assert open(os.path.join(a, "overlays", n), "rb").read() == \
        open(os.path.join(b, "overlays", n), "rb").read(), n
assert open(os.path.join(a, "summary.csv")).read() == open(os.path.join(b, "summary.csv")).read()
PY
    ;;
scan_mixed)
    # A folder with corrupt, non-image, unsupported and good files: the batch carries on,
    # each bad file gets status error or skipped with a reason naming it, exit 3.
    need_python
    G="$SRC/tests/golden/scan"
    mkdir -p "$D/in/sub"
    cp "$G/images/normal_8bit.png" "$D/in/good.png"
    cp "$G/images/opacity_8bit.png" "$D/in/sub/good2.png"
    head -c 3000 "$G/images/opacity_8bit.png" >"$D/in/truncated.png"
    echo "not an image" >"$D/in/notes.txt"
    : >"$D/in/empty.dcm"
    cp "$FX/notimage.txt" "$D/in/sub/x.bin" 2>/dev/null || echo junk >"$D/in/sub/x.bin"
    [ -r "$PYDICOM_FILES/CT_small.dcm" ] && cp "$PYDICOM_FILES/CT_small.dcm" "$D/in/ct.dcm"
    run scan -q -m "$G/model.msm" "$D/in" -o "$D/o" --jsonl
    expect_rc 3
    err_has "medscreen: $D/in/truncated.png: "
    err_has "medscreen: $D/in/notes.txt: "
    scan_check "$D/o" '
by = {os.path.basename(r["input"]["path"]): r for r in reports.values()}
assert by["good.png"]["status"] == "ok" and by["good2.png"]["status"] == "ok", by.keys()
for n in ("truncated.png", "notes.txt", "empty.dcm", "x.bin"):
    r = by[n]
    assert r["status"] == "error", r
    assert r["reason"]["code"] and n in r["reason"]["message"], r["reason"]
    assert r["score"] is None and r["regions"] == [], r
if "ct.dcm" in by:
    r = by["ct.dcm"]
    assert r["status"] == "skipped" and r["reason"]["code"] == "modality", r
    assert "CT" in r["reason"]["message"], r["reason"]
t = summary["totals"]
assert t["ok"] == 2 and t["errors"] == 4 and t["skipped"] == ("ct.dcm" in by), t
assert len(jsonl) == len(reports), (len(jsonl), len(reports))
'
    # errors outrank findings
    run scan -q -m "$G/model.msm" "$D/in" -o "$D/o2" --threshold 0 --fail-on-finding
    expect_rc 3
    ;;
scan_resume)
    need_python
    G="$SRC/tests/golden/scan"
    mkdir -p "$D/in"
    cp "$G/images/"*.png "$D/in/"
    run scan -q -m "$G/model.msm" "$D/in" -o "$D/o"
    expect_rc 0
    cp -r "$D/o" "$D/first"
    run scan -m "$G/model.msm" "$D/in" -o "$D/o" --resume
    expect_rc 0
    err_has "resumed from earlier reports"
    # nothing was rewritten: the reports keep their first timings
    diff -r "$D/first/scans" "$D/o/scans" >/dev/null || fail "--resume rewrote reports"
    cmp -s "$D/first/summary.csv" "$D/o/summary.csv" || fail "--resume changed summary.csv"
    # a changed input is screened again; the others are not
    cp "$G/images/normal_8bit.png" "$D/in/opacity_8bit.png"
    run scan -q -m "$G/model.msm" "$D/in" -o "$D/o" --resume
    expect_rc 0
    "$PY" - "$D/first" "$D/o" <<'PY' || fail "--resume did not redo exactly the changed input"
import json, os, sys
a, b = sys.argv[1], sys.argv[2]
for n in os.listdir(os.path.join(a, "scans")):
    ra, rb = (json.load(open(os.path.join(d, "scans", n))) for d in (a, b))
    changed = os.path.basename(ra["input"]["path"]) == "opacity_8bit.png"
    assert (ra["input"]["sha256"] != rb["input"]["sha256"]) == changed, n
    assert (ra["timings_ms"] != rb["timings_ms"]) == changed, n
PY
    # a different model invalidates every report
    cp "$G/model.msm" "$D/m2.msm"
    printf 'x' >>"$D/m2.msm"
    run scan -q -m "$D/m2.msm" "$D/in" -o "$D/o" --resume
    expect_rc 4
    ;;
scan_shard)
    need_python
    G="$SRC/tests/golden/scan"
    mkdir -p "$D/in"
    for i in $(seq 1 12); do cp "$G/images/normal_8bit.png" "$D/in/img$i.png"; done
    for k in 1 2 3; do
        run scan -q --no-overlays -m "$G/model.msm" "$D/in" -o "$D/s$k" --shard "$k/3"
        expect_rc 0
    done
    "$PY" - "$D" <<'PY' || fail "shards do not cover every file exactly once"
import json, os, sys
d = sys.argv[1]
seen = []
for k in (1, 2, 3):
    seen += [s["path"] for s in json.load(open(os.path.join(d, "s%d" % k, "summary.json")))["scans"]]
assert len(seen) == 12 and len(set(seen)) == 12, seen
assert sum(1 for k in (1, 2, 3) if os.listdir(os.path.join(d, "s%d" % k, "scans"))) >= 2
PY
    run scan -q -m "$G/model.msm" "$D/in" -o "$D/x" --shard 4/3
    expect_rc 2
    run scan -q -m "$G/model.msm" "$D/in" -o "$D/x" --shard 0/3
    expect_rc 2
    ;;
scan_stdin)
    # path lists on stdin, newline- and NUL-separated, with hostile names
    need_python
    G="$SRC/tests/golden/scan"
    mkdir -p "$D/odd"
    names=("with space.png" $'new\nline.png' $'\xff\xfe bytes.png' "-dash.png" '$(touch pwned).png'
        'quote"back\slash.png' $'esc\e[31mred.png')
    for n in "${names[@]}"; do cp "$G/images/normal_8bit.png" "$D/odd/${n//\//_}"; done
    (cd "$D/odd" && printf '%s\0' *) | (cd "$D/odd" && "$MS" scan -q -m "$G/model.msm" -0 - \
        -o "$D/o" >"$D/out" 2>"$D/err")
    RC=$?
    expect_rc 0
    [ ! -e "$D/odd/pwned" ] && [ ! -e pwned ] || fail "a file name was executed"
    "$PY" - "$D/o" "${#names[@]}" <<'PY' || fail "NUL-separated list"
import json, os, sys
d, n = sys.argv[1], int(sys.argv[2])
files = os.listdir(os.path.join(d, "scans"))
assert len(files) == n, files
for f in files:
    assert all(c.isalnum() or c in "._-" for c in f) and not f.startswith("."), f
s = json.load(open(os.path.join(d, "summary.json")))
assert s["totals"]["ok"] == n, s["totals"]
PY
    printf '%s\n' "$G/images/normal_8bit.png" "" "$D/missing.png" | \
        "$MS" scan -q -m "$G/model.msm" - -o "$D/o2" >"$D/out" 2>"$D/err"
    RC=$?
    expect_rc 3
    err_has "medscreen: $D/missing.png: "
    run scan -q -m "$G/model.msm" -0 "$G/images" -o "$D/o3"
    expect_rc 2
    ;;
scan_expect)
    need_python
    G="$SRC/tests/golden/scan"
    run scan -q -m "$G/model.msm" "$G/images" -o "$D/ref"
    expect_rc 0
    run scan -m "$G/model.msm" "$G/images" --expect "$D/ref"
    expect_rc 0
    err_has "expect: all 3 scans match"
    # drift: a reference probability moved by 0.01
    "$PY" - "$D/ref" <<'PY' || fail "cannot edit the reference"
import json, os, sys
d = os.path.join(sys.argv[1], "scans")
n = sorted(os.listdir(d))[0]
r = json.load(open(os.path.join(d, n)))
r["score"]["probability"] += 0.01
json.dump(r, open(os.path.join(d, n), "w"))
PY
    run scan -m "$G/model.msm" "$G/images" --expect "$D/ref"
    expect_rc 5
    err_has "DRIFT "
    err_has ": probability: expected "
    run scan -m "$G/model.msm" "$G/images" --expect "$D/ref" --tolerance 0.02
    expect_rc 0
    # a reference with no scan in this run is drift too
    cp "$D/ref/scans/$(ls "$D/ref/scans" | head -n1)" "$D/ref/scans/gone-0123456789.json"
    run scan -m "$G/model.msm" "$G/images" --expect "$D/ref" --tolerance 0.02
    expect_rc 5
    err_has "gone-0123456789.json: missing"
    rm "$D/ref/scans/gone-0123456789.json"
    # the project's own regression references (tests/golden/scan/expect), from another folder
    (cd "$D" && "$MS" scan -m "$G/model.msm" "$G/images" --expect "$G/expect" >"$D/out" 2>"$D/err")
    RC=$?
    expect_rc 0
    err_has "expect: all 3 scans match"
    # a malformed reference is reported, not trusted
    n=$(ls "$D/ref/scans" | head -n1)
    printf '{"schema": "medscreen.scan/1", "status": "ok",' >"$D/ref/scans/$n"
    run scan -m "$G/model.msm" "$G/images" --expect "$D/ref" --tolerance 0.02
    expect_rc 5
    err_has "$n"
    ;;
scan_usage)
    G="$SRC/tests/golden/scan"
    run scan "$G/images"
    expect_rc 2
    err_has "nothing to write"
    run scan -m "$G/model.msm" -o "$D/o"
    expect_rc 2
    run scan -m "$G/model.msm" "$G/images" -o "$D/o" --jobs 0
    expect_rc 2
    run scan -m "$G/model.msm" "$G/images" -o "$D/o" --threshold 1.5
    expect_rc 2
    run scan -m "$G/model.msm" "$G/images" -o "$D/o" --bogus
    expect_rc 2
    run scan -m "$D/nope.msm" "$G/images" -o "$D/o"
    expect_rc 4
    err_has "$D/nope.msm"
    # a model scan cannot use (legacy metadata) is refused up front
    run scan -m "$SRC/tests/golden/net/unet/model.msm" "$G/images" -o "$D/o"
    expect_rc 4
    # output folder not writable: a file where the folder should be
    : >"$D/afile"
    run scan -m "$G/model.msm" "$G/images" -o "$D/afile"
    expect_rc 4
    run help scan
    expect_rc 0
    out_has "Exit codes:"
    # the model: -m, else $MEDSCREEN_MODEL, else models/cxr-screener.msm beside the binary's
    # folder (the build folder sits in the source tree)
    MEDSCREEN_MODEL="$G/model.msm" run scan -q "$G/images" -o "$D/env"
    expect_rc 0
    grep -q '"name":"scan-golden-tiny"' "$D/env/summary.json" || fail "MEDSCREEN_MODEL not used"
    if [ "$(dirname "$MS")/.." -ef "$SRC" ]; then
        MEDSCREEN_MODEL= run scan -q "$G/images" -o "$D/default"
        expect_rc 0
        grep -q '"name":"cxr-screener"' "$D/default/summary.json" || fail "default model not used"
    fi
    ;;
scan_signal)
    # SIGTERM mid-batch: the worker finishes its scan, the summary says interrupted, 143.
    need_python
    G="$SRC/tests/golden/scan"
    mkdir -p "$D/in"
    for i in $(seq 1 400); do cp "$G/images/opacity_16bit.png" "$D/in/img$i.png"; done
    "$MS" scan -q -j 1 -m "$G/model.msm" "$D/in" -o "$D/o" --jsonl >"$D/out" 2>"$D/err" &
    pid=$!
    for _ in $(seq 1 200); do [ -s "$D/out" ] && break; sleep 0.05; done
    kill -TERM "$pid"
    wait "$pid"
    RC=$?
    expect_rc 143
    err_has "stopped by signal 15"
    "$PY" - "$D/o" <<'PY' || fail "partial summary"
import json, os, sys
s = json.load(open(os.path.join(sys.argv[1], "summary.json")))
t = s["totals"]
assert t["interrupted"] is True and 1 <= t["scans"] < 400, t
assert len(os.listdir(os.path.join(sys.argv[1], "scans"))) == t["scans"], t
assert os.path.exists(os.path.join(sys.argv[1], "report.html"))
PY
    ;;
scan_default_model)
    # The shipped model (issue 4) in the C engine against PyTorch on generated images
    # (tests/golden/cxr/expected.json, made by scripts/make-scan-goldens.py --ckpt, for the
    # images of tests/golden/scan): scores within 1e-4.
    need_python
    G="$SRC/tests/golden/cxr"
    M="$SRC/models/cxr-screener.msm"
    [ -r "$M" ] || fail "the default model $M is missing"
    run scan -q -m "$M" "$SRC/tests/golden/scan/images" -o "$D/o"  # the same generated images
    expect_rc 0
    scan_check "$D/o" '
exp = json.load(open(os.path.join(os.environ["G"], "expected.json")))
assert len(reports) == len(exp["images"]) >= 3, list(reports)
for r in reports.values():
    name = os.path.basename(r["input"]["path"])
    e = exp["images"][name]
    assert r["status"] == "ok" and r["model"]["sha256"] == exp["model_sha256"], r
    assert abs(r["score"]["value"] - e["score_logit"]) <= 1e-4 * max(1, abs(e["score_logit"])), (name, r["score"], e)
    assert abs(r["score"]["probability"] - e["probability"]) <= 1e-4, (name, r["score"], e)
'
    # the chest model refuses other modalities
    if [ -r "$PYDICOM_FILES/CT_small.dcm" ]; then
        run scan -q -m "$M" "$PYDICOM_FILES/CT_small.dcm" -o "$D/ct"
        expect_rc 0
        scan_check "$D/ct" '
(r,) = reports.values()
assert r["status"] == "skipped" and r["reason"]["code"] == "modality", r
'
    fi
    ;;
scan_progress)
    # A progress line (files, rate, ETA) only when stderr is a terminal, and not with -q.
    G="$SRC/tests/golden/scan"
    command -v script >/dev/null 2>&1 || skip "script(1) is needed to fake a terminal"
    script -qec "'$MS' scan -m '$G/model.msm' '$G/images' -o '$D/o1'" /dev/null >"$D/tty" 2>&1
    grep -q "scan: 3/3 files read, 3 scans done, .* files/s, ETA " "$D/tty" ||
        fail "no progress line on a terminal: $(head -c 300 "$D/tty")"
    script -qec "'$MS' scan -q -m '$G/model.msm' '$G/images' -o '$D/o2'" /dev/null >"$D/tty" 2>&1
    ! grep -q "files read" "$D/tty" || fail "progress line despite -q"
    run scan -m "$G/model.msm" "$G/images" -o "$D/o3"
    expect_rc 0
    ! grep -q "files read" "$D/err" || fail "progress line when stderr is not a terminal"
    err_prefixed
    ;;
scan_walk)
    # Folder walking: recursive, hidden entries skipped, links to folders reported and not
    # followed (no loops), links to files followed; names stable wherever the tree lives.
    need_python
    G="$SRC/tests/golden/scan"
    mkdir -p "$D/t/a/b" "$D/t/.hidden" "$D/elsewhere"
    cp "$G/images/normal_8bit.png" "$D/t/top.png"
    cp "$G/images/normal_8bit.png" "$D/t/a/b/deep.png"
    cp "$G/images/normal_8bit.png" "$D/t/.dot.png"
    cp "$G/images/normal_8bit.png" "$D/t/.hidden/x.png"
    cp "$G/images/normal_8bit.png" "$D/elsewhere/linked.png"
    ln -s "$D/t" "$D/t/a/loop"
    ln -s "$D/elsewhere/linked.png" "$D/t/filelink.png"
    run scan -q --no-overlays -m "$G/model.msm" "$D/t" -o "$D/o"
    expect_rc 3
    err_has "$D/t/a/loop: link to a folder; not followed"
    "$PY" - "$D/o" <<'PY' || fail "walk"
import json, os, sys
s = json.load(open(os.path.join(sys.argv[1], "summary.json")))
names = sorted(os.path.relpath(r["path"], os.path.dirname(sys.argv[1])) for r in s["scans"])
assert names == ["t/a/b/deep.png", "t/filelink.png", "t/top.png"], names
PY
    # the same tree elsewhere (same folder name) gives the same output names
    mkdir -p "$D/other"
    mv "$D/t" "$D/other/t"
    rm "$D/other/t/a/loop"
    run scan -q --no-overlays -m "$G/model.msm" "$D/other/t/" -o "$D/o2"
    expect_rc 0
    [ "$(ls "$D/o/scans")" = "$(ls "$D/o2/scans")" ] || fail "names depend on where the tree is"
    [ "$(ls "$D/o2/scans" | wc -l)" -eq 3 ] || fail "expected 3 reports"
    ;;
scan_html)
    # The review page in headless Chromium: scans in descending probability, a screenshot
    # that is not blank.
    G="$SRC/tests/golden/scan"
    run scan -q -m "$G/model.msm" "$G/images" "$SRC/data" -o "$D/o"
    expect_rc 0
    CHECK="$SRC/tests/report/check_report_html.sh"
    [ -x "$CHECK" ] || CHECK="bash $CHECK"
    $CHECK "$D/o/report.html" "$D/shot.png" >"$D/out" 2>"$D/err"
    RC=$?
    [ "$RC" -eq 77 ] && skip "chromium is not installed"
    expect_rc 0
    ;;
calibrate)
    # medscreen calibrate on 24 labelled copies of the golden images (3 distinct scores):
    # the new model loads with the fitted temperature, operating points and x-calibrated line,
    # and scan uses its threshold; --json, --dry-run, determinism, -o equal to the input.
    G="$SRC/tests/golden/scan"
    mkdir -p "$D/in/sub"
    # columns in another order, an extra quoted column with a comma and a quote, CRLF endings
    printf 'note,label,path\r\n' >"$D/labels.csv"
    for f in normal_8bit opacity_8bit opacity_16bit; do
        for k in 1 2 3 4 5 6 7 8; do
            sub=""
            [ "$k" -gt 5 ] && sub="sub/"
            cp "$G/images/$f.png" "$D/in/$sub${f}_$k.png"
            lab=abnormal
            [ "$f" = normal_8bit ] && lab=normal
            [ "$k" = 1 ] && lab=$([ "$lab" = normal ] && echo 1 || echo 0)
            printf '"a, ""b""",%s,%s\r\n' "$lab" "$sub${f}_$k.png" >>"$D/labels.csv"
        done
    done
    cp "$D/labels.csv" "$D/in/"   # not an image: ignored in the folder
    export SOURCE_DATE_EPOCH=86400
    run calibrate --labels "$D/labels.csv" "$D/in" -m "$G/model.msm" -o "$D/new.msm"
    expect_rc 0
    err_prefixed
    out_has "scans            24 (9 normal, 15 abnormal)"
    out_has "AUROC"
    out_has "temperature      1.5 -> "
    out_has "sens90"
    out_has "wrote            $D/new.msm"
    [ -s "$D/new.msm" ] || fail "no calibrated model written"
    run model info "$D/new.msm"
    expect_rc 0
    out_has "x-calibrated=1970-01-02, 24 scans, labels sha256 $(sha256sum "$D/labels.csv" | cut -c1-64)"
    out_has "operating points   sens90="
    out_has "(default), sens95="
    out_has "scan               ready"
    # every tensor but meta is unchanged
    run model info --json "$D/new.msm"
    expect_rc 0
    if [ -n "$PY" ]; then
        cp "$D/out" "$D/info.json"
        run calibrate --labels "$D/labels.csv" "$D/in" -m "$G/model.msm" --dry-run --json
        expect_rc 0
        cp "$D/out" "$D/cal.json"
        run model info --json "$G/model.msm"
        cp "$D/out" "$D/old.json"
        run scan -q -m "$D/new.msm" "$D/in/opacity_8bit_2.png" --jsonl
        expect_rc 0
        "$PY" - "$D" <<'PY' || fail "calibrated model check"
import json, os, sys
d = sys.argv[1]
info = json.load(open(os.path.join(d, "info.json")))
old = json.load(open(os.path.join(d, "old.json")))
cal = json.load(open(os.path.join(d, "cal.json")))
scan = json.loads(open(os.path.join(d, "out")).readline())
md = info["metadata"]
assert md["temperature"] == cal["temperature"]["new"], (md["temperature"], cal["temperature"])
assert cal["temperature"]["old"] == 1.5 and cal["temperature"]["fitted"] is True, cal
assert list(md["operating_points"]) == ["sens90", "sens95"], md["operating_points"]
assert md["default_operating_point"] == "sens90" == cal["default_operating_point"], md
for p in cal["operating_points"]:
    assert abs(md["operating_points"][p["name"]] - p["threshold"]) < 1e-6, (md, p)
    assert p["sensitivity"]["value"] >= p["target"], p
    assert p["sensitivity"]["ci_low"] <= p["sensitivity"]["value"] <= p["sensitivity"]["ci_high"], p
assert cal["scans"] == {"total": 24, "normal": 9, "abnormal": 15}, cal["scans"]
a = cal["auroc"]
assert 0 <= a["ci_low"] <= a["value"] <= a["ci_high"] <= 1, a
assert cal["output"] is None and cal["dry_run"] is True and cal["date"] == "1970-01-02", cal
assert cal["bootstrap"]["resamples"] == 1000 and cal["bootstrap"]["seed"] == 1, cal
# meta: the original lines in order, the calibrated ones replaced, x-calibrated appended
ok, nk = [k for k, v in old["meta"]], [k for k, v in info["meta"]]
assert nk == ok + ["x-calibrated"], (ok, nk)
ov, nv = dict(old["meta"]), dict(info["meta"])
for k in ok:
    if k not in ("temperature", "operating_points", "default_operating_point"):
        assert ov[k] == nv[k], k
assert [t["name"] for t in info["tensors"]] == [t["name"] for t in old["tensors"]]
assert info["parameters"] == old["parameters"]
# scan uses the new threshold and temperature
assert scan["operating_point"]["name"] == "sens90", scan["operating_point"]
assert abs(scan["operating_point"]["threshold"] - md["operating_points"]["sens90"]) < 1e-6
PY
    fi
    # deterministic: the same run twice gives the same report; --dry-run writes nothing
    run calibrate --labels "$D/labels.csv" "$D/in" -m "$G/model.msm" --dry-run --json --seed 7 -j 2
    expect_rc 0
    cp "$D/out" "$D/r1.json"
    run calibrate --labels "$D/labels.csv" "$D/in" -m "$G/model.msm" --dry-run --json --seed 7 -j 1
    expect_rc 0
    cmp -s "$D/out" "$D/r1.json" || fail "two runs with one seed differ"
    [ ! -e "$D/dry.msm" ] || fail "unexpected file"
    run calibrate --labels "$D/labels.csv" "$D/in" -m "$G/model.msm" -o "$D/dry.msm" --dry-run
    expect_rc 0
    out_has "dry run: nothing written"
    [ ! -e "$D/dry.msm" ] || fail "--dry-run wrote the model"
    # targets; a second calibration replaces x-calibrated instead of adding one
    run calibrate --labels "$D/labels.csv" "$D/in" -m "$D/new.msm" -o "$D/new2.msm" \
        --targets spec80,sens90 --bootstrap 0
    expect_rc 0
    out_has "spec80"
    run model info "$D/new2.msm"
    expect_rc 0
    [ "$(grep -c 'x-calibrated=' "$D/out")" -eq 1 ] || fail "x-calibrated repeated"
    out_has "operating points   spec80="
    out_has "(default)"
    # the input model itself is never overwritten, also through a link
    cp "$D/new.msm" "$D/keep.msm"
    run calibrate --labels "$D/labels.csv" "$D/in" -m "$D/new.msm" -o "$D/new.msm"
    expect_rc 2
    err_has "is the input model"
    ln -s "$D/new.msm" "$D/link.msm"
    run calibrate --labels "$D/labels.csv" "$D/in" -m "$D/link.msm" -o "$D/new.msm"
    expect_rc 2
    cmp -s "$D/new.msm" "$D/keep.msm" || fail "the input model was changed"
    run help calibrate
    expect_rc 0
    out_has "Exit codes:"
    run --help
    out_has "calibrate"
    ;;
calibrate_errors)
    # Every refusal: its exit code, a message naming the file (and line), nothing written.
    G="$SRC/tests/golden/scan"
    M="$G/model.msm"
    mkdir -p "$D/in"
    printf 'path,label\n' >"$D/good.csv"
    for i in $(seq 1 12); do
        cp "$G/images/normal_8bit.png" "$D/in/n$i.png"
        cp "$G/images/opacity_8bit.png" "$D/in/a$i.png"
        printf 'n%d.png,0\na%d.png,1\n' "$i" "$i" >>"$D/good.csv"
    done
    O="$D/o.msm"
    cal() { run calibrate -m "$M" -o "$O" "$@"; [ ! -e "$O" ] || fail "a model was written: $*"; }
    L="$D/l.csv"
    # usage (2)
    run calibrate "$D/in" -m "$M" -o "$O"
    expect_rc 2
    err_has "--labels FILE is required"
    run calibrate --labels "$D/good.csv" "$D/in" -m "$M"
    expect_rc 2
    err_has "give -o NEW.msm"
    cal --labels "$D/good.csv" "$D/in" --targets sens90,sensitive
    expect_rc 2
    err_has "'sensitive' is not sensNN or specNN"
    cal --labels "$D/good.csv" "$D/in/n1.png"
    expect_rc 2
    err_has "$D/in/n1.png: not a folder"
    cal --labels "$D/good.csv" "$D/in" --min-scans 3
    expect_rc 2
    cal --labels "$D/good.csv" "$D/in" --bogus
    expect_rc 2
    # labels that do not fit (3)
    cal --labels "$D/missing.csv" "$D/in"
    expect_rc 3
    err_has "$D/missing.csv"
    { cat "$D/good.csv"; printf '"n99.png,1\n'; } >"$L"
    cal --labels "$L" "$D/in"
    expect_rc 3
    err_has "$L:26: malformed CSV: a quoted field is not closed"
    { cat "$D/good.csv"; printf 'n99.png,1,extra\n'; } >"$L"
    cal --labels "$L" "$D/in"
    expect_rc 3
    err_has "$L:26: malformed CSV: 3 fields, the header has 2"
    sed 's/^path,label$/path,diagnosis/' "$D/good.csv" >"$L"
    cal --labels "$L" "$D/in"
    expect_rc 3
    err_has "$L:1: the header has no 'label' column"
    sed 's/^a3.png,1$/a3.png,maybe/' "$D/good.csv" >"$L"
    cal --labels "$L" "$D/in"
    expect_rc 3
    err_has "$L:7: bad label 'maybe'"
    { cat "$D/good.csv"; printf './n2.png,0\n'; } >"$L"
    cal --labels "$L" "$D/in"
    expect_rc 3
    err_has "$L:26: duplicate path 'n2.png' (first on line 4)"
    { cat "$D/good.csv"; printf 'ghost.png,1\nsub/ghost2.png,0\n'; } >"$L"
    cal --labels "$L" "$D/in"
    expect_rc 3
    err_has "$L:26: 'ghost.png' is not in $D/in"
    err_has "$L:27: 'sub/ghost2.png' is not in $D/in"
    err_has "2 labelled files are not in $D/in"
    grep -v '^n1[12].png' "$D/good.csv" >"$L"
    cal --labels "$L" "$D/in"
    expect_rc 3
    err_has "$D/in/n11.png: an image in $D/in without a label in $L"
    err_has "2 images in $D/in have no label"
    sed 's/,1$/,0/' "$D/good.csv" >"$L"
    cal --labels "$L" "$D/in"
    expect_rc 3
    err_has "$L: all 24 labels are 0: calibration needs both normal and abnormal scans"
    cal --labels "$D/good.csv" "$D/in" --min-scans 30
    expect_rc 3
    err_has "too few scans: 24 (12 normal, 12 abnormal)"
    grep -v '^a[1-9][0-9]*.png' "$D/good.csv" >"$L"
    printf 'a1.png,1\na2.png,1\na3.png,1\na4.png,1\n' >>"$L"
    mkdir -p "$D/few"
    cp "$D/in/"n*.png "$D/in/"a[1-4].png "$D/few/"
    cal --labels "$L" "$D/few"
    expect_rc 3
    err_has "at least 5 of each class"
    # a labelled scan that cannot be scored: every one is named, nothing written
    cp -r "$D/in" "$D/bad"
    head -c 2000 "$G/images/normal_8bit.png" >"$D/bad/n3.png"
    echo "not an image" >"$D/bad/a5.png"
    cal --labels "$D/good.csv" "$D/bad"
    expect_rc 3
    err_has "medscreen: $D/bad/n3.png: "
    err_has "medscreen: $D/bad/a5.png: "
    err_has "2 of 24 labelled scans could not be scored"
    if [ -r "$PYDICOM_FILES/CT_small.dcm" ]; then
        cp -r "$D/in" "$D/ct"
        cp "$PYDICOM_FILES/CT_small.dcm" "$D/ct/a6.png"
        cal --labels "$D/good.csv" "$D/ct"
        expect_rc 3
        err_has "$D/ct/a6.png: modality 'CT' is not one the model accepts"
    fi
    # fatal (4): the model, the output
    run calibrate --labels "$D/good.csv" "$D/in" -m "$D/nope.msm" -o "$O"
    expect_rc 4
    err_has "$D/nope.msm"
    run calibrate --labels "$D/good.csv" "$D/in" -m "$SRC/tests/golden/net/unet/model.msm" -o "$O"
    expect_rc 4
    run calibrate --labels "$D/good.csv" "$D/in" -m "$M" -o "$D/no/such/dir/o.msm"
    expect_rc 4
    err_has "$D/no/such/dir/o.msm"
    # and the good labels work
    cal --labels "$D/good.csv" "$D/in" --dry-run
    expect_rc 0
    ;;
calibrate_stats)
    # Varied generated images (python3 writes the PNGs): the report against an independent
    # computation of AUROC, the temperature (a brute-force grid), ECE and the thresholds.
    need_python
    G="$SRC/tests/golden/scan"
    mkdir -p "$D/in"
    "$PY" - "$D/in" 60 <<'PY' || fail "cannot generate images"
import os, random, struct, sys, zlib
def png(path, w, h, px):
    raw = b"".join(b"\x00" + bytes(px[y * w:(y + 1) * w]) for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    open(path, "wb").write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                           + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
out, n = sys.argv[1], int(sys.argv[2])
rng = random.Random(7)
for i in range(n):
    cx, cy, r = rng.uniform(8, 40), rng.uniform(8, 40), rng.uniform(3, 15)
    b, a = rng.uniform(30, 120), rng.uniform(0, 130)
    px = [max(0, min(255, int(b + (a if (x - cx) ** 2 + (y - cy) ** 2 < r * r else 0)
                              + rng.uniform(-20, 20)))) for y in range(48) for x in range(48)]
    png(os.path.join(out, "img%03d.png" % i), 48, 48, px)
PY
    run scan -q --no-overlays -m "$G/model.msm" "$D/in" --jsonl
    expect_rc 0
    # labels: abnormal more likely for higher scores, so AUROC is well above 0.5
    "$PY" - "$D/out" "$D/labels.csv" <<'PY' || fail "cannot write labels"
import json, os, random, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
recs.sort(key=lambda r: r["score"]["value"])
rng = random.Random(3)
with open(sys.argv[2], "w") as f:
    f.write("path,label\n")
    for i, r in enumerate(recs):
        lab = 1 if rng.random() < 0.3 + 0.7 * i / len(recs) else 0
        f.write("%s,%s\n" % (os.path.basename(r["input"]["path"]), ["normal", "abnormal"][lab]))
PY
    cp "$D/out" "$D/scores.jsonl"
    run calibrate --labels "$D/labels.csv" "$D/in" -m "$G/model.msm" -o "$D/new.msm" --json \
        --targets sens80,sens95,spec70,spec90
    expect_rc 0
    cp "$D/out" "$D/cal.json"
    run scan -q --no-overlays -m "$D/new.msm" "$D/in" --jsonl --operating-point spec90
    expect_rc 0
    "$PY" - "$D" <<'PY' || fail "calibration statistics differ from the reference"
import json, math, os, sys
d = sys.argv[1]
cal = json.load(open(os.path.join(d, "cal.json")))
lab = {}
for line in open(os.path.join(d, "labels.csv")).read().split("\n")[1:]:
    if line:
        p, l = line.split(",")
        lab[p] = 1 if l == "abnormal" else 0
s = {os.path.basename(r["input"]["path"]): r["score"]["value"]
     for r in map(json.loads, open(os.path.join(d, "scores.jsonl")))}
ys = [lab[k] for k in sorted(s)]
xs = [s[k] for k in sorted(s)]
pos = [x for x, y in zip(xs, ys) if y]
neg = [x for x, y in zip(xs, ys) if not y]
assert cal["scans"] == {"total": 60, "normal": len(neg), "abnormal": len(pos)}, cal["scans"]
auc = sum((p > q) + 0.5 * (p == q) for p in pos for q in neg) / (len(pos) * len(neg))
assert abs(cal["auroc"]["value"] - auc) < 1e-5, (cal["auroc"], auc)
assert cal["auroc"]["ci_low"] <= auc <= cal["auroc"]["ci_high"], cal["auroc"]
assert auc > 0.6, auc
def sig(z):
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))
def loss(T):
    return sum(-math.log(max(1e-300, sig(x / T) if y else 1 - sig(x / T))) for x, y in zip(xs, ys)) / len(xs)
grid = [10 ** (-2 + 4 * i / 20000) for i in range(20001)]
tbest = min(grid, key=loss)
T = cal["temperature"]["new"]
assert abs(T - tbest) <= 2e-3 * tbest, (T, tbest)
assert loss(T) <= loss(tbest) + 1e-7, (T, tbest)
pr = [sig(x / T) for x in xs]
def ece(ps):
    bins = [[0, 0, 0] for _ in range(10)]
    for p, y in zip(ps, ys):
        b = bins[min(9, int(p * 10))]
        b[0] += p; b[1] += y; b[2] += 1
    return sum(abs(b[0] - b[1]) for b in bins) / len(ps)
assert abs(cal["ece"]["after"] - ece(pr)) < 1e-4, (cal["ece"], ece(pr))
assert abs(cal["ece"]["before"] - ece([sig(x / 1.5) for x in xs])) < 1e-4, cal["ece"]
pp = sorted((p for p, y in zip(pr, ys) if y), reverse=True)
pn = sorted(p for p, y in zip(pr, ys) if not y)
for op in cal["operating_points"]:
    nn = int(op["name"][4:])
    if op["name"].startswith("sens"):
        k = -(-nn * len(pp) // 100)
        want = pp[k - 1]
        assert op["sensitivity"]["value"] >= nn / 100, op
    else:
        m = -(-nn * len(pn) // 100)
        want = pn[m - 1]
        assert op["specificity"]["value"] >= nn / 100, op
    assert abs(op["threshold"] - want) < 2e-5, (op, want)
    for k in ("sensitivity", "specificity"):
        c = op[k]
        assert c["ci_low"] <= c["value"] <= c["ci_high"], op
# scanning with the calibrated model flags exactly per the fitted spec90 threshold
thr = [op for op in cal["operating_points"] if op["name"] == "spec90"][0]
scan = [json.loads(l) for l in open(os.path.join(d, "out"))]
flag_neg = sum(1 for r in scan if r["score"]["flagged"] and not lab[os.path.basename(r["input"]["path"])])
assert abs(1 - flag_neg / len(neg) - thr["specificity"]["value"]) < 1e-6, (flag_neg, thr)
assert cal["temperature"]["at_bound"] is False, cal["temperature"]
PY
    ;;
*)
    fail "unknown case '$CASE'"
    ;;
esac
echo "PASS [$CASE]"
exit 0
