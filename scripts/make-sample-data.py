#!/usr/bin/python3
"""Writes the sample inputs of README's main job into data/: a synthetic chest phantom (the
benchmark's, at 512x512, seed fixed) with and without a round opacity, as the files a PACS
export folder holds:

  cr_chest_mono1.dcm          CR, MONOCHROME1, 12 bits in 16, explicit VR little endian
  dx_chest_nodule_jpegll.dcm  DX, MONOCHROME2, JPEG lossless SV1 (dcmcjpeg), with a nodule
  dx_chest_nodule_rle.dcm     the same pixels, RLE lossless (dcmcrle)
  chest_nodule_16bit.png      16-bit grayscale PNG
  chest_8bit.jpg              8-bit JPEG

Usage: make-sample-data.py [OUT_DIR]   (default: data/ beside this script's folder)
Needs Debian's /usr/bin/python3 with pydicom, numpy and PIL, and dcmtk's dcmcjpeg/dcmcrle.
Nothing here is patient data: every pixel comes from formulas.
"""

import importlib.util
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("bench", os.path.join(HERE, "make-bench-data.py"))
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)

SIZE = 512
NODULE = ((0.40, 0.30, 0.035, 0.22),)  # in the right lung as displayed (patient's right)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "data")
    os.makedirs(out, exist_ok=True)
    normal = bench.phantom(SIZE)
    nodule = bench.phantom(SIZE, NODULE)

    # CR stored as MONOCHROME1: high values display dark.
    cr = os.path.join(out, "cr_chest_mono1.dcm")
    bench.write_dicom(((1 << bench.BITS) - 1 - normal).astype(np.uint16), cr)
    import pydicom
    ds = pydicom.dcmread(cr)
    ds.Modality = "CR"
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.PhotometricInterpretation = "MONOCHROME1"
    ds.PresentationLUTShape = "INVERSE"
    ds.PatientName = "SAMPLE^CR"
    ds.save_as(cr, write_like_original=False)

    raw = os.path.join(out, "dx_chest_nodule_raw.dcm")
    bench.write_dicom(nodule, raw)
    ds = pydicom.dcmread(raw)
    ds.PatientName = "SAMPLE^DX"
    ds.save_as(raw, write_like_original=False)
    subprocess.run(["dcmcjpeg", "+e1", raw, os.path.join(out, "dx_chest_nodule_jpegll.dcm")],
                   check=True)
    subprocess.run(["dcmcrle", raw, os.path.join(out, "dx_chest_nodule_rle.dcm")], check=True)
    os.remove(raw)

    from PIL import Image
    png16 = (nodule.astype(np.uint32) * 65535 // 4095).astype(np.uint16)
    Image.fromarray(png16, mode="I;16").save(os.path.join(out, "chest_nodule_16bit.png"))
    jpg8 = (normal >> 4).astype(np.uint8)
    Image.fromarray(jpg8, mode="L").save(os.path.join(out, "chest_8bit.jpg"), quality=92)
    return 0


if __name__ == "__main__":
    sys.exit(main())
