"""Helpers shared by the PyTorch export scripts (export-onnx-models.py,
export-bench-models.py). Imported from the scripts' own folder."""
import torch
import torch.nn as nn


def randomise_bn(m, g):
    """Non-trivial batch-norm weights and running statistics (drawn from generator g), so
    that folding them into the convolutions is really exercised."""
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            with torch.no_grad():
                mod.weight.copy_(torch.rand(c, generator=g) + 0.5)
                mod.bias.copy_(torch.rand(c, generator=g) - 0.5)
                mod.running_mean.copy_(torch.rand(c, generator=g) - 0.5)
                mod.running_var.copy_(torch.rand(c, generator=g) + 0.5)
