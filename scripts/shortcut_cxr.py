#!/usr/bin/python3
"""Shortcut check for a CV run of train_cxr.py: does the model rank by view position (AP vs
PA), a known confounder in NIH data (sick patients are filmed AP, in bed), instead of by the
finding?

Prints, from CVDIR/oof.json (out-of-fold logits of the adult set) and the adult labels:
  - how well the view alone predicts the label (AUROC of view == AP),
  - the model's AUROC over all images, and within PA only and AP only (if the model only
    learnt the view, the within-view AUROCs fall to about 0.5),
  - each with a patient-level bootstrap 95% interval.
Writes CVDIR/shortcut.json. Needs the data in ../shared/data.
Usage: /usr/bin/python3 scripts/shortcut_cxr.py CVDIR
"""
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cxr_data  # noqa: E402


def auroc(y, s):
    y, s = np.asarray(y), np.asarray(s, dtype=float)
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    gt = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(gt / (len(pos) * len(neg)))


def boot_ci(y, s, pat, n=2000, seed=1):
    rng = np.random.RandomState(seed)
    ids = np.unique(pat)
    by = {p: np.where(pat == p)[0] for p in ids}
    vals = []
    for _ in range(n):
        idx = np.concatenate([by[p] for p in rng.choice(ids, len(ids))])
        a = auroc(y[idx], s[idx])
        if a == a:
            vals.append(a)
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def main():
    cvdir = sys.argv[1]
    with open(os.path.join(cvdir, "oof.json")) as f:
        oof = json.load(f)
    nih = {r["rel"]: r for r in cxr_data.read_nih()}
    rows = [(nih[p]["view"], nih[p]["patient"], y, s)
            for p, y, s in zip(oof["path"], oof["label"], oof["logit"]) if p in nih]
    view = np.array([r[0] for r in rows])
    pat = np.array([r[1] for r in rows])
    y = np.array([r[2] for r in rows])
    s = np.array([r[3] for r in rows], dtype=float)
    ap = (view == "AP").astype(float)
    out = {"n": len(rows), "n_ap": int(ap.sum()), "n_pa": int((1 - ap).sum()),
           "abnormal_rate_ap": float(y[ap == 1].mean()) if ap.sum() else None,
           "abnormal_rate_pa": float(y[ap == 0].mean()) if (1 - ap).sum() else None,
           "view_only_auroc": auroc(y, ap), "view_only_ci95": boot_ci(y, ap, pat),
           "model_auroc": auroc(y, s), "model_ci95": boot_ci(y, s, pat)}
    for v in ("PA", "AP"):
        m = view == v
        out["model_auroc_%s_only" % v] = auroc(y[m], s[m])
        out["model_ci95_%s_only" % v] = boot_ci(y[m], s[m], pat[m])
    with open(os.path.join(cvdir, "shortcut.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
    print("adult OOF: %d images (%d AP, %d PA); abnormal rate AP %.2f, PA %.2f" % (
        out["n"], out["n_ap"], out["n_pa"], out["abnormal_rate_ap"] or 0,
        out["abnormal_rate_pa"] or 0))
    print("view alone (AP = abnormal): AUROC %.3f [%.3f, %.3f]" % (
        out["view_only_auroc"], *out["view_only_ci95"]))
    print("model: all %.3f [%.3f, %.3f]; PA only %.3f [%.3f, %.3f]; AP only %.3f [%.3f, %.3f]" % (
        out["model_auroc"], *out["model_ci95"], out["model_auroc_PA_only"],
        *out["model_ci95_PA_only"], out["model_auroc_AP_only"], *out["model_ci95_AP_only"]))


if __name__ == "__main__":
    main()
