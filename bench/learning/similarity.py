#!/usr/bin/python3
"""Re-reads run_learning.py's raw responses (bench/learning/artifacts/raw_zoo*.json) and reports
how well the knowledge-vector similarity alone ranks each cross-validation test task, untrained vs
with the trained version (whose projection re-encodes the vectors), and what adding it to the
stage score would do (docs/BENCHMARKS.md, section 2b).

    /usr/bin/python3 bench/learning/similarity.py
"""
import ast
import json
import os

import numpy as np
from scipy import stats

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
ZOOS = [("zoo1", "bench/zoo/results/ground_truth.json"),
        ("zoo2", "bench/zoo2/results/ground_truth.json")]


def z(v):
    v = np.asarray(v, float)
    s = v.std()
    return (v - v.mean()) / s if s > 0 else v * 0


def main():
    for zoo, truth in ZOOS:
        raw = json.load(open(os.path.join(REPO, "bench/learning/artifacts", f"raw_{zoo}.json")))
        gt = json.load(open(os.path.join(REPO, truth)))["tasks"]
        sim_tau, combined = {}, {}
        for x in raw:
            args = x["args"] if isinstance(x["args"], list) else ast.literal_eval(x["args"])
            exp = x["experiment"]
            if args[0] != "recommend" or not exp.startswith("cv") or exp.count("/") < 3:
                continue
            _, variant, task, mode = exp.split("/")
            r = x["response"]["results"]
            acc = np.array([gt[task][m["name"]]["best"] for m in r])
            sim = np.array([m["similarity"] for m in r])
            sim_tau.setdefault(variant, {})[task] = stats.weightedtau(sim, acc).correlation
            if variant == "trained":
                base = np.array([m["stage1_score"] if mode == "stage1" else m["stage2_score"]
                                 for m in r])
                for w in (0.0, 0.1, 0.2, 0.3, 0.5):
                    combined.setdefault((mode, w), []).append(
                        stats.weightedtau(z(base) + w * z(sim), acc).correlation)
        for variant, taus in sorted(sim_tau.items()):
            print(f"{zoo} similarity alone, {variant}: tau_w {np.mean(list(taus.values())):.3f} "
                  f"over {len(taus)} test tasks")
        for (mode, w), taus in sorted(combined.items()):
            print(f"{zoo} {mode} score + {w} x trained similarity (z-scored): tau_w {np.mean(taus):.3f}")


if __name__ == "__main__":
    main()
