#!/usr/bin/python3
"""Writes tests/golden/net/<name>/{model.msm,input.npy,output.npy}: four tiny networks built in
PyTorch (seeded random weights, eval mode), written as .msm files directly from
models/FORMAT.md (struct + zlib.crc32, independent of the C writer), with their reference
outputs computed by torch on the CPU.

  screener  fully convolutional: 3x3 stride-2 convs, explicit and folded batch norm,
            relu/silu, 1x1 head, sigmoid
  resnet    conv-bn-relu, a residual block (add), maxpool, global average pool, fc, softmax
  unet      maxpool down, bilinear and nearest upsampling up, concat skips
  densenet  bn-relu-conv layers concatenated, a transition with avgpool, global pool, fc

Usage: /usr/bin/python3 scripts/make-net-goldens.py [OUTDIR]   (torch 1.13, numpy)
"""
import os
import struct
import sys
import zlib

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def write_msm(path, tensors):
    """tensors: list of (name, np.float32 array | bytes)."""
    table, payload = b"", b""
    for name, data in tensors:
        if isinstance(data, bytes):
            dtype, dims, raw = 2, [len(data)], data
        else:
            a = np.ascontiguousarray(data, dtype="<f4")
            dtype, dims, raw = 1, list(a.shape), a.tobytes()
        payload += b"\0" * (-len(payload) % 64)
        table += struct.pack("<H", len(name)) + name.encode() + bytes([dtype, len(dims)])
        table += struct.pack("<%dI" % len(dims), *dims) + struct.pack("<QQ", len(payload), len(raw))
        payload += raw
    head = b"MSMODEL\0" + struct.pack("<IIQQ", 1, len(tensors), len(table), len(payload))
    body = head + table
    body += b"\0" * (-len(body) % 64) + payload
    with open(path, "wb") as f:
        f.write(body + struct.pack("<I", zlib.crc32(body)))


class Graph:
    """Collects graph lines and weight tensors while mirroring a torch forward pass."""

    def __init__(self, c, h, w):
        self.lines = ["graph 1", "input x %d %d %d" % (c, h, w)]
        self.tensors = []
        self.n = 0

    def _name(self, prefix):
        self.n += 1
        return "%s%d" % (prefix, self.n)

    def _t(self, name, arr):
        self.tensors.append((name, arr.detach().double().numpy().astype(np.float32)))
        return name

    def node(self, op, ins, keys=""):
        out = self._name("v")
        self.lines.append(("node %s %s in=%s out=%s %s" % (op, self._name(op[:2]), ",".join(ins),
                                                            out, keys)).rstrip())
        return out

    def conv(self, x, m, act="none", bn=None):
        p = self._name("conv")
        w, b = m.weight.detach().double(), (m.bias.detach().double() if m.bias is not None
                                            else None)
        if bn is not None:  # fold
            s = bn.weight.detach().double() / torch.sqrt(bn.running_var.double() + bn.eps)
            w = w * s.view(-1, 1, 1, 1)
            b = (b if b is not None else torch.zeros_like(s)) - bn.running_mean.double()
            b = b * s + bn.bias.detach().double()
        keys = "weight=" + self._t(p + ".w", w)
        if b is not None:
            keys += " bias=" + self._t(p + ".b", b)
        sh, sw = m.stride
        ph, pw = m.padding
        keys += " stride=%d,%d pad=%d,%d,%d,%d" % (sh, sw, ph, pw, ph, pw)
        if m.groups != 1:
            keys += " groups=%d" % m.groups
        if act != "none":
            keys += " act=" + act
        return self.node("conv2d", [x], keys)

    def bn(self, x, m):
        p = self._name("bn")
        keys = "weight=%s bias=%s mean=%s var=%s eps=%r" % (
            self._t(p + ".g", m.weight), self._t(p + ".b", m.bias),
            self._t(p + ".m", m.running_mean), self._t(p + ".v", m.running_var), m.eps)
        return self.node("batchnorm", [x], keys)

    def fc(self, x, m):
        p = self._name("fc")
        return self.node("fc", [x], "weight=%s bias=%s" % (self._t(p + ".w", m.weight),
                                                          self._t(p + ".b", m.bias)))

    def save(self, path, outputs, meta):
        self.lines += ["output " + o for o in outputs]
        text = ("\n".join(self.lines) + "\n").encode()
        write_msm(path, [("graph", text), ("meta", meta.encode())] + self.tensors)


def randomize_bn(m):
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            with torch.no_grad():
                mod.weight.uniform_(0.5, 1.5)
                mod.bias.uniform_(-0.5, 0.5)
                mod.running_mean.uniform_(-0.5, 0.5)
                mod.running_var.uniform_(0.5, 2.0)


class Screener(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, 16, 3, 1, 1, groups=16)
        self.head = nn.Conv2d(16, 1, 1)

    def forward(self, x):
        x = F.relu(self.b1(self.c1(x)))
        x = F.silu(self.b2(self.c2(x)))
        x = F.relu(self.c3(x))
        return torch.sigmoid(self.head(x))

    def graph(self, g):
        v = g.node("act", [g.bn(g.conv("x", self.c1), self.b1)], "act=relu")
        v = g.conv(v, self.c2, "silu", bn=self.b2)
        v = g.conv(v, self.c3, "relu")
        return g.node("act", [g.conv(v, self.head)], "act=sigmoid")


class ResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0, self.b0 = nn.Conv2d(3, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        self.c1, self.b1 = nn.Conv2d(8, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, 1, 1, bias=False), nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        x = F.relu(self.b0(self.c0(x)))
        y = F.relu(self.b1(self.c1(x)))
        y = self.b2(self.c2(y))
        x = F.max_pool2d(F.relu(x + y), 2)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return torch.softmax(self.fc(x), 1).view(-1, 5, 1, 1)

    def graph(self, g):
        x = g.conv("x", self.c0, "relu", bn=self.b0)
        y = g.node("act", [g.bn(g.conv(x, self.c1), self.b1)], "act=relu")
        y = g.bn(g.conv(y, self.c2), self.b2)
        v = g.node("act", [g.node("add", [x, y])], "act=relu")
        v = g.node("maxpool", [v], "k=2,2")
        v = g.node("flatten", [g.node("globalavgpool", [v])])
        return g.node("softmax", [g.fc(v, self.fc)])


class UNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.e1 = nn.Conv2d(3, 8, 3, 1, 1)
        self.e2 = nn.Conv2d(8, 16, 3, 1, 1)
        self.e3 = nn.Conv2d(16, 16, 3, 1, 1)
        self.d2 = nn.Conv2d(32, 8, 3, 1, 1)
        self.d1 = nn.Conv2d(16, 8, 3, 1, 1)
        self.out = nn.Conv2d(8, 2, 1)

    def forward(self, x):
        a = F.relu(self.e1(x))
        b = F.relu(self.e2(F.max_pool2d(a, 2)))
        c = F.relu(self.e3(F.max_pool2d(b, 2)))
        u = F.interpolate(c, scale_factor=2, mode="nearest")
        d = F.relu(self.d2(torch.cat([u, b], 1)))
        u = F.interpolate(d, size=a.shape[2:], mode="bilinear", align_corners=False)
        e = F.relu(self.d1(torch.cat([a, u], 1)))
        return self.out(e)

    def graph(self, g):
        a = g.conv("x", self.e1, "relu")
        b = g.conv(g.node("maxpool", [a], "k=2,2"), self.e2, "relu")
        c = g.conv(g.node("maxpool", [b], "k=2,2"), self.e3, "relu")
        u = g.node("upsample", [c], "mode=nearest scale=2,2")
        d = g.conv(g.node("concat", [u, b]), self.d2, "relu")
        u = g.node("upsample", [d], "mode=bilinear size=16,16")
        e = g.conv(g.node("concat", [a, u]), self.d1, "relu")
        return g.conv(e, self.out)


class DenseNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.c0 = nn.Conv2d(3, 8, 3, 1, 1, bias=False)
        self.bn1, self.c1 = nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3, 1, 1, bias=False)
        self.bn2, self.c2 = nn.BatchNorm2d(12), nn.Conv2d(12, 4, 3, 1, 1, bias=False)
        self.bnt, self.ct = nn.BatchNorm2d(16), nn.Conv2d(16, 8, 1, bias=False)
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        x = self.c0(x)
        x = torch.cat([x, self.c1(F.relu(self.bn1(x)))], 1)
        x = torch.cat([x, self.c2(F.relu(self.bn2(x)))], 1)
        x = F.avg_pool2d(self.ct(F.relu(self.bnt(x))), 2)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return torch.sigmoid(self.fc(x)).view(-1, 3, 1, 1)

    def graph(self, g):
        x = g.conv("x", self.c0)
        y = g.conv(g.node("act", [g.bn(x, self.bn1)], "act=relu"), self.c1)
        x = g.node("concat", [x, y])
        y = g.conv(g.node("act", [g.bn(x, self.bn2)], "act=relu"), self.c2)
        x = g.node("concat", [x, y])
        x = g.conv(g.node("act", [g.bn(x, self.bnt)], "act=relu"), self.ct)
        x = g.node("avgpool", [x], "k=2,2")
        return g.node("act", [g.fc(g.node("globalavgpool", [x]), self.fc)], "act=sigmoid")


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "tests", "golden", "net")
    torch.manual_seed(20240611)
    nets = [("screener", Screener(), (3, 32, 32)), ("resnet", ResNet(), (3, 16, 16)),
            ("unet", UNet(), (3, 16, 16)), ("densenet", DenseNet(), (3, 16, 16))]
    for name, m, shape in nets:
        randomize_bn(m)
        m.eval()
        x = torch.randn(2, *shape)
        with torch.no_grad():
            y = m(x)
        g = Graph(*shape)
        o = m.graph(g)
        d = os.path.join(out, name)
        os.makedirs(d, exist_ok=True)
        g.save(os.path.join(d, "model.msm"), [o],
               "name=%s\nsource=scripts/make-net-goldens.py\ntorch=%s\n" % (name, torch.__version__))
        np.save(os.path.join(d, "input.npy"), x.numpy().astype(np.float32))
        np.save(os.path.join(d, "output.npy"), y.numpy().astype(np.float32))
        print("%s: input %s output %s, %d tensors" % (name, tuple(x.shape), tuple(y.shape),
                                                       len(g.tensors)))


if __name__ == "__main__":
    main()
