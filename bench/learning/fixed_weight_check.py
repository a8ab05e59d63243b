#!/usr/bin/python3
"""Offline check: could any fixed prior weight help this zoo? (no server; NumPy + SciPy)

    /usr/bin/python3 bench/learning/fixed_weight_check.py ARTIFACTS/raw_ZOO.json GROUND_TRUTH.json

Reads the untrained stage-1 scores of every task from a run_learning.py raw response file and
the zoo's ground truth. For random 4-fold splits over tasks and random cold quarters of the
models (6 repetitions, seed 0), each test task gets the prior the server's formula gives with
no shrinkage: the mean of the training tasks' standardised accuracies (warm models), each task
weighted by (correlation of the two tasks' stage-1 scores, clamped at 0) ** sharpness; cold
models get the line through the warm ones' (stage-1 z, prior). Prints the mean gain in tau_w of
z(stage 1) + w * prior over z(stage 1) for fixed w and sharpness: an upper bound of what a
weight chosen on the records could buy, since it is picked here with the test tasks' answers.
"""
import json
import sys

import numpy as np
from scipy.stats import weightedtau


def z(x):
    x = np.asarray(x, float)
    s = x.std()
    return (x - x.mean()) / s if s > 0 else x * 0


def main(raw_path, gt_path):
    gt = json.load(open(gt_path))["tasks"]
    stage1 = {}
    for e in json.load(open(raw_path)):
        if e["args"][0] != "recommend":
            continue
        _, variant, task, pipeline = e["experiment"].split("/")
        if variant == "untrained" and pipeline == "stage1":
            stage1[task] = {r["name"]: r["stage1_score"] for r in e["response"]["results"]}
    tasks = sorted(stage1)
    names = sorted(stage1[tasks[0]])
    acc = {t: np.array([gt[t][n]["best"] for n in names]) for t in tasks}
    zs = {t: z([stage1[t][n] for n in names]) for t in tasks}
    rng = np.random.default_rng(0)
    for sharpness in (0, 2, 8):
        for w in (0.25, 0.5, 1, 2):
            gains = []
            for _ in range(6):
                folds = np.array_split(rng.permutation(len(tasks)), 4)
                warm = np.ones(len(names), bool)
                warm[rng.choice(len(names), len(names) // 4, replace=False)] = False
                for fold in folds:
                    train = [tasks[i] for i in range(len(tasks)) if i not in fold]
                    for i in fold:
                        t = tasks[i]
                        num, den = np.zeros(len(names)), 0.0
                        for u in train:
                            zu = np.zeros(len(names))
                            zu[warm] = z(acc[u][warm])
                            c = max(0.0, np.corrcoef(zs[t], zs[u])[0, 1]) ** sharpness
                            num, den = num + c * zu, den + c
                        prior = num / max(den, 1e-12)
                        x, y = zs[t][warm], prior[warm]
                        beta = ((x - x.mean()) * (y - y.mean())).sum() / ((x - x.mean()) ** 2).sum()
                        prior[~warm] = beta * (zs[t][~warm] - x.mean()) + y.mean()
                        gains.append(weightedtau(acc[t], zs[t] + w * prior)[0]
                                     - weightedtau(acc[t], zs[t])[0])
            print(f"sharpness {sharpness} weight {w}: mean gain {np.mean(gains):+.4f} "
                  f"over {len(gains)} (split, task) pairs")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(*sys.argv[1:])
