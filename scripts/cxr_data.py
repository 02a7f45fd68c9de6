#!/usr/bin/python3
"""Data for the chest X-ray screener (issue 4): the adult NIH development set and the pediatric
Kermany set under ../shared/data, as used by scripts/train_cxr.py.

  nih-cxr-dev-512/labels.csv   601 adult frontal radiographs, 512x512 8-bit PNG; `abnormal` 0/1,
                               `patient_id` (411 patients), `view` PA/AP
  nih-cxr-dev-512/boxes.csv    23 radiologist boxes on 22 images, pixels of the 512x512 copy
  kermany-cxr-224/labels.csv   pediatric AP radiographs, 224x224 JPEG, `split` train/test,
                               `abnormal` 0/1, `patient`

Decisions (written down here so the training record and the model card can cite them):

* Grey float32 in [0, 1]: the PNG/JPEG values / 255 (the Kermany JPEGs are stored as RGB with
  equal channels; they are converted to luminance). This is what `medscreen scan` feeds a
  model for PNG/JPEG (used as stored) and for DICOM with `window=auto` (minimum..maximum).
* Resizing to a square input (default 256) with `stretch`: the NIH copies are square and the
  Kermany copies were already stretched to 224x224 by whoever made them, so keeping the aspect
  ratio would buy nothing here; the model declares `resize=stretch`. Shrinking uses PIL's BOX
  filter (area averaging, as `scan`'s default `resize_filter=area`); enlarging (Kermany 224 ->
  256) uses bilinear.
* Augmentation (training only, on the batch tensor, so it runs on the GPU when there is one):
  a small random affine (rotation +-7 degrees, scale 0.9-1.1, translation +-5% of the side,
  border filled with the image's edge) and brightness/contrast/gamma jitter (+-10%, +-15%,
  gamma 0.8-1.25). NO horizontal flip: chest anatomy is asymmetric (heart and aortic knob on
  the left, the right hemidiaphragm higher, the stomach bubble on the left); a flipped film
  looks like dextrocardia/situs inversus, a real abnormality, and mirrored images would teach
  the region map that left and right findings are interchangeable. Radiographs are also
  labelled with L/R markers that a flip turns into nonsense.
* Patient-level 5-fold split of the adult set: patients (not images) are assigned to folds,
  stratified by the patient's label (max over their images; 0/1 labels are per image, a
  patient with both labels counts as abnormal) and balanced in image count; seeded.
  The pediatric train/test split is the one given. Caution: 170 `patient` ids (personN)
  occur in both its train and test lists; the source numbered its folders separately, so
  these may or may not be the same children. kermany_id_overlap() counts them and the
  training record carries the count, so the pediatric-test AUROC is read with that in mind.
* Every data file used is hashed (sha256) for the provenance record, and each hash is also
  checked against ../shared/data/HASHES.sha256 when that list exists.

Library only; `python3 scripts/cxr_data.py` prints a summary (counts, folds, hashing time).
"""
import csv
import hashlib
import json
import os
import random

import numpy as np
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))
NIH = "nih-cxr-dev-512"
KER = "kermany-cxr-224"


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_nih(data=DATA):
    """Adult records: dicts with path (absolute), rel, label, patient, view, set='nih'."""
    out = []
    for r in _read_csv(os.path.join(data, NIH, "labels.csv")):
        out.append({"set": "nih", "rel": NIH + "/" + r["path"],
                    "path": os.path.join(data, NIH, r["path"]), "label": int(r["abnormal"]),
                    "patient": "nih:" + r["patient_id"], "view": r["view"]})
    return out


def read_kermany(data=DATA):
    """Pediatric records, split 'train' or 'test'."""
    out = []
    for r in _read_csv(os.path.join(data, KER, "labels.csv")):
        out.append({"set": "kermany", "rel": KER + "/" + r["path"],
                    "path": os.path.join(data, KER, r["path"]), "label": int(r["abnormal"]),
                    "patient": "ker:" + r["patient"], "split": r["split"], "view": "AP"})
    return out


def read_boxes(size, data=DATA, native=512):
    """{rel path: [[x0, y0, x1, y1] in input pixels, ...]} from nih boxes.csv, scaled from the
    512x512 copy to size x size (stretch)."""
    s = size / float(native)
    boxes = {}
    for r in _read_csv(os.path.join(data, NIH, "boxes.csv")):
        x, y, w, h = (float(r[k]) for k in ("x", "y", "w", "h"))
        boxes.setdefault(NIH + "/" + r["path"], []).append(
            [x * s, y * s, (x + w) * s, (y + h) * s])
    return boxes


