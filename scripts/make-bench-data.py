#!/usr/bin/python3
"""Writes the loader benchmark's inputs: a synthetic 2048x2048 chest-radiograph-like phantom
(12 bits stored in 16, deterministic) as uncompressed DICOM, then the same pixels as
PNG 16-bit and JPEG 8-bit. scripts/make-bench-data.sh adds the compressed DICOM copies.

Usage: make-bench-data.py OUT_DIR    (Debian's /usr/bin/python3: pydicom 2.3.1, numpy, PIL)

Nothing here is patient data: every pixel comes from the formulas below (seed 20240601).
"""

import os
import sys

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

N = 2048
BITS = 12
SEED = 20240601


def ellipse(yy, xx, cy, cx, ry, rx):
    """Smooth-edged ellipse mask in [0, 1]."""
    r = np.sqrt(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2)
    return np.clip((1.0 - r) * 12.0, 0.0, 1.0)


def phantom(n=N, lesions=()):
    """The phantom at n x n; lesions: (cy, cx, radius, contrast) in fractions of the size."""
    rng = np.random.default_rng(SEED)
    y, x = np.mgrid[0:n, 0:n].astype(np.float32) / n  # 0..1
    img = np.full((n, n), 0.05, dtype=np.float32)  # air / collimated background
    body = ellipse(y, x, 0.55, 0.5, 0.52, 0.46)
    img += 0.55 * body  # soft tissue
    lungs = ellipse(y, x, 0.48, 0.32, 0.30, 0.13) + ellipse(y, x, 0.48, 0.68, 0.30, 0.13)
    img -= 0.35 * np.clip(lungs, 0, 1)  # aerated lung is darker
    img += 0.30 * ellipse(y, x, 0.62, 0.56, 0.15, 0.14)  # heart shadow
    img += 0.25 * ellipse(y, x, 0.50, 0.5, 0.45, 0.035)  # spine
    for i in range(9):  # ribs: thin bright arcs across each lung
        cy = 0.25 + i * 0.055
        for side in (0.32, 0.68):
            arc = np.exp(-((y - cy - 0.06 * ((x - side) / 0.13) ** 2) / 0.008) ** 2)
            img += 0.12 * arc * ellipse(y, x, 0.48, side, 0.33, 0.16)
    img += 0.2 * ellipse(y, x, 0.16, 0.22, 0.05, 0.18) + 0.2 * ellipse(y, x, 0.16, 0.78, 0.05, 0.18)
    # vessel-like texture in the lungs and detector noise
    tex = rng.standard_normal((n // 16, n // 16)).astype(np.float32)
    tex = np.kron(tex, np.ones((16, 16), dtype=np.float32))
    img += 0.03 * tex * np.clip(lungs, 0, 1)
    img += 0.012 * rng.standard_normal((n, n)).astype(np.float32)
    for cy, cx, r, contrast in lesions:  # round opacities, e.g. nodules
        img += contrast * np.exp(-(((y - cy) ** 2 + (x - cx) ** 2) / (r * r)))
    img = np.clip(img, 0.0, 1.0)
    return np.round(img * ((1 << BITS) - 1)).astype(np.uint16)


def write_dicom(pixels, path):
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # DX for presentation
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=["medscreen-bench", "sop"])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.is_little_endian = True
    ds.is_implicit_VR = False
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = generate_uid(entropy_srcs=["medscreen-bench", "study"])
    ds.SeriesInstanceUID = generate_uid(entropy_srcs=["medscreen-bench", "series"])
    ds.Modality = "DX"
    ds.PatientName = "BENCH^PHANTOM"
    ds.PatientID = "PHANTOM"
    ds.BodyPartExamined = "CHEST"
    ds.ViewPosition = "PA"
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImagerPixelSpacing = [0.17, 0.17]
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = BITS
    ds.HighBit = BITS - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope = "1"
    ds.RescaleIntercept = "0"
    ds.WindowCenter = "2048"
    ds.WindowWidth = "4096"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelData = pixels.astype("<u2").tobytes()
    ds.save_as(path, write_like_original=False)


def main():
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    px = phantom()
    write_dicom(px, os.path.join(out, "phantom_uncompressed.dcm"))
    from PIL import Image
    # PNG: the 12-bit values scaled to the full 16-bit range, as an exporter would.
    png16 = (px.astype(np.uint32) * 65535 // 4095).astype(np.uint16)
    Image.fromarray(png16, mode="I;16").save(os.path.join(out, "phantom_16bit.png"))
    jpg8 = (px >> 4).astype(np.uint8)
    Image.fromarray(jpg8, mode="L").save(os.path.join(out, "phantom_8bit.jpg"), quality=90)
    return 0


if __name__ == "__main__":
    sys.exit(main())
