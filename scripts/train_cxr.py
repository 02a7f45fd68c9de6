#!/usr/bin/python3
"""Trains the chest X-ray abnormality screener of issue 4 (image score + region map).

Data: scripts/cxr_data.py (adult NIH dev set, 601 images of 411 patients; pediatric Kermany
train/test). Every run writes OUT/record.json (settings, git commit, data digest, metrics,
timings), OUT/data-hashes.json (sha256 of every data file used) and checkpoints.

  --folds K   patient-level K-fold CV on the adult set: each fold trains on the other K-1 adult
              folds plus all pediatric train images and is scored on its held-out adult fold
              (never used for choosing anything during training: fixed epochs, no early
              stopping) and on the pediatric test set. Reports per-fold and pooled
              out-of-fold AUROC with patient-level bootstrap 95% CIs, pediatric-test AUROC,
              the pointing game on the boxed images of the held-out folds, ECE before and after
              temperature scaling (the temperature fitted on the pooled out-of-fold logits, and
              a cross-fitted figure where each fold's T comes from the other folds), and the
              90%/95%-sensitivity operating points with their specificities.
  --final     trains one model on all adult + pediatric train images for export
              (OUT/model.pt); --cv RECORD copies the temperature and operating points found by
              a CV run into its record (the export reads them from there).
  --smoke     tiny subset (48 adult, 64 pediatric train, 32 test), input 64, 1 epoch, batch 16:
              exercises the whole pipeline in well under 2 minutes on a 2-core CPU.

Network (FcnScreener, ~1.2M parameters at --width 16): 3x3 conv-BN-ReLU stages, stride 2 four
times (1/16: a 16x16 map at 256 input), the last two convolutions dilated 2, dropout, 1x1 head
-> a 1-channel logit map `map`. Image logit `score` = softmax-weighted pooling of the map:
    score = sum_i softmax(r * m)_i * m_i        (r > 0 learnable sharpness, init 2)
This is the gradient of log-sum-exp pooling, moves from mean (r -> 0) to max (r -> inf) like
it, and trains the same way (every location gets gradient in proportion to its weight, unlike
max pooling; unlike mean pooling it does not spread the evidence over the lungs, which is what
made mean-pooled CAMs point at the wrong place). It is chosen over LSE because it is built only
from ops the C engine has: conv (the head, and a copy with weights times r), flatten, softmax
over channels, mul and fc (a ones vector summing the HW positions), so the exported `score`
is exactly what was trained, calibrated and thresholded (score_kind=logit). Exporting global
max pooling of an LSE-trained map instead would change the score after calibration.

Decisions: input 256 (--size): 1/16 map cells of 16 px; about 0.80 GFLOP per scan at 256
(3.2 at 512), far below the 10 GFLOP budget. Normalisation fixed at (x - 0.5) / 0.25 (metadata
norm_mean=0.5, norm_std=0.25). Each epoch shows every adult training image once plus as many
pediatric train images drawn at random (--ped-ratio 1), so the adult domain, where the
pediatric-only model failed (AUROC 0.42-0.47), is half of what the network sees. AdamW
(lr 2e-3, weight decay 1e-4), one-cycle cosine schedule, 30 epochs, batch 32, BCE on the
image logit. All fixed a priori, not tuned on the dev folds (evaluation is on other patients
and hospitals). Seeds: random, numpy, torch (+cuda); cudnn deterministic; CUDA used when present.

Timing on this 2-core CPU (no GPU, torch 1.13, 2 threads), measured with
`--folds 5 --only-fold 0 --epochs 1` at 256: one epoch (480 adult + 480 pediatric images)
72 s, fold evaluation (121 adult + 624 pediatric test) ~15 s, first decode of all 6441 images
8.5 s (then cached in build-train/cache). So the defaults (30 epochs) need about
5 x 30 x 72 s = 3.0 h for `--folds 5` plus ~0.6 h for `--final` (601 + 601 per epoch): over
the "about an hour" CPU target. Within an hour on this CPU: `--epochs 10` (CV ~1.0 h), or
`--size 192` (~0.56x the time) with ~18 epochs; decide before looking at fold results.
On a GPU the full default run should take minutes. --smoke: ~13 s (CV, 2 folds) + ~11 s (final).

Usage: /usr/bin/python3 scripts/train_cxr.py (--folds 5 | --final [--cv REC]) [--out DIR]
       [--size 256] [--epochs 30] [--seed 0] [--smoke] [--only-fold F] [--device cpu|cuda]
"""
CPU_ESTIMATE = {"epoch_seconds_256": 72, "cv5_30ep_hours": 3.0, "final_30ep_hours": 0.6}

