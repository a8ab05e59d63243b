#!/usr/bin/python3
"""Builds the text benchmark zoo and its query tasks, reproducibly from a seed.

    nice -n 10 /usr/bin/python3 bench/zoo_text/make_zoo_text.py \
        --out bench/zoo_text/artifacts/zoo --seed 0 [--jobs 2] [--smoke] [--only a,b]

Writes into OUT:
  models/<name>.pt + .json      TorchScript text model (forward(texts) -> logits, embed(texts))
                                + sidecar (task text_classification, no input_shape)
  tasks/<task>/{train,test}.csv text,label (RFC 4180, UTF-8); train rows shuffled
  zoo.json, tasks.json          manifests (as bench/zoo_colour's)
Data partition: data_text.py (source models <- "source" split, tasks <- "query" split).
torch.set_num_threads(1) per process, at most 2 processes.
"""
import argparse
import csv
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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_text as dt  # noqa: E402
import nets_text as nt  # noqa: E402
from assets import text_data as td  # noqa: E402
from assets import text_nets as tn  # noqa: E402

# Source tasks: name -> (label set of data_text.LABEL_SETS, shift of the training texts).
SOURCES = {s: (s, None) for s in dt.LABEL_SETS}
SOURCES["en8typos"] = ("en8", "mixed")    # half the training texts typos/upper/lower/truncated
BUDGETS = {"l": 300, "s": 30}              # training texts per class (at most)
EPOCHS = {"l": {"ngram": 10, "cnn": 10, "gru": 10, "lstm": 10, "transformer": 12},
          "s": {"ngram": 25, "cnn": 25, "gru": 25, "lstm": 25, "transformer": 25}}
VAL_PER_CLASS = 30
BATCH = 64

# (source, budget[, kind]) per architecture; kind: normal | shuffled (labels permuted) |
# barely (2 optimiser steps) | short (1 epoch).
_ZOO = {
    "ngram": [("lang4", "l"), ("en8", "l"), ("en8", "s"), ("es6", "l"), ("de6", "l"),
              ("src5", "l"), ("tech2", "l"), ("en16", "l"), ("en8", "l", "shuffled")],
    "cnn": [("en8", "l"), ("en8typos", "l"), ("es6", "l"), ("it6", "l"), ("lang4", "l"),
            ("enb6", "l"), ("en16", "l")],
    "gru": [("en8", "l"), ("es6", "l"), ("de6", "l"), ("tech2", "l"), ("en8", "l", "barely")],
    "lstm": [("en8", "l"), ("it6", "l"), ("enb6", "s")],
    "transformer": [("en8", "l"), ("es6", "l"), ("lang4", "l"), ("en16", "l"),
                    ("en8typos", "l", "short")],
}

# Query tasks: name, classes [(label, predicate)], train per class, test per class, shift, note.
TASKS = [
    ("q_en4_n20", dt.topics("fortunes", ("computers", "politics", "science", "songs-poems")),
     20, 70, None, "4 English databases (class overlap with en8, en16)"),
    ("q_ennew5_n12", dt.topics("fortunes", ("startrek", "law", "food", "education",
                                            "disclaimer")),
     12, 24, None, "5 English databases that no source model was trained to tell apart"),
    ("q_es5_n20", dt.topics("fortunes-es", ("refranes", "sabiduria", "sentimientos", "arte",
                                            "poder")),
     20, 45, None, "5 Spanish databases (3 in es6)"),
    ("q_de4_n20", dt.topics("fortunes-de", ("unfug", "witze", "zitate", "woerterbuch")),
     20, 45, None, "4 German databases (3 in de6)"),
    ("q_it4_n20", dt.topics("fortunes-it", ("italia", "luke", "norm", "zuse")),
     20, 45, None, "4 Italian databases (3 in it6)"),
    ("q_lang4_short_n10", dt.LANG4, 10, 100, "short", "language of the first 24 characters"),
    ("q_en4_typos_n20", dt.topics("fortunes", ("people", "work", "definitions", "zippy")),
     20, 60, "typos_upper", "4 English databases (in en8) with typos, half upper-case"),
    ("q_tech2_n25", dt.LABEL_SETS["tech2"], 25, 120, None,
     "technology or not, fortunes in 4 languages (the tech2 source's classes)"),
]
SHORT_CHARS = 24

