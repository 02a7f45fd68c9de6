#!/usr/bin/python3
"""Localisation of a CV run, measured end to end with `medscreen scan` (issue 4 targets):

  pointing game  the region map's maximum (the top region's peak pixel) falls inside one of
                 the radiologist boxes of the image (boxes.csv of the adult dev set);
  region IoU     some flagged region's bounding box overlaps a box with IoU > 0.1.

Each fold's checkpoint (CVDIR/fold{k}.pt of `train_cxr.py --folds`) is exported to .msm with
the CV run's calibration (scripts/export_cxr.py --cv), and `medscreen scan` screens the boxed
images of that fold's held-out patients only, so every figure is out-of-fold. Regions are
scan's own: at the model's default operating point and its region threshold rules, so the
figures describe what a user sees. The pointing game uses the map peak whether or not the
image is flagged (scan is run with --region-threshold 0 for it, where the first region holds
the global peak); the IoU figure uses the default operating point.

Writes CVDIR/regions.json and prints a summary. Needs the data in ../shared/data.
Usage: /usr/bin/python3 scripts/eval_cxr_regions.py CVDIR [--medscreen build/medscreen]
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cxr_data  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def iou(a, b):
    """a, b: (x0, y0, x1, y1)."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def scan(ms, model, files, out, extra=()):
    lst = "\n".join(files) + "\n"
    subprocess.run([ms, "scan", "-q", "--no-overlays", "-m", model, "-o", out, *extra, "-"],
                   input=lst.encode(), check=True)
    reps = {}
    for n in os.listdir(os.path.join(out, "scans")):
        with open(os.path.join(out, "scans", n)) as f:
            r = json.load(f)
        reps[r["input"]["path"]] = r
    return reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("cvdir")
    ap.add_argument("--medscreen", default=os.path.join(HERE, "..", "build", "medscreen"))
    args = ap.parse_args()
    ms = os.path.abspath(args.medscreen)
    with open(os.path.join(args.cvdir, "record.json")) as f:
        rec = json.load(f)
    k = rec["settings"]["folds"]
    nih = cxr_data.read_nih()
    folds = cxr_data.patient_folds(nih, k, rec["settings"].get("split_seed", 0))
    boxes = {}
    with open(os.path.join(cxr_data.DATA, "nih-cxr-dev-512", "boxes.csv")) as f:
        next(f)
        for line in f:
            p, _, x, y, w, h = line.strip().split(",")
            x, y, w, h = map(float, (x, y, w, h))
            boxes.setdefault(p, []).append((x, y, x + w, y + h))
    rel_of = {r["rel"]: i for i, r in enumerate(nih)}
    detail = []
    with tempfile.TemporaryDirectory() as td:
        for fold in range(k):
            ckpt = os.path.join(args.cvdir, "fold%d.pt" % fold)
            mdir = os.path.join(td, "m%d" % fold)
            subprocess.run([sys.executable, os.path.join(HERE, "export_cxr.py"), ckpt, mdir,
                            "--name", "fold%d" % fold, "--medscreen", ms, "--cv",
                            os.path.join(args.cvdir, "record.json")], check=True,
                           stdout=subprocess.DEVNULL)
            model = os.path.join(mdir, "fold%d.msm" % fold)
            files = {}
            for rel in boxes:
                key = "nih-cxr-dev-512/" + rel
                i = rel_of.get(key)
                if i is not None and folds[i] == fold:
                    files[nih[i]["path"]] = rel
            if not files:
                continue
            op = scan(ms, model, list(files), os.path.join(td, "op%d" % fold))
            peak = scan(ms, model, list(files), os.path.join(td, "pk%d" % fold),
                        ("--region-threshold", "0", "--hysteresis", "0"))
            for path, rel in files.items():
                r, p = op[path], peak[path]
                bx = boxes[rel]
                top = p["regions"][0] if p["regions"] else None
                px = (top["peak_xy"][0] + 0.5, top["peak_xy"][1] + 0.5) if top else None
                hit = bool(px and any(b[0] <= px[0] <= b[2] and b[1] <= px[1] <= b[3]
                                      for b in bx))
                best = 0.0
                for g in r["regions"]:
                    bb = g["bbox"]
                    reg = (bb["x"], bb["y"], bb["x"] + bb["w"], bb["y"] + bb["h"])
                    best = max([best] + [iou(reg, b) for b in bx])
                detail.append({"path": rel, "fold": fold, "probability": r["score"]["probability"],
                               "flagged": r["score"]["flagged"], "regions": len(r["regions"]),
                               "peak_xy": px, "pointing_hit": hit, "best_iou": round(best, 4),
                               "iou_hit": best > 0.1})
    n = len(detail)
    res = {"n_boxed_images": n,
           "pointing_game": {"hits": sum(d["pointing_hit"] for d in detail), "n": n},
           "region_iou_gt_0.1": {"hits": sum(d["iou_hit"] for d in detail), "n": n},
           "flagged": sum(d["flagged"] for d in detail),
           "operating_point": "the model's default (from the CV calibration)",
           "detail": detail}
    for key in ("pointing_game", "region_iou_gt_0.1"):
        res[key]["rate"] = res[key]["hits"] / n if n else None
    with open(os.path.join(args.cvdir, "regions.json"), "w") as f:
        json.dump(res, f, indent=1, sort_keys=True)
    print("boxed images: %d (out-of-fold), flagged at the default operating point: %d" %
          (n, res["flagged"]))
    print("pointing game (map peak inside a box): %d/%d = %.2f" % (
        res["pointing_game"]["hits"], n, res["pointing_game"]["rate"] or 0))
    print("a flagged region with IoU > 0.1: %d/%d = %.2f" % (
        res["region_iou_gt_0.1"]["hits"], n, res["region_iou_gt_0.1"]["rate"] or 0))


if __name__ == "__main__":
    main()
