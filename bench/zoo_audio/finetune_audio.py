#!/usr/bin/python3
"""Fine-tune ground truth for the speech zoo: bench/zoo/finetune.py's protocol (a new Linear head
on embed, all layers trained, Adam at two backbone rates with a 10x head rate, seeded per (model,
task, lr); plus a linear probe on frozen features), through its own functions, its cache format
and its ground_truth.json layout, on the NPZ audio tasks.

    nice -n 5 /usr/bin/python3 bench/zoo_audio/finetune_audio.py \
        --zoo bench/zoo_audio/artifacts/zoo --out bench/zoo_audio/results/ground_truth.json

Input: the task's samples float32 [N, 16000] as they are (each model computes its log-mel
features inside); labels are indices into the sorted class names (as the dock indexes them).
Each finished pair is appended to ZOO/finetune.jsonl (resumable; a line is reused only with the
same protocol id).
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "zoo"))
import finetune as ft  # noqa: E402  (bench/zoo/finetune.py)

PROTOCOL = json.loads(json.dumps(ft.PROTOCOL))
PROTOCOL["finetune"]["trained"] = ("all layers (backbone + head); BatchNorm in train mode and "
                                   "dropout active while training; the log-mel frontend has no "
                                   "parameters")
PROTOCOL["input"] = ("1 s clips at 16 kHz mono (float32 [N, 16000], 16-bit PCM values) as they "
                     "are; labels are indices into the sorted class names")
PROTOCOL["evaluation"] = ("accuracy on the task's test NPZ (query-split speakers that a second "
                          "hash keeps out of the task's train split)")

_cache = {}


def load_task(zoo, task):
    """(train clips, train labels, test clips, test labels) as tensors."""
    if task["name"] not in _cache:
        tr = np.load(os.path.join(zoo, task["train_file"]))
        te = np.load(os.path.join(zoo, task["test_file"]))
        _cache[task["name"]] = (torch.from_numpy(tr["samples"]), torch.from_numpy(tr["labels"]),
                                torch.from_numpy(te["samples"]), torch.from_numpy(te["labels"]))
    return _cache[task["name"]]


def run_pair(job):
    torch.set_num_threads(1)
    zoo, model, task, protocol = job
    t0, cpu0 = time.time(), time.process_time()
    xtr, ytr, xte, yte = load_task(zoo, task)
    path = os.path.join(zoo, "models", f"{model['name']}.pt")
    lp = ft.linear_probe(torch.jit.load(path), xtr, ytr, xte, yte)
    accs, losses = {}, {}
    for lr in protocol["finetune"]["learning_rates"]:
        acc, loss = ft.finetune_once(path, lr, xtr, ytr, xte, yte, task["num_classes"],
                                     ft._key(model["name"], task["name"], lr), protocol)
        accs[repr(lr)], losses[repr(lr)] = round(acc, 5), round(loss, 5)
    best_lr = max(accs, key=lambda k: (accs[k], -float(k)))
    return {"model": model["name"], "task": task["name"], "protocol": ft.protocol_id(protocol),
            "finetune": accs, "final_train_loss": losses, "best": accs[best_lr],
            "best_lr": best_lr, "linear_probe": round(lp, 5),
            "seconds": round(time.time() - t0, 2),
            "cpu_seconds": round(time.process_time() - cpu0, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="override (changes the protocol id)")
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
                               "protocol_note": "bench/zoo/PROTOCOL.md, unchanged (12 epochs); "
                                                "the input and evaluation fields say what the "
                                                "audio tasks are",
                               "num_pairs": len(done), "pair_cpu_seconds_total": round(cpu, 1),
                               "last_run_wall_seconds": round(time.time() - t0, 1),
                               "processes": jobs_n})
        print(f"wrote {args.out}: {len(done)} pairs")


if __name__ == "__main__":
    main()