RECORDS = None  # text_data.load_texts(), loaded before the worker processes fork


def zoo_specs(smoke=False):
    specs = []
    for arch, rows in _ZOO.items():
        for row in rows:
            src, budget = row[:2]
            kind = row[2] if len(row) > 2 else "normal"
            suffix = "" if kind == "normal" else f"-{kind}"
            specs.append((f"{arch}-{src}{suffix}-{budget}", arch, src, budget, kind))
    if smoke:
        specs = [s for s in specs if s[2] in ("en8", "lang4") and s[4] == "normal"][:4]
    return specs


def shift_texts(texts, shift, seed):
    """The texts under a task's or a source's shift (seeded; same length list)."""
    if shift is None:
        return list(texts)
    rng = np.random.default_rng(seed)
    out = []
    for t in texts:
        if shift == "short":
            out.append(t[:SHORT_CHARS])
        elif shift == "typos_upper":
            t = td.shift_text(t, "typos", rng)
            out.append(t.upper() if rng.random() < 0.5 else t)
        elif shift == "mixed":
            if rng.random() < 0.5:
                kind = ("typos", "upper", "lower", "truncate")[int(rng.integers(4))]
                t = td.shift_text(t, kind, rng)
            out.append(t)
        else:
            raise ValueError(shift)
    return out


def licence_of(classes):
    used = {r["source"] for r in RECORDS if any(pred(r) for _, pred in classes)}
    return " AND ".join(sorted({td.SOURCE_LICENSES[s] for s in used}))


def train_source_model(job):
    out, seed, (name, arch, src, budget, kind) = job
    torch.set_num_threads(1)
    t0, cpu0 = time.time(), time.process_time()
    label_set, shift = SOURCES[src]
    (x, y), (vx, vy), labels = dt.source_data(RECORDS, label_set, BUDGETS[budget],
                                              VAL_PER_CLASS)
    x = shift_texts(x, shift, dt.crc(seed, name, "shift"))
    vx = shift_texts(vx, shift, dt.crc(seed, name, "val-shift"))
    y = np.asarray(y, dtype=np.int64)
    if kind == "shuffled":
        y = np.random.default_rng(dt.crc(seed, name, "shuffle")).permutation(y)
    epochs = EPOCHS[budget][arch]
    if kind == "short":
        epochs = 1
    torch.manual_seed(dt.crc(seed, name, "init"))
    net = nt.build(arch, len(labels), budget, salt=dt.crc(seed, name, "salt") % 1000)
    train_x, train_y = x, y
    if kind == "barely":  # two optimiser steps on the first 2 batches of a seeded order
        pick = np.random.default_rng(dt.crc(seed, name, "barely")).permutation(len(x))[:2 * BATCH]
        train_x, train_y, epochs = [x[i] for i in pick], y[pick], 1
    train_acc = tn.train(net, train_x, train_y, epochs, dt.crc(seed, name, "order"),
                         batch_size=BATCH, lr=nt.LR[arch])
    val_acc = tn.accuracy(net, vx, vy)
    with torch.no_grad():
        dim = int(net.embed(["x"]).shape[1])
    models_dir = os.path.join(out, "models")
    torch.jit.script(net).save(os.path.join(models_dir, f"{name}.pt"))
    classes = dt.LABEL_SETS[label_set]
    desc = (f"{arch} on {src} ({len(labels)} classes, {BUDGETS[budget]} texts per class at most"
            + (f", shift {shift}" if shift else "") + ("" if kind == "normal" else f", {kind}")
            + ")")
    sidecar = {"name": name, "version": "1.0.0", "description": desc,
               "task": "text_classification", "class_labels": labels,
               "license": licence_of(classes), "tags": ["bench", "zoo_text", arch, src]}
    with open(os.path.join(models_dir, f"{name}.json"), "w") as f:
        json.dump(sidecar, f, indent=1)
    return {"name": name, "arch": arch, "source": src, "label_set": label_set, "shift": shift,
            "budget": budget, "per_class": BUDGETS[budget], "kind": kind, "classes": labels,
            "train_samples": len(train_x), "val_samples": len(vx), "epochs": epochs,
            "lr": nt.LR[arch], "batch_size": BATCH,
            "parameters": int(sum(p.numel() for p in net.parameters())), "feature_dim": dim,
            "train_acc": round(train_acc, 4), "val_acc": round(val_acc, 4),
            "seconds": round(time.time() - t0, 1),
            "cpu_seconds": round(time.process_time() - cpu0, 1), "file": f"models/{name}.pt",
            "sidecar": f"models/{name}.json"}


