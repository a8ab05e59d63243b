#!/usr/bin/python3
"""Builds the benchmark model zoo and its query tasks, reproducibly from a seed.

    /usr/bin/python3 bench/zoo/make_zoo.py --out bench/zoo/artifacts/zoo --seed 0 [--smoke]

Writes into OUT:
  models/<name>.pt + models/<name>.json   TorchScript model (modeldock contract) + metadata sidecar
  tasks/<task>/{train,test}-{images-idx3,labels-idx1}-ubyte   query tasks, MNIST IDX, uncompressed
  zoo.json    every model: architecture, source task, shift, budget, training, validation accuracy
  tasks.json  every task: data source, classes, shift, sizes, file paths (relative to OUT)
The data partition rules are in data.py. Training uses torch.set_num_threads(1) and at most two
worker processes (--jobs).
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

import data
import nets

L_BUDGET = 500   # images per class, "large" data budget
S_BUDGET = 30    # images per class, "small" data budget
VAL_PER_CLASS = 50

# Source tasks: data, classes (FMNIST ids or characters), domain shift.
SOURCES = {
    "fm10": ("fmnist", list(range(10)), None),
    "fmtops": ("fmnist", [0, 2, 3, 4, 6], None),
    "fmrest": ("fmnist", [1, 5, 7, 8, 9], None),
    "fm10inv": ("fmnist", list(range(10)), "inv"),
    "fm10rot": ("fmnist", list(range(10)), "rot90"),
    "fm10blur": ("fmnist", list(range(10)), "blur"),
    "fm10noise": ("fmnist", list(range(10)), "noise"),
    "digits": ("glyphs", data.DIGITS, None),
    "digitsinv": ("glyphs", data.DIGITS, "inv"),
    "upper": ("glyphs", data.UPPER, None),
    "lower": ("glyphs", data.LOWER, None),
}

# Query tasks: data, classes, shift, labelled train images per class, test images per class.
TASKS = [
    ("fm10_n10", "fmnist", list(range(10)), None, 10, 50),
    ("fm_tops_n50", "fmnist", [0, 2, 3, 4, 6], None, 50, 50),
    ("fm_rest_n20", "fmnist", [1, 5, 7, 8, 9], None, 20, 50),
    ("fm10_inv_n30", "fmnist", list(range(10)), "inv", 30, 50),
    ("fm4_rot_n100", "fmnist", [0, 1, 5, 8], "rot90", 100, 50),
    ("fm6_blur_n40", "fmnist", [0, 1, 2, 3, 7, 9], "blur", 40, 50),
    ("fm10_noise_n20", "fmnist", list(range(10)), "noise", 20, 50),
    ("digits_n10", "glyphs", data.DIGITS, None, 10, 30),
    ("digits_inv_n50", "glyphs", data.DIGITS, "inv", 50, 30),
    ("upper_n10", "glyphs", data.UPPER, None, 10, 30),
    ("lower12_n30", "glyphs", "abdefghmnrty", None, 30, 30),
    ("confusable_n40", "glyphs", "O0S5Z2B8", None, 40, 30),
]

SMOKE_TASKS = [
    ("fm_tops_n10", "fmnist", [0, 2, 3, 4, 6], None, 10, 10),
    ("digits_n10", "glyphs", data.DIGITS, None, 10, 10),
]


def zoo_specs():
    """(name, arch, source, budget, kind) for every model; kind in normal|shuffled|barely."""
    specs = []
    for arch in nets.ARCHITECTURES:
        for src in ["fm10", "fmtops", "fmrest", "fm10inv", "fm10rot", "fm10blur", "fm10noise",
                    "digits", "upper", "lower"]:
            specs.append((f"{arch}-{src}-l", arch, src, L_BUDGET, "normal"))
        for src in ["fm10", "digits"]:
            specs.append((f"{arch}-{src}-s", arch, src, S_BUDGET, "normal"))
    specs += [
        ("lenet-digitsinv-l", "lenet", "digitsinv", L_BUDGET, "normal"),
        ("cnn-digitsinv-l", "cnn", "digitsinv", L_BUDGET, "normal"),
        # Deliberately poor models: random labels, or a handful of optimiser steps.
        ("lenet-fm10-shuffled", "lenet", "fm10", L_BUDGET, "shuffled"),
        ("cnn-digits-shuffled", "cnn", "digits", L_BUDGET, "shuffled"),
        ("resnet-fm10-shuffled", "resnet", "fm10", L_BUDGET, "shuffled"),
        ("mlp-fm10-barely", "mlp", "fm10", L_BUDGET, "barely"),
        ("cnn-upper-barely", "cnn", "upper", L_BUDGET, "barely"),
        ("resnet-fm10-barely", "resnet", "fm10", L_BUDGET, "barely"),
    ]
    return specs


def smoke_specs():
    return [("mlp-fm10-smoke", "mlp", "fm10", 10, "normal"),
            ("lenet-digits-smoke", "lenet", "digits", 10, "normal"),
            ("cnn-fmtops-smoke", "cnn", "fmtops", 10, "normal"),
            ("resnet-fm10inv-smoke", "resnet", "fm10inv", 10, "normal")]


def _key(*parts):
    return zlib.crc32("/".join(map(str, parts)).encode())


def class_names(kind, classes):
    if kind == "fmnist":
        return [data.fmnist.CLASS_NAMES[c] for c in classes]
    return list(classes)


# --------------------------------------------------------------------------- source data

def source_data(out, src, budget, seed, fonts):
    """(train x, train y, val x, val y) as uint8/int64 for a source task at a budget. Glyph renders
    are cached in OUT/cache (rendered once by the parent process before workers start)."""
    kind, classes, shift = SOURCES[src]
    if kind == "fmnist":
        xtr, ytr = data.sample_fmnist("train", range(0, 60000), classes, budget, _key(seed, src, budget))
        xva, yva = data.sample_fmnist("t10k", data.FMNIST_SOURCE_VAL, classes,
                                      min(VAL_PER_CLASS, 60), _key(seed, src, "val"))
    else:
        path = os.path.join(out, "cache", f"glyphs-{src}-{budget}-{seed}.npz")
        if not os.path.exists(path):
            chars = classes
            xtr, ytr = data.sample_glyphs(chars, fonts["source"], budget, _key(seed, src, budget))
            # Validation: the same source fonts, other jitter draws.
            xva, yva = data.sample_glyphs(chars, fonts["source"], VAL_PER_CLASS, _key(seed, src, "val"))
            os.makedirs(os.path.dirname(path), exist_ok=True)
            tmp = path + ".tmp.npz"
            np.savez_compressed(tmp, xtr=xtr, ytr=ytr, xva=xva, yva=yva)
            os.replace(tmp, path)
        z = np.load(path)
        xtr, ytr, xva, yva = z["xtr"], z["ytr"], z["xva"], z["yva"]
    xtr = data.apply_shift(xtr, shift, _key(seed, src, "shift-train"))
    xva = data.apply_shift(xva, shift, _key(seed, src, "shift-val"))
    return xtr, ytr.astype(np.int64), xva, yva.astype(np.int64)


def to_tensor(images):
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def accuracy(model, x, y, batch=512):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def train_source_model(job):
    """Trains one zoo model and writes its TorchScript file and sidecar. Runs in a worker."""
    torch.set_num_threads(1)
    out, seed, index, (name, arch, src, budget, kind), smoke, fonts = job
    t0 = time.time()
    kind_data, classes, shift = SOURCES[src]
    xtr, ytr, xva, yva = source_data(out, src, budget, seed, fonts)
    rng = np.random.default_rng(_key(seed, name))
    if kind == "shuffled":
        ytr = rng.permutation(ytr)
    torch.manual_seed(_key(seed, name, "init"))
    x, y = to_tensor(xtr), torch.from_numpy(ytr)
    mean, std = float(x.mean()), float(x.std()) + 1e-6
    model = nets.build(arch, len(classes), mean=mean, std=std)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = 64
    if smoke:
        epochs = 2
    elif budget <= S_BUDGET:
        epochs = 40
    else:
        epochs = 5
    max_steps = 3 if kind == "barely" else None
    steps = 0
    model.train()
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x) - 1, batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        if max_steps is not None and steps >= max_steps:
            break
    val_acc = accuracy(model, to_tensor(xva), torch.from_numpy(yva))

    models_dir = os.path.join(out, "models")
    nets.to_torchscript(model, os.path.join(models_dir, f"{name}.pt"))
    labels = class_names(kind_data, classes)
    shift_text = {None: "", "inv": ", inverted", "rot90": ", rotated 90 degrees",
                  "blur": ", Gaussian-blurred", "noise": ", with Gaussian noise"}[shift]
    what = ("Fashion-MNIST classes " + ", ".join(labels) if kind_data == "fmnist"
            else "glyphs " + "".join(labels) + " rendered from fonts")
    quality = {"normal": "", "shuffled": " Trained on SHUFFLED labels (deliberately poor).",
               "barely": f" Barely trained ({max_steps} steps, deliberately poor)."}[kind]
    sidecar = {
        "name": name, "version": "1",
        "description": f"{arch} trained on {len(xtr)} images of {what}{shift_text}.{quality}",
        "task": "image_classification", "input_shape": [1, 28, 28], "class_labels": labels,
        "license": "CC0-1.0",
        "tags": ["bench-zoo", f"arch:{arch}", f"source:{src}", f"shift:{shift or 'none'}",
                 f"budget:{budget}", f"kind:{kind}"],
    }
    with open(os.path.join(models_dir, f"{name}.json"), "w") as f:
        json.dump(sidecar, f, indent=1)
    return {"name": name, "arch": arch, "source": src, "data": kind_data, "shift": shift,
            "budget_per_class": budget, "num_train": len(xtr), "num_classes": len(classes),
            "kind": kind, "epochs": epochs, "steps": steps, "val_acc": round(val_acc, 4),
            "feature_dim": model.feature_dim, "seconds": round(time.time() - t0, 1),
            "file": f"models/{name}.pt", "sidecar": f"models/{name}.json"}


# --------------------------------------------------------------------------- query tasks

def make_task(out, seed, spec, fonts):
    name, kind, classes, shift, n_train, n_test = spec
    if kind == "fmnist":
        xtr, ytr = data.sample_fmnist("t10k", data.FMNIST_QUERY_TRAIN, classes, n_train,
                                      _key(seed, name, "train"))
        xte, yte = data.sample_fmnist("t10k", data.FMNIST_QUERY_TEST, classes, n_test,
                                      _key(seed, name, "test"))
    else:
        xtr, ytr = data.sample_glyphs(classes, fonts["query_train"], n_train, _key(seed, name, "train"))
        xte, yte = data.sample_glyphs(classes, fonts["query_test"], n_test, _key(seed, name, "test"))
    xtr = data.apply_shift(xtr, shift, _key(seed, name, "shift-train"))
    xte = data.apply_shift(xte, shift, _key(seed, name, "shift-test"))
    # Shuffle the train split so a reader that truncates does not see one class only.
    perm = np.random.default_rng(_key(seed, name, "order")).permutation(len(xtr))
    xtr, ytr = xtr[perm], ytr[perm]
    files = data.write_task_files(out, name, (xtr, ytr), (xte, yte))
    return {"name": name, "data": kind, "classes": class_names(kind, classes),
            "num_classes": len(classes), "shift": shift, "train_per_class": n_train,
            "test_per_class": n_test, "num_train": len(xtr), "num_test": len(xte), **files}


def main():
    # TorchScript serialises some module constants in set order, which follows Python's string
    # hash: fix the hash seed so that the same seed gives byte-identical model files.
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="4 tiny models, 2 tiny tasks")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes (at most 2 here)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    t0 = time.time()

    fonts = data.split_fonts(args.seed)
    print(f"fonts: {len(fonts['source'])} source, {len(fonts['query_train'])} query-train, "
          f"{len(fonts['query_test'])} query-test; query designs {fonts['designs']['query']}",
          flush=True)

    specs = smoke_specs() if args.smoke else zoo_specs()
    task_specs = SMOKE_TASKS if args.smoke else TASKS

    tasks = [make_task(out, args.seed, spec, fonts) for spec in task_specs]
    with open(os.path.join(out, "tasks.json"), "w") as f:
        json.dump({"seed": args.seed, "smoke": args.smoke, "tasks": tasks}, f, indent=1)
    print(f"{len(tasks)} tasks written ({time.time() - t0:.0f} s)", flush=True)

    # Render every glyph source set once, here, so workers never race on the cache.
    for src, budget in sorted({(s[2], s[3]) for s in specs}):
        if SOURCES[src][0] == "glyphs":
            source_data(out, src, budget, args.seed, fonts)
    print(f"glyph source sets rendered ({time.time() - t0:.0f} s)", flush=True)

    jobs = [(out, args.seed, i, spec, args.smoke, fonts) for i, spec in enumerate(specs)]
    results = []
    with mp.get_context("fork").Pool(max(1, min(args.jobs, 2))) as pool:
        for r in pool.imap_unordered(train_source_model, jobs):
            results.append(r)
            print(f"[{len(results)}/{len(jobs)}] {r['name']}: val acc {r['val_acc']:.3f} "
                  f"({r['seconds']} s)", flush=True)
    order = {s[0]: i for i, s in enumerate(specs)}
    results.sort(key=lambda r: order[r["name"]])
    with open(os.path.join(out, "zoo.json"), "w") as f:
        json.dump({"seed": args.seed, "smoke": args.smoke,
                   "fonts": {k: [os.path.basename(p) for p in v] if k != "designs" else v
                             for k, v in fonts.items()},
                   "models": results}, f, indent=1)
    print(f"zoo: {len(results)} models, {len(tasks)} tasks in {out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
