#!/usr/bin/python3
"""Exports the two reference networks of the inference benchmark (scripts/bench-inference.sh)
with random but seeded weights.

  screener  1x1x512x512: 3x3 convolutions (pad 1, bias, ReLU) 1->16, 16->32/s2, 32->32,
            32->64/s2, 64->64, 64->128/s2, 128->128, then a 1x1 head 128->1 with bias and no
            activation; 5.51 GFLOP per image
  resnet18  torchvision.models.resnet18(weights=None) at 1x3x224x224, eval mode, batch norms
            with randomised weights and running statistics (so folding them matters); 3.63
            GFLOP per image (convolutions and fc, 2 FLOPs per multiply-add)

For each NAME it writes into OUTDIR (default build-bench/models):
  NAME.onnx        torch.onnx.export, opset 13, dynamic batch axis, constants folded
  NAME.pt          the state dict, for scripts/bench-torch.py (which rebuilds the module here)
  NAME.input.npy   a seeded random input of batch 2 for the accuracy check
  NAME.json        facts for the report: GFLOP per image and, for the screener (a chain, where
                   a layer's input and output are the values live together), the bytes of the
                   two largest live activations per image, measured with forward hooks

Usage: /usr/bin/python3 scripts/export-bench-models.py [OUTDIR]
Needs python3-torch, python3-torchvision and python3-onnx (Debian 12).
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn as nn

from torch_helpers import randomise_bn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHAPES = {"screener": (1, 512, 512), "resnet18": (3, 224, 224)}


class Screener(nn.Sequential):
    def __init__(self):
        layers = []
        cin = 1
        for cout, stride in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (128, 2), (128, 1)):
            layers += [nn.Conv2d(cin, cout, 3, stride, 1, bias=True), nn.ReLU(inplace=True)]
            cin = cout
        layers.append(nn.Conv2d(cin, 1, 1, bias=True))
        super().__init__(*layers)


def build(name):
    """The module for NAME (random default initialisation; load a state dict over it)."""
    if name == "screener":
        return Screener()
    if name == "resnet18":
        import torchvision
        return torchvision.models.resnet18(weights=None)
    raise ValueError("unknown network " + name)


def flops_and_activations(model, x):
    """GFLOP per image (conv and linear, 2 per multiply-add) and the largest input+output
    bytes of one layer (the two largest live activations of a chain), for batch x.shape[0]."""
    flops = [0]
    live = [0]

    def hook(mod, inp, out):
        n = out.shape[0]
        if isinstance(mod, nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            flops[0] += 2 * out.numel() // n * k
        elif isinstance(mod, nn.Linear):
            flops[0] += 2 * mod.in_features * mod.out_features
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            live[0] = max(live[0], (inp[0].numel() + out.numel()) // n * 4)

    hs = [m.register_forward_hook(hook) for m in model.modules()
          if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return flops[0] / 1e9, live[0]


def export(name, out):
    torch.manual_seed(20240 + len(name))
    g = torch.Generator().manual_seed(777 + len(name))
    model = build(name)
    randomise_bn(model, g)
    model.eval()
    c, h, w = SHAPES[name]
    x = torch.rand(2, c, h, w, generator=g)
    onnx_path = os.path.join(out, name + ".onnx")
    torch.onnx.export(model, x[:1], onnx_path, opset_version=13, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                      do_constant_folding=True)
    torch.save(model.state_dict(), os.path.join(out, name + ".pt"))
    np.save(os.path.join(out, name + ".input.npy"), x.numpy().astype(np.float32))
    gflop, act = flops_and_activations(model, x[:1])
    facts = {"name": name, "input": [c, h, w], "gflop_per_image": round(gflop, 4),
             "params": sum(p.numel() for p in model.parameters())}
    if name == "screener":
        facts["act_bytes_two_largest"] = act
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(facts, f, sort_keys=True)
        f.write("\n")
    print("%s: %.3f GFLOP/image, %d parameters, %s (%d bytes)" % (
        name, gflop, facts["params"], onnx_path, os.path.getsize(onnx_path)))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build-bench", "models")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    for name in ("screener", "resnet18"):
        export(name, out)


if __name__ == "__main__":
    main()