def write_csv(path, texts, labels):
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(["text", "label"])
        writer.writerows(zip(texts, labels))


def make_task(out, seed, spec):
    name, classes, n_train, n_test, shift, note = spec
    (x, y), (tx, ty) = dt.query_data(RECORDS, classes, n_train, n_test)
    x = shift_texts(x, shift, dt.crc(seed, name, "train-shift"))
    tx = shift_texts(tx, shift, dt.crc(seed, name, "test-shift"))
    names = [label for label, _ in classes]
    order = np.random.default_rng(dt.crc(seed, name, "order")).permutation(len(x))
    d = os.path.join(out, "tasks", name)
    os.makedirs(d, exist_ok=True)
    write_csv(os.path.join(d, "train.csv"), [x[i] for i in order], [names[y[i]] for i in order])
    write_csv(os.path.join(d, "test.csv"), tx, [names[k] for k in ty])
    return {"name": name, "kind": "text", "description": note,
            "class_labels": sorted(names), "num_classes": len(names), "shift": shift,
            "train_per_class": n_train, "test_per_class": n_test,
            "num_train": len(x), "num_test": len(tx),
            "train_counts": {n: int(np.sum(np.asarray(y) == k)) for k, n in enumerate(names)},
            "test_counts": {n: int(np.sum(np.asarray(ty) == k)) for k, n in enumerate(names)},
            "format": "CSV text,label (header; UTF-8; labels are class names, indexed in "
                      "sorted order as the dock does)",
            "train_file": f"tasks/{name}/train.csv", "test_file": f"tasks/{name}/test.csv"}


def main():
    global RECORDS
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="4 models and 2 tasks")
    ap.add_argument("--only", default=None, help="comma-separated model names to (re)train")
    ap.add_argument("--tasks-only", action="store_true", help="write the tasks, train nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = os.path.abspath(args.out)
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    t0 = time.time()
    RECORDS = td.load_texts()
    print(f"{len(RECORDS)} texts loaded in {time.time() - t0:.1f} s", flush=True)
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
    # The slowest architectures first, so that two processes finish together.
    cost = {"lstm": 0, "gru": 1, "transformer": 2, "cnn": 3, "ngram": 4}
    todo.sort(key=lambda s: cost[s[1]])
    jobs = [(out, args.seed, s) for s in todo]
    with mp.get_context("fork").Pool(max(1, min(args.jobs, 2))) as pool:
        for i, m in enumerate(pool.imap_unordered(train_source_model, jobs), 1):
            done[m["name"]] = m
            print(f"[{i}/{len(jobs)}] {m['name']}: train {m['train_acc']:.3f} val "
                  f"{m['val_acc']:.3f} ({m['seconds']} s, CPU {m['cpu_seconds']} s; {time.time() - t0:.0f} s)", flush=True)
            names = [s[0] for s in zoo_specs(args.smoke)]
            with open(zoo_path, "w") as f:  # after every model: a resumable manifest
                json.dump({"seed": args.seed, "smoke": args.smoke,
                           "models": [done[n] for n in names if n in done]}, f, indent=1)
    print(f"zoo: {len(done)} models in {out} ({time.time() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