def verify_and_hash(records, data=DATA, extra=()):
    """Checks every file exists; returns {rel: sha256} for the records and the extra files
    (relative to data). Raises if a file is missing or a hash is not in HASHES.sha256."""
    missing = [r["path"] for r in records if not os.path.isfile(r["path"])]
    if missing:
        raise FileNotFoundError("%d data files missing, first: %s" % (len(missing), missing[0]))
    known = None
    manifest = os.path.join(data, "HASHES.sha256")
    if os.path.isfile(manifest):
        with open(manifest) as f:
            known = {line.split()[0] for line in f if line.strip()}
    hashes = {}
    for rel in list(extra) + [r["rel"] for r in records]:
        hashes[rel] = sha256_file(os.path.join(data, rel))
    if known is not None:
        bad = [k for k in hashes if k.endswith((".png", ".jpeg", ".jpg")) and hashes[k] not in known]
        if bad:
            raise ValueError("%d images not in HASHES.sha256, first: %s" % (len(bad), bad[0]))
    return hashes


def hashes_digest(hashes):
    """One sha256 over the sorted 'rel sha256' lines: names the exact data used."""
    h = hashlib.sha256()
    for k in sorted(hashes):
        h.update(("%s %s\n" % (k, hashes[k])).encode())
    return h.hexdigest()


def load_image(path, size):
    """Grey float32 [0, 1] array, size x size (stretch; area when shrinking, bilinear else)."""
    with Image.open(path) as im:
        im = im.convert("L")
        if im.size != (size, size):
            shrink = im.size[0] >= size and im.size[1] >= size
            im = im.resize((size, size), Image.BOX if shrink else Image.BILINEAR)
        return np.asarray(im, dtype=np.float32) / 255.0


def load_images(records, size, cache_dir=None, digest=None):
    """uint8 array [N, size, size] (x / 255 gives the float image; the values are exactly
    what load_image gives, rounded to 8 bits, which the resize already produced). Cached in
    cache_dir under the data digest when given."""
    cache = None
    if cache_dir and digest:
        os.makedirs(cache_dir, exist_ok=True)
        key = hashlib.sha256((digest + "|%d|" % size + "|".join(r["rel"] for r in records))
                             .encode()).hexdigest()[:24]
        cache = os.path.join(cache_dir, "img%d_%s.npy" % (size, key))
        if os.path.isfile(cache):
            return np.load(cache)
    arr = np.empty((len(records), size, size), dtype=np.uint8)
    for i, r in enumerate(records):
        with Image.open(r["path"]) as im:
            im = im.convert("L")
            if im.size != (size, size):
                shrink = im.size[0] >= size and im.size[1] >= size
                im = im.resize((size, size), Image.BOX if shrink else Image.BILINEAR)
            arr[i] = np.asarray(im, dtype=np.uint8)
    if cache:
        np.save(cache + ".tmp.npy", arr)
        os.replace(cache + ".tmp.npy", cache)
    return arr


def patient_folds(records, k=5, seed=0):
    """fold index per record: patients assigned whole, stratified by patient label, balanced
    in images. Greedy: patients in a seeded random order, larger first, each to the fold with
    the fewest images of its label (ties: fewest images, then lowest index)."""
    pats = {}
    for i, r in enumerate(records):
        pats.setdefault(r["patient"], []).append(i)
    rng = random.Random(seed)
    order = sorted(pats)
    rng.shuffle(order)
    order.sort(key=lambda p: -len(pats[p]))  # stable: the shuffle breaks ties
    per_label = [[0] * k for _ in range(2)]
    total = [0] * k
    fold = [None] * len(records)
    for p in order:
        idx = pats[p]
        lab = max(records[i]["label"] for i in idx)
        f = min(range(k), key=lambda j: (per_label[lab][j], total[j], j))
        for i in idx:
            fold[i] = f
        per_label[lab][f] += len(idx)
        total[f] += len(idx)
    return np.array(fold, dtype=np.int64)


def kermany_id_overlap(ker):
    tr = {r["patient"] for r in ker if r["split"] == "train"}
    return len(tr & {r["patient"] for r in ker if r["split"] == "test"})


def summary(size=256, k=5, seed=0):
    import time
    nih, ker = read_nih(), read_kermany()
    ktr = [r for r in ker if r["split"] == "train"]
    kte = [r for r in ker if r["split"] == "test"]
    shared = sorted({r["patient"] for r in ktr} & {r["patient"] for r in kte})
    t = time.time()
    hashes = verify_and_hash(nih + ker, extra=(NIH + "/labels.csv", NIH + "/boxes.csv",
                                               KER + "/labels.csv"))
    th = time.time() - t
    folds = patient_folds(nih, k, seed)
    out = {"nih": len(nih), "nih_abnormal": sum(r["label"] for r in nih),
           "kermany_train": len(ktr), "kermany_test": len(kte), "files_hashed": len(hashes),
           "hash_seconds": round(th, 2), "digest": hashes_digest(hashes),
           "folds": [[int((folds == f).sum()), int(sum(r["label"] for r, g in zip(nih, folds)
                                                       if g == f))] for f in range(k)],
           "boxed_images": len(read_boxes(size)),
           "kermany_patient_ids_in_train_and_test": len(shared)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    summary()
