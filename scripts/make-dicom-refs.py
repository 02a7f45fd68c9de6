#!/usr/bin/python3
"""Reference decodes of DICOM files with independent tools, for tests/conformance.

Usage:
  make-dicom-refs.py INPUT_DIR OUT_DIR [--glob PATTERN] [--jobs N] [--manifest-out FILE]

For every file in INPUT_DIR (not recursive; manifest.csv, SOURCES.md and *.md/*.csv/*.txt are
skipped) and for its first and, if multi-frame, last frame, this writes OUT_DIR/<file>.f<k>.pnm
(k is the 0-based frame index) with DCMTK's dcm2pnm (dcmj2pnm for JPEG, dcml2pnm for JPEG-LS) as a 16-bit ASCII PGM (grayscale) or PPM
(colour), and OUT_DIR/refs.tsv with one row per frame: the tool chain used, its exit status and
the first line of its stderr.

The options follow medscreen's documented default (include/medscreen/loader.h):
  * Modality LUT (rescale or Modality LUT Sequence): applied, dcm2pnm's default (+M).
  * VOI: the first Window Center/Width if the file has one (+Wi 1); else, for enhanced
    multi-frame objects, the frame's window from the functional groups (+Ww c w); else the
    first VOI LUT Sequence item (+Wl 1); else a min-max window over the frame (+Wm).
    Colour: none.
  * Presentation LUT Shape and MONOCHROME1: dcm2pnm renders them by default.
  * Overlays: off (-O); medscreen never burns overlays into the pixels.
JPEG 2000 and HTJ2K (1.2.840.10008.1.2.4.90/.91/.201/.202/.203), which dcm2pnm cannot decode,
go through `gdcmconv --raw` first.

Exit status: 0 when the references were written (individual tool failures are recorded in
refs.tsv, not fatal); 77 (ctest SKIP_RETURN_CODE) when INPUT_DIR, dcm2pnm, gdcmconv or pydicom is
missing; 2 on usage errors. Runs with Debian's /usr/bin/python3 (pydicom 2.3.1).
"""

import argparse
import concurrent.futures
import csv
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

SKIP = 77
# Debian's dcm2pnm registers only the RLE decoder; dcmj2pnm adds the JPEG family (libijg8/12/16)
# and dcml2pnm JPEG-LS (CharLS). All three take the same rendering options.
JPEG_SYNTAXES = {"1.2.840.10008.1.2.4.%d" % n for n in (50, 51, 52, 53, 54, 55, 56, 57, 58, 59,
                                                        60, 61, 62, 63, 64, 65, 66, 70)}
