#!/usr/bin/python3
"""Writes PyTorch reference outputs for the nn operators (include/medscreen/nn.h) into
tests/golden/nn/<case>/, checked by tests/unit/test_nn_golden.c.

Each case folder holds:
  params.txt   key=value lines; kind= names the operator (conv2d, conv2d_bnfold, batchnorm,
               pool2d, global_pool, upsample, concat, binary, fc, softmax, act)
  input.npy    NCHW float32 input (concat and binary: input0.npy, input1.npy, ...)
  weight.npy   conv [out][in/groups][kh][kw], fc [out][in]; bias.npy [out] where the case
               has a bias; batch norm: gamma.npy, beta.npy, mean.npy, var.npy
  output.npy   what PyTorch computes (CPU, float32), NCHW

Everything is seeded per case (the seed is derived from the case name), so re-running gives
the same files for a given torch. PyTorch has no asymmetric padding: those cases pad first
(zeros, or -inf for max pooling) and run the operator without padding. Adaptive pools whose
sizes divide evenly are written as the equivalent pool2d case (that equivalence is asserted).

Usage: /usr/bin/python3 scripts/make-nn-goldens.py   (Debian's torch and numpy)
"""
import math
import os
import shutil
import zlib

import numpy as np
import torch
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "golden", "nn")

torch.set_num_threads(1)
torch.use_deterministic_algorithms(True)

ACTS = {
    "none": lambda x, a: x,
    "relu": lambda x, a: F.relu(x),
    "leaky_relu": lambda x, a: F.leaky_relu(x, a),
    "silu": lambda x, a: F.silu(x),
    "sigmoid": lambda x, a: torch.sigmoid(x),
    "tanh": lambda x, a: torch.tanh(x),
    "gelu": lambda x, a: F.gelu(x),  # exact (erf)
}

CASES = []


def case(fn):
    CASES.append(fn)
    return fn


class Gen:
    """Seeded uniform tensors for one case."""

    def __init__(self, name):
        self.g = torch.Generator().manual_seed(zlib.crc32(name.encode()))

    def u(self, *shape, lo=-1.0, hi=1.0):
        return torch.rand(*shape, generator=self.g, dtype=torch.float32) * (hi - lo) + lo


def write(name, params, tensors):
    d = os.path.join(OUT, name)
    os.makedirs(d)
    with open(os.path.join(d, "params.txt"), "w") as f:
        for k, v in params.items():
            if isinstance(v, bool):
                v = int(v)
            f.write("%s=%s\n" % (k, v))
    for fname, t in tensors.items():
        a = np.ascontiguousarray(t.detach().numpy().astype("<f4"))
        assert np.all(np.isfinite(a)), (name, fname)
        np.save(os.path.join(d, fname + ".npy"), a)


# ---- convolution ----

