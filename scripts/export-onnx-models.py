#!/usr/bin/python3
"""Exports small PyTorch networks to ONNX for the importer tests (tests/unit/test_onnx.c).

Each model folder tests/golden/onnx/<name>/ holds:
  model.onnx   torch.onnx.export of the net (eval mode, batch 1, symbolic batch dimension)
  input.npy    NCHW float32 input
  output.npy   what PyTorch computes for it (CPU, float32)
  fold_weight.npy, fold_bias.npy   the first convolution with its batch norm folded
               (torch.nn.utils.fusion.fuse_conv_bn_eval), where the export keeps the
               BatchNormalization node (TrainingMode.PRESERVE) so the importer must fold it
  unsupported.onnx (fcn only)      a net with an operator the importer refuses (Abs)

Everything is seeded, so re-running gives the same files for a given torch.

  fcn       fully convolutional screener: Conv+BN+ReLU, Conv+BN+SiLU, max pooling,
            depthwise Conv+LeakyReLU, 1x1 head, channel softmax            (opset 13)
  resnet    resnet18 layout (stem, 4 stages of torchvision BasicBlock with downsampling,
            global average pool, fc) with channel widths 8-32              (opset 11)
  densenet  pre-activation dense layers (BN-ReLU-Conv1x1-BN-ReLU-Conv3x3, concat),
            transition (BN-ReLU-Conv1x1-AvgPool), final BN-ReLU, GAP, fc   (opset 17)
  unet      two-level U-Net: Conv+GELU, max pooling, Conv+LeakyReLU, SiLU bottleneck,
            bilinear and nearest upsampling, concat skips, sigmoid head   (opset 16)

Usage: /usr/bin/python3 scripts/export-onnx-models.py [OUTDIR]
       OUTDIR defaults to tests/golden/onnx. With --big, exports full-size torchvision
       resnet18 and densenet121 (random init) into OUTDIR for a manual check; never commit those.
"""
import os
import sys

import numpy as np
import torch
import torch.nn as nn

from torch_helpers import randomise_bn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
torch.set_num_threads(1)

try:
    from torchvision.models.resnet import BasicBlock
except ImportError:  # an equivalent of torchvision's BasicBlock
    class BasicBlock(nn.Module):
        expansion = 1

        def __init__(self, inplanes, planes, stride=1, downsample=None):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = downsample

        def forward(self, x):
            idt = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + idt)


class Fcn(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16)
        self.pool = nn.MaxPool2d(2)
        self.dw = nn.Conv2d(16, 16, 3, padding=2, dilation=2, groups=16)
        self.head = nn.Conv2d(16, 2, 1)
        self.drop = nn.Dropout(0.2)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.silu(self.bn2(self.conv2(x)))
        x = self.pool(x)
        x = F.leaky_relu(self.dw(x), 0.1)
        return torch.softmax(self.head(self.drop(x)), dim=1)


class ResNetSmall(nn.Module):
    def __init__(self, widths=(8, 16, 24, 32), classes=3):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        layers = []
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or self.inplanes != w:
                down = nn.Sequential(nn.Conv2d(self.inplanes, w, 1, stride, bias=False),
                                     nn.BatchNorm2d(w))
            layers.append(nn.Sequential(BasicBlock(self.inplanes, w, stride, down),
                                        BasicBlock(w, w)))
            self.inplanes = w
        self.layers = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(widths[-1], classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layers(x)
        return self.fc(torch.flatten(self.avgpool(x), 1))


class DenseLayer(nn.Module):
    def __init__(self, cin, growth):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, x):
        y = self.conv1(F.relu(self.norm1(x)))
        y = self.conv2(F.relu(self.norm2(y)))
        return torch.cat([x, y], 1)


