#!/usr/bin/python3
"""Builds zoo2, the second benchmark zoo: Fashion-MNIST only, models that share classes and
differ in architecture, class set, domain shift and data budget; plus its 8 query tasks.

    nice -n 10 /usr/bin/python3 bench/zoo2/make_zoo2.py --out bench/zoo2/artifacts/zoo2 --seed 0

Writes into OUT the same layout and manifests as bench/zoo/make_zoo.py, so bench/zoo/finetune.py
and bench/quality/run_quality.py work on it unchanged:
  models/<name>.pt + models/<name>.json   TorchScript model (modeldock contract) + metadata sidecar
  tasks/<task>/{train,test}-{images-idx3,labels-idx1}-ubyte   query tasks, MNIST IDX, uncompressed
  zoo.json, tasks.json                    manifests (schema of bench/zoo/results/{zoo,tasks}.json)
How zoo2 differs from bench/zoo and why: bench/zoo2/README.md. Data partition: bench/zoo/data.py
(imported, not modified). One process, torch.set_num_threads(1).
"""
import argparse
import json
import os
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "zoo"))
import data  # noqa: E402  (bench/zoo/data.py: partition, apply_shift)
import nets2  # noqa: E402

CLASS_NAMES = data.fmnist.CLASS_NAMES
BUDGETS = {"l": 600, "m": 100, "s": 20}          # training images per class
EPOCHS = {"l": 5, "m": 20, "s": 60}               # roughly 30k / 20k / 12k samples seen (10 classes)
VAL_PER_CLASS = 50                                # from t10k 1000..1999

# Source class sets (Fashion-MNIST ids; labels are 0..K-1 in this order).
CLASS_SETS = {
    "all10": list(range(10)),
    "tops": [0, 2, 3, 4, 6],            # T-shirt, Pullover, Dress, Coat, Shirt
    "foot": [5, 7, 9],                  # Sandal, Sneaker, Ankle boot
    "tbds": [1, 8, 3, 7],               # Trouser, Bag, Dress, Sneaker
    "mix6": [0, 1, 4, 5, 8, 9],         # T-shirt, Trouser, Coat, Sandal, Bag, Ankle boot
    "pcs": [2, 4, 6],                   # Pullover, Coat, Shirt (the confusable three)
}

# Training recipe per family (none is bench/zoo's "Adam 1e-3, batch 64, no augmentation").
RECIPES = {
    "vgg": dict(opt="sgd", lr=0.05, momentum=0.9, nesterov=True, wd=5e-4, smoothing=0.1, batch=64),
    "wmlp": dict(opt="adamw", lr=1e-3, wd=1e-2, smoothing=0.0, batch=128),
    "mobile": dict(opt="sgd", lr=0.1, momentum=0.9, nesterov=False, wd=4e-5, smoothing=0.1, batch=64),
    "allconv": dict(opt="sgd", lr=0.05, momentum=0.9, nesterov=True, wd=5e-4, smoothing=0.0, batch=64,
                    clip=2.0),
}
BARELY_STEPS = 5


def zoo_specs():
    """(name, arch, class set, shift, budget letter, kind, augment); kind in normal|shuffled|barely.
    Every family covers all class sets it can in 9 normal models, in different shift/budget
    combinations, so class set, shift, budget and architecture are not confounded."""
    table = {
        "vgg": [("all10", None, "l"), ("all10", "inv", "l"), ("all10", "blur", "m"),
                ("tops", None, "l"), ("foot", "noise", "l"), ("tbds", None, "m"),
                ("mix6", "rot90", "l"), ("all10", None, "s"), ("pcs", None, "l")],
        "wmlp": [("all10", None, "l"), ("all10", "noise", "l"), ("all10", "rot90", "m"),
                 ("tops", "inv", "l"), ("foot", None, "m"), ("tbds", "blur", "l"),
                 ("mix6", None, "l"), ("all10", "blur", "s"), ("pcs", "inv", "m")],
        "mobile": [("all10", None, "l"), ("all10", "rot90", "l"), ("all10", "noise", "m"),
                   ("tops", "blur", "l"), ("foot", None, "l"), ("tbds", "inv", "l"),
                   ("mix6", "noise", "m"), ("all10", "inv", "s"), ("tops", None, "s")],
        "allconv": [("all10", None, "m"), ("all10", "blur", "l"), ("all10", "inv", "m"),
                    ("tops", "noise", "l"), ("foot", "rot90", "l"), ("tbds", None, "l"),
                    ("mix6", "blur", "l"), ("pcs", None, "s"), ("all10", "noise", "s")],
    }
    specs = []
    for arch, rows in table.items():
        for i, (cs, shift, b) in enumerate(rows):
            # Light augmentation: every MobileNet, and every other all-conv net.
            aug = arch == "mobile" or (arch == "allconv" and i % 2 == 0)
            specs.append((f"{arch}-{cs}-{shift or 'clean'}-{b}", arch, cs, shift, b, "normal", aug))
    specs += [
        ("vgg-all10-clean-shuffled", "vgg", "all10", None, "l", "shuffled", False),
        ("mobile-mix6-clean-shuffled", "mobile", "mix6", None, "l", "shuffled", True),
        ("wmlp-tops-noise-shuffled", "wmlp", "tops", "noise", "m", "shuffled", False),
        ("allconv-all10-clean-barely", "allconv", "all10", None, "l", "barely", False),
    ]
    return specs


