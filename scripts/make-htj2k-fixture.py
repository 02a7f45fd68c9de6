#!/usr/bin/python3
"""Writes tests/data/htj2k_lossless_12bit.dcm: a 64x48 12-bit pattern (the C test recomputes
it) encoded as reversible HTJ2K by OpenJPH's ojph_compress (Debian openjph-tools) and wrapped
as DICOM with transfer syntax 1.2.840.10008.1.2.4.201 by pydicom. No corpus file uses HTJ2K,
so this is the loader's HTJ2K check. Run with Debian's /usr/bin/python3."""
import numpy as np, subprocess, pydicom, pydicom._uid_dict  # pydicom 2.3.1 predates HTJ2K
pydicom._uid_dict.UID_dictionary["1.2.840.10008.1.2.4.201"] = ("HTJ2K Lossless", "Transfer Syntax", "", "", "HTJ2KLossless")
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import generate_uid
# 12-bit pattern the C test recomputes: v = (x*37 + y*101 + (x*y)%251) % 4096
H, W = 48, 64
y, x = np.mgrid[0:H, 0:W]
v = ((x * 37 + y * 101 + (x * y) % 251) % 4096).astype('>u2')
with open('/tmp/p.pgm', 'wb') as f:
    f.write(b'P5\n%d %d\n4095\n' % (W, H)); f.write(v.tobytes())
subprocess.run(['ojph_compress', '-i', '/tmp/p.pgm', '-o', '/tmp/p.j2c', '-reversible', 'true'], check=True)
cs = open('/tmp/p.j2c', 'rb').read()
meta = FileMetaDataset()
meta.MediaStorageSOPClassUID = '1.2.840.10008.5.1.4.1.1.7'
meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=['medscreen-htj2k'])
meta.TransferSyntaxUID = '1.2.840.10008.1.2.4.201'
ds = Dataset(); ds.file_meta = meta; ds.is_little_endian = True; ds.is_implicit_VR = False
ds.SOPClassUID = meta.MediaStorageSOPClassUID; ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
ds.Modality = 'OT'; ds.Rows, ds.Columns = H, W; ds.SamplesPerPixel = 1
ds.PhotometricInterpretation = 'MONOCHROME2'; ds.BitsAllocated = 16; ds.BitsStored = 12
ds.HighBit = 11; ds.PixelRepresentation = 0
ds.PixelData = encapsulate([cs]); ds['PixelData'].is_undefined_length = True; ds['PixelData'].VR = 'OB'
ds.save_as(__import__('os').path.join(__import__('os').path.dirname(__import__('os').path.abspath(__file__)), '..', 'tests', 'data', 'htj2k_lossless_12bit.dcm'), write_like_original=False)
print(len(cs))
