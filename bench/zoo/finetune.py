#!/usr/bin/python3
"""Ground truth for the benchmark: every zoo model fine-tuned on every query task, plus a linear
probe on its frozen features. The protocol is in bench/zoo/PROTOCOL.md and in PROTOCOL below.

    /usr/bin/python3 bench/zoo/finetune.py --zoo bench/zoo/artifacts/zoo \
        --out bench/zoo/results/ground_truth.json          # full run, 2 processes, resumable
    /usr/bin/python3 bench/zoo/finetune.py --zoo ... --estimate   # time a few pairs, extrapolate

Each finished (model, task) pair is appended to ZOO/finetune.jsonl at once, so an interrupted run
continues where it stopped; a line is reused only if it was made with the same PROTOCOL.
"""
import argparse
import json
import multiprocessing as mp
import os
import struct
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

PROTOCOL = {
    "finetune": {
        "head": "new nn.Linear(D, C) on embed(x), PyTorch default init, seeded per (model, task, lr)",
        "trained": "all layers (backbone + head); BatchNorm in train mode during fine-tuning",
        "optimizer": "Adam, betas (0.9, 0.999), no weight decay, constant learning rate",
        "learning_rates": [1e-3, 1e-4],
        "head_lr_multiplier": 10,
        "epochs": 12,
        "batch_size": 32,
        "augmentation": "none",
        "selection": "test accuracy after the last epoch, per learning rate; best = max over rates",
    },
    "linear_probe": {
        "features": "embed(x) in eval mode, frozen",
        "classifier": "sklearn StandardScaler + LogisticRegression(C=1.0, lbfgs, max_iter=2000)",
    },
    "evaluation": "accuracy on the task's test split (disjoint images; other fonts for glyphs)",
}


def _key(*parts):
    return zlib.crc32("/".join(map(str, parts)).encode())


def protocol_id(protocol):
    return f"{zlib.crc32(json.dumps(protocol, sort_keys=True).encode()):08x}"


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    _, dtype, ndim = struct.unpack(">HBB", raw[:4])
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


_task_cache = {}


def load_task(zoo, task):
    name = task["name"]
    if name not in _task_cache:
        arrays = []
        for split in ("train", "test"):
            x = read_idx(os.path.join(zoo, task[f"{split}_images"]))
            y = read_idx(os.path.join(zoo, task[f"{split}_labels"]))
            arrays += [torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1),
                       torch.from_numpy(y.astype(np.int64))]
        _task_cache[name] = arrays
    return _task_cache[name]


def embed_all(model, x, batch=512):
    model.eval()
    with torch.no_grad():
        return torch.cat([model.embed(x[i:i + batch]) for i in range(0, len(x), batch)])


def linear_probe(model, xtr, ytr, xte, yte):
    ftr, fte = embed_all(model, xtr).double().numpy(), embed_all(model, xte).double().numpy()
    scaler = StandardScaler().fit(ftr)
    clf = LogisticRegression(C=1.0, max_iter=2000)
    clf.fit(scaler.transform(ftr), ytr.numpy())
    return float((clf.predict(scaler.transform(fte)) == yte.numpy()).mean())


def finetune_once(model_path, lr, xtr, ytr, xte, yte, num_classes, seed, protocol):
    p = protocol["finetune"]
    torch.manual_seed(seed)
    model = torch.jit.load(model_path)
    dim = embed_all(model, xtr[:2]).shape[1]
    head = torch.nn.Linear(dim, num_classes)
    backbone = [q for q in model.parameters()]
    for q in backbone:
        q.requires_grad_(True)
    opt = torch.optim.Adam([{"params": backbone, "lr": lr},
                            {"params": head.parameters(), "lr": lr * p["head_lr_multiplier"]}])
    rng = np.random.default_rng(seed)
    batch = p["batch_size"]
    last_loss = float("nan")
    for _ in range(p["epochs"]):
        model.train()
        order = torch.from_numpy(rng.permutation(len(xtr)))
        for i in range(0, len(xtr), batch):
            idx = order[i:i + batch]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            opt.zero_grad()
            loss = F.cross_entropy(head(model.embed(xtr[idx])), ytr[idx])
            loss.backward()
            opt.step()
            last_loss = loss.item()
    feats = embed_all(model, xte)
    with torch.no_grad():
        acc = (head(feats).argmax(1) == yte).float().mean().item()
    return acc, last_loss


def run_pair(job):
    """One (model, task) pair: linear probe + fine-tuning at every learning rate."""
    torch.set_num_threads(1)
    zoo, model_name, task, protocol = job
    t0 = time.time()
    xtr, ytr, xte, yte = load_task(zoo, task)
    path = os.path.join(zoo, "models", f"{model_name}.pt")
    lp = linear_probe(torch.jit.load(path), xtr, ytr, xte, yte)
    ft, losses = {}, {}
    for lr in protocol["finetune"]["learning_rates"]:
        acc, loss = finetune_once(path, lr, xtr, ytr, xte, yte, task["num_classes"],
                                  _key(model_name, task["name"], lr), protocol)
        ft[repr(lr)], losses[repr(lr)] = round(acc, 5), round(loss, 5)
    best_lr = max(ft, key=lambda k: (ft[k], -float(k)))
    return {"model": model_name, "task": task["name"], "protocol": protocol_id(protocol),
            "finetune": ft, "final_train_loss": losses, "best": ft[best_lr], "best_lr": best_lr,
            "linear_probe": round(lp, 5), "seconds": round(time.time() - t0, 2)}