def smoke_specs():
    return [("vgg-tops-clean-s", "vgg", "tops", None, "s", "normal", False),
            ("wmlp-all10-inv-s", "wmlp", "all10", "inv", "s", "normal", False),
            ("mobile-foot-clean-s", "mobile", "foot", None, "s", "normal", True),
            ("allconv-all10-clean-s", "allconv", "all10", None, "s", "normal", True)]


# Query tasks: name, classes (FMNIST ids), shift, train per class, test per class.
# Train splits from t10k 2000..5999, test splits from t10k 6000..9999 (bench/zoo/data.py).
TASKS = [
    ("q_fm10_n20", list(range(10)), None, 20, 60),
    ("q_tops_n30", [0, 2, 3, 4, 6], None, 30, 100),
    ("q_footbag_inv_n50", [5, 7, 8, 9], "inv", 50, 100),
    ("q_fm10_blur_n10", list(range(10)), "blur", 10, 60),
    ("q_fm5_rot_n40", [0, 1, 4, 7, 8], "rot90", 40, 100),
    ("q_fm10_noise_n30", list(range(10)), "noise", 30, 60),
    ("q_fm6_contrast_n25", [2, 3, 4, 5, 6, 9], "contrast", 25, 100),
    ("q_fm4tops_n100", [0, 2, 4, 6], None, 100, 100),
]
SMOKE_TASKS = [("q_tops_n10", [0, 2, 3, 4, 6], None, 10, 10),
               ("q_fm10_contrast_n10", list(range(10)), "contrast", 10, 10)]

SHIFT_TEXT = {None: "", "inv": ", inverted", "rot90": ", rotated 90 degrees",
              "blur": ", Gaussian-blurred", "noise": ", with Gaussian noise",
              "contrast": ", at reduced contrast"}


def _key(*parts):
    return zlib.crc32("/".join(map(str, ("zoo2",) + parts)).encode())


def shift_images(images, shift, seed):
    """bench/zoo's apply_shift, plus "contrast": x -> 0.3 + 0.4 x (grey background, dim
    foreground; a shift no source model was trained on)."""
    if shift == "contrast":
        x = images.astype(np.float32) / 255.0
        return np.round((0.3 + 0.4 * x) * 255.0).astype(np.uint8)
    return data.apply_shift(images, shift, seed)


def to_tensor(images):
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def accuracy(model, x, y, batch=512):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, len(x), batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / len(x)


def augment(x, gen):
    """Light augmentation: random translation by up to 2 px per image (edge-replicated, so that
    inverted images keep a white border)."""
    n = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2), mode="replicate")
    off = torch.randint(0, 5, (n, 2), generator=gen)
    return torch.stack([padded[i, :, off[i, 0]:off[i, 0] + 28, off[i, 1]:off[i, 1] + 28]
                        for i in range(n)])


