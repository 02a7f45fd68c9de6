#!/usr/bin/python3
"""Helper of scripts/bench-scan.sh: makes its inputs and turns its runs into figures.

Inputs, in two steps (each skips what is already there):

  make-scan-bench-data.py phantoms DIR K   writes K distinct 2048x2048 12-bit chest phantoms
                                           (scripts/make-bench-data.py's phantom and DICOM
                                           writer) as DIR/uNN.dcm, explicit VR little endian,
                                           each with its own lesions, UIDs and DX/CR modality
  make-scan-bench-data.py links DIR N SRC...
                                           makes DIR/scan-00000.dcm ... N names, hard links to
                                           the SRC files in turn (removes other files in DIR)

Figures:

  bench-scan.py stats TIME_V_FILE OUT_DIR SCANS JOBS OVERLAYS RC
                                           one JSON line for a run: wall s, scans/s, peak RSS
                                           (from /usr/bin/time -v), statuses and the mean
                                           per-scan timings_ms of OUT_DIR/scans/*.json
  bench-scan.py table RUNS.jsonl           the table, inference-only throughput and targets

Hard links keep the disk use at K files while every name is still read, hashed and decoded on
its own by medscreen scan. Nothing here is patient data (see make-bench-data.py).
"""

import glob
import importlib.util
import json
import os
import sys

import numpy as np
import pydicom
from pydicom.uid import generate_uid

HERE = os.path.dirname(os.path.abspath(__file__))


