#!/usr/bin/python3
"""Exports a chest X-ray screener trained by scripts/train_cxr.py to ONNX and medscreen.

  CKPT      model.pt of `train_cxr.py --final` (its record.json beside it gives the
            temperature and operating points copied from the CV run)
  OUTDIR    gets NAME.onnx (opset 13, dynamic batch, outputs `score` [N,1] logit and `map`
            [N,1,H/16,W/16] logits), NAME.meta (meta format 1 lines for `medscreen convert
            --meta-file`), NAME.msm (when build/medscreen exists) and export.json (the check).

The exported graph is ExportScreener (train_cxr.py): the same function as the trained network
in eval mode, with the softmax-weighted pooling written as Conv (head and head * r), Flatten,
Softmax, Mul and MatMul with a ones vector, which `convert` imports as conv/flatten/softmax/mul/fc.

The check: a few seeded inputs (uniform noise, a smooth gradient, a blurred random field, a
training-like image when the data is there), normalised like `scan` does, run through PyTorch
(CPU, float32, eval) and through `medscreen model run` for both outputs; prints the largest
relative error, max|a - b| / max(max|b|, 1e-3) per output, and fails above 1e-4.

Usage: /usr/bin/python3 scripts/export_cxr.py CKPT [OUTDIR] [--name cxr-screener]
       [--version 1.0.0] [--medscreen build/medscreen] [--tol 1e-4] [--cv CV_RECORD]
"""
import argparse
import datetime
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_cxr  # noqa: E402

ROOT = train_cxr.ROOT


def meta_lines(args, size, record):
    calib = (record or {}).get("calibration") or {}
    temp = calib.get("temperature") or 1.0
    ops = calib.get("operating_points")
    if ops:
        op = ",".join("%s:%.6f" % (k, ops[k]["threshold"]) for k in ("sens90", "sens95"))
    else:  # no CV run given: placeholders, flagged in the description
        op = "sens90:0.5,sens95:0.5"
    data = (record or {}).get("data", {})
    lines = {
        "name": args.name, "version": args.version,
        "description": "Frontal chest radiograph screener for pneumonia / airspace opacity: "
                       "image score and 1/16 region map; a triage aid, not a diagnosis"
                       + ("" if ops else "; UNCALIBRATED (no CV record): do not use"),
        "task": "screen", "input_size": "%dx%d" % (size, size), "input_channels": "1",
        "resize": "stretch", "norm_mean": repr(train_cxr.NORM_MEAN),
        "norm_std": repr(train_cxr.NORM_STD), "window": "file",
        "output_score": "score", "score_kind": "logit", "temperature": "%.6g" % temp,
        "output_map": "map", "map_kind": "logit",
        "operating_points": op, "default_operating_point": "sens90",
        "modalities": "CR,DX", "body_parts": "CHEST", "views": "PA,AP",
        "training_data": "NIH ChestX-ray8 adult dev subset (%s images) + Kermany pediatric "
                         "CXR train (%s images); data digest sha256 %s"
                         % (data.get("adult", "?"), data.get("pediatric_train", "?"),
                            data.get("digest", "?")),
        "training_code": "medscreen scripts/train_cxr.py @ %s" % (record or {}).get(
            "git_commit", "unknown"),
        "trained": (record or {}).get("finished", datetime.date.today().isoformat())[:10],
        "licence": "CC-BY-4.0",
        "credits": "Wang X. et al., ChestX-ray8, CVPR 2017, and the NIH Clinical Center; "
                   "Kermany D., Zhang K., Goldbaum M., Mendeley Data v2 (2018), "
                   "doi:10.17632/rscbjbr9sd.2, CC BY 4.0",
        "card": args.name + ".md",
    }
    return lines


