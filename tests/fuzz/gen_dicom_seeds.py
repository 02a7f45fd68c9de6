#!/usr/bin/python3
"""Writes small synthetic DICOM fuzzing seeds (tests/corpus/dicom/gen_*.dcm).

Each seed exercises one branch of the loader: transfer syntaxes, bit depths, sign, photometric
interpretations, planar configuration, multi-frame, modality/VOI LUT sequences, palette colour,
pixel spacing sources, missing pixel data, a bare data set. All content is synthetic (no
patient data). Needs Debian's python3-pydicom and python3-numpy.

Compressed seeds (JPEG lossless and 12-bit extended, JPEG-LS, JPEG 2000) are made from our
own uncompressed ones with DCMTK's dcmcjpeg/dcmcjpls and GDCM's gdcmconv when installed.

Usage: tests/fuzz/gen_dicom_seeds.py [OUTDIR]   (default: tests/corpus/dicom)
"""
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    RLELossless,
)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "corpus", "dicom")
SECONDARY_CAPTURE = UID("1.2.840.10008.5.1.4.1.1.7")
CT_IMAGE = UID("1.2.840.10008.5.1.4.1.1.2")
ROOT = "1.2.826.0.1.3680043.10.1234."  # fixed UIDs: pydicom-written seeds are reproducible


def base(ts, rows, cols, n=0, sop_class=SECONDARY_CAPTURE):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = ROOT + "1.%d" % n
    meta.TransferSyntaxUID = ts
    meta.ImplementationClassUID = ROOT + "99"
    ds = Dataset()
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    ds.is_little_endian = ts != ExplicitVRBigEndian
    ds.is_implicit_VR = ts == ImplicitVRLittleEndian
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = ROOT + "2.%d" % n
    ds.SeriesInstanceUID = ROOT + "3.%d" % n
    ds.Modality = "OT"
    ds.PatientName = "Synthetic^Seed"
    ds.PatientID = "SEED%02d" % n
    ds.Rows = rows
    ds.Columns = cols
    return ds


def mono(ds, arr, bits_stored=None, signed=False, photometric="MONOCHROME2"):
    bits = arr.dtype.itemsize * 8
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.BitsAllocated = bits
    ds.BitsStored = bits_stored or bits
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = arr.tobytes() if ds.is_little_endian else arr.byteswap().tobytes()
    return ds


def color(ds, rgb, photometric="RGB", planar=0):
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = photometric
    ds.PlanarConfiguration = planar
    ds.BitsAllocated = 8
    ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    data = rgb.transpose(2, 0, 1) if planar else rgb
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    return ds


def ramp(rows, cols, dtype, lo, hi):
    v = np.linspace(lo, hi, rows * cols).reshape(rows, cols)
    return v.astype(dtype)


