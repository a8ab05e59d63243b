#!/usr/bin/python3
"""Fine-tune ground truth for the colour zoo: bench/zoo/finetune.py's protocol (its PROTOCOL,
finetune_once, linear_probe, cache format and ground_truth.json layout), on NPZ colour tasks.

    nice -n 10 /usr/bin/python3 bench/zoo_colour/finetune_colour.py \
        --zoo bench/zoo_colour/artifacts/zoo --out bench/zoo_colour/results/ground_truth.json
    ... --estimate     time a few pairs per architecture and extrapolate

The one addition to the protocol: task images are stored at 64 x 64 and are resized to each
model's declared input (antialiased bilinear, as the dock resizes queries) before anything else.
Each finished pair is appended to ZOO/finetune.jsonl (resumable; reused only with the same
protocol id).
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
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "zoo"))
import finetune as ft  # noqa: E402  (bench/zoo/finetune.py)

PROTOCOL = json.loads(json.dumps(ft.PROTOCOL))
PROTOCOL["input"] = ("task images uint8 [N, 3, 64, 64] / 255, resized to the model's input "
                     "size with antialiased bilinear interpolation")

_cache = {}


def load_task(zoo, task, size):
    key = (task["name"], size)
    if key not in _cache:
        arrays = []
        for split in ("train", "test"):
            z = np.load(os.path.join(zoo, task[f"{split}_file"]))
            x = torch.from_numpy(z["x"].astype(np.float32) / 255.0)
            if x.shape[-1] != size:
                x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                                  antialias=True).clamp_(0.0, 1.0)
            arrays += [x, torch.from_numpy(z["y"].astype(np.int64))]
        _cache[key] = arrays
    return _cache[key]


def run_pair(job):
    torch.set_num_threads(1)
    zoo, model, task, protocol = job
    t0 = time.time()
    xtr, ytr, xte, yte = load_task(zoo, task, model["input_size"])
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
            "best_lr": best_lr, "linear_probe": round(lp, 5), "seconds": round(time.time() - t0, 2)}


def estimate(zoo, models, tasks, protocol, jobs):
    """Times one model per (architecture, input size) on the smallest and largest task and
    extrapolates seconds = a + b * n_train to every pair."""
    small = min(tasks, key=lambda t: t["num_train"])
    large = max(tasks, key=lambda t: t["num_train"])
    groups = {}
    for m in models:
        groups.setdefault((m["arch"], m["input_size"]), []).append(m)
    total = 0.0
    for key, ms in sorted(groups.items()):
        secs = [run_pair((zoo, ms[0], t, protocol))["seconds"] for t in (small, large)]
        b = (secs[1] - secs[0]) / max(1, large["num_train"] - small["num_train"])
        a = secs[0] - b * small["num_train"]
        total += len(ms) * sum(a + b * t["num_train"] for t in tasks)
        print(f"  {key}: {secs[0]:.1f} s (n={small['num_train']}), {secs[1]:.1f} s "
              f"(n={large['num_train']}), {len(ms)} models", flush=True)
    print(f"estimate: {len(models) * len(tasks)} pairs, {total / 60:.1f} CPU-min, "
          f"~{total / 60 / jobs:.1f} min wall with {jobs} processes (on this load)")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--out", default=None)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=None, help="override (changes the protocol id)")
    ap.add_argument("--estimate", action="store_true")
    ap.add_argument("--write-only", action="store_true",
                    help="write --out from the cache without running anything (partial runs)")
    ap.add_argument("--task-order", default=None,
                    help="comma-separated task names: run these tasks first, in this order")
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
    todo = [(zoo, m, t, protocol) for t in tasks for m in models
            if (m["name"], t["name"]) not in done]
    # Task by task (models in a seeded order within a task), so that an interrupted run leaves
    # whole tasks complete.
    first = args.task_order.split(",") if args.task_order else []
    order = {t["name"]: (first.index(t["name"]) if t["name"] in first else len(first) + i)
             for i, t in enumerate(tasks)}
    todo.sort(key=lambda j: (order[j[2]["name"]], ft._key(j[1]["name"], j[2]["name"]) % 1000))
    print(f"{len(done)} pairs cached, {len(todo)} to run with {jobs_n} processes", flush=True)
    if args.write_only:
        todo = []
    t0 = time.time()
    with open(jsonl, "a") as f, mp.get_context("fork").Pool(jobs_n) as pool:
        for i, r in enumerate(pool.imap_unordered(run_pair, todo), 1):
            f.write(json.dumps(r) + "\n")
            f.flush()
            done[(r["model"], r["task"])] = r
            el = time.time() - t0
            print(f"[{i}/{len(todo)}] {r['model']} x {r['task']}: ft {r['finetune']} "
                  f"lp {r['linear_probe']:.3f} ({r['seconds']:.1f} s; {el / 60:.1f} min, "
                  f"eta {el / i * (len(todo) - i) / 60:.1f} min)", flush=True)
    if args.out:
        cpu = sum(r["seconds"] for r in done.values())
        ft.write_ground_truth(args.out, zoo, [m["name"] for m in models], tasks, done, protocol,
                              {"zoo_seed": zoo_meta["seed"], "smoke": zoo_meta.get("smoke", False),
                               "num_pairs": len(done), "pair_cpu_seconds_total": round(cpu, 1),
                               "last_run_wall_seconds": round(time.time() - t0, 1),
                               "processes": jobs_n})
        print(f"wrote {args.out}: {len(done)} pairs")


if __name__ == "__main__":
    main()
