#!/usr/bin/python3
"""Fine-tune ground truth for the text zoo: bench/zoo/finetune.py's protocol (a new Linear head on
embed, all layers trained, Adam at two backbone rates with a 10x head rate, seeded per (model,
task, lr); plus a linear probe on frozen features), its cache format and its ground_truth.json
layout, on CSV text tasks.

    nice -n 10 /usr/bin/python3 bench/zoo_text/finetune_text.py \
        --zoo bench/zoo_text/artifacts/zoo --out bench/zoo_text/results/ground_truth.json
    ... --estimate     time one model per architecture on the smallest and largest task

Labels are the CSV's class names indexed in sorted order (as the dock indexes them). Each
finished pair is appended to ZOO/finetune.jsonl (resumable; a line is reused only with the same
protocol id).
"""
import argparse
import csv
import json
import multiprocessing as mp
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "zoo"))
import finetune as ft  # noqa: E402  (bench/zoo/finetune.py)

PROTOCOL = json.loads(json.dumps(ft.PROTOCOL))
PROTOCOL["finetune"]["trained"] = "all layers (backbone + head); dropout active while training"
PROTOCOL["input"] = ("texts of the task CSV as they are (each model tokenizes inside); labels "
                     "are the class names indexed in sorted order")
PROTOCOL["evaluation"] = ("accuracy on the task's test CSV (query-split texts that a second hash "
                          "keeps out of the task's train CSV)")

_cache = {}


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def load_task(zoo, task):
    """(train texts, train labels, test texts, test labels); labels int64 tensors."""
    if task["name"] not in _cache:
        xtr, ltr = read_csv(os.path.join(zoo, task["train_file"]))
        xte, lte = read_csv(os.path.join(zoo, task["test_file"]))
        names = sorted(set(ltr))
        index = {n: k for k, n in enumerate(names)}
        ytr = torch.tensor([index[n] for n in ltr], dtype=torch.long)
        yte = torch.tensor([index[n] for n in lte], dtype=torch.long)
        _cache[task["name"]] = (xtr, ytr, xte, yte)
    return _cache[task["name"]]


def finetune_once(model_path, lr, xtr, ytr, xte, yte, num_classes, seed, protocol):
    """bench/zoo/finetune.py's finetune_once on a list of texts."""
    p = protocol["finetune"]
    torch.manual_seed(seed)
    model = torch.jit.load(model_path)
    dim = ft.embed_all(model, xtr[:2]).shape[1]
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
        order = rng.permutation(len(xtr))
        for i in range(0, len(xtr), batch):
            idx = order[i:i + batch]
            if len(idx) < 2:  # as bench/zoo: a final batch of one sample is skipped
                continue
            opt.zero_grad()
            loss = F.cross_entropy(head(model.embed([xtr[j] for j in idx])),
                                   ytr[torch.from_numpy(idx)])
            loss.backward()
            opt.step()
            last_loss = loss.item()
    feats = ft.embed_all(model, xte)
    with torch.no_grad():
        acc = (head(feats).argmax(1) == yte).float().mean().item()
    return acc, last_loss


def run_pair(job):
    torch.set_num_threads(1)
    zoo, model, task, protocol = job
    t0, cpu0 = time.time(), time.process_time()
    xtr, ytr, xte, yte = load_task(zoo, task)
    path = os.path.join(zoo, "models", f"{model['name']}.pt")
    lp = ft.linear_probe(torch.jit.load(path), xtr, ytr, xte, yte)
    accs, losses = {}, {}
    for lr in protocol["finetune"]["learning_rates"]:
        acc, loss = finetune_once(path, lr, xtr, ytr, xte, yte, task["num_classes"],
                                  ft._key(model["name"], task["name"], lr), protocol)
        accs[repr(lr)], losses[repr(lr)] = round(acc, 5), round(loss, 5)
    best_lr = max(accs, key=lambda k: (accs[k], -float(k)))
    return {"model": model["name"], "task": task["name"], "protocol": ft.protocol_id(protocol),
            "finetune": accs, "final_train_loss": losses, "best": accs[best_lr],
            "best_lr": best_lr, "linear_probe": round(lp, 5),
            "seconds": round(time.time() - t0, 2),
            "cpu_seconds": round(time.process_time() - cpu0, 2)}


