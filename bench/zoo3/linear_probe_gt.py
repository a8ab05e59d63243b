#!/usr/bin/python3
"""Linear-probe ground truth for a zoo: the frozen-feature half of bench/zoo/PROTOCOL.md
(finetune.py's own linear_probe: StandardScaler + LogisticRegression(C=1) on embed), for every
(model, task) pair, without the fine-tuning half.

    nice -n 10 /usr/bin/python3 bench/zoo3/linear_probe_gt.py --zoo bench/zoo3/artifacts/zoo3 \
        --out bench/zoo3/results/ground_truth_lp.json

Why: on the shared box (load average 14-18) finetune.py --estimate put zoo3's full fine-tune
ground truth at 2 h or more, past the session. The output has finetune.py's schema with
"best" = the linear-probe accuracy and "ground": "linear_probe", so bench/select/width_study.py
reads either; the pairs that the full protocol did finish are compared with it (README.md).
Resumable: each pair is appended to ZOO/linear_probe.jsonl at once.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "zoo"))
import torch  # noqa: E402

import finetune  # noqa: E402  (bench/zoo/finetune.py: load_task, linear_probe)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo = os.path.abspath(args.zoo)
    models = [m["name"] for m in json.load(open(os.path.join(zoo, "zoo.json")))["models"]]
    tasks = json.load(open(os.path.join(zoo, "tasks.json")))["tasks"]
    cache = os.path.join(zoo, "linear_probe.jsonl")
    done = {}
    if os.path.exists(cache):
        for line in open(cache):
            r = json.loads(line)
            done[(r["model"], r["task"])] = r
    t0 = time.time()
    with open(cache, "a") as f:
        for t in tasks:
            xtr, ytr, xte, yte = finetune.load_task(zoo, t)
            for m in models:
                if (m, t["name"]) in done:
                    continue
                s = time.time()
                acc = finetune.linear_probe(torch.jit.load(os.path.join(zoo, "models", f"{m}.pt")),
                                            xtr, ytr, xte, yte)
                r = {"model": m, "task": t["name"], "linear_probe": round(acc, 5),
                     "seconds": round(time.time() - s, 2)}
                done[(m, t["name"])] = r
                f.write(json.dumps(r) + "\n")
                f.flush()
            print(f"  {t['name']}: done ({time.time() - t0:.0f} s)", flush=True)
    out = {"ground": "linear_probe", "protocol": finetune.PROTOCOL["linear_probe"], "models": models,
           "tasks": {t["name"]: {m: {"linear_probe": done[(m, t["name"])]["linear_probe"],
                                     "best": done[(m, t["name"])]["linear_probe"]} for m in models}
                     for t in tasks},
           "pair_seconds_total": round(sum(r["seconds"] for r in done.values()), 1)}
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