import argparse
import datetime
import json
import math
import os
import random
import subprocess
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import cxr_data  # noqa: E402

ROOT = cxr_data.ROOT
NORM_MEAN, NORM_STD = 0.5, 0.25


# ------------------------------------------------------------------------------------ network

def cbr(cin, cout, stride=1, dil=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, dil, dilation=dil, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class FcnScreener(nn.Module):
    def __init__(self, width=16, r_init=2.0, dropout=0.2):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            cbr(1, w, 2),                        # 1/2
            cbr(w, 2 * w, 2), cbr(2 * w, 2 * w),  # 1/4
            cbr(2 * w, 4 * w, 2), cbr(4 * w, 4 * w),  # 1/8
            cbr(4 * w, 8 * w, 2), cbr(8 * w, 8 * w),  # 1/16
            cbr(8 * w, 16 * w, 1, 2), cbr(16 * w, 16 * w, 1, 2))
        self.drop = nn.Dropout2d(dropout)
        self.head = nn.Conv2d(16 * w, 1, 1)
        self.log_r = nn.Parameter(torch.tensor(math.log(r_init)))
        self.stride = 16

    def r(self):
        return self.log_r.exp()

    def forward(self, x):
        """-> (score [N,1] logit, map [N,1,H/16,W/16] logits)."""
        m = self.head(self.drop(self.features(x)))
        flat = torch.flatten(m, 1)
        wts = torch.softmax(self.r() * flat, dim=1)
        return (wts * flat).sum(1, keepdim=True), m


class ExportScreener(nn.Module):
    """The same function as FcnScreener.forward in eval mode, written with ops the C engine
    imports: Conv (head, and head * r), Flatten, Softmax(axis 1), Mul, MatMul with ones."""

    def __init__(self, net, size):
        super().__init__()
        self.features = net.features
        self.head = net.head
        r = float(net.r())
        self.head_r = nn.Conv2d(self.head.in_channels, 1, 1)
        with torch.no_grad():
            self.head_r.weight.copy_(self.head.weight * r)
            self.head_r.bias.copy_(self.head.bias * r)
        hw = (size // net.stride) ** 2
        self.register_buffer("ones", torch.ones(hw, 1))

    def forward(self, x):
        f = self.features(x)
        m = self.head(f)
        wts = torch.softmax(torch.flatten(self.head_r(f), 1), dim=1)
        return torch.matmul(wts * torch.flatten(m, 1), self.ones), m


def gflop(net, size):
    fl = [0]

    def hook(mod, inp, out):
        k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
        fl[0] += 2 * out.numel() // out.shape[0] * k
    hs = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    was = net.training
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 1, size, size, device=next(net.parameters()).device))
    net.train(was)
    for h in hs:
        h.remove()
    return fl[0] / 1e9


# ------------------------------------------------------------------------------------ augmentation

def augment(x, g):
    """x [N,1,H,W] in [0,1] on any device; g a CPU torch.Generator. Small affine (rotation
    +-7 deg, scale 0.9-1.1, shift +-5%), gamma 0.8-1.25, contrast +-15%, brightness +-0.1.
    No horizontal flip (see cxr_data.py)."""
    n = x.shape[0]
    u = lambda lo, hi: (torch.rand(n, generator=g) * (hi - lo) + lo)  # noqa: E731
    ang = u(-7, 7) * math.pi / 180
    sc = u(0.9, 1.1)
    tx, ty = u(-0.1, 0.1), u(-0.1, 0.1)  # in [-1,1] units: +-5% of the side
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    gam = torch.exp(u(math.log(0.8), math.log(1.25)))
    con, bri = u(0.85, 1.15), u(-0.1, 0.1)
    theta, gam, con, bri = (t.to(x.device) for t in (theta, gam, con, bri))
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    x = x.clamp(0, 1) ** gam.view(n, 1, 1, 1)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * con.view(n, 1, 1, 1) + mean + bri.view(n, 1, 1, 1)
    return x.clamp(0, 1)