def test_inputs(size, n_rand=2, seed=1234):
    g = torch.Generator().manual_seed(seed)
    xs = [torch.rand(n_rand, 1, size, size, generator=g)]
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    xs.append((0.3 * yy + 0.6 * xx).view(1, 1, size, size))
    field = torch.rand(1, 1, size // 8, size // 8, generator=g)
    xs.append(torch.nn.functional.interpolate(field, size=(size, size), mode="bilinear",
                                              align_corners=False))
    x = torch.cat(xs)
    return train_cxr.normalise(x).float()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("ckpt")
    ap.add_argument("outdir", nargs="?")
    ap.add_argument("--name", default="cxr-screener")
    ap.add_argument("--version", default="1.0.0")
    ap.add_argument("--medscreen", default=os.path.join(ROOT, "build", "medscreen"))
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--cv", help="CV record.json to take the temperature and operating points "
                    "from (instead of the final run's record, when it was trained without --cv)")
    args = ap.parse_args()
    outdir = args.outdir or os.path.dirname(os.path.abspath(args.ckpt))
    os.makedirs(outdir, exist_ok=True)
    torch.set_num_threads(1)

    ck = torch.load(args.ckpt, map_location="cpu")
    size = ck["size"]
    net = train_cxr.FcnScreener(ck["width"])
    net.load_state_dict(ck["state"])
    net.eval()
    exp = train_cxr.ExportScreener(net, size).eval()
    rec_path = os.path.join(os.path.dirname(os.path.abspath(args.ckpt)), "record.json")
    record = None
    if os.path.isfile(rec_path):
        with open(rec_path) as f:
            record = json.load(f)
    if args.cv:
        with open(args.cv) as f:
            cv = json.load(f)
        record = dict(record or {})
        record["calibration"] = {"temperature": cv["metrics"]["temperature"],
                                 "operating_points": cv["metrics"]["operating_points"],
                                 "from": args.cv}

    x = test_inputs(size)
    with torch.no_grad():
        s_ref, m_ref = net(x)
        s_exp, m_exp = exp(x)
    # the export wrapper is the trained function (up to float rounding of r * weights)
    d_wrap = max(float((s_ref - s_exp).abs().max()), float((m_ref - m_exp).abs().max()))
    onnx_path = os.path.join(outdir, args.name + ".onnx")
    torch.onnx.export(exp, x[:1], onnx_path, opset_version=13, input_names=["input"],
                      output_names=["score", "map"],
                      dynamic_axes={"input": {0: "N"}, "score": {0: "N"}, "map": {0: "N"}},
                      do_constant_folding=True)
    import onnx
    onnx.checker.check_model(onnx.load(onnx_path))
    meta = meta_lines(args, size, record)
    meta_path = os.path.join(outdir, args.name + ".meta")
    with open(meta_path, "w") as f:
        for k, v in meta.items():
            f.write("%s=%s\n" % (k, v))
    result = {"onnx": onnx_path, "meta": meta_path, "wrapper_vs_trained_max_abs": d_wrap,
              "size": size, "gflop_per_scan": train_cxr.gflop(net, size)}
    print("onnx: %s (%d bytes); export wrapper vs trained net: max abs diff %.3g"
          % (onnx_path, os.path.getsize(onnx_path), d_wrap))

    if not os.path.isfile(args.medscreen):
        print("no %s: skipping convert and the engine check" % args.medscreen)
    else:
        msm = os.path.join(outdir, args.name + ".msm")
        subprocess.check_call([args.medscreen, "convert", onnx_path, "-o", msm,
                               "--meta-file", meta_path])
        info = json.loads(subprocess.check_output([args.medscreen, "model", "info", "--json",
                                                   msm]))
        result.update(msm=msm, scan_ready=info["scan"]["ready"], scan_reason=info["scan"].get(
            "reason"), engine_gflop=info["graph"]["gflop"], engine_nodes=info["graph"]["nodes"])
        print("msm: %s; scan ready: %s; engine GFLOP %.4g; nodes %s" % (
            msm, info["scan"]["ready"], info["graph"]["gflop"], info["graph"]["nodes"]))
        worst = 0.0
        with tempfile.TemporaryDirectory() as td:
            xin = os.path.join(td, "x.npy")
            np.save(xin, x.numpy().astype(np.float32))
            for name, ref in (("score", s_ref), ("map", m_ref)):
                yout = os.path.join(td, name + ".npy")
                subprocess.check_call([args.medscreen, "model", "run", msm, "--input", xin,
                                       "--output", yout, "--output-name", name])
                got = np.load(yout).reshape(ref.shape)
                r = ref.numpy()
                err = float(np.abs(got - r).max() / max(float(np.abs(r).max()), 1e-3))
                result["rel_err_" + name] = err
                worst = max(worst, err)
                print("%s: medscreen vs pytorch, %d images: max rel error %.3g" % (
                    name, x.shape[0], err))
        result["max_rel_err"] = worst
        result["ok"] = worst <= args.tol
    with open(os.path.join(outdir, "export.json"), "w") as f:
        json.dump(result, f, indent=1, sort_keys=True)
    if result.get("ok") is False:
        print("FAIL: max rel error %.3g > %.3g" % (result["max_rel_err"], args.tol))
        sys.exit(1)
    print("ok" if result.get("ok") else "exported (no engine check)")


if __name__ == "__main__":
    main()