JPEGLS_SYNTAXES = {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
J2K_SYNTAXES = {
    "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.202", "1.2.840.10008.1.2.4.203",
}
NOT_DICOM_SUFFIXES = (".md", ".csv", ".txt", ".json", ".dump", ".gz", ".tsv")
TOOL_TIMEOUT_S = 180


def skip(msg, out_dir=None):
    """Exits with ctest's skip code, removing stale results so the harness skips too."""
    if out_dir is not None:
        for stale in ("refs.tsv", "manifest.csv"):
            try:
                os.unlink(os.path.join(out_dir, stale))
            except OSError:
                pass
    print("SKIP: " + msg)
    sys.exit(SKIP)


def text(v):
    return "" if v is None else str(v).strip()


def first_value(v):
    """First value of a possibly multi-valued element, as text ("" when empty)."""
    if v is None:
        return ""
    try:
        if isinstance(v, (list, tuple)) or type(v).__name__ == "MultiValue":
            return text(v[0]) if len(v) else ""
    except Exception:
        return ""
    return text(v)


def header_facts(pydicom, path):
    """Header facts with pydicom, tolerant of odd files. Returns (facts dict, error text)."""
    facts = {"ts": "", "photometric": "", "frames": 1, "has_window": False, "has_voi_lut": False,
             "fg_window": {}, "window": None, "has_modality_lut": False,
             "bits_alloc": "", "bits_stored": "", "pixel_rep": "", "spp": "", "rows": "",
             "cols": "", "modality": "", "frames_raw": "", "slope": "", "intercept": ""}
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as e:  # the reference tool still runs; it will say what it thinks
        return facts, "%s: %s" % (type(e).__name__, e)
    meta = getattr(ds, "file_meta", None)
    if meta is not None:
        facts["ts"] = text(meta.get("TransferSyntaxUID", ""))

    def get(kw):
        try:
            return ds.get(kw)
        except Exception:
            return None

    facts["photometric"] = text(get("PhotometricInterpretation"))
    facts["frames_raw"] = text(get("NumberOfFrames"))
    try:
        facts["frames"] = max(1, int(facts["frames_raw"])) if facts["frames_raw"] else 1
    except ValueError:
        facts["frames"] = 1
    wc, ww = first_value(get("WindowCenter")), first_value(get("WindowWidth"))
    facts["has_window"] = wc != "" and ww != ""
    try:
        facts["window"] = (float(wc), float(ww)) if facts["has_window"] else None
    except ValueError:
        facts["window"] = None
    facts["has_modality_lut"] = get("ModalityLUTSequence") is not None
    voi = get("VOILUTSequence")
    # An item with an empty LUT Descriptor or LUT Data is no VOI LUT (some test files carry one).
    try:
        facts["has_voi_lut"] = (voi is not None and len(voi) > 0
                                and voi[0].get("LUTDescriptor") not in (None, "", [])
                                and voi[0].get("LUTData") not in (None, b"", "", []))
    except Exception:
        facts["has_voi_lut"] = False
    facts["fg_window"] = {}
    if not facts["has_window"]:
        for k in {0, facts["frames"] - 1}:
            cw = functional_group_window(get, k)
            if cw is not None:
                facts["fg_window"][k] = cw
    for key, kw in (("bits_alloc", "BitsAllocated"), ("bits_stored", "BitsStored"),
                    ("pixel_rep", "PixelRepresentation"), ("spp", "SamplesPerPixel"),
                    ("rows", "Rows"), ("cols", "Columns"), ("modality", "Modality"),
                    ("slope", "RescaleSlope"), ("intercept", "RescaleIntercept")):
        facts[key] = text(get(kw))
    return facts, ""


def functional_group_window(get, k):
    """Window of frame k of an enhanced multi-frame object (PS3.3 C.7.6.16.2.10 Frame VOI LUT
    Macro), from its Per-Frame or the Shared Functional Groups; None when there is none."""
    for kw, index in (("PerFrameFunctionalGroupsSequence", k),
                      ("SharedFunctionalGroupsSequence", 0)):
        try:
            seq = get(kw)
            if seq is None or len(seq) <= index:
                continue
            voi = seq[index].get("FrameVOILUTSequence")
            if voi is None or len(voi) == 0:
                continue
            c, w = first_value(voi[0].get("WindowCenter")), first_value(voi[0].get("WindowWidth"))
            if c != "" and w != "":
                return float(c), float(w)
        except Exception:
            continue
    return None


def linear_rescale(facts):
    """(slope, intercept) of a plain positive rescale that DCMTK would round to integers
    (non-integer slope or intercept, no Modality LUT Sequence); None otherwise."""
    try:
        m = float(facts["slope"]) if facts["slope"] else 1.0
        b = float(facts["intercept"]) if facts["intercept"] else 0.0
    except ValueError:
        return None
    if facts["has_modality_lut"] or m <= 0 or (m == round(m) and b == round(b)):
        return None
    return m, b


def voi_option(facts, k=0):
    """dcm2pnm options for frame k. DCMTK 3.6.7 rounds rescaled (modality) values to integers,
    which costs up to one modality unit: negligible for wide windows (the table's tolerance
    states it), fatal for PET/RT images whose whole range is below 1 (slopes of 1e-6..1e-8).
    Where that matters the rescale is taken out (-M) and the window mapped into stored values,
    which is exact for min-max and differs from LINEAR in modality units only by O(1/w')."""
    if not facts["photometric"].startswith("MONOCHROME") and facts["photometric"] != "":
        return []
    lin = linear_rescale(facts)
    if facts["has_window"]:
        if lin is not None and facts["window"] is not None and facts["window"][1] < 64:
            (c, w), (m, b) = facts["window"], lin
            return ["-M", "+Ww", repr((c - b) / m), repr(w / m)]
        return ["+Wi", "1"]
    if k in facts["fg_window"]:
        # dcm2pnm does not read functional-group windows itself, but it does apply the
        # functional-group rescale, so the window passes through unchanged.
        c, w = facts["fg_window"][k]
        return ["+Ww", repr(c), repr(w)]
    if facts["has_voi_lut"]:
        return ["+Wl", "1"]
    if lin is not None:
        return ["-M", "+Wm"]  # a positive linear map commutes with min-max: same result
    return ["+Wm"]


def first_line(data):
    """The first error line (DCMTK's "E:"/"F:"), else the first non-empty line."""
    lines = [ln.strip().replace("\t", " ") for ln in data.decode("utf-8", "replace").splitlines()]
    lines = [ln for ln in lines if ln]
    for ln in lines:
        if ln.startswith(("E:", "F:")):
            return ln
    return lines[0] if lines else ""


def run(cmd):
    try:
        p = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           timeout=TOOL_TIMEOUT_S, check=False)
        return p.returncode, first_line(p.stderr)
    except subprocess.TimeoutExpired:
        return 124, "timeout after %d s" % TOOL_TIMEOUT_S


