#!/usr/bin/python3
"""Writes the .npy fixtures of tests/unit/test_npy.c (tests/data/npy/) and the seeds of the npy
fuzz target (tests/corpus/npy/) with Debian's numpy, so the reader is tested on files numpy
itself wrote. Everything is deterministic: re-running gives identical bytes for a given numpy
(committed files: numpy 1.24, which pads the header for in-place growth).

Values follow pat(i) = (i % 17) * 0.125 - 1 over the flat C-order index, exact in float32, so
the C test recomputes them without Python.

Usage: /usr/bin/python3 scripts/make-npy-fixtures.py
"""
import os
import shutil

import numpy as np
from numpy.lib import format as npf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "tests", "data", "npy")
CORPUS = os.path.join(ROOT, "tests", "corpus", "npy")


def pat(shape, dtype="<f4"):
    n = int(np.prod(shape, dtype=np.int64))
    return ((np.arange(n) % 17) * 0.125 - 1).astype(dtype).reshape(shape)


def save(name, arr, version=None):
    with open(os.path.join(DATA, name), "wb") as f:
        npf.write_array(f, arr, version=version, allow_pickle=True)


def main():
    os.makedirs(DATA, exist_ok=True)
    os.makedirs(CORPUS, exist_ok=True)
    for d in (DATA, CORPUS):
        for f in os.listdir(d):
            if f.endswith(".npy"):
                os.remove(os.path.join(d, f))

    # Supported: '<f4' (and '<f8', converted), C order, versions 1.0 / 2.0 / 3.0.
    save("f4_2x3.npy", pat((2, 3)))
    save("f4_scalar.npy", np.array(3.25, dtype="<f4"))
    save("f4_vec5.npy", pat((5,)))
    save("f4_4d.npy", pat((2, 3, 4, 5)))
    save("f4_empty.npy", np.zeros((0, 3), dtype="<f4"))
    save("f4_v2.npy", pat((2, 3)), version=(2, 0))
    save("f4_v3.npy", pat((2, 3)), version=(3, 0))
    special = np.array([0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, np.nan, 1e-45,
                        np.finfo(np.float32).max, 1.0 / 3.0], dtype="<f4")
    save("f4_special.npy", special)
    save("f8_2x3.npy", pat((2, 3), "<f8") + 0.1)  # 0.1 is inexact: tests the rounding
    save("f8_too_big.npy", np.array([1.0, 1e300], dtype="<f8"))

    # Unsupported: each must be refused with MS_EUNSUPPORTED naming the dtype.
    save("f4_fortran.npy", np.asfortranarray(pat((3, 4))))
    save("f4_bigendian.npy", pat((2, 3), ">f4"))
    save("f8_bigendian.npy", pat((2, 3), ">f8"))
    save("i4.npy", np.arange(6, dtype="<i4").reshape(2, 3))
    save("u1.npy", np.arange(6, dtype="u1"))
    save("bool.npy", np.array([True, False]))
    save("f2.npy", pat((4,), "<f2"))
    save("c8.npy", np.array([1 + 2j], dtype="<c8"))
    save("unicode.npy", np.array(["ab", "c"]))
    save("object.npy", np.array([1, "a"], dtype=object))
    save("structured.npy", np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")]))

    # Fuzz seeds: small files of every kind above, plus hand-written header variants numpy
    # reads (double quotes, no padding, other key order).
    for f in ("f4_2x3.npy", "f4_scalar.npy", "f4_vec5.npy", "f4_empty.npy", "f4_v2.npy",
              "f4_v3.npy", "f4_special.npy", "f8_2x3.npy", "f4_fortran.npy", "f4_bigendian.npy",
              "i4.npy", "structured.npy"):
        shutil.copyfile(os.path.join(DATA, f), os.path.join(CORPUS, f))
    for name, header in (
            ("hand_dquote.npy", b'{"shape":(2,3),"fortran_order":False,"descr":"<f4"}'),
            ("hand_spaces.npy", b"{ 'descr' : '<f4' ,\n\t'fortran_order' : False ,"
                                b" 'shape' : ( 2 , 3 , ) , }\n")):
        body = pat((2, 3)).tobytes()
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + body)
        assert np.array_equal(np.load(os.path.join(CORPUS, name)), pat((2, 3))), name


if __name__ == "__main__":
    main()