def train_source_model(out, seed, spec, smoke):
    name, arch, cs, shift, b, kind, aug = spec
    t0 = time.time()
    classes = CLASS_SETS[cs]
    budget = BUDGETS[b]
    xtr, ytr = data.sample_fmnist("train", range(0, 60000), classes, budget, _key(seed, cs, budget, name))
    xva, yva = data.sample_fmnist("t10k", data.FMNIST_SOURCE_VAL, classes, VAL_PER_CLASS,
                                  _key(seed, cs, "val"))
    xtr = shift_images(xtr, shift, _key(seed, name, "shift-train"))
    xva = shift_images(xva, shift, _key(seed, name, "shift-val"))
    rng = np.random.default_rng(_key(seed, name))
    if kind == "shuffled":
        ytr = rng.permutation(ytr)
    torch.manual_seed(_key(seed, name, "init"))
    gen = torch.Generator().manual_seed(_key(seed, name, "aug"))
    x, y = to_tensor(xtr), torch.from_numpy(ytr.astype(np.int64))
    norm = nets2.INPUT_NORM[arch]
    mean, std = norm if norm is not None else (float(x.mean()), float(x.std()) + 1e-6)
    model = nets2.build(arch, len(classes), mean=mean, std=std)

    r = RECIPES[arch]
    if r["opt"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=r["lr"], momentum=r["momentum"],
                              nesterov=r["nesterov"], weight_decay=r["wd"])
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["wd"])
    batch = r["batch"]
    epochs = 2 if smoke else EPOCHS[b]
    steps_per_epoch = (len(x) - 1) // batch + 1
    total = BARELY_STEPS if kind == "barely" else epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    steps = 0
    model.train()
    while steps < total:
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            if len(idx) < 2 or steps >= total:
                continue
            xb = augment(x[idx], gen) if aug else x[idx]
            opt.zero_grad()
            F.cross_entropy(model(xb), y[idx], label_smoothing=r["smoothing"]).backward()
            if r.get("clip"):
                torch.nn.utils.clip_grad_norm_(model.parameters(), r["clip"])
            opt.step()
            sched.step()
            steps += 1
    val_acc = accuracy(model, to_tensor(xva), torch.from_numpy(yva.astype(np.int64)))

    models_dir = os.path.join(out, "models")
    nets2.to_torchscript(model, os.path.join(models_dir, f"{name}.pt"))
    labels = [CLASS_NAMES[c] for c in classes]
    quality = {"normal": "", "shuffled": " Trained on SHUFFLED labels (deliberately poor).",
               "barely": f" Barely trained ({BARELY_STEPS} steps, deliberately poor)."}[kind]
    sidecar = {
        "name": name, "version": "1",
        "description": (f"{arch} trained on {len(xtr)} images of Fashion-MNIST classes "
                        f"{', '.join(labels)}{SHIFT_TEXT[shift]}.{quality}"),
        "task": "image_classification", "input_shape": [1, 28, 28], "class_labels": labels,
        "license": "CC0-1.0",
        "tags": ["bench-zoo2", f"arch:{arch}", f"source:{cs}", f"shift:{shift or 'none'}",
                 f"budget:{budget}", f"kind:{kind}"],
    }
    with open(os.path.join(models_dir, f"{name}.json"), "w") as f:
        json.dump(sidecar, f, indent=1)
    return {"name": name, "arch": arch, "source": cs, "data": "fmnist", "shift": shift,
            "budget_per_class": budget, "num_train": len(xtr), "num_classes": len(classes),
            "kind": kind, "epochs": epochs if kind != "barely" else 0, "steps": steps,
            "val_acc": round(val_acc, 4), "feature_dim": model.feature_dim,
            "seconds": round(time.time() - t0, 1),
            "file": f"models/{name}.pt", "sidecar": f"models/{name}.json",
            "recipe": {**r, "augment": aug, "schedule": "cosine, per step",
                       "input_norm": [round(mean, 4), round(std, 4)]}}


def make_task(out, seed, spec):
    name, classes, shift, n_train, n_test = spec
    xtr, ytr = data.sample_fmnist("t10k", data.FMNIST_QUERY_TRAIN, classes, n_train,
                                  _key(seed, name, "train"))
    xte, yte = data.sample_fmnist("t10k", data.FMNIST_QUERY_TEST, classes, n_test,
                                  _key(seed, name, "test"))
    xtr = shift_images(xtr, shift, _key(seed, name, "shift-train"))
    xte = shift_images(xte, shift, _key(seed, name, "shift-test"))
    perm = np.random.default_rng(_key(seed, name, "order")).permutation(len(xtr))
    xtr, ytr = xtr[perm], ytr[perm]
    files = data.write_task_files(out, name, (xtr, ytr), (xte, yte))
    return {"name": name, "data": "fmnist", "classes": [CLASS_NAMES[c] for c in classes],
            "num_classes": len(classes), "shift": shift, "train_per_class": n_train,
            "test_per_class": n_test, "num_train": len(xtr), "num_test": len(xte), **files}


def main():
    # TorchScript serialises some module constants in set order (Python's string hash).
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true", help="4 tiny models, 2 tiny tasks")
    ap.add_argument("--only", default=None, help="comma-separated model names (timing runs)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    t0 = time.time()

    specs = smoke_specs() if args.smoke else zoo_specs()
    if args.only:
        keep = set(args.only.split(","))
        specs = [s for s in specs if s[0] in keep]
    task_specs = SMOKE_TASKS if args.smoke else TASKS
    tasks = [make_task(out, args.seed, spec) for spec in task_specs]
    with open(os.path.join(out, "tasks.json"), "w") as f:
        json.dump({"seed": args.seed, "smoke": args.smoke, "tasks": tasks}, f, indent=1)
    print(f"{len(tasks)} tasks written ({time.time() - t0:.0f} s)", flush=True)

    results = []
    for spec in specs:
        r = train_source_model(out, args.seed, spec, args.smoke)
        results.append(r)
        print(f"[{len(results)}/{len(specs)}] {r['name']}: val acc {r['val_acc']:.3f} "
              f"({r['steps']} steps, {r['seconds']} s; elapsed {time.time() - t0:.0f} s)", flush=True)
    with open(os.path.join(out, "zoo.json"), "w") as f:
        json.dump({"seed": args.seed, "smoke": args.smoke, "zoo": "zoo2",
                   "wall_seconds": round(time.time() - t0, 1), "models": results}, f, indent=1)
    print(f"zoo2: {len(results)} models, {len(tasks)} tasks in {out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
