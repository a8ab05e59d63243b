#!/usr/bin/python3
"""Where stage 1's nearest probes of a rotated query come from (issue 21 item 3).

    /usr/bin/python3 bench/rotations/neighbours.py --zoo OUT_OF_make_rot_tasks --assets build/assets

For every task's train split: embeds the query and the grey probe set with the reference
encoder E (as the server does: pixels / 255, L2-normalised 64-d), takes each query sample's
k = 5 nearest probes by cosine (scoring::NearestProbes), and reports which probe block they fall
in (clean Fashion-MNIST, glyphs, and the shifted copies in probe_shifts.SHIFTS order) and, for
neighbours that are Fashion-MNIST images, how often their class is the query sample's class.
That class agreement is what a probe proxy needs: the stored features at the neighbours stand in
for the model's features on the query sample.
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "zoo"))
sys.path.insert(0, os.path.join(HERE, "..", "..", "scripts"))
import data  # noqa: E402
from assets import probe_shifts  # noqa: E402

N_FM, N_GLYPH, SH_FM, SH_GLYPH = 1000, 1000, 300, 150


def probe_blocks(num_probes):
    """[(block name, start, end, fmnist t10k index of each row or -1)]; the default set's shifts,
    or with probe_shifts.EXTRA_SHIFTS after them (bench/rotations/extend_probe_set.py)."""
    per_shift = SH_FM + SH_GLYPH
    n_shifts = (num_probes - N_FM - N_GLYPH) // per_shift
    shifts = (probe_shifts.SHIFTS + probe_shifts.EXTRA_SHIFTS)[:n_shifts]
    blocks = [("clean-fmnist", 0, N_FM, np.arange(N_FM)),
              ("glyphs", N_FM, N_FM + N_GLYPH, -np.ones(N_GLYPH, int))]
    start = N_FM + N_GLYPH
    for shift in shifts:
        ids = np.concatenate([np.arange(SH_FM), -np.ones(SH_GLYPH, int)])
        blocks.append((shift, start, start + SH_FM + SH_GLYPH, ids))
        start += SH_FM + SH_GLYPH
    return blocks


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw[4 + 4 * ndim:], np.uint8).reshape(dims)


def embed(encoder, images):
    with torch.no_grad():
        x = torch.from_numpy(images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
        e = torch.cat([encoder(x[i:i + 512]) for i in range(0, len(x), 512)]).numpy()
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--assets", required=True)
    ap.add_argument("--probe-set", default=None, help="default ASSETS/probe_set_28.npy")
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--json", default=None)
    ap.add_argument("--vote", type=float, default=0.0,
                    help="if > 0: keep the probe blocks whose share of the query's neighbours is "
                         "at least VOTE x the largest share, and match again within them")
    args = ap.parse_args()
    torch.set_num_threads(1)
    encoder = torch.jit.load(os.path.join(args.assets, "reference_encoder.pt")).eval()
    probe = np.load(args.probe_set or os.path.join(args.assets, "probe_set_28.npy"))
    pe = embed(encoder, probe[:, 0])
    blocks = probe_blocks(len(probe))
    assert blocks[-1][2] == len(probe), (blocks[-1][2], len(probe))
    fm_labels = data.load_fmnist("t10k")[1]
    row_block = np.empty(len(probe), object)
    row_fm = np.empty(len(probe), int)
    for name, s, e, ids in blocks:
        row_block[s:e], row_fm[s:e] = name, ids
    with open(os.path.join(args.zoo, "tasks.json")) as f:
        tasks = json.load(f)["tasks"]
    out = {}
    names = [b[0] for b in blocks]
    print("| task | shift | " + " | ".join(names) + " | class agreement (FMNIST neighbours) |")
    print("|---" * (len(names) + 3) + "|")
    for t in tasks:
        x = read_idx(os.path.join(args.zoo, t["train_images"]))
        y = read_idx(os.path.join(args.zoo, t["train_labels"]))
        classes = [data.fmnist.CLASS_NAMES.index(c) for c in t["classes"]]
        q = embed(encoder, x)
        sim = q @ pe.T
        nn = np.argsort(-sim, axis=1)[:, :args.k]
        if args.vote > 0:
            counts = {n: np.sum(row_block[nn] == n) for n in names}
            top = max(counts.values())
            kept = np.isin(row_block, [n for n in names if counts[n] >= args.vote * top])
            nn = np.argsort(-np.where(kept[None, :], sim, -np.inf), axis=1)[:, :args.k]
        share = {n: float(np.mean(row_block[nn] == n)) for n in names}
        fm = row_fm[nn]
        is_fm = fm >= 0
        agree = (fm_labels[np.where(is_fm, fm, 0)] == np.array(classes)[y][:, None]) & is_fm
        agreement = float(agree.sum() / max(is_fm.sum(), 1))
        out[t["name"]] = {"shift": t["shift"], "share": share, "class_agreement": agreement}
        print(f"| {t['name']} | {t['shift']} | " + " | ".join(f"{share[n]:.2f}" for n in names)
              + f" | {agreement:.2f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
