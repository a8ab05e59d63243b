#!/usr/bin/python3
"""Builds the colour benchmark zoo and its query tasks, reproducibly from a seed.

    nice -n 10 /usr/bin/python3 bench/zoo_colour/make_zoo_colour.py \
        --out bench/zoo_colour/artifacts/zoo --seed 0 [--jobs 2] [--smoke] [--only a,b]

Writes into OUT:
  models/<name>.pt + .json   TorchScript model (modeldock contract, [3, 32, 32] or [3, 64, 64])
                             + metadata sidecar
  tasks/<task>/{train,test}.npz   x = uint8 [N, 3, 64, 64] (channel-first), y = int64 labels
  zoo.json, tasks.json       manifests (as bench/zoo's, plus input size and image format)
Data partition: data_colour.py. torch.set_num_threads(1) per process, at most 2 processes.
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time

if os.environ.get("PYTHONHASHSEED") != "0":  # TorchScript writes constants in hash order
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_colour as dc  # noqa: E402
import nets_colour  # noqa: E402
from assets import colour_data as cd  # noqa: E402
from assets.colour_nets import channel_stats  # noqa: E402

STYLES = cd.EMOJI_STYLES
# Source tasks: kind (cat | style | food | photo), classes, styles, shift.
SOURCES = {
    "cat9": ("cat", dc.CAT9, STYLES, None),
    "cat4a": ("cat", dc.CAT4A, STYLES, None),
    "cat5b": ("cat", dc.CAT5B, STYLES, None),
    "style4": ("style", STYLES, STYLES, None),
    "apple": ("cat", dc.CAT9, ("apple",), None),
    "twitter": ("cat", dc.CAT9, ("twitter",), None),
    "cat9grey": ("cat", dc.CAT9, STYLES, "grey"),
    "cat9inv": ("cat", dc.CAT9, STYLES, "inv"),
    "cat9blur": ("cat", dc.CAT9, STYLES, "blur"),
    "cat9noise": ("cat", dc.CAT9, STYLES, "noise"),
    "cat9rot": ("cat", dc.CAT9, STYLES, "rot90"),
    "food": ("food", None, STYLES, None),
    "photos": ("photo", None, None, None),
}
BUDGETS = {"l": 240, "s": 30}   # training images per class
PHOTO_PER_CLASS = {"l": 120, "s": 30}  # wallpaper sources: more classes, so fewer per class
EPOCHS = {"l": 5, "s": 30}
VAL_PER_CLASS = 20

# (arch, source, budget, input size, kind); kind: normal | shuffled | barely (5 steps).
_ZOO = {
    "cnn": [("cat9", "l", 32), ("cat4a", "l", 32), ("style4", "l", 32), ("cat9grey", "l", 32),
            ("food", "l", 32), ("photos", "l", 32), ("cat9", "s", 32), ("cat9", "l", 64),
            ("cat5b", "l", 64), ("cat9", "l", 32, "shuffled")],
    "resnet": [("cat9", "l", 32), ("cat5b", "l", 32), ("apple", "l", 32), ("cat9inv", "l", 32),
               ("cat9noise", "l", 32), ("photos", "l", 64), ("cat9", "l", 64), ("cat4a", "s", 32),
               ("style4", "l", 64), ("cat9", "l", 32, "barely")],
    "mobile": [("cat9", "l", 32), ("cat4a", "l", 32), ("twitter", "l", 32), ("cat9blur", "l", 32),
               ("cat9rot", "l", 32), ("food", "l", 64), ("cat9", "s", 64), ("cat5b", "l", 32),
               ("photos", "l", 32), ("cat4a", "l", 32, "shuffled")],
    "mixer": [("cat9", "l", 32), ("cat5b", "l", 32), ("style4", "l", 32), ("cat9grey", "l", 64),
              ("apple", "l", 32), ("food", "l", 32), ("cat9", "l", 64), ("cat9noise", "l", 32),
              ("twitter", "s", 32), ("photos", "l", 32)],
}

# Query tasks: name, kind, classes, styles, shift, train per class, test per class.
TASKS = [
    ("q_cat9_n10", "cat", dc.CAT9, STYLES, None, 10, 40),
    ("q_cat4a_n30", "cat", dc.CAT4A, STYLES, None, 30, 60),
    ("q_sub6_n20", "sub", dc.SUB6, STYLES, None, 20, 30),
    ("q_cat9_grey_n20", "cat", dc.CAT9, STYLES, "grey", 20, 40),
    ("q_cat5b_inv_n25", "cat", dc.CAT5B, STYLES, "inv", 25, 50),
    ("q_cat6_rot_n20", "cat", dc.CAT6R, STYLES, "rot90", 20, 40),
    ("q_style4_n15", "style", STYLES, STYLES, None, 15, 60),
    ("q_photos_n20", "photo", None, None, None, 20, 40),
    ("q_cat9_lowcon_n20", "cat", dc.CAT9, STYLES, "lowcontrast", 20, 40),
    ("q_cat9_google_n15", "cat", dc.CAT9, ("google",), None, 15, 40),
]
TASK_SIZE = 64

POOL = None  # data_colour.Pool, loaded before the worker processes fork


def zoo_specs(smoke=False):
    specs = []
    for arch, rows in _ZOO.items():
        for row in rows:
            src, budget, size = row[:3]
            kind = row[3] if len(row) > 3 else "normal"
            suffix = "" if kind == "normal" else f"-{kind}"
            specs.append((f"{arch}-{src}{suffix}-{budget}{size}", arch, src, budget, size, kind))
    if smoke:
        specs = [s for s in specs if s[2] in ("cat9", "photos") and s[3] == "l"][:4]
    return specs


def classes_of(kind, classes, split):
    if kind == "food":
        return POOL.food_subcategories(split)
    if kind == "photo":
        return tuple(g for g, _ in POOL.photos_of(split))
    return tuple(classes)


def labeller(kind):
    return {"cat": dc.by_category, "style": dc.by_style, "food": dc.by_subcategory,
            "sub": dc.by_subcategory}[kind]


def source_data(src, per_class, size, seed):
    kind, classes, styles, shift = SOURCES[src]
    names = classes_of(kind, classes, "source")
    if kind == "photo":
        x, y = dc.photo_set(POOL.photos_of("source"), per_class, size, seed)
    else:
        x, y = dc.emoji_set(POOL, "source", labeller(kind), names, styles, per_class, size, seed)
    return dc.apply_shift(x, shift, seed + 7), y, names


def make_optimiser(net, recipe, steps):
    params = net.parameters()
    if recipe["opt"] == "adam":
        return torch.optim.Adam(params, lr=recipe["lr"]), None
    if recipe["opt"] == "adamw":
        opt = torch.optim.AdamW(params, lr=recipe["lr"], weight_decay=recipe["wd"])
    else:
        opt = torch.optim.SGD(params, lr=recipe["lr"], momentum=0.9, nesterov=True,
                              weight_decay=recipe["wd"])
    return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))


@torch.no_grad()
def accuracy(net, x, y):
    net.eval()
    pred = torch.cat([net(torch.from_numpy(x[i:i + 256]).float().div(255.0)).argmax(1)
                      for i in range(0, len(x), 256)])
    return float((pred.numpy() == y).mean())


def train_source_model(job):
    out, seed, (name, arch, src, budget, size, kind) = job
    torch.set_num_threads(1)
    t0 = time.time()
    per_class = (PHOTO_PER_CLASS if SOURCES[src][0] == "photo" else BUDGETS)[budget]
    x, y, names = source_data(src, per_class, size, cd.crc(seed, name, "train"))
    vx, vy, _ = source_data(src, VAL_PER_CLASS, size, cd.crc(seed, name, "val"))
    if kind == "shuffled":
        y = np.random.default_rng(cd.crc(seed, name, "shuffle")).permutation(y)
    torch.manual_seed(cd.crc(seed, name, "init"))
    net = nets_colour.build(arch, len(names), size, *channel_stats(x))
    recipe = nets_colour.RECIPES[arch]
    batch = 64
    epochs = EPOCHS[budget]
    steps = epochs * (len(x) // batch) if kind != "barely" else 5
    opt, sched = make_optimiser(net, recipe, steps)
    gen = torch.Generator().manual_seed(cd.crc(seed, name, "order"))
    xt, yt = torch.from_numpy(x).float().div(255.0), torch.from_numpy(y)
    step = 0
    net.train()
    while step < steps:
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x) - batch + 1, batch):
            if step >= steps:
                break
            idx = order[i:i + batch]
            xb = xt[idx]
            if recipe["flip"]:
                flip = torch.rand(len(idx), generator=gen) < 0.5
                xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
            loss = F.cross_entropy(net(xb), yt[idx], label_smoothing=recipe["smoothing"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
            step += 1
    val_acc = accuracy(net, vx, vy)
    with torch.no_grad():
        dim = int(net.embed(torch.zeros(2, 3, size, size)).shape[1])
    models_dir = os.path.join(out, "models")
    torch.jit.script(net).save(os.path.join(models_dir, f"{name}.pt"))
    s_kind, _, styles, shift = SOURCES[src]
    desc = (f"{arch} at {size} px on {src} ({len(names)} classes, {per_class} per class"
            + (f", shift {shift}" if shift else "") + ("" if kind == "normal" else f", {kind}")
            + ")")
    sidecar = {"name": name, "version": "1.0.0", "description": desc,
               "task": "image_classification", "input_shape": [3, size, size],
               "class_labels": list(names), "license": "CC0-1.0",
               "tags": ["bench", "zoo_colour", arch, src]}
    with open(os.path.join(models_dir, f"{name}.json"), "w") as f:
        json.dump(sidecar, f, indent=1)
    return {"name": name, "arch": arch, "source": src, "source_kind": s_kind,
            "styles": list(styles) if styles else None, "shift": shift, "budget": budget,
            "per_class": per_class, "input_size": size, "kind": kind,
            "classes": list(names), "train_samples": len(x), "steps": steps,
            "epochs": epochs if kind != "barely" else None, "recipe": recipe, "feature_dim": dim,
            "val_acc": round(val_acc, 4), "seconds": round(time.time() - t0, 1),
            "file": f"models/{name}.pt", "sidecar": f"models/{name}.json"}


def make_task(out, seed, spec):
    name, kind, classes, styles, shift, n_train, n_test = spec
    names = classes_of(kind, classes, "query")
    arrays = {}
    for part, split, per_class in ((0, "train", n_train), (1, "test", n_test)):
        s = cd.crc(seed, name, split)
        if kind == "photo":
            region = (0.0, 0.6) if part == 0 else (0.6, 1.0)
            x, y = dc.photo_set(POOL.photos_of("query"), per_class, TASK_SIZE, s, region=region)
        else:
            x, y = dc.emoji_set(POOL, "query", labeller(kind), names, styles, per_class,
                                TASK_SIZE, s, keep=dc.task_half(name, part))
        x = dc.apply_shift(x, shift, s + 7)
        order = np.random.default_rng(s).permutation(len(y)) if split == "train" else \
            np.arange(len(y))
        arrays[split] = (x[order], y[order])
        d = os.path.join(out, "tasks", name)
        os.makedirs(d, exist_ok=True)
        np.savez(os.path.join(d, f"{split}.npz"), x=x[order], y=y[order])
    return {"name": name, "kind": kind, "class_labels": list(names), "num_classes": len(names),
            "styles": list(styles) if styles else None, "shift": shift,
            "train_per_class": n_train, "test_per_class": n_test,
            "num_train": len(arrays["train"][1]), "num_test": len(arrays["test"][1]),
            "image_size": [3, TASK_SIZE, TASK_SIZE], "format": "npz x uint8 [N,3,H,W], y int64",
            "train_file": f"tasks/{name}/train.npz", "test_file": f"tasks/{name}/test.npz"}


def main():
    global POOL
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated model names to (re)train")
    ap.add_argument("--skip-tasks", action="store_true")
    ap.add_argument("--tasks-only", action="store_true", help="write the tasks, train nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    t0 = time.time()
    POOL = dc.Pool()
    for split in ("source", "query"):
        POOL.photos_of(split)  # decode once, before forking
    print(f"data loaded in {time.time() - t0:.1f} s", flush=True)
    if not args.skip_tasks:
        tasks = [make_task(out, args.seed, t) for t in (TASKS[:2] if args.smoke else TASKS)]
        with open(os.path.join(out, "tasks.json"), "w") as f:
            json.dump({"seed": args.seed, "smoke": args.smoke, "tasks": tasks}, f, indent=1)
        print(f"{len(tasks)} tasks in {time.time() - t0:.1f} s", flush=True)
    if args.tasks_only:
        return
    specs = zoo_specs(args.smoke)
    if args.only:
        keep = set(args.only.split(","))
        specs = [s for s in specs if s[0] in keep]
    zoo_path = os.path.join(out, "zoo.json")
    done = {}
    if os.path.exists(zoo_path):
        with open(zoo_path) as f:
            done = {m["name"]: m for m in json.load(f)["models"]}
    todo = [s for s in specs if s[0] not in done or args.only]
    jobs = [(out, args.seed, s) for s in todo]
    with mp.get_context("fork").Pool(max(1, min(args.jobs, 2))) as pool:
        for i, m in enumerate(pool.imap_unordered(train_source_model, jobs), 1):
            done[m["name"]] = m
            print(f"[{i}/{len(jobs)}] {m['name']}: val {m['val_acc']:.3f} ({m['seconds']} s)",
                  flush=True)
            names = [s[0] for s in zoo_specs(args.smoke)]
            with open(zoo_path, "w") as f:  # after every model: a resumable manifest
                json.dump({"seed": args.seed, "smoke": args.smoke,
                           "models": [done[n] for n in names if n in done]}, f, indent=1)
    print(f"zoo: {len(done)} models in {out} ({time.time() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