def rgb_image(rows, cols):
    y, x = np.mgrid[0:rows, 0:cols]
    return np.stack([x * 255 // max(cols - 1, 1), y * 255 // max(rows - 1, 1),
                     (x + y) * 127 // max(rows + cols - 2, 1)], axis=-1).astype(np.uint8)


def save(name, ds, write_like_original=False):
    path = os.path.join(OUT, "gen_" + name + ".dcm")
    ds.save_as(path, write_like_original=write_like_original)
    print("%s (%d bytes)" % (path, os.path.getsize(path)))


def convert(name, src_ds, tool, *args):
    """Writes gen_<name>.dcm by running a DICOM codec tool on src_ds; skipped if missing."""
    exe = shutil.which(tool)
    if exe is None:
        print("skipping gen_%s.dcm: %s not installed" % (name, tool))
        return
    with tempfile.TemporaryDirectory() as tmp:
        src = os.path.join(tmp, "in.dcm")
        src_ds.save_as(src)
        dst = os.path.join(OUT, "gen_" + name + ".dcm")
        subprocess.run([exe, *args, src, dst], check=True)
    print("%s (%d bytes)" % (dst, os.path.getsize(dst)))


def textured(rows, cols, maxv, dtype):
    y, x = np.mgrid[0:rows, 0:cols]
    v = (x * 37 + y * 11 + (x * y) % 7 * 19) % (maxv + 1)
    v[rows // 4:rows // 2, cols // 4:cols // 2] = maxv
    return v.astype(dtype)


def main():
    os.makedirs(OUT, exist_ok=True)

    ds = mono(base(ExplicitVRLittleEndian, 8, 8, 1), ramp(8, 8, np.uint8, 0, 255))
    ds.PixelSpacing = [0.5, 0.25]
    save("mono8_explicit", ds)

    # CT-like: signed 12 of 16 bits, rescale, two windows (the second for --voi-index 1).
    ds = base(ImplicitVRLittleEndian, 8, 6, 2, CT_IMAGE)
    ds.Modality = "CT"
    ds.BodyPartExamined = "CHEST"
    mono(ds, ramp(8, 6, np.int16, -2048, 2047), bits_stored=12, signed=True)
    ds.RescaleSlope = "2"
    ds.RescaleIntercept = "-1000"
    ds.WindowCenter = ["40", "-600"]
    ds.WindowWidth = ["400", "1500"]
    ds.VOILUTFunction = "LINEAR"
    save("ct_signed12_implicit", ds)

    ds = mono(base(ExplicitVRLittleEndian, 4, 4, 3), ramp(4, 4, np.uint16, 0, 4095), 12,
              photometric="MONOCHROME1")
    ds.Modality = "CR"
    ds.ViewPosition = "PA"
    ds.ImagerPixelSpacing = [0.15, 0.15]
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.VOILUTFunction = "SIGMOID"
    save("mono1_sigmoid", ds)

    ds = mono(base(ExplicitVRLittleEndian, 4, 4, 4), ramp(4, 4, np.uint16, 0, 65535))
    ds.PresentationLUTShape = "INVERSE"
    save("mono16_inverse", ds)

    ds = mono(base(ExplicitVRBigEndian, 4, 5, 5), ramp(4, 5, np.uint16, 10, 1000), 10)
    save("mono16_bigendian", ds)

    save("rgb_planar0", color(base(ExplicitVRLittleEndian, 4, 4, 6), rgb_image(4, 4)))
    save("rgb_planar1", color(base(ExplicitVRLittleEndian, 4, 3, 7), rgb_image(4, 3),
                              planar=1))
    save("ybr_full", color(base(ExplicitVRLittleEndian, 4, 4, 8), rgb_image(4, 4), "YBR_FULL"))

    # YBR_FULL_422 uncompressed: Y0 Y1 Cb Cr per pair of pixels (PS3.3 C.7.6.3.1.2).
    ds = base(ExplicitVRLittleEndian, 2, 4, 9)
    ds.SamplesPerPixel = 3
    ds.PhotometricInterpretation = "YBR_FULL_422"
    ds.PlanarConfiguration = 0
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes([16, 32, 128, 128, 200, 235, 100, 160] * 2)
    save("ybr_full_422", ds)

    frames = np.stack([ramp(4, 4, np.uint8, i * 40, 255 - i * 40) for i in range(3)])
    ds = mono(base(ExplicitVRLittleEndian, 4, 4, 10), frames)
    ds.NumberOfFrames = 3
    save("multiframe3", ds)

    ds = mono(base(DeflatedExplicitVRLittleEndian, 6, 6, 11), ramp(6, 6, np.uint8, 0, 200))
    save("deflated", ds)

    ds = mono(base(ExplicitVRLittleEndian, 8, 8, 12), ramp(8, 8, np.uint16, 0, 1000), 16)
    ds.compress(RLELossless)
    save("rle16", ds)

    ds = color(base(ExplicitVRLittleEndian, 4, 4, 13), rgb_image(4, 4))
    ds.NumberOfFrames = 2
    ds.PixelData = ds.PixelData * 2
    ds.compress(RLELossless)
    save("rle_rgb_2frame", ds)

    # JPEG baseline: the 16x16 grayscale seed of tests/corpus/jpeg, encapsulated.
    jpg_path = os.path.join(HERE, "..", "corpus", "jpeg", "gray.jpg")
    if os.path.exists(jpg_path):
        with open(jpg_path, "rb") as f:
            jpg = f.read()
        ds = base(JPEGBaseline8Bit, 16, 16, 14)
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit = 7
        ds.PixelRepresentation = 0
        ds.PixelData = encapsulate([jpg])
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        save("jpeg_baseline", ds)

    # Modality LUT Sequence (PS3.3 C.11.1) and VOI LUT Sequence (C.11.2).
    ds = mono(base(ExplicitVRLittleEndian, 4, 4, 15), ramp(4, 4, np.uint16, 0, 255), 8)
    item = Dataset()
    item.LUTDescriptor = [256, 0, 16]
    item.ModalityLUTType = "HU"
    item.add_new(0x00283006, "US", [int(v) for v in np.linspace(0, 4000, 256).astype(np.uint16)])
    ds.ModalityLUTSequence = Sequence([item])
    voi = Dataset()
    voi.LUTDescriptor = [4096, 0, 12]
    voi.add_new(0x00283006, "US", [int(v) for v in np.linspace(0, 4095, 4096)][::-1])
    voi.LUTExplanation = "reversed ramp"
    ds.VOILUTSequence = Sequence([voi])
    save("lut_sequences", ds)

    # PALETTE COLOR with 8-bit indices and 16-bit entries (PS3.3 C.7.6.3.1.5).
    ds = mono(base(ExplicitVRLittleEndian, 4, 4, 16), ramp(4, 4, np.uint8, 0, 15),
              photometric="PALETTE COLOR")
    for c, k in (("Red", 1), ("Green", 2), ("Blue", 3)):
        setattr(ds, c + "PaletteColorLookupTableDescriptor", [16, 0, 16])
        lut = np.array([(i * 4096 * k) % 65536 for i in range(16)], dtype="<u2")
        setattr(ds, c + "PaletteColorLookupTableData", lut.tobytes())
    save("palette8", ds)

    # No pixel data: a structured-report-like object.
    ds = base(ExplicitVRLittleEndian, 1, 1, 17, UID("1.2.840.10008.5.1.4.1.1.88.11"))
    ds.Modality = "SR"
    del ds.Rows
    del ds.Columns
    save("no_pixels", ds)

    # Codec seeds made from uncompressed synthetic images.
    ds = mono(base(ExplicitVRLittleEndian, 16, 16, 20), textured(16, 16, 4095, np.uint16), 12)
    ds.Modality = "MR"
    convert("jpeg_lossless_sv1", ds, "dcmcjpeg", "+e1")
    convert("jpeg_extended12", ds, "dcmcjpeg", "+ee")
    convert("jpegls_lossless", ds, "dcmcjpls", "+el")
    convert("jpegls_near", ds, "dcmcjpls", "+en", "+md", "2")
    convert("j2k_lossless", ds, "gdcmconv", "--j2k")
    convert("j2k_lossy", ds, "gdcmconv", "--j2k", "--lossy", "-q", "40")
    rgb = color(base(ExplicitVRLittleEndian, 8, 8, 21), rgb_image(8, 8))
    convert("jpegls_rgb", rgb, "dcmcjpls", "+el")
    convert("j2k_rgb", rgb, "gdcmconv", "--j2k")
    convert("jpeg_baseline_rgb", rgb, "dcmcjpeg", "+eb")

    # A bare data set: no preamble, no "DICM", no meta (detected by content).
    ds = mono(base(ImplicitVRLittleEndian, 4, 4, 18), ramp(4, 4, np.uint8, 0, 255))
    del ds.file_meta
    ds.preamble = None
    save("bare_implicit", ds, write_like_original=True)


if __name__ == "__main__":
    main()