def read_done(jsonl, pid):
    done = {}
    if os.path.exists(jsonl):
        with open(jsonl) as f:
            for line in f:
                try:
                    r = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by an interruption
                if r.get("protocol") == pid:
                    done[(r["model"], r["task"])] = r
    return done


def write_ground_truth(path, zoo, models, tasks, done, protocol, meta):
    out = {"protocol": protocol, "protocol_id": protocol_id(protocol), **meta,
           "models": models, "tasks": {}}
    for task in tasks:
        rows = {}
        for m in models:
            r = done.get((m, task["name"]))
            if r is not None:
                rows[m] = {k: r[k] for k in ("finetune", "best", "best_lr", "linear_probe")}
        out["tasks"][task["name"]] = rows
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1, sort_keys=False)


def estimate(zoo, models_by_arch, tasks, protocol, total_pairs, jobs):
    """Times each architecture on the smallest and the largest task, fits seconds = a + b * n_train
    per architecture and extrapolates to every pair."""
    small = min(tasks, key=lambda t: t["num_train"])
    large = max(tasks, key=lambda t: t["num_train"])
    fits = {}
    for arch, names in sorted(models_by_arch.items()):
        secs = []
        for task in (small, large):
            r = run_pair((zoo, names[0], task, protocol))
            secs.append(r["seconds"])
            print(f"  {arch:7s} {task['name']:16s} n_train={task['num_train']:4d}: "
                  f"{r['seconds']:.1f} s  (ft {r['finetune']}, lp {r['linear_probe']})", flush=True)
        b = (secs[1] - secs[0]) / max(1, large["num_train"] - small["num_train"])
        fits[arch] = (secs[0] - b * small["num_train"], b)
    total = 0.0
    for arch, names in models_by_arch.items():
        a, b = fits[arch]
        total += len(names) * sum(a + b * t["num_train"] for t in tasks)
    print(f"estimate: {total_pairs} pairs, {total / 60:.1f} CPU-min, "
          f"~{total / 60 / jobs:.1f} min wall with {jobs} processes (on this load)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", required=True, help="output directory of make_zoo.py")
    ap.add_argument("--out", default=None, help="ground_truth.json to write")
    ap.add_argument("--jsonl", default=None, help="per-pair cache (default ZOO/finetune.jsonl)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="override (smoke runs only)")
    ap.add_argument("--estimate", action="store_true", help="time a few pairs and extrapolate")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo = os.path.abspath(args.zoo)
    protocol = json.loads(json.dumps(PROTOCOL))
    if args.epochs is not None:
        protocol["finetune"]["epochs"] = args.epochs
    with open(os.path.join(zoo, "zoo.json")) as f:
        zoo_meta = json.load(f)
    with open(os.path.join(zoo, "tasks.json")) as f:
        tasks = json.load(f)["tasks"]
    models = [m["name"] for m in zoo_meta["models"]]
    by_arch = {}
    for m in zoo_meta["models"]:
        by_arch.setdefault(m["arch"], []).append(m["name"])
    jobs_n = max(1, min(args.jobs, 2))

    if args.estimate:
        estimate(zoo, by_arch, tasks, protocol, len(models) * len(tasks), jobs_n)
        return

    jsonl = args.jsonl or os.path.join(zoo, "finetune.jsonl")
    pid = protocol_id(protocol)
    done = read_done(jsonl, pid)
    # Interleave tasks and architectures so that partial results cover everything evenly.
    todo = [(zoo, m, t, protocol) for t in tasks for m in models if (m, t["name"]) not in done]
    todo.sort(key=lambda j: (_key(j[1], j[2]["name"]) % 1000))
    print(f"{len(done)} pairs cached, {len(todo)} to run with {jobs_n} processes", flush=True)
    t0 = time.time()
    with open(jsonl, "a") as f, mp.get_context("fork").Pool(jobs_n) as pool:
        for i, r in enumerate(pool.imap_unordered(run_pair, todo), 1):
            f.write(json.dumps(r) + "\n")
            f.flush()
            os.fsync(f.fileno())
            done[(r["model"], r["task"])] = r
            el = time.time() - t0
            print(f"[{i}/{len(todo)}] {r['model']} x {r['task']}: ft {r['finetune']} "
                  f"lp {r['linear_probe']:.3f} ({r['seconds']:.1f} s; elapsed {el / 60:.1f} min, "
                  f"eta {el / i * (len(todo) - i) / 60:.1f} min)", flush=True)
    wall = time.time() - t0
    if args.out:
        cpu = sum(r["seconds"] for r in done.values())
        write_ground_truth(args.out, zoo, models, tasks, done, protocol,
                           {"zoo_seed": zoo_meta["seed"], "smoke": zoo_meta.get("smoke", False),
                            "num_pairs": len(done), "pair_cpu_seconds_total": round(cpu, 1),
                            "last_run_wall_seconds": round(wall, 1), "processes": jobs_n})
        print(f"wrote {args.out}: {len(done)} pairs")


if __name__ == "__main__":
    main()
