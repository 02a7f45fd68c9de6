#!/bin/sh
# Generates the loader benchmark's inputs into OUT_DIR (default build/bench-data):
#   phantom_uncompressed.dcm   2048x2048, 12 bits stored in 16, explicit VR little endian
#   phantom_jpegll.dcm         JPEG lossless SV1 (dcmcjpeg +e1)
#   phantom_jpegls.dcm         JPEG-LS lossless (dcmcjpls +el)
#   phantom_rle.dcm            RLE lossless (dcmcrle)
#   phantom_j2k.dcm            JPEG 2000 lossless (gdcmconv --j2k)
#   phantom_j2k.j2k            the J2K codestream of that DICOM's frame, for OpenJPEG alone
#   phantom_16bit.png          16-bit grayscale PNG of the same pixels
#   phantom_8bit.jpg           8-bit grayscale JPEG (quality 90)
# Needs Debian's /usr/bin/python3 (pydicom, numpy, PIL), dcmtk and libgdcm-tools.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:-"$here/../build/bench-data"}
py=/usr/bin/python3

for tool in dcmcjpeg dcmcjpls dcmcrle gdcmconv; do
    command -v "$tool" >/dev/null 2>&1 || { echo "make-bench-data: $tool not found" >&2; exit 1; }
done
mkdir -p "$out"

"$py" "$here/make-bench-data.py" "$out"
src="$out/phantom_uncompressed.dcm"
dcmcjpeg +e1 "$src" "$out/phantom_jpegll.dcm"
dcmcjpls +el "$src" "$out/phantom_jpegls.dcm"
dcmcrle "$src" "$out/phantom_rle.dcm"
gdcmconv --j2k "$src" "$out/phantom_j2k.dcm"
"$py" - "$out/phantom_j2k.dcm" "$out/phantom_j2k.j2k" <<'EOF'
import sys
import pydicom
from pydicom.encaps import generate_pixel_data_frame
ds = pydicom.dcmread(sys.argv[1])
frame = next(generate_pixel_data_frame(ds.PixelData, 1))
with open(sys.argv[2], "wb") as f:
    f.write(frame)
EOF
ls -l "$out"