def normalise(x):
    return (x - NORM_MEAN) / NORM_STD


# ------------------------------------------------------------------------------------ metrics

def auroc(y, s):
    y = np.asarray(y)
    s = np.asarray(s, dtype=np.float64)
    npos, nneg = int(y.sum()), int((1 - y).sum())
    if npos == 0 or nneg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ss = s[order]
    i = 0
    while i < len(s):  # average ranks over ties
        j = i
        while j + 1 < len(s) and ss[j + 1] == ss[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1
        i = j + 1
    return float((ranks[y == 1].sum() - npos * (npos + 1) / 2.0) / (npos * nneg))


def bootstrap_ci(y, s, groups, reps=2000, seed=0):
    """Patient-level (cluster) bootstrap 95% CI of the AUROC."""
    y, s, groups = np.asarray(y), np.asarray(s), np.asarray(groups)
    uniq = np.unique(groups)
    idx = {g: np.where(groups == g)[0] for g in uniq}
    rng = np.random.RandomState(seed)
    vals = []
    for _ in range(reps):
        pick = np.concatenate([idx[g] for g in rng.choice(uniq, len(uniq))])
        a = auroc(y[pick], s[pick])
        if not math.isnan(a):
            vals.append(a)
    return [float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))]


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-np.asarray(z, dtype=np.float64)))


def ece(y, p, bins=15):
    y, p = np.asarray(y, dtype=np.float64), np.asarray(p, dtype=np.float64)
    edges = np.linspace(0, 1, bins + 1)
    e = 0.0
    for i in range(bins):
        sel = (p > edges[i]) & (p <= edges[i + 1]) if i else (p >= 0) & (p <= edges[1])
        if sel.any():
            e += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(e)


