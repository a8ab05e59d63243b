#!/usr/bin/python3
"""Builds zoo3, the third benchmark zoo: Fashion-MNIST and rendered glyphs mixed in one dock, wide
and narrow embeddings (D = 32 to 1,568), five input conventions and training recipes, class sets
of 5 to 62 classes that overlap the tasks' in part, shuffled-label and barely trained models; plus
its 5 query tasks (K = 5 to 62).

    nice -n 10 /usr/bin/python3 bench/zoo3/make_zoo3.py --out bench/zoo3/artifacts/zoo3 --seed 0

Writes into OUT the layout and manifests of bench/zoo/make_zoo.py, so bench/zoo/finetune.py and
bench/quality/run_quality.py work on it unchanged:
  models/<name>.pt + models/<name>.json   TorchScript model (modeldock contract) + metadata sidecar
  tasks/<task>/{train,test}-{images-idx3,labels-idx1}-ubyte   query tasks, MNIST IDX, uncompressed
  zoo.json, tasks.json                    manifests (schema of bench/zoo/results/{zoo,tasks}.json)
Why zoo3 and how it differs: bench/zoo3/README.md. Data partition and font split:
bench/zoo/data.py (imported, not modified). One process, torch.set_num_threads(1).
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
import data  # noqa: E402  (bench/zoo/data.py: partition, fonts, apply_shift)
import nets3  # noqa: E402

FM_NAMES = data.fmnist.CLASS_NAMES
BUDGETS = {"l": 240, "m": 60, "s": 15}       # training images per class
EPOCHS = {"l": 5, "m": 15, "s": 40}
VAL_PER_CLASS = 20
GLYPH_POOL = 240                              # source renders per character (source fonts)

# Class sets: Fashion-MNIST ids ("f", id) first, then glyph characters ("g", char); labels are
# 0..K-1 in this order.
FM10 = [("f", c) for c in range(10)]
DIG = [("g", c) for c in data.DIGITS]
UP = [("g", c) for c in data.UPPER]
LOW = [("g", c) for c in data.LOWER]
CLASS_SETS = {
    "fm10": FM10, "digits": DIG, "upper": UP, "lower": LOW,
    "fmdig": FM10 + DIG,               # 20
    "digup": DIG + UP,                 # 36
    "fmup": FM10 + UP,                 # 36
    "uplow": UP + LOW,                 # 52
    "glyph62": DIG + UP + LOW,         # 62
}

# Training recipe per family (none is bench/zoo's or zoo2's).
RECIPES = {
    "flat": dict(opt="adam", lr=3e-4, wd=0.0, batch=32, smoothing=0.0, mixup=0.2, schedule="constant"),
    "tiny": dict(opt="rmsprop", lr=1e-3, wd=0.0, batch=64, smoothing=0.0, mixup=0.0, schedule="constant"),
    "cos": dict(opt="sgd", lr=0.1, momentum=0.9, wd=1e-4, batch=128, smoothing=0.0, mixup=0.0,
                schedule="step x0.1 at 2/3"),
    "wide": dict(opt="sgd", lr=0.05, momentum=0.0, wd=0.0, batch=32, smoothing=0.0, mixup=0.0,
                 schedule="constant"),
    "gap": dict(opt="adamw", lr=2e-3, wd=0.05, batch=64, smoothing=0.2, mixup=0.0, schedule="one-cycle"),
}
BARELY_STEPS = 5


def zoo_specs():
    """(name, arch, class set, shift, budget letter, kind); kind in normal|shuffled|barely."""
    table = {
        "flat": [("fm10", None, "l"), ("glyph62", None, "m"), ("fmup", None, "m"), ("upper", "noise", "l")],
        "tiny": [("fm10", None, "l"), ("digup", None, "l"), ("glyph62", None, "l"), ("fm10", "rot90", "l")],
        "cos": [("fmdig", None, "l"), ("uplow", None, "m"), ("glyph62", "blur", "l"), ("upper", "inv", "l")],
        "wide": [("glyph62", None, "m"), ("fm10", "inv", "l"), ("upper", None, "l"), ("fmdig", "noise", "l")],
        "gap": [("uplow", None, "l"), ("fmup", "inv", "l"), ("lower", "blur", "l"), ("fmdig", None, "l")],
    }
    specs = [(f"{arch}-{cs}-{shift or 'clean'}-{b}", arch, cs, shift, b, "normal")
             for arch, rows in table.items() for cs, shift, b in rows]
    specs += [
        ("flat-glyph62-clean-shuffled", "flat", "glyph62", None, "m", "shuffled"),
        ("cos-fm10-clean-shuffled", "cos", "fm10", None, "l", "shuffled"),
        ("wide-digup-clean-shuffled", "wide", "digup", None, "m", "shuffled"),
        ("tiny-upper-clean-barely", "tiny", "upper", None, "l", "barely"),
        ("gap-fmdig-clean-barely", "gap", "fmdig", None, "l", "barely"),
    ]
    return specs


def smoke_specs():
    return [("flat-fmdig-clean-s", "flat", "fmdig", None, "s", "normal"),
            ("tiny-upper-clean-s", "tiny", "upper", None, "s", "normal"),
            ("cos-fm10-inv-s", "cos", "fm10", "inv", "s", "normal"),
            ("gap-digits-clean-s", "gap", "digits", None, "s", "normal")]


# Query tasks: name, class items, shift, train per class, test per class. Fashion-MNIST images
# from t10k 2000..5999 (train) and 6000..9999 (test); glyphs from the query fonts (train and
# test fonts disjoint), never from the source fonts.
TASKS = [
    ("q_glyph62_n8", DIG + UP + LOW, None, 8, 12),
    ("q_fmup_n10", FM10 + UP, None, 10, 20),
    ("q_upper_inv_n12", UP, "inv", 12, 20),
    ("q_fm8_rot_n30", [("f", c) for c in (0, 1, 2, 3, 5, 7, 8, 9)], "rot90", 30, 50),
    ("q_fmtops_blur_n40", [("f", c) for c in (0, 2, 3, 4, 6)], "blur", 40, 60),
]
# Built and timed, then left out so that the fine-tune ground truth fits the shared box
# (finetune.py --estimate: 117 min for 40 models x 9 tasks under load; README.md):
# q_fmdig_n15 (FM10 + DIG), q_lower_n20 (LOW), q_digits_noise_n30 (DIG, noise) and q_case_n15
# (CcOoSsWwZzXxVvPpKkUu); and 15 normal models.
SMOKE_TASKS = [("q_fmdig_n5", FM10 + DIG, None, 5, 5), ("q_upper_inv_n5", UP, "inv", 5, 5)]

SHIFT_TEXT = {None: "", "inv": ", inverted", "rot90": ", rotated 90 degrees",
              "blur": ", Gaussian-blurred", "noise": ", with Gaussian noise"}


def _key(*parts):
    return zlib.crc32("/".join(map(str, ("zoo3",) + parts)).encode())


def label_names(items):
    return [FM_NAMES[v] if k == "f" else v for k, v in items]


class GlyphPool:
    """Source-font renders per character, made once and cached in OUT/cache (seeded per char)."""

    def __init__(self, out, seed, fonts):
        self.out, self.seed, self.fonts = out, seed, fonts
        self.cache = {}

    def get(self, ch):
        if ch not in self.cache:
            path = os.path.join(self.out, "cache", f"glyph-{ord(ch)}-{self.seed}.npz")
            if not os.path.exists(path):
                xtr, _ = data.sample_glyphs([ch], self.fonts["source"], GLYPH_POOL, _key(self.seed, "pool", ch))
                xva, _ = data.sample_glyphs([ch], self.fonts["source"], VAL_PER_CLASS,
                                            _key(self.seed, "poolval", ch))
                os.makedirs(os.path.dirname(path), exist_ok=True)
                np.savez_compressed(path + ".tmp.npz", xtr=xtr, xva=xva)
                os.replace(path + ".tmp.npz", path)
            z = np.load(path)
            self.cache[ch] = (z["xtr"], z["xva"])
        return self.cache[ch]


def source_data(pool, seed, name, items, budget):
    """(train x, train y, val x, val y) for a class set; glyph classes sample from the pool."""
    xs, ys, vxs, vys = [], [], [], []
    for label, (kind, v) in enumerate(items):
        if kind == "f":
            x, _ = data.sample_fmnist("train", range(0, 60000), [v], budget, _key(seed, name, "f", v))
            vx, _ = data.sample_fmnist("t10k", data.FMNIST_SOURCE_VAL, [v], VAL_PER_CLASS, _key(seed, "val", v))
        else:
            xp, vx = pool.get(v)
            pick = np.sort(np.random.default_rng(_key(seed, name, "g", v)).choice(len(xp), budget, replace=False))
            x = xp[pick]
        xs.append(x)
        vxs.append(vx)
        ys.append(np.full(len(x), label, dtype=np.int64))
        vys.append(np.full(len(vx), label, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(vxs), np.concatenate(vys)


def to_tensor(images):
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def accuracy(model, x, y, batch=512):
    model.eval()
    with torch.no_grad():
        correct = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
                      for i in range(0, len(x), batch))
    return correct / len(x)


def input_norm(arch, x):
    """The family's input convention (mean, std): scalars or 28x28 maps."""
    if arch == "flat":
        return 0.0, 1.0
    if arch == "tiny":
        return x.mean(0, keepdim=True).numpy(), (x.std(0, keepdim=True) + 0.05).numpy()
    if arch == "wide":
        return 0.5, 0.5
    if arch == "gap":
        return 0.0, 1.0
    return float(x.mean()), float(x.std()) + 1e-6