def estimate(zoo, models, tasks, protocol, jobs):
    """Times one model per architecture on the smallest and largest task (CPU seconds) and
    extrapolates seconds = a + b * n_train to every pair."""
    small = min(tasks, key=lambda t: t["num_train"])
    large = max(tasks, key=lambda t: t["num_train"])
    groups = {}
    for m in models:
        groups.setdefault(m["arch"], []).append(m)
    total = 0.0
    for arch, ms in sorted(groups.items()):
        secs = [run_pair((zoo, ms[0], t, protocol))["cpu_seconds"] for t in (small, large)]
        b = (secs[1] - secs[0]) / max(1, large["num_train"] - small["num_train"])
        a = secs[0] - b * small["num_train"]
        total += len(ms) * sum(max(0.0, a + b * t["num_train"]) for t in tasks)
        print(f"  {arch}: {secs[0]:.1f} CPU s (n={small['num_train']}), {secs[1]:.1f} CPU s "
              f"(n={large['num_train']}), {len(ms)} models", flush=True)
    print(f"estimate: {len(models) * len(tasks)} pairs, {total / 60:.1f} CPU-min, "
          f"~{total / 60 / jobs:.1f} min wall with {jobs} processes on an idle machine")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="override (changes the protocol id)")
    ap.add_argument("--estimate", action="store_true")
    ap.add_argument("--write-only", action="store_true",
                    help="write --out from the cache without running anything")
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
    models = zoo_meta["models"]
    jobs_n = max(1, min(args.jobs, 2))
    if args.estimate:
        estimate(zoo, models, tasks, protocol, jobs_n)
        return
    jsonl = os.path.join(zoo, "finetune.jsonl")
    pid = ft.protocol_id(protocol)
    done = ft.read_done(jsonl, pid)
    # Task by task (models in a seeded order within a task), so that an interrupted run leaves
    # whole tasks complete.
    rank = {t["name"]: i for i, t in enumerate(tasks)}
    todo = [(zoo, m, t, protocol) for t in tasks for m in models
            if (m["name"], t["name"]) not in done and not args.write_only]
    todo.sort(key=lambda j: (rank[j[2]["name"]], ft._key(j[1]["name"], j[2]["name"]) % 1000))
    print(f"{len(done)} pairs cached, {len(todo)} to run with {jobs_n} processes", flush=True)
    t0 = time.time()
    with open(jsonl, "a") as f, mp.get_context("fork").Pool(jobs_n) as pool:
        for i, r in enumerate(pool.imap_unordered(run_pair, todo), 1):
            f.write(json.dumps(r) + "\n")
            f.flush()
            done[(r["model"], r["task"])] = r
            el = time.time() - t0
            print(f"[{i}/{len(todo)}] {r['model']} x {r['task']}: ft {r['finetune']} "
                  f"lp {r['linear_probe']:.3f} ({r['seconds']:.1f} s, CPU {r['cpu_seconds']:.1f}"
                  f" s; {el / 60:.1f} min, eta {el / i * (len(todo) - i) / 60:.1f} min)",
                  flush=True)
    if args.out:
        cpu = sum(r.get("cpu_seconds", r["seconds"]) for r in done.values())
        ft.write_ground_truth(args.out, zoo, [m["name"] for m in models], tasks, done, protocol,
                              {"zoo_seed": zoo_meta["seed"], "smoke": zoo_meta.get("smoke", False),
                               "num_pairs": len(done), "pair_cpu_seconds_total": round(cpu, 1),
                               "last_run_wall_seconds": round(time.time() - t0, 1),
                               "processes": jobs_n})
        print(f"wrote {args.out}: {len(done)} pairs")


if __name__ == "__main__":
    main()
