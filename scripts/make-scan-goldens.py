#!/usr/bin/python3
"""Golden data for `medscreen scan`: images made here (no patient data) and what PyTorch says
the model gives for them, so the end-to-end tests compare the whole C pipeline (decode,
preprocess per the model's metadata, inference, calibration) with an independent reference.

  OUT/images/*.png      synthetic chest phantoms (scripts/make-bench-data.py), with and
                        without a round opacity, 8- and 16-bit, non-square sizes
  OUT/expected.json     per image: the score logit, the calibrated probability, the map
                        logits' argmax cell, computed in float64 numpy (area resize = exact
                        box filter) + float32 PyTorch (the network)
  OUT/model.msm         (--tiny) a small random-weight screener with meta format 1, made with
                        `medscreen convert`

Usage:
  make-scan-goldens.py --tiny OUT [--medscreen build/medscreen]
      a 4-wide FcnScreener at 64 px (a few hundred KB), for tests/golden/scan
  make-scan-goldens.py --ckpt build-train/final/model.pt --msm models/cxr-screener.msm OUT
      the shipped model (issue 4: the engine matches PyTorch within 1e-4 on generated images)
Needs /usr/bin/python3 with torch, numpy, PIL.
"""
import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import train_cxr  # noqa: E402
from torch_helpers import randomise_bn  # noqa: E402

spec = importlib.util.spec_from_file_location("bench", os.path.join(HERE, "make-bench-data.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

TINY_META = {
    "meta_format": "1", "name": "scan-golden-tiny", "version": "1.0.0",
    "description": "random weights: a test fixture for scan, not a screener",
    "task": "screen", "input_channels": "1", "resize": "stretch",
    "norm_mean": "0.5", "norm_std": "0.25", "window": "file",
    "output_score": "score", "score_kind": "logit", "temperature": "1.5",
    "output_map": "map", "map_kind": "logit",
    "operating_points": "low:0.2,mid:0.5,high:0.8", "default_operating_point": "mid",
    "modalities": "CR,DX", "body_parts": "CHEST", "views": "PA,AP",
    "licence": "CC0-1.0",
}


def box_resize(img, out_h, out_w):
    """Exact area (box) filter in float64: every output pixel is the overlap-weighted mean of
    the source pixels under its footprint (shrinking only)."""
    def weights(n_in, n_out):
        w = np.zeros((n_out, n_in))
        scale = n_in / n_out
        for o in range(n_out):
            a, b = o * scale, (o + 1) * scale
            for i in range(int(np.floor(a)), int(np.ceil(b))):
                w[o, i] = min(b, i + 1) - max(a, i)
            w[o] /= w[o].sum()
        return w
    h, w = img.shape
    assert out_h <= h and out_w <= w, "box_resize shrinks only"
    return weights(h, out_h) @ img.astype(np.float64) @ weights(w, out_w).T


def images():
    """(name, uint array, max code) for each golden image."""
    out = []
    for name, h, w, lesions, bits in (
            ("normal_8bit.png", 300, 260, (), 8),
            ("opacity_8bit.png", 280, 320, ((0.42, 0.30, 0.05, 0.30),), 8),
            ("opacity_16bit.png", 256, 256, ((0.55, 0.70, 0.06, 0.25),), 16)):
        n = -(-max(h, w) // 16) * 16  # the phantom wants a multiple of 16; cropped below
        ph = bench.phantom(n, lesions).astype(np.float64) / ((1 << bench.BITS) - 1)
        ph = ph[:h, :w]
        top = (1 << bits) - 1
        out.append((name, np.round(ph * top).astype(np.uint8 if bits == 8 else np.uint16), top))
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--tiny", action="store_true")
    g.add_argument("--ckpt")
    ap.add_argument("--msm", help="the converted model of --ckpt (its meta is read)")
    ap.add_argument("--medscreen", default=os.path.join(HERE, "..", "build", "medscreen"))
    args = ap.parse_args()
    os.makedirs(os.path.join(args.out, "images"), exist_ok=True)
    torch.manual_seed(7)
    torch.set_num_threads(1)

    if args.tiny:
        size, width = 64, 4
        net = train_cxr.FcnScreener(width)
        # He-normal weights keep the signal alive through nine random layers, so the score
        # really depends on the image (PyTorch's default init flattens it to a constant).
        for mod in net.modules():
            if isinstance(mod, torch.nn.Conv2d):
                torch.nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
        torch.nn.init.normal_(net.head.weight, std=0.5)
        randomise_bn(net, torch.Generator().manual_seed(11))
        net.eval()
        meta = dict(TINY_META, input_size="%dx%d" % (size, size))
        msm = os.path.join(args.out, "model.msm")
        exp = train_cxr.ExportScreener(net, size).eval()
        with tempfile.TemporaryDirectory() as td:
            onnx_path = os.path.join(td, "m.onnx")
            torch.onnx.export(exp, torch.zeros(1, 1, size, size), onnx_path, opset_version=13,
                              input_names=["input"], output_names=["score", "map"],
                              do_constant_folding=True)
            meta_path = os.path.join(td, "m.meta")
            with open(meta_path, "w") as f:
                f.writelines("%s=%s\n" % kv for kv in meta.items())
            subprocess.check_call([args.medscreen, "convert", onnx_path, "-o", msm,
                                   "--meta-file", meta_path])
    else:
        ck = torch.load(args.ckpt, map_location="cpu")
        size = ck["size"]
        net = train_cxr.FcnScreener(ck["width"])
        net.load_state_dict(ck["state"])
        net.eval()
        msm = args.msm
    info = json.loads(subprocess.check_output([args.medscreen, "model", "info", "--json", msm]))
    meta = info["metadata"]  # typed by `model info`
    temp = float(meta.get("temperature", 1))
    one = lambda v: float(v[0] if isinstance(v, list) else v)  # noqa: E731 (grey: 1 value)
    mean, std = one(meta["norm_mean"]), one(meta["norm_std"])

    expected = {"model_sha256": info["sha256"], "temperature": temp, "images": {}}
    for name, px, top in images():
        path = os.path.join(args.out, "images", name)
        Image.fromarray(px).save(path)
        x = box_resize(px.astype(np.float64) / top, size, size)
        x = (x - mean) / std
        with torch.no_grad():
            s, m = net(torch.tensor(x, dtype=torch.float32).view(1, 1, size, size))
        s = float(s[0, 0])
        m = m[0, 0].numpy()
        cy, cx = np.unravel_index(int(np.argmax(m)), m.shape)
        expected["images"][name] = {
            "score_logit": s, "probability": float(1 / (1 + np.exp(-s / temp))),
            "map_argmax_cell": [int(cx), int(cy)], "map_shape": list(m.shape),
            "height": int(px.shape[0]), "width": int(px.shape[1])}
        print("%s: logit %.6f probability %.6f" % (name, s, expected["images"][name]["probability"]))
    with open(os.path.join(args.out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
