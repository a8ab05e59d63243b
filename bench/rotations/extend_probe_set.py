#!/usr/bin/python3
"""An asset directory whose grey probe set also carries probe_shifts.EXTRA_SHIFTS (a half turn,
inversion with each quarter turn, a random angle per image): the arm "extended" of
bench/rotations (docs/BENCHMARKS.md 2n). Everything else is copied unchanged; the default
blocks stay byte-identical and the extra ones follow them, seeded as make_assets seeds its own.

    /usr/bin/python3 bench/rotations/extend_probe_set.py --assets build/assets --out DIR
then start the server (or bench/quality/run_quality.py) with --asset-dir DIR.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
from assets import probe_shifts as ps  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with open(os.path.join(args.assets, "MANIFEST.json")) as f:
        manifest = json.load(f)
    info = manifest["probe_set"]
    assert info["shifts"] == list(ps.SHIFTS), info["shifts"]
    probe = np.load(os.path.join(args.assets, info["file"]))
    n_fm, n_gl = info["fmnist_count"], info["glyph_count"]
    sh_fm, sh_gl = info["shifted_per_shift"]
    clean = probe[:n_fm + n_gl, 0]
    shifts = ps.SHIFTS + ps.EXTRA_SHIFTS
    copies = ps.shifted_copies(clean[:n_fm], clean[n_fm:], sh_fm, sh_gl,
                               manifest["seeds"]["probe_shifts"], shifts=shifts)
    assert np.array_equal(copies[:len(probe) - n_fm - n_gl], probe[n_fm + n_gl:, 0])
    extended = np.concatenate([clean, copies])[:, None]
    shutil.copytree(args.assets, args.out, dirs_exist_ok=True)
    np.save(os.path.join(args.out, info["file"]), extended)
    info.update(shape=list(extended.shape), shifts=list(shifts))
    with open(os.path.join(args.out, "MANIFEST.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{args.out}: grey probe set {probe.shape[0]} -> {extended.shape[0]} images")


if __name__ == "__main__":
    main()
