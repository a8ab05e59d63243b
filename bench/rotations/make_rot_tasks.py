#!/usr/bin/python3
"""Rotated and inverted+rotated query tasks over an existing zoo (issue 21 item 3).

    /usr/bin/python3 bench/rotations/make_rot_tasks.py --zoo ZOO --out OUT --seed 0

OUT gets the zoo's models (symlinked) and zoo.json, and a tasks.json with only the tasks below,
so bench/zoo/finetune.py and bench/quality/run_quality.py run on OUT unchanged. The tasks come
from the same Fashion-MNIST query splits as zoo2's (bench/zoo/data.py); each is rotated by a
quarter turn the probe set has (90, 270), one it has not (180), a non-quarter angle (30 degrees, or a
random angle per image; bilinear, zero fill), or inverted and then rotated (the probe set has each shift alone, never
both).
"""
import argparse
import json
import os
import sys
import zlib

import numpy as np
from scipy import ndimage

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "zoo"))
import data  # noqa: E402

CLASS_NAMES = data.fmnist.CLASS_NAMES

# name, FMNIST classes, shift, train per class, test per class
TASKS = [
    ("r_fm3_rot90_n40", [0, 1, 7], "rot90", 40, 100),
    ("r_fm3_rot270_n40", [2, 5, 8], "rot270", 40, 100),
    ("r_fm3_rot180_n40", [3, 4, 9], "rot180", 40, 100),
    ("r_fm5_rot180_n30", [0, 2, 5, 7, 8], "rot180", 30, 100),
    ("r_fm10_rot180_n20", list(range(10)), "rot180", 20, 60),
    ("r_fm5_rot30_n40", [1, 3, 4, 6, 9], "rot30", 40, 100),
    ("r_fm3_invrot90_n40", [0, 5, 8], "inv+rot90", 40, 100),
    ("r_fm5_invrot180_n30", [1, 2, 4, 7, 9], "inv+rot180", 30, 100),
    ("r_fm5_rotany_n40", [0, 3, 5, 6, 8], "rotany", 40, 100),
]


def _key(*parts):
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def rotate(x, shift):
    """x: float32 [N, 28, 28] in [0, 1]."""
    if shift in ("rot90", "rot180", "rot270"):
        k = {"rot90": 1, "rot180": 2, "rot270": 3}[shift]
        return np.ascontiguousarray(np.rot90(x, k=k, axes=(1, 2)))
    if shift == "rot30":
        return ndimage.rotate(x, 30.0, axes=(1, 2), reshape=False, order=1, mode="constant")
    if shift == "rotany":  # a random angle per image (seeded)
        angles = np.random.default_rng(_key("rotany", len(x))).uniform(0.0, 360.0, size=len(x))
        return np.stack([ndimage.rotate(img, a, reshape=False, order=1, mode="constant")
                         for img, a in zip(x, angles)])
    raise ValueError(shift)


def shift_images(images, shift):
    x = images.astype(np.float32) / 255.0
    if shift.startswith("inv+"):
        x = 1.0 - x
        shift = shift[4:]
    x = rotate(x, shift)
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def make_task(out, seed, spec):
    name, classes, shift, n_train, n_test = spec
    xtr, ytr = data.sample_fmnist("t10k", data.FMNIST_QUERY_TRAIN, classes, n_train,
                                  _key(seed, name, "train"))
    xte, yte = data.sample_fmnist("t10k", data.FMNIST_QUERY_TEST, classes, n_test,
                                  _key(seed, name, "test"))
    xtr, xte = shift_images(xtr, shift), shift_images(xte, shift)
    perm = np.random.default_rng(_key(seed, name, "order")).permutation(len(xtr))
    xtr, ytr = xtr[perm], ytr[perm]
    files = data.write_task_files(out, name, (xtr, ytr), (xte, yte))
    return {"name": name, "data": "fmnist", "classes": [CLASS_NAMES[c] for c in classes],
            "num_classes": len(classes), "shift": shift, "train_per_class": n_train,
            "test_per_class": n_test, "num_train": len(xtr), "num_test": len(xte), **files}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", required=True, help="a built zoo (models/, zoo.json)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    zoo, out = os.path.abspath(args.zoo), os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    if not os.path.lexists(os.path.join(out, "models")):
        os.symlink(os.path.join(zoo, "models"), os.path.join(out, "models"))
    if not os.path.lexists(os.path.join(out, "zoo.json")):
        os.symlink(os.path.join(zoo, "zoo.json"), os.path.join(out, "zoo.json"))
    tasks = [make_task(out, args.seed, spec) for spec in TASKS]
    with open(os.path.join(out, "tasks.json"), "w") as f:
        json.dump({"seed": args.seed, "zoo": zoo, "tasks": tasks}, f, indent=1)
    print(f"{len(tasks)} tasks written to {out}")


if __name__ == "__main__":
    main()
