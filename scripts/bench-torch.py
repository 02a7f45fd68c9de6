#!/usr/bin/python3
"""PyTorch side of the inference benchmark (scripts/bench-inference.sh), with Debian's
python3-torch (1.13, oneDNN convolutions, OpenMP threads).

Usage: /usr/bin/python3 scripts/bench-torch.py NAME [--models DIR] [--batch N] [--threads N]
                                                    [--runs N] [--warmup N]
       /usr/bin/python3 scripts/bench-torch.py NAME --check IN.npy OUT.npy [--models DIR]

NAME is screener or resnet18: the module is rebuilt by scripts/export-bench-models.py's
build() and DIR/NAME.pt (default build-bench/models) loaded into it, so it is the network
that was exported to ONNX. Eval mode, torch.inference_mode(), torch.set_num_threads(--threads)
and one inter-op thread. The first form times --runs runs (default 20) after --warmup (default
3) on a seeded random input of shape [batch, C, H, W] and prints one JSON line (median, p90
and mean ms per batch, ms per image, images/s); --check writes the output for IN.npy to
OUT.npy.
"""
import argparse
import importlib.util
import json
import os
import statistics
import sys
import time

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load_export_module():
    spec = importlib.util.spec_from_file_location(
        "export_bench_models", os.path.join(ROOT, "scripts", "export-bench-models.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", choices=("screener", "resnet18"))
    ap.add_argument("--models", default=os.path.join(ROOT, "build-bench", "models"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--check", nargs=2, metavar=("IN", "OUT"))
    a = ap.parse_args()
    if a.batch < 1 or a.threads < 1 or a.runs < 1 or a.warmup < 0:
        ap.error("batch, threads and runs must be >= 1, warmup >= 0")

    torch.set_num_threads(a.threads)
    torch.set_num_interop_threads(1)
    ex = load_export_module()
    model = ex.build(a.name)
    model.load_state_dict(torch.load(os.path.join(a.models, a.name + ".pt")))
    model.eval()

    if a.check:
        x = torch.from_numpy(np.load(a.check[0]).astype(np.float32))
        with torch.inference_mode():
            y = model(x)
        np.save(a.check[1], y.numpy().astype(np.float32))
        return 0

    c, h, w = ex.SHAPES[a.name]
    g = torch.Generator().manual_seed(12345)
    x = torch.rand(a.batch, c, h, w, generator=g)
    t = []
    with torch.inference_mode():
        for _ in range(a.warmup):
            model(x)
        for _ in range(a.runs):
            t0 = time.perf_counter()
            model(x)
            t.append((time.perf_counter() - t0) * 1e3)
    s = sorted(t)
    med = statistics.median(s)
    print(json.dumps({
        "bench": "torch", "model": a.name, "batch": a.batch, "threads": a.threads,
        "runs": a.runs, "warmup": a.warmup, "median_ms": round(med, 3),
        "p90_ms": round(s[int(0.9 * (len(s) - 1) + 0.5)], 3),
        "mean_ms": round(sum(t) / len(t), 3), "ms_per_image": round(med / a.batch, 3),
        "images_per_s": round(1e3 * a.batch / med, 3), "torch": torch.__version__,
        "mkldnn": torch.backends.mkldnn.is_available(),
        "openblas_coretype_env": os.environ.get("OPENBLAS_CORETYPE", ""),
    }, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