def nll(y, z, t):
    p = np.clip(sigmoid(np.asarray(z) / t), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def fit_temperature(y, z):
    """T minimising the NLL of sigmoid(z / T), golden-section search on log T in [0.05, 20]."""
    y = np.asarray(y, dtype=np.float64)
    a, b = math.log(0.05), math.log(20.0)
    gr = (math.sqrt(5) - 1) / 2
    c, d = b - gr * (b - a), a + gr * (b - a)
    for _ in range(80):
        if nll(y, z, math.exp(c)) < nll(y, z, math.exp(d)):
            b = d
        else:
            a = c
        c, d = b - gr * (b - a), a + gr * (b - a)
    return float(math.exp((a + b) / 2))


def operating_point(y, p, sens):
    """Highest probability threshold t with sensitivity (p >= t among positives) >= sens;
    returns (t, sensitivity, specificity)."""
    y, p = np.asarray(y), np.asarray(p, dtype=np.float64)
    pos = np.sort(p[y == 1])
    k = int(math.floor((1 - sens) * len(pos) + 1e-9))
    t = float(pos[min(k, len(pos) - 1)])
    return t, float((p[y == 1] >= t).mean()), float((p[y == 0] < t).mean())


def pointing_game(maps, rels, boxes, size):
    """maps [N,1,h,w] logits: the maximum of the map bilinearly upsampled to the input size
    must fall inside one of the image's boxes (input pixels)."""
    hits, detail = 0, []
    up = F.interpolate(torch.as_tensor(maps), size=(size, size), mode="bilinear",
                       align_corners=False)
    for i, rel in enumerate(rels):
        k = int(torch.argmax(up[i, 0]))
        yy, xx = k // size + 0.5, k % size + 0.5
        hit = any(b[0] <= xx <= b[2] and b[1] <= yy <= b[3] for b in boxes[rel])
        hits += hit
        detail.append({"path": rel, "hit": bool(hit), "peak": [xx, yy]})
    return hits, len(rels), detail


# ------------------------------------------------------------------------------------ training

def seed_all(seed):
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def predict(net, imgs, device, bs=64):
    net.eval()
    scores, maps = [], []
    with torch.no_grad():
        for i in range(0, len(imgs), bs):
            x = torch.from_numpy(imgs[i:i + bs]).to(device).float().unsqueeze(1) / 255.0
            s, m = net(normalise(x))
            scores.append(s[:, 0].cpu().numpy())
            maps.append(m.cpu().numpy())
    return np.concatenate(scores), np.concatenate(maps)


def train_model(adult_imgs, adult_y, ped_imgs, ped_y, args, device, seed, log):
    seed_all(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.RandomState(seed)
    net = FcnScreener(args.width, r_init=args.r or 2.0).to(device)
    if args.r:  # ablation: a fixed pooling sharpness (nearer max pooling when large)
        net.log_r.requires_grad_(False)
    n_ped = min(len(ped_imgs), int(round(args.ped_ratio * len(adult_imgs))))
    per_epoch = len(adult_imgs) + n_ped
    steps_per_epoch = max(1, per_epoch // args.batch)
    opt = torch.optim.AdamW(net.parameters(), lr=args.lr, weight_decay=args.wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, epochs=args.epochs,
                                                steps_per_epoch=steps_per_epoch, pct_start=0.15)
    imgs_all = np.concatenate([adult_imgs, ped_imgs])
    y_all = np.concatenate([adult_y, ped_y]).astype(np.float32)
    t0 = time.time()
    for ep in range(args.epochs):
        net.train()
        pick = np.concatenate([np.arange(len(adult_imgs)),
                               len(adult_imgs) + rng.choice(len(ped_imgs), n_ped, replace=False)])
        rng.shuffle(pick)
        tot, n = 0.0, 0
        for st in range(steps_per_epoch):
            b = pick[st * args.batch:(st + 1) * args.batch]
            x = torch.from_numpy(imgs_all[b]).to(device).float().unsqueeze(1) / 255.0
            y = torch.from_numpy(y_all[b]).to(device)
            s, _ = net(normalise(augment(x, g)))
            loss = F.binary_cross_entropy_with_logits(s[:, 0], y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            tot += float(loss) * len(b)
            n += len(b)
        log("  epoch %d/%d loss %.4f r %.3f (%.1f s)" % (ep + 1, args.epochs, tot / max(n, 1),
                                                        float(net.r()), time.time() - t0))
    return net, time.time() - t0


def git_commit():
    try:
        c = subprocess.check_output(["git", "-C", ROOT, "rev-parse", "HEAD"], text=True).strip()
        dirty = subprocess.check_output(
            ["git", "-C", ROOT, "status", "--porcelain", "--", "scripts/train_cxr.py",
             "scripts/cxr_data.py", "scripts/export_cxr.py"], text=True).strip() != ""
        return c + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--folds", type=int)
    mode.add_argument("--final", action="store_true")
    ap.add_argument("--cv", help="CV record.json whose calibration --final copies")
    ap.add_argument("--out", default=os.path.join(ROOT, "build-train"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--wd", type=float, default=1e-4)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--ped-ratio", type=float, default=1.0)
    ap.add_argument("--r", type=float, default=0.0,
                    help="ablation: fix the pooling sharpness r (default: learnt, from 2)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split-seed", type=int, default=0)
    ap.add_argument("--only-fold", type=int, help="run this one CV fold (timing, debugging)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.size, args.epochs, args.batch = 64, 1, 16
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    device = torch.device(args.device)
    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train.log"), "a")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    t_start = time.time()
    nih, ker = cxr_data.read_nih(), cxr_data.read_kermany()
    ktr = [r for r in ker if r["split"] == "train"]
    kte = [r for r in ker if r["split"] == "test"]
    if args.smoke:  # seeded, label-balanced tiny subsets
        rs = random.Random(args.seed)
        pick = lambda rs_, L, n: sorted(rs_.sample([r for r in L if r["label"] == 0], n // 2) +  # noqa
                                        rs_.sample([r for r in L if r["label"] == 1], n // 2),
                                        key=lambda r: r["rel"])
        boxed = set(cxr_data.read_boxes(args.size))
        nih = sorted([r for r in nih if r["rel"] in boxed][:8] +
                     pick(rs, [r for r in nih if r["rel"] not in boxed], 40),
                     key=lambda r: r["rel"])
        ktr, kte = pick(rs, ktr, 64), pick(rs, kte, 32)
    extra = [cxr_data.NIH + "/labels.csv", cxr_data.NIH + "/boxes.csv",
             cxr_data.KER + "/labels.csv"]
    hashes = cxr_data.verify_and_hash(nih + ktr + kte, extra=extra)
    digest = cxr_data.hashes_digest(hashes)
    with open(os.path.join(args.out, "data-hashes.json"), "w") as f:
        json.dump(hashes, f, indent=0, sort_keys=True)
    cache = os.path.join(ROOT, "build-train", "cache")
    t = time.time()
    nih_img = cxr_data.load_images(nih, args.size, cache, digest)
    ktr_img = cxr_data.load_images(ktr, args.size, cache, digest)
    kte_img = cxr_data.load_images(kte, args.size, cache, digest)
    t_load = time.time() - t
    nih_y = np.array([r["label"] for r in nih])
    ktr_y = np.array([r["label"] for r in ktr])
    kte_y = np.array([r["label"] for r in kte])
    boxes = cxr_data.read_boxes(args.size)
    log("data: %d adult, %d pediatric train, %d test; digest %s; images loaded in %.1f s"
        % (len(nih), len(ktr), len(kte), digest[:16], t_load))

    settings = {k: v for k, v in vars(args).items()}
    settings.update(norm_mean=NORM_MEAN, norm_std=NORM_STD, stride=16, resize="stretch",
                    pooling=("softmax-weighted (r fixed at %g)" % args.r) if args.r
                    else "softmax-weighted (r learnable, init 2)",
                    augmentation="affine rot+-7 scale0.9-1.1 shift+-5%, gamma0.8-1.25, "
                                 "contrast+-15%, brightness+-0.1, no flip",
                    optimizer="AdamW one-cycle pct_start 0.15", loss="BCE on image logit")
    probe = FcnScreener(args.width)
    record = {"kind": "final" if args.final else "cv", "settings": settings,
              "git_commit": git_commit(), "torch": torch.__version__, "device": str(device),
              "device_name": torch.cuda.get_device_name(0) if device.type == "cuda" else
              "cpu x%d" % args.threads,
              "data": {"root": cxr_data.DATA, "digest": digest, "files": len(hashes),
                       "hashes_file": "data-hashes.json", "adult": len(nih),
                       "pediatric_train": len(ktr), "pediatric_test": len(kte),
                       "kermany_patient_ids_in_train_and_test": cxr_data.kermany_id_overlap(ker)},
              "params": sum(p.numel() for p in probe.parameters()),
              "gflop_per_scan": round(gflop(probe, args.size), 4),
              "started": datetime.datetime.now().isoformat(timespec="seconds")}

    if args.final:
        net, secs = train_model(nih_img, nih_y, ktr_img, ktr_y, args, device, args.seed, log)
        ps, _ = predict(net, kte_img, device)
        record["metrics"] = {"pediatric_test_auroc": auroc(kte_y, ps)}
        record["train_seconds"] = round(secs, 1)
        calib = {"temperature": 1.0, "operating_points": None, "from": None}
        if args.cv:
            with open(args.cv) as f:
                cv = json.load(f)
            calib = {"temperature": cv["metrics"]["temperature"],
                     "operating_points": cv["metrics"]["operating_points"], "from": args.cv,
                     "cv_settings_match": all(cv["settings"].get(k) == settings.get(k) for k in
                                              ("size", "epochs", "width", "lr", "ped_ratio"))}
        record["calibration"] = calib
        torch.save({"state": net.state_dict(), "settings": settings, "size": args.size,
                    "width": args.width}, os.path.join(args.out, "model.pt"))
        log("final: pediatric test AUROC %.4f" % record["metrics"]["pediatric_test_auroc"])
    else:
        k = args.folds
        folds = cxr_data.patient_folds(nih, k, args.split_seed)
        run = [args.only_fold] if args.only_fold is not None else list(range(k))
        oof = np.full(len(nih), np.nan)
        oof_fold = np.full(len(nih), -1)
        maps = {}
        per_fold = []
        for f in run:
            tr, va = folds != f, folds == f
            log("fold %d/%d: %d adult train, %d held out" % (f + 1, k, tr.sum(), va.sum()))
            net, secs = train_model(nih_img[tr], nih_y[tr], ktr_img, ktr_y, args, device,
                                    args.seed + f, log)
            s, m = predict(net, nih_img[va], device)
            ps, _ = predict(net, kte_img, device)
            oof[va], oof_fold[va] = s, f
            for i, j in enumerate(np.where(va)[0]):
                if nih[j]["rel"] in boxes:
                    maps[nih[j]["rel"]] = m[i]
            groups = [nih[j]["patient"] for j in np.where(va)[0]]
            a = auroc(nih_y[va], s)
            per_fold.append({"fold": f, "n": int(va.sum()), "auroc": a,
                             "auroc_ci95": bootstrap_ci(nih_y[va], s, groups, 1000, f),
                             "pediatric_test_auroc": auroc(kte_y, ps),
                             "train_seconds": round(secs, 1)})
            log("fold %d: adult AUROC %.4f, pediatric test %.4f, %.1f s"
                % (f + 1, a, per_fold[-1]["pediatric_test_auroc"], secs))
            torch.save({"state": net.state_dict(), "settings": settings, "size": args.size,
                        "width": args.width}, os.path.join(args.out, "fold%d.pt" % f))
        sel = oof_fold >= 0
        y, z = nih_y[sel], oof[sel]
        groups = [nih[j]["patient"] for j in np.where(sel)[0]]
        T = fit_temperature(y, z)
        p_cal = sigmoid(z / T)
        # cross-fitted: each fold calibrated with T fitted on the other folds' predictions
        p_cross = np.empty_like(z)
        fs = oof_fold[sel]
        for f in run:
            other = fs != f
            Tf = fit_temperature(y[other], z[other]) if other.any() and len(set(y[other])) > 1 \
                else T
            p_cross[fs == f] = sigmoid(z[fs == f] / Tf)
        ops = {}
        for name, sens in (("sens90", 0.90), ("sens95", 0.95)):
            t, se, sp = operating_point(y, p_cal, sens)
            ops[name] = {"threshold": t, "sensitivity": se, "specificity": sp}
        hits, nbox, detail = pointing_game(np.stack([maps[r] for r in sorted(maps)])
                                           if maps else np.zeros((0, 1, 1, 1), np.float32),
                                           sorted(maps), boxes, args.size) if maps else (0, 0, [])
        record["metrics"] = {
            "folds": per_fold, "pooled_auroc": auroc(y, z),
            "pooled_auroc_ci95": bootstrap_ci(y, z, groups, 2000, args.seed),
            "pediatric_test_auroc_mean": float(np.mean([p["pediatric_test_auroc"]
                                                        for p in per_fold])),
            "pointing_game": {"hits": hits, "n": nbox, "rate": hits / nbox if nbox else None,
                              "detail": detail},
            "ece_raw": ece(y, sigmoid(z)), "temperature": T, "ece_temperature": ece(y, p_cal),
            "ece_temperature_crossfit": ece(y, p_cross), "operating_points": ops,
            "note": "temperature and operating points are fitted on the pooled out-of-fold "
                    "predictions (optimistic for ECE; crossfit figure is the honest one)"}
        record["train_seconds"] = round(sum(p["train_seconds"] for p in per_fold), 1)
        with open(os.path.join(args.out, "oof.json"), "w") as f:
            json.dump({"path": [nih[j]["rel"] for j in np.where(sel)[0]], "label": y.tolist(),
                       "logit": z.tolist(), "fold": fs.tolist()}, f)
        mm = record["metrics"]
        log("CV: pooled AUROC %.4f [%.4f, %.4f]; pediatric test %.4f; pointing %d/%d; "
            "ECE %.4f -> %.4f (T %.3f; crossfit %.4f); sens90 spec %.3f, sens95 spec %.3f"
            % (mm["pooled_auroc"], *mm["pooled_auroc_ci95"], mm["pediatric_test_auroc_mean"],
               hits, nbox, mm["ece_raw"], mm["ece_temperature"], T,
               mm["ece_temperature_crossfit"], ops["sens90"]["specificity"],
               ops["sens95"]["specificity"]))
    record["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    record["total_seconds"] = round(time.time() - t_start, 1)
    with open(os.path.join(args.out, "record.json"), "w") as f:
        json.dump(record, f, indent=1, sort_keys=True)
    log("record: %s (%.1f s)" % (os.path.join(args.out, "record.json"), record["total_seconds"]))


if __name__ == "__main__":
    main()