def make_optimizer(model, r, total):
    if r["opt"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=r["lr"])
    elif r["opt"] == "rmsprop":
        opt = torch.optim.RMSprop(model.parameters(), lr=r["lr"])
    elif r["opt"] == "adamw":
        opt = torch.optim.AdamW(model.parameters(), lr=r["lr"], weight_decay=r["wd"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=r["lr"], momentum=r["momentum"], weight_decay=r["wd"])
    if r["schedule"] == "one-cycle":
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=r["lr"], total_steps=max(total, 2))
    elif r["schedule"].startswith("step"):
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, (2 * total) // 3), gamma=0.1)
    else:
        sched = None
    return opt, sched


def train_source_model(out, seed, pool, spec, smoke):
    name, arch, cs, shift, b, kind = spec
    t0 = time.time()
    items = CLASS_SETS[cs]
    budget = BUDGETS[b]
    xtr, ytr, xva, yva = source_data(pool, seed, name, items, budget)
    xtr = data.apply_shift(xtr, shift, _key(seed, name, "shift-train"))
    xva = data.apply_shift(xva, shift, _key(seed, name, "shift-val"))
    rng = np.random.default_rng(_key(seed, name))
    if kind == "shuffled":
        ytr = rng.permutation(ytr)
    torch.manual_seed(_key(seed, name, "init"))
    x, y = to_tensor(xtr), torch.from_numpy(ytr)
    mean, std = input_norm(arch, x)
    model = nets3.build(arch, len(items), mean=mean, std=std)
    r = RECIPES[arch]
    batch = r["batch"]
    epochs = 2 if smoke else EPOCHS[b]
    total = BARELY_STEPS if kind == "barely" else epochs * ((len(x) - 1) // batch + 1)
    opt, sched = make_optimizer(model, r, total)
    steps = 0
    model.train()
    while steps < total:
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            if len(idx) < 2 or steps >= total:
                continue
            xb, yb = x[idx], y[idx]
            opt.zero_grad()
            if r["mixup"] > 0:
                lam = float(rng.beta(r["mixup"], r["mixup"]))
                perm = torch.from_numpy(rng.permutation(len(idx)))
                logits = model(lam * xb + (1 - lam) * xb[perm])
                loss = lam * F.cross_entropy(logits, yb) + (1 - lam) * F.cross_entropy(logits, yb[perm])
            else:
                loss = F.cross_entropy(model(xb), yb, label_smoothing=r["smoothing"])
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            steps += 1
    val_acc = accuracy(model, to_tensor(xva), torch.from_numpy(yva))

    models_dir = os.path.join(out, "models")
    nets3.to_torchscript(model, os.path.join(models_dir, f"{name}.pt"))
    labels = label_names(items)
    n_fm = sum(1 for k, _ in items if k == "f")
    what = ", ".join(p for p in (f"{n_fm} Fashion-MNIST classes" if n_fm else "",
                                 f"{len(items) - n_fm} font-rendered characters" if n_fm < len(items) else "") if p)
    quality = {"normal": "", "shuffled": " Trained on SHUFFLED labels (deliberately poor).",
               "barely": f" Barely trained ({BARELY_STEPS} steps, deliberately poor)."}[kind]
    sidecar = {
        "name": name, "version": "1",
        "description": f"{arch} trained on {len(xtr)} images of {what}{SHIFT_TEXT[shift]}.{quality}",
        "task": "image_classification", "input_shape": [1, 28, 28], "class_labels": labels,
        "license": "CC0-1.0",
        "tags": ["bench-zoo3", f"arch:{arch}", f"source:{cs}", f"shift:{shift or 'none'}",
                 f"budget:{budget}", f"kind:{kind}"],
    }
    with open(os.path.join(models_dir, f"{name}.json"), "w") as f:
        json.dump(sidecar, f, indent=1)
    norm = [round(float(np.mean(mean)), 4), round(float(np.mean(std)), 4)]
    return {"name": name, "arch": arch, "source": cs, "data": "fmnist+glyphs" if 0 < n_fm < len(items)
            else ("fmnist" if n_fm else "glyphs"), "shift": shift,
            "budget_per_class": budget, "num_train": len(xtr), "num_classes": len(items),
            "kind": kind, "epochs": epochs if kind != "barely" else 0, "steps": steps,
            "val_acc": round(val_acc, 4), "feature_dim": model.feature_dim,
            "seconds": round(time.time() - t0, 1),
            "file": f"models/{name}.pt", "sidecar": f"models/{name}.json",
            "recipe": {**r, "input_norm": "per-pixel" if arch == "tiny" else norm}}


def make_task(out, seed, spec, fonts):
    name, items, shift, n_train, n_test = spec
    parts = {"train": ([], []), "test": ([], [])}
    for label, (kind, v) in enumerate(items):
        for split, n in (("train", n_train), ("test", n_test)):
            if kind == "f":
                rng = data.FMNIST_QUERY_TRAIN if split == "train" else data.FMNIST_QUERY_TEST
                x, _ = data.sample_fmnist("t10k", rng, [v], n, _key(seed, name, split, v))
            else:
                x, _ = data.sample_glyphs([v], fonts[f"query_{split}"], n, _key(seed, name, split, v))
            parts[split][0].append(x)
            parts[split][1].append(np.full(n, label, dtype=np.int64))
    (xtr, ytr), (xte, yte) = [(np.concatenate(a), np.concatenate(b)) for a, b in parts.values()]
    xtr = data.apply_shift(xtr, shift, _key(seed, name, "shift-train"))
    xte = data.apply_shift(xte, shift, _key(seed, name, "shift-test"))
    perm = np.random.default_rng(_key(seed, name, "order")).permutation(len(xtr))
    xtr, ytr = xtr[perm], ytr[perm]
    files = data.write_task_files(out, name, (xtr, ytr), (xte, yte))
    n_fm = sum(1 for k, _ in items if k == "f")
    kind = "fmnist+glyphs" if 0 < n_fm < len(items) else ("fmnist" if n_fm else "glyphs")
    return {"name": name, "data": kind, "classes": label_names(items),
            "num_classes": len(items), "shift": shift, "train_per_class": n_train,
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
    fonts = data.split_fonts(args.seed)
    print(f"fonts: {len(fonts['source'])} source, {len(fonts['query_train'])} query-train, "
          f"{len(fonts['query_test'])} query-test", flush=True)

    specs = smoke_specs() if args.smoke else zoo_specs()
    if args.only:
        keep = set(args.only.split(","))
        specs = [s for s in specs if s[0] in keep]
    tasks = [make_task(out, args.seed, spec, fonts) for spec in (SMOKE_TASKS if args.smoke else TASKS)]
    with open(os.path.join(out, "tasks.json"), "w") as f:
        json.dump({"seed": args.seed, "smoke": args.smoke, "tasks": tasks}, f, indent=1)
    print(f"{len(tasks)} tasks written ({time.time() - t0:.0f} s)", flush=True)

    pool = GlyphPool(out, args.seed, fonts)
    results = []
    for spec in specs:
        r = train_source_model(out, args.seed, pool, spec, args.smoke)
        results.append(r)
        print(f"[{len(results)}/{len(specs)}] {r['name']}: val acc {r['val_acc']:.3f} "
              f"({r['steps']} steps, {r['seconds']} s; elapsed {time.time() - t0:.0f} s)", flush=True)
    with open(os.path.join(out, "zoo.json"), "w") as f:
        json.dump({"seed": args.seed, "smoke": args.smoke, "zoo": "zoo3",
                   "fonts": {k: [os.path.basename(p) for p in v] if k != "designs" else v
                             for k, v in fonts.items()},
                   "wall_seconds": round(time.time() - t0, 1), "models": results}, f, indent=1)
    print(f"zoo3: {len(results)} models, {len(tasks)} tasks in {out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