def bench_data_module():
    spec = importlib.util.spec_from_file_location(
        "make_bench_data", os.path.join(HERE, "make-bench-data.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def lesions_for(i):
    """Phantom 0 has none, the others 1 to 3 round opacities in the lungs (seeded by index)."""
    rng = np.random.default_rng(1000 + i)
    out = []
    for _ in range(0 if i == 0 else 1 + (i - 1) % 3):
        side = 0.32 if rng.random() < 0.5 else 0.68
        out.append((float(rng.uniform(0.32, 0.64)), float(side + rng.uniform(-0.06, 0.06)),
                    float(rng.uniform(0.012, 0.04)), float(rng.uniform(0.15, 0.35))))
    return out


def phantoms(out, k):
    os.makedirs(out, exist_ok=True)
    mod = None
    for i in range(k):
        path = os.path.join(out, "u%02d.dcm" % i)
        if os.path.exists(path):
            continue
        mod = mod or bench_data_module()
        tmp = path + ".tmp"
        mod.write_dicom(mod.phantom(lesions=lesions_for(i)), tmp)
        ds = pydicom.dcmread(tmp)
        # write_dicom's UIDs are fixed; give each phantom its own, and alternate DX / CR.
        src = ["medscreen-scan-bench", str(i)]
        if i % 2:
            ds.Modality = "CR"
            ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"  # CR image storage
            ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.SOPInstanceUID = generate_uid(entropy_srcs=src + ["sop"])
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID = generate_uid(entropy_srcs=src + ["study"])
        ds.SeriesInstanceUID = generate_uid(entropy_srcs=src + ["series"])
        ds.PatientID = "PHANTOM%02d" % i
        ds.save_as(tmp, write_like_original=False)
        os.replace(tmp, path)
        print("make-scan-bench-data: wrote %s (%s, %d lesions)" % (path, ds.Modality,
                                                                     len(lesions_for(i))))
    return 0


def links(out, n, srcs):
    os.makedirs(out, exist_ok=True)
    want = {"scan-%05d.dcm" % j: srcs[j % len(srcs)] for j in range(n)}
    for name in os.listdir(out):
        if name not in want:
            os.unlink(os.path.join(out, name))
    made = 0
    for name, src in want.items():
        dst = os.path.join(out, name)
        try:
            if os.path.samefile(dst, src):
                continue
            os.unlink(dst)
        except FileNotFoundError:
            pass
        os.link(src, dst)
        made += 1
    if made:
        print("make-scan-bench-data: %s: %d names (%d new links) to %d files"
              % (out, n, made, len(srcs)))
    return 0


STAGES = ("read", "decode", "preprocess", "infer", "regions")


def parse_time_v(path):
    """Wall seconds, peak RSS (KiB), user and system seconds and CPU% from GNU time -v."""
    out = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            key, _, val = line.strip().rpartition(": ")
            if key.startswith("Elapsed (wall clock) time"):
                secs = 0.0
                for part in val.split(":"):
                    secs = secs * 60 + float(part)
                out["wall_s"] = secs
            elif key == "Maximum resident set size (kbytes)":
                out["max_rss_kib"] = int(val)
            elif key == "User time (seconds)":
                out["user_s"] = float(val)
            elif key == "System time (seconds)":
                out["sys_s"] = float(val)
            elif key == "Voluntary context switches":
                out["vol_cs"] = int(val)
            elif key == "Involuntary context switches":
                out["invol_cs"] = int(val)
            elif key == "Percent of CPU this job got":
                out["cpu_pct"] = float(val.rstrip("%"))
    return out


def stats(time_v, out_dir, scans, jobs, overlays, rc):
    r = {"scans": int(scans), "jobs": int(jobs), "overlays": overlays == "1", "rc": int(rc)}
    r.update(parse_time_v(time_v))
    sums = {k: 0.0 for k in STAGES}
    status = {}
    infer = []
    for path in glob.glob(os.path.join(out_dir, "scans", "*.json")):
        with open(path, encoding="utf-8") as f:
            rep = json.load(f)
        status[rep["status"]] = status.get(rep["status"], 0) + 1
        t = rep.get("timings_ms") or {}
        if rep["status"] == "ok":
            for k in STAGES:
                sums[k] += float(t.get(k, 0.0))
            infer.append(float(t.get("infer", 0.0)))
    ok = status.get("ok", 0)
    r["status"] = status
    r["mean_ms"] = {k: (sums[k] / ok if ok else None) for k in STAGES}
    infer.sort()
    r["infer_median_ms"] = infer[len(infer) // 2] if infer else None
    if r.get("wall_s"):
        r["scans_per_s"] = r["scans"] / r["wall_s"]
        # What the per-scan timings do not cover: overlay and thumbnail encoding, writing the
        # files (fsync, rename), the summary and review page, start-up; per scan per worker.
        r["other_ms"] = (r["wall_s"] * 1000.0 * r["jobs"] / r["scans"]
                         - sum(v for v in r["mean_ms"].values() if v is not None))
    if os.path.isdir(os.path.join(out_dir, "overlays")):
        r["output_bytes"] = sum(os.path.getsize(p) for p in
                                glob.glob(os.path.join(out_dir, "*", "*")))
    print(json.dumps(r, sort_keys=True))
    return 0


def fmt(v, spec):
    return "-" if v is None else format(v, spec)


def table(path):
    runs = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                runs.append(json.loads(line))
    hdr = ("scans", "jobs", "overlays", "wall s", "scans/s", "peak RSS MiB", "CPU %",
           "read", "decode", "prep", "infer", "regions", "other")
    print("%6s %4s %8s %8s %8s %12s %6s | %7s %7s %7s %7s %7s %7s   (mean ms per scan)" % hdr)
    for r in runs:
        m = r["mean_ms"]
        print("%6d %4d %8s %8s %8s %12s %6s | %7s %7s %7s %7s %7s %7s%s" % (
            r["scans"], r["jobs"], "yes" if r["overlays"] else "no",
            fmt(r.get("wall_s"), ".2f"), fmt(r.get("scans_per_s"), ".2f"),
            fmt(r["max_rss_kib"] / 1024.0 if "max_rss_kib" in r else None, ".1f"),
            fmt(r.get("cpu_pct"), ".0f"),
            fmt(m["read"], ".1f"), fmt(m["decode"], ".1f"), fmt(m["preprocess"], ".1f"),
            fmt(m["infer"], ".2f"), fmt(m["regions"], ".1f"), fmt(r.get("other_ms"), ".1f"),
            "" if r["rc"] == 0 and set(r["status"]) <= {"ok"}
            else "   rc %d, %s" % (r["rc"], r["status"])))
    print("  read = file read + sha256; other = wall x jobs / scans - the stages: overlay and"
          " thumbnail\n  encoding, JSON/PNG writes with fsync + rename, summary and report.html,"
          " start-up.\n  CPU % below 100 x jobs: waiting, for other processes' CPU time (involuntary"
          " context\n  switches) or for I/O such as fsync (voluntary ones):")
    for r in runs:
        print("    %d scans, %d job%s, overlays %s: %s voluntary, %s involuntary switches" % (
            r["scans"], r["jobs"], "" if r["jobs"] == 1 else "s", "on" if r["overlays"] else "off",
            r.get("vol_cs", "-"), r.get("invol_cs", "-")))

    def find(scans, jobs, overlays=True):
        for r in runs:
            if r["scans"] == scans and r["jobs"] == jobs and r["overlays"] == overlays:
                return r
        return None

    counts = sorted({r["scans"] for r in runs})
    big, small = counts[-1], counts[0]
    print()
    print("Target 1: end-to-end >= 90%% of inference-only throughput (%d scans, overlays on)" % big)
    for jobs in (1, 2):
        r = find(big, jobs)
        if not r or not r["mean_ms"]["infer"] or not r.get("scans_per_s"):
            continue
        inf = jobs * 1000.0 / r["mean_ms"]["infer"]
        pct = 100.0 * r["scans_per_s"] / inf
        print("  %d job%s: end-to-end %8.2f scans/s, inference-only %9.1f scans/s"
              " (%d x 1000 / mean infer %.3f ms) -> %6.2f%%  %s" % (
                  jobs, "" if jobs == 1 else "s", r["scans_per_s"], inf, jobs,
                  r["mean_ms"]["infer"], pct, "PASS" if pct >= 90.0 else "MISS"))
        r2 = find(big, jobs, False) or find(small, jobs, False)
        if r2 and r2.get("scans_per_s"):
            print("          without overlays (%d scans): %8.2f scans/s -> %6.2f%% of"
                  " inference-only" % (r2["scans"], r2["scans_per_s"],
                                       100.0 * r2["scans_per_s"] / inf))
    print("Target 2: peak RSS within 10%% between %d and %d scans" % (small, big))
    for jobs in (1, 2):
        a, b = find(small, jobs), find(big, jobs)
        if not a or not b or "max_rss_kib" not in a or "max_rss_kib" not in b:
            continue
        ratio = b["max_rss_kib"] / a["max_rss_kib"]
        print("  %d job%s: %.1f MiB -> %.1f MiB, ratio %.3f  %s" % (
            jobs, "" if jobs == 1 else "s", a["max_rss_kib"] / 1024.0,
            b["max_rss_kib"] / 1024.0, ratio, "PASS" if ratio <= 1.10 else "MISS"))
    r1, r2 = find(big, 1), find(big, 2)
    if r1 and r2 and r1.get("scans_per_s") and r2.get("scans_per_s"):
        print("Scaling 1 -> 2 jobs (%d scans): %.2fx" % (big, r2["scans_per_s"] / r1["scans_per_s"]))
    return 0


def main(argv):
    if len(argv) == 8 and argv[1] == "stats":
        return stats(*argv[2:])
    if len(argv) == 3 and argv[1] == "table":
        return table(argv[2])
    if len(argv) >= 4 and argv[1] == "phantoms":
        return phantoms(argv[2], int(argv[3]))
    if len(argv) >= 5 and argv[1] == "links":
        return links(argv[2], int(argv[3]), argv[4:])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