class DenseNetSmall(nn.Module):
    def __init__(self, growth=4, classes=2):
        super().__init__()
        self.conv0 = nn.Conv2d(1, 8, 3, padding=1, bias=False)
        self.block1 = nn.Sequential(DenseLayer(8, growth), DenseLayer(8 + growth, growth))
        c = 8 + 2 * growth
        self.tnorm = nn.BatchNorm2d(c)
        self.tconv = nn.Conv2d(c, c // 2, 1, bias=False)
        self.tpool = nn.AvgPool2d(2, 2)
        c //= 2
        self.block2 = nn.Sequential(DenseLayer(c, growth), DenseLayer(c + growth, growth))
        c += 2 * growth
        self.norm5 = nn.BatchNorm2d(c)
        self.fc = nn.Linear(c, classes)

    def forward(self, x):
        x = self.block1(self.conv0(x))
        x = self.tpool(self.tconv(F.relu(self.tnorm(x))))
        x = F.relu(self.norm5(self.block2(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


class UNetSmall(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc1 = nn.Conv2d(1, 8, 3, padding=1)
        self.enc2 = nn.Conv2d(8, 16, 3, padding=1)
        self.mid = nn.Conv2d(16, 16, 3, padding=1)
        self.dec2 = nn.Conv2d(32, 8, 3, padding=1)
        self.dec1 = nn.Conv2d(16, 8, 3, padding=1)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        e1 = F.gelu(self.enc1(x))
        e2 = F.leaky_relu(self.enc2(F.max_pool2d(e1, 2)), 0.2)
        m = F.silu(self.mid(F.max_pool2d(e2, 2)))
        u2 = F.interpolate(m, scale_factor=2, mode="bilinear", align_corners=False)
        d2 = F.relu(self.dec2(torch.cat([u2, e2], 1)))
        u1 = F.interpolate(d2, scale_factor=2, mode="nearest")
        d1 = torch.tanh(self.dec1(torch.cat([u1, e1], 1)))
        return torch.sigmoid(self.head(d1))


class Unsupported(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3, padding=1)

    def forward(self, x):
        return torch.abs(self.conv(x))


def export(model, x, path, opset, preserve=False):
    model.eval()
    mode = torch.onnx.TrainingMode.PRESERVE if preserve else torch.onnx.TrainingMode.EVAL
    torch.onnx.export(model, x, path, opset_version=opset, input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "N"}, "output": {0: "N"}},
                      training=mode, do_constant_folding=True)


def write_case(out, name, model, shape, opset, preserve=False, fold=None):
    d = os.path.join(out, name)
    os.makedirs(d, exist_ok=True)
    g = torch.Generator().manual_seed(1234 + len(name))
    torch.manual_seed(len(name))
    randomise_bn(model, g)
    model.eval()
    x = torch.rand(*shape, generator=g) * 2 - 1
    with torch.no_grad():
        y = model(x)
    export(model, x, os.path.join(d, "model.onnx"), opset, preserve)
    np.save(os.path.join(d, "input.npy"), x.numpy().astype(np.float32))
    np.save(os.path.join(d, "output.npy"), y.numpy().astype(np.float32))
    if fold is not None:
        conv, bn = fold
        fused = torch.nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
        np.save(os.path.join(d, "fold_weight.npy"), fused.weight.detach().numpy().astype(np.float32))
        np.save(os.path.join(d, "fold_bias.npy"), fused.bias.detach().numpy().astype(np.float32))
    print(name, tuple(y.shape), os.path.getsize(os.path.join(d, "model.onnx")), "bytes")


def main():
    args = [a for a in sys.argv[1:] if a != "--big"]
    out = args[0] if args else os.path.join(ROOT, "tests", "golden", "onnx")
    if "--big" in sys.argv:
        import torchvision
        torch.manual_seed(0)
        for name, fn in (("resnet18", torchvision.models.resnet18),
                         ("densenet121", torchvision.models.densenet121)):
            m = fn()
            write_case(out, name, m, (1, 3, 224, 224), 13)
        return
    torch.manual_seed(0)  # Fcn's layers draw their initial weights when it is built
    fcn = Fcn()
    write_case(out, "fcn", fcn, (1, 1, 48, 40), 13, preserve=True, fold=(fcn.conv1, fcn.bn1))
    res = ResNetSmall()
    write_case(out, "resnet", res, (1, 3, 64, 64), 11, preserve=True, fold=(res.conv1, res.bn1))
    write_case(out, "densenet", DenseNetSmall(), (1, 1, 32, 32), 17)
    write_case(out, "unet", UNetSmall(), (1, 1, 32, 32), 16)
    torch.manual_seed(7)
    export(Unsupported(), torch.zeros(1, 1, 8, 8), os.path.join(out, "fcn", "unsupported.onnx"), 13)


if __name__ == "__main__":
    main()