def render(tool, k, voi, src, out):
    """One dcm2pnm-family call for 0-based frame k; returns (status, error line)."""
    if os.path.exists(out):
        os.unlink(out)
    rc, err = run([tool, "+opw", "-O", "+F", str(k + 1)] + voi + [src, out])
    if rc == 0 and not os.path.exists(out):
        rc, err = 1, os.path.basename(tool) + " wrote no output"
    if rc != 0 and os.path.exists(out):
        os.unlink(out)
    return rc, err


def reference_one(job):
    """Runs the tool chain for one file; returns its refs.tsv rows.

    Primary chain by transfer syntax: dcm2pnm (native, RLE, deflate), dcmj2pnm (JPEG), dcml2pnm
    (JPEG-LS), gdcmconv --raw then dcm2pnm (JPEG 2000). When the DCMTK-only chain fails on a frame,
    GDCM gets a second opinion (gdcmconv --raw then dcm2pnm): DCMTK 3.6.7 cannot, for example,
    find frame n > 1 in a multi-frame file whose fragments have no Basic Offset Table. The
    primary failure stays in the stderr column either way."""
    name, path, facts, hdr_err, out_dir, tools = job
    frames = [0] if facts["frames"] <= 1 else [0, facts["frames"] - 1]
    tool = "dcm2pnm"
    if facts["ts"] in JPEG_SYNTAXES:
        tool = "dcmj2pnm"
    elif facts["ts"] in JPEGLS_SYNTAXES:
        tool = "dcml2pnm"
    j2k = facts["ts"] in J2K_SYNTAXES
    raw = None  # gdcmconv --raw output, made once per file when needed
    raw_rc, raw_err = 0, ""
    rows = []
    try:
        for k in frames:
            voi = voi_option(facts, k)
            out = os.path.join(out_dir, "%s.f%d.pnm" % (name, k))
            rc, err, chain = 1, "", tool
            if not j2k:
                rc, err = render(tools[tool], k, voi, path, out)
            if rc != 0:
                first_err = err
                if raw is None:
                    fd, raw = tempfile.mkstemp(suffix=".dcm", dir=out_dir, prefix=".raw-")
                    os.close(fd)
                    raw_rc, raw_err = run([tools["gdcmconv"], "--raw", path, raw])
                chain = ("gdcmconv --raw | dcm2pnm" if j2k
                         else "%s failed; gdcmconv --raw | dcm2pnm" % tool)
                if raw_rc != 0:
                    rc, err = raw_rc, "gdcmconv: " + raw_err
                else:
                    rc, err = render(tools["dcm2pnm"], k, voi, raw, out)
                if first_err:
                    err = (tool + ": " + first_err + (" | then " + err if err else ""))
            rows.append([name, str(k), str(facts["frames"]), chain, " ".join(voi) or "none",
                         str(rc), err, hdr_err, os.path.basename(out) if rc == 0 else ""])
    finally:
        if raw is not None and os.path.exists(raw):
            os.unlink(raw)
    return rows


