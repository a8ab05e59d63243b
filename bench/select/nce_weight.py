#!/usr/bin/python3
"""How much weight NCE gets in the default fusion, and when (issue 23 item 6, issue 21).

The default fusion ranks models by LogME and shrinkage H-score on their features' top 32
principal components. Logit metrics (NCE, LEEP) read a classifier's predicted source classes:
they rank a dock well when the query's classes overlap the sources' (a third-party dock of
CIFAR-10 classifiers queried with CIFAR-10: LEEP 0.71, LogME 0.17) and add noise when they do
not. This study fuses NCE in with weight

    w = c * clamp((A - a) / (1 - a), 0, 1),   A = max over models of 1 + NCE / H(Y)

(A, the query's label agreement: how much of the labels' entropy the best model's predicted
class explains), and reports mean tau_w / rel@1 per zoo for a grid of (a, c), per-task figures,
and the leave-one-zoo-out choice. The fused score is what the dock computes
(scoring::WeightedRankFusion): the weighted mean of each metric's rank divided by the number of
models.

Inputs: per-model metric values per task, from bench/select/study.py (grey zoos) or
bench/zoo_colour/evaluate.py (colour zoo).
Usage: nce_weight.py --zoo NAME=KIND:SCORES.json:TASKS.json [...] [--out FILE.json]
       KIND is `study` or `colour`.
"""
import argparse
import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import study  # noqa: E402

KEYS = {
    "study": {"logme": "brute_logme_pc32", "sh": "brute_shrinkage_hscore_pc32",
              "nce": "brute_nce", "leep": "brute_leep"},
    "colour": {"logme": "logme/pc32", "sh": "shrinkage_hscore/pc32", "nce": "nce",
               "leep": "leep"},
}
FLOORS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
MAX_WEIGHTS = (0.5, 1.0, 2.0, 3.0, 4.0)


def load(kind, scores_path, tasks_path):
    d = json.load(open(scores_path))
    num_classes = {t["name"]: t["num_classes"]
                   for t in json.load(open(tasks_path))["tasks"]}
    zoo = {}
    for t in d["tasks"]:
        entry = {k: np.array(d["scores"][v][t], dtype=float) for k, v in KEYS[kind].items()}
        entry["acc"] = np.array(d["accuracy"][t])
        entry["hy"] = math.log(num_classes[t])  # the tasks' train splits are class-balanced
        zoo[t] = entry
    return zoo


def normalised_ranks(v):
    return study.rank_within(np.nan_to_num(v, nan=-1e300)) / len(v)


def agreement(task):
    return float(np.clip(1 + np.nanmax(task["nce"]) / task["hy"], 0, 1))


def nce_weight(a, floor, max_weight):
    if max_weight == 0:
        return 0.0
    if floor is None:  # a constant weight, whatever the agreement
        return max_weight
    return max_weight * min(1.0, max(0.0, (a - floor) / (1 - floor)))


def fused(task, floor, max_weight):
    w = nce_weight(agreement(task), floor, max_weight)
    return (normalised_ranks(task["logme"]) + normalised_ranks(task["sh"]) +
            w * normalised_ranks(task["nce"])) / (2 + w)


def evaluate(zoo, floor, max_weight):
    taus = [study.tau_w(fused(t, floor, max_weight), t["acc"]) for t in zoo.values()]
    rels = [study.rel1(fused(t, floor, max_weight), t["acc"]) for t in zoo.values()]
    return float(np.mean(taus)), float(np.mean(rels))


def single(task, key):
    return np.nan_to_num(task[key], nan=-1e300)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", action="append", required=True)
    ap.add_argument("--out")
    args = ap.parse_args()
    zoos = {}
    for spec in args.zoo:
        name, rest = spec.split("=", 1)
        kind, scores_path, tasks_path = rest.split(":")
        zoos[name] = load(kind, scores_path, tasks_path)
    out = {"grid": {}, "per_task": {}, "leave_one_out": {}}
    for name, zoo in zoos.items():
        print(f"== {name}: {len(next(iter(zoo.values()))['acc'])} models, {len(zoo)} tasks")
        print(f"   {'task':22s} agree  default   nce  leep  rank(l,s,nce)")
        for tn, t in zoo.items():
            row = {"agreement": agreement(t),
                   "default": study.tau_w(fused(t, 1.0, 0.0), t["acc"]),
                   "nce": study.tau_w(single(t, "nce"), t["acc"]),
                   "leep": study.tau_w(single(t, "leep"), t["acc"]),
                   "equal3": study.tau_w((normalised_ranks(t["logme"]) + normalised_ranks(t["sh"])
                                          + normalised_ranks(t["nce"])) / 3, t["acc"])}
            out["per_task"].setdefault(name, {})[tn] = row
            print(f"   {tn:22s} {row['agreement']:.2f}  {row['default']:7.3f} {row['nce']:5.2f} "
                  f"{row['leep']:5.2f}  {row['equal3']:.3f}")
    print("\nmean tau_w / rel@1 per zoo; a = agreement floor, c = NCE's largest weight")
    print("   rule          " + "  ".join(f"{n:>13s}" for n in zoos))
    rules = [(1.0, 0.0)] + [(None, c) for c in MAX_WEIGHTS] + [
        (a, c) for a in FLOORS for c in MAX_WEIGHTS]
    for a, c in rules:
        label = _label((a, c))
        res = {n: evaluate(z, a, c) for n, z in zoos.items()}
        out["grid"][label] = res
        print(f"   {label:16s}" + "  ".join(f"  {t:.3f}/{r:.3f}" for t, r in res.values()))
    if len(zoos) > 1:
        print("\nleave-one-zoo-out: (a, c) with the best mean tau_w on the other zoos")
        for held in zoos:
            others = [n for n in zoos if n != held]
            best = max(rules, key=lambda r: np.mean([out["grid"][_label(r)][n][0] for n in others]))
            lab = _label(best)
            out["leave_one_out"][held] = {"chosen": lab, "on_held_out": out["grid"][lab][held]}
            print(f"   held out {held}: chosen {lab}; on {held}: tau_w {out['grid'][lab][held][0]:.3f}"
                  f" (default {out['grid']['default (no NCE)'][held][0]:.3f})")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(out, f, indent=1)


def _label(rule):
    a, c = rule
    if c == 0:
        return "default (no NCE)"
    return f"constant c={c:.1f}" if a is None else f"a={a:.1f} c={c:.1f}"


if __name__ == "__main__":
    main()