def conv_case(name, n, in_c, out_c, h, w, kh, kw, stride=(1, 1), dil=(1, 1), pad=(0, 0, 0, 0),
              groups=1, act="none", alpha=0.0, bias=True, bn=None):
    """pad = (top, left, bottom, right); bn = eps to fold a batch norm after the conv."""
    g = Gen(name)
    x = g.u(n, in_c, h, w)
    wt = g.u(out_c, in_c // groups, kh, kw) * (1.0 / math.sqrt(in_c // groups * kh * kw))
    b = g.u(out_c) if bias else None
    t, l, bo, r = pad
    y = F.conv2d(F.pad(x, (l, r, t, bo)), wt, b, stride=stride, dilation=dil, groups=groups)
    tensors = {"input": x, "weight": wt}
    if b is not None:
        tensors["bias"] = b
    params = dict(kind="conv2d_bnfold" if bn is not None else "conv2d", in_c=in_c, out_c=out_c,
                  kh=kh, kw=kw, stride_h=stride[0], stride_w=stride[1], dil_h=dil[0],
                  dil_w=dil[1], pad_t=t, pad_l=l, pad_b=bo, pad_r=r, groups=groups, act=act,
                  act_alpha=alpha, bias=b is not None)
    if bn is not None:
        gamma, beta = g.u(out_c, lo=0.5, hi=1.5), g.u(out_c)
        mean, var = g.u(out_c, lo=-0.5, hi=0.5), g.u(out_c, lo=0.25, hi=2.0)
        y = F.batch_norm(y, mean, var, gamma, beta, training=False, eps=bn)
        tensors.update(gamma=gamma, beta=beta, mean=mean, var=var)
        params["eps"] = bn
    tensors["output"] = ACTS[act](y, alpha)
    write(name, params, tensors)


@case
def conv_cases():
    conv_case("conv_3x3_s1_p1_relu", 2, 3, 4, 9, 9, 3, 3, pad=(1, 1, 1, 1), act="relu")
    conv_case("conv_3x3_s2_p1", 1, 4, 8, 11, 10, 3, 3, stride=(2, 2), pad=(1, 1, 1, 1))
    conv_case("conv_1x1_nobias", 2, 8, 5, 6, 7, 1, 1, bias=False)
    conv_case("conv_1x1_s2_sigmoid", 1, 6, 3, 7, 8, 1, 1, stride=(2, 2), act="sigmoid")
    conv_case("conv_5x5_dil2_p4_silu", 1, 3, 4, 12, 11, 5, 5, dil=(2, 2), pad=(4, 4, 4, 4),
              act="silu")
    conv_case("conv_3x2_asym_pad_leaky", 2, 3, 5, 8, 9, 3, 2, stride=(2, 1), pad=(1, 0, 2, 1),
              act="leaky_relu", alpha=0.1)
    conv_case("conv_groups4_gelu", 1, 8, 12, 7, 6, 3, 3, pad=(1, 1, 1, 1), groups=4, act="gelu")
    conv_case("conv_groups2_s2_dil", 2, 4, 6, 9, 10, 3, 3, stride=(2, 2), dil=(1, 2),
              pad=(1, 2, 1, 2), groups=2)
    conv_case("conv_depthwise_3x3_s2_relu", 2, 6, 6, 9, 8, 3, 3, stride=(2, 2), pad=(1, 1, 1, 1),
              groups=6, act="relu")
    conv_case("conv_depthwise_5x5_dil2_nobias", 1, 5, 5, 11, 12, 5, 5, dil=(2, 1),
              pad=(4, 2, 4, 2), groups=5, bias=False)
    conv_case("conv_7x7_s2_p3_stem_tanh", 1, 1, 4, 16, 15, 7, 7, stride=(2, 2), pad=(3, 3, 3, 3),
              act="tanh")
    conv_case("conv_1x5_pad_lr", 3, 2, 3, 4, 9, 1, 5, pad=(0, 2, 0, 2), act="leaky_relu",
              alpha=0.2)
    conv_case("conv_4x4_s3_nopad", 2, 3, 4, 10, 13, 4, 4, stride=(3, 3))
    conv_case("conv_bnfold_relu", 2, 3, 6, 7, 7, 3, 3, pad=(1, 1, 1, 1), act="relu", bn=1e-5)
    conv_case("conv_bnfold_nobias_dw", 1, 4, 4, 6, 6, 3, 3, pad=(1, 1, 1, 1), groups=4,
              bias=False, bn=1e-3)


# ---- batch norm ----

@case
def batchnorm_cases():
    for name, n, c, h, w, eps in (("batchnorm", 2, 5, 4, 3, 1e-5),
                                  ("batchnorm_eps1e-3", 1, 3, 6, 5, 1e-3)):
        g = Gen(name)
        x = g.u(n, c, h, w, lo=-3, hi=3)
        gamma, beta = g.u(c, lo=0.5, hi=1.5), g.u(c)
        mean, var = g.u(c, lo=-0.5, hi=0.5), g.u(c, lo=0.01, hi=2.0)
        y = F.batch_norm(x, mean, var, gamma, beta, training=False, eps=eps)
        write(name, dict(kind="batchnorm", eps=eps),
              dict(input=x, gamma=gamma, beta=beta, mean=mean, var=var, output=y))


# ---- pooling ----

def pool_case(name, kind, n, c, h, w, k, s, pad=(0, 0, 0, 0), ceil=False, include=True,
              via_pad=False):
    """k, s = (h, w); pad = (top, left, bottom, right). via_pad: asymmetric padding by F.pad."""
    g = Gen(name)
    x = g.u(n, c, h, w, lo=-2, hi=2)
    t, l, b, r = pad
    if via_pad:
        assert not ceil
        if kind == "max":
            y = F.max_pool2d(F.pad(x, (l, r, t, b), value=-math.inf), k, s)
        else:
            assert include
            y = F.avg_pool2d(F.pad(x, (l, r, t, b)), k, s)
    else:
        assert t == b and l == r
        if kind == "max":
            y = F.max_pool2d(x, k, s, padding=(t, l), ceil_mode=ceil)
        else:
            y = F.avg_pool2d(x, k, s, padding=(t, l), ceil_mode=ceil, count_include_pad=include)
    write(name, dict(kind="pool2d", pool=kind, kh=k[0], kw=k[1], stride_h=s[0], stride_w=s[1],
                     pad_t=t, pad_l=l, pad_b=b, pad_r=r, ceil_mode=ceil,
                     count_include_pad=include),
          dict(input=x, output=y))


@case
def pool_cases():
    pool_case("maxpool_2x2_s2", "max", 2, 3, 8, 6, (2, 2), (2, 2))
    pool_case("maxpool_3x3_s2_p1", "max", 1, 4, 9, 10, (3, 3), (2, 2), pad=(1, 1, 1, 1))
    pool_case("maxpool_3x3_s2_ceil", "max", 1, 2, 7, 8, (3, 3), (2, 2), ceil=True)
    # ceil_mode's rule: the last window must start inside the input or the left padding
    # (5 + 2*1 - 2) / 2 rounds up to 3 windows past the first, but the 4th would start in the
    # right padding, so the output is 3 wide.
    pool_case("maxpool_2x2_s2_p1_ceil_lastwindow", "max", 1, 2, 5, 5, (2, 2), (2, 2),
              pad=(1, 1, 1, 1), ceil=True)
    pool_case("maxpool_3x2_s1x2", "max", 2, 2, 6, 7, (3, 2), (1, 2))
    pool_case("maxpool_asym_pad", "max", 1, 3, 6, 7, (3, 3), (2, 2), pad=(0, 1, 1, 0),
              via_pad=True)
    pool_case("avgpool_2x2_s2", "avg", 2, 3, 8, 6, (2, 2), (2, 2))
    pool_case("avgpool_3x3_s1_p1_incpad", "avg", 1, 3, 6, 5, (3, 3), (1, 1), pad=(1, 1, 1, 1))
    pool_case("avgpool_3x3_s1_p1_excpad", "avg", 1, 3, 6, 5, (3, 3), (1, 1), pad=(1, 1, 1, 1),
              include=False)
    pool_case("avgpool_3x3_s2_p1_ceil_incpad", "avg", 1, 2, 8, 9, (3, 3), (2, 2),
              pad=(1, 1, 1, 1), ceil=True)
    pool_case("avgpool_3x3_s2_p1_ceil_excpad", "avg", 1, 2, 8, 9, (3, 3), (2, 2),
              pad=(1, 1, 1, 1), ceil=True, include=False)
    pool_case("avgpool_2x3_s2_ceil_nopad", "avg", 2, 2, 7, 8, (2, 3), (2, 2), ceil=True)
    pool_case("avgpool_asym_pad_incpad", "avg", 1, 2, 5, 6, (2, 3), (2, 2), pad=(1, 0, 0, 1),
              via_pad=True)

    # Adaptive pools with evenly dividing sizes are plain pools.
    for name, kind, shape, osz in (("adaptive_avg_8x8_to_2x2", "avg", (2, 3, 8, 8), (2, 2)),
                                   ("adaptive_max_6x9_to_3x3", "max", (1, 4, 6, 9), (3, 3))):
        g = Gen(name)
        x = g.u(*shape, lo=-2, hi=2)
        fn = F.adaptive_avg_pool2d if kind == "avg" else F.adaptive_max_pool2d
        y = fn(x, osz)
        k = (shape[2] // osz[0], shape[3] // osz[1])
        plain = F.avg_pool2d(x, k, k) if kind == "avg" else F.max_pool2d(x, k, k)
        assert torch.equal(y, plain) or torch.allclose(y, plain, rtol=0, atol=1e-7), name
        write(name, dict(kind="pool2d", pool=kind, kh=k[0], kw=k[1], stride_h=k[0],
                         stride_w=k[1], pad_t=0, pad_l=0, pad_b=0, pad_r=0, ceil_mode=False,
                         count_include_pad=True),
              dict(input=x, output=y))

    for name, kind, shape in (("global_avg", "avg", (2, 5, 7, 6)),
                              ("global_max", "max", (2, 4, 5, 9)),
                              ("global_avg_1x1_input", "avg", (3, 4, 1, 1))):
        g = Gen(name)
        x = g.u(*shape, lo=-3, hi=-1) if kind == "max" else g.u(*shape)  # max: all negative
        y = F.adaptive_avg_pool2d(x, 1) if kind == "avg" else F.adaptive_max_pool2d(x, 1)
        write(name, dict(kind="global_pool", pool=kind), dict(input=x, output=y))


# ---- resizing ----

def nearest_exact_rule(insz, outsz):
    """The documented rule src = floor(dst * in / out) in integers."""
    return [d * insz // outsz for d in range(outsz)]


@case
def upsample_cases():
    for name, mode, ac, shape, osz in (
            ("nearest_2x", "nearest", False, (2, 3, 4, 5), (8, 10)),
            ("nearest_5x7_to_7x12", "nearest", False, (1, 2, 5, 7), (7, 12)),
            ("nearest_down_8x9_to_3x5", "nearest", False, (1, 2, 8, 9), (3, 5)),
            ("bilinear_2x", "bilinear", False, (2, 2, 4, 5), (8, 10)),
            ("bilinear_2x_align_corners", "bilinear", True, (2, 2, 4, 5), (8, 10)),
            ("bilinear_5x7_to_9x4", "bilinear", False, (1, 3, 5, 7), (9, 4)),
            ("bilinear_3x4_to_7x9_align_corners", "bilinear", True, (1, 2, 3, 4), (7, 9)),
            ("bilinear_to_1_align_corners", "bilinear", True, (1, 2, 4, 5), (1, 3)),
            ("bilinear_down_9x8_to_4x3", "bilinear", False, (1, 2, 9, 8), (4, 3))):
        g = Gen(name)
        x = g.u(*shape)
        if mode == "nearest":
            y = F.interpolate(x, size=osz, mode="nearest")
            # PyTorch computes the source index in float; these sizes agree with the integer
            # rule nn.h documents.
            ih = nearest_exact_rule(shape[2], osz[0])
            iw = nearest_exact_rule(shape[3], osz[1])
            assert torch.equal(y, x[:, :, ih][:, :, :, iw]), name
        else:
            y = F.interpolate(x, size=osz, mode="bilinear", align_corners=ac)
        write(name, dict(kind="upsample", mode=mode, align_corners=ac, out_h=osz[0],
                         out_w=osz[1]),
              dict(input=x, output=y))


# ---- plumbing ----

@case
def plumbing_cases():
    g = Gen("concat3")
    xs = [g.u(2, c, 4, 3) for c in (2, 3, 1)]
    write("concat3", dict(kind="concat", count=3),
          dict(input0=xs[0], input1=xs[1], input2=xs[2], output=torch.cat(xs, 1)))
    g = Gen("concat2_1x1")
    xs = [g.u(1, c, 1, 1) for c in (4, 5)]
    write("concat2_1x1", dict(kind="concat", count=2),
          dict(input0=xs[0], input1=xs[1], output=torch.cat(xs, 1)))

    for name, op, bshape in (("add_same", "add", (2, 3, 4, 5)),
                             ("mul_same", "mul", (2, 3, 4, 5)),
                             ("mul_bcast_c", "mul", (1, 3, 1, 1)),
                             ("add_bcast_nc", "add", (2, 3, 1, 1)),
                             ("add_bcast_scalar", "add", (1, 1, 1, 1))):
        g = Gen(name)
        a, b = g.u(2, 3, 4, 5), g.u(*bshape)
        y = a + b if op == "add" else a * b
        write(name, dict(kind="binary", op=op), dict(input0=a, input1=b, output=y))

    for name, shape, out_f, bias in (("fc_bias", (2, 4, 3, 2), 10, True),
                                     ("fc_nobias", (3, 16, 1, 1), 5, False),
                                     ("fc_bias_1x1", (1, 7, 1, 1), 1, True)):
        g = Gen(name)
        x = g.u(*shape)
        in_f = shape[1] * shape[2] * shape[3]
        wt = g.u(out_f, in_f) * (1.0 / math.sqrt(in_f))
        b = g.u(out_f) if bias else None
        y = F.linear(x.reshape(shape[0], in_f), wt, b).reshape(shape[0], out_f, 1, 1)
        t = dict(input=x, weight=wt, output=y)
        if bias:
            t["bias"] = b
        write(name, dict(kind="fc", out_features=out_f, bias=bias), t)

    for name, shape, scale, offset in (("softmax_channels", (2, 7, 3, 4), 4.0, 0.0),
                                       ("softmax_large_logits", (1, 5, 2, 3), 40.0, 1000.0),
                                       ("softmax_2ch", (2, 2, 3, 3), 3.0, -50.0)):
        g = Gen(name)
        x = g.u(*shape) * scale + offset
        write(name, dict(kind="softmax"), dict(input=x, output=F.softmax(x, dim=1)))


# ---- activations ----

@case
def act_cases():
    for act, alpha in (("relu", 0.0), ("leaky_relu", 0.1), ("leaky_relu", 0.01), ("silu", 0.0),
                       ("sigmoid", 0.0), ("tanh", 0.0), ("gelu", 0.0), ("none", 0.0)):
        name = "act_%s%s" % (act, "_%g" % alpha if act == "leaky_relu" else "")
        g = Gen(name)
        # a spread of values plus saturation and the exact zero
        x = torch.cat([g.u(2 * 3 * 5 * 7 - 5, lo=-8, hi=8),
                       torch.tensor([0.0, -30.0, 30.0, -100.0, 100.0])]).reshape(2, 3, 5, 7)
        write(name, dict(kind="act", act=act, act_alpha=alpha),
              dict(input=x, output=ACTS[act](x, alpha)))


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    for fn in CASES:
        fn()
    names = sorted(os.listdir(OUT))
    size = sum(os.path.getsize(os.path.join(OUT, n, f)) for n in names
               for f in os.listdir(os.path.join(OUT, n)))
    print("%d cases, %d bytes in %s (torch %s)" % (len(names), size, OUT, torch.__version__))
    assert size < 1 << 20


if __name__ == "__main__":
    main()