def list_inputs(in_dir, pattern):
    names = []
    for n in sorted(os.listdir(in_dir)):
        p = os.path.join(in_dir, n)
        if not os.path.isfile(p) or n.startswith("."):
            continue
        if pattern is not None:
            if not fnmatch.fnmatch(n, pattern):
                continue
        elif n.lower().endswith(NOT_DICOM_SUFFIXES):
            continue
        names.append(n)
    return names


MANIFEST_COLUMNS = ["file", "transfer_syntax", "modality", "photometric", "bits_alloc",
                    "bits_stored", "pixel_rep", "spp", "frames", "rows", "cols",
                    "rescale_slope", "rescale_intercept", "pydicom_reads", "why"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("input_dir")
    ap.add_argument("out_dir")
    ap.add_argument("--glob", default=None, help="only files matching this pattern")
    ap.add_argument("--jobs", "-j", type=int, default=2)
    ap.add_argument("--manifest-out", default=None,
                    help="also write pydicom header facts in manifest.csv's columns")
    args = ap.parse_args()

    if not os.path.isdir(args.input_dir):
        skip("input folder %s is absent; no reference decodes made" % args.input_dir,
             args.out_dir)
    tools = {}
    for tool, pkg in (("dcm2pnm", "dcmtk"), ("dcmj2pnm", "dcmtk"), ("dcml2pnm", "dcmtk"),
                      ("gdcmconv", "libgdcm-tools")):
        tools[tool] = shutil.which(tool)
        if tools[tool] is None:
            skip("%s not found (Debian package %s); no reference decodes made" % (tool, pkg),
                 args.out_dir)
    try:
        import pydicom
    except ImportError:
        skip("pydicom not importable by %s (Debian package python3-pydicom)" % sys.executable,
             args.out_dir)
    warnings.simplefilter("ignore")

    os.makedirs(args.out_dir, exist_ok=True)
    names = list_inputs(args.input_dir, args.glob)
    jobs, manifest = [], []
    for n in names:
        path = os.path.join(args.input_dir, n)
        facts, err = header_facts(pydicom, path)
        jobs.append((n, path, facts, err, args.out_dir, tools))
        manifest.append([n, facts["ts"], facts["modality"], facts["photometric"],
                         facts["bits_alloc"], facts["bits_stored"], facts["pixel_rep"],
                         facts["spp"], facts["frames_raw"], facts["rows"], facts["cols"],
                         facts["slope"], facts["intercept"], "no: " + err if err else "yes", ""])

    rows = []
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for r in pool.map(reference_one, jobs):
            rows.extend(r)

    tsv = os.path.join(args.out_dir, "refs.tsv")
    with open(tsv + ".tmp", "w", encoding="utf-8") as f:
        f.write("file\tframe\tframes\tchain\tvoi\tstatus\tstderr\tpydicom_error\tref\n")
        for r in rows:
            f.write("\t".join(c.replace("\t", " ").replace("\n", " ") for c in r) + "\n")
    os.replace(tsv + ".tmp", tsv)
    if args.manifest_out:
        with open(args.manifest_out + ".tmp", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(MANIFEST_COLUMNS)
            w.writerows(manifest)
        os.replace(args.manifest_out + ".tmp", args.manifest_out)
    failed = sum(1 for r in rows if r[5] != "0")
    print("make-dicom-refs: %d files, %d frames, %d reference failures (see %s)"
          % (len(names), len(rows), failed, tsv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
