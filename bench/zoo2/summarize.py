#!/usr/bin/python3
"""Summary of zoo2's ground truth: per task the spread of the best fine-tune accuracy over the
models, the best model, the shuffled/barely-trained models' standing, and how well the linear probe
and the source model's own match predict the fine-tune ranking.

    /usr/bin/python3 bench/zoo2/summarize.py [--gt bench/zoo2/results/ground_truth.json]
        [--zoo bench/zoo2/results/zoo.json] [--out bench/zoo2/results/summary.md]
"""
import argparse
import json
import os

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gt", default=os.path.join(HERE, "results", "ground_truth.json"))
    ap.add_argument("--zoo", default=os.path.join(HERE, "results", "zoo.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "results", "summary.md"))
    args = ap.parse_args()
    with open(args.gt) as f:
        gt = json.load(f)
    with open(args.zoo) as f:
        zoo = json.load(f)
    kind = {m["name"]: m["kind"] for m in zoo["models"]}
    names = gt["models"]
    poor = [n for n in names if kind[n] != "normal"]
    lines = [
        "# zoo2 ground truth: summary",
        "",
        f"{len(names)} models x {len(gt['tasks'])} tasks = {gt['num_pairs']} pairs; protocol "
        f"{gt['protocol_id']} ({gt['protocol']['finetune']['epochs']} epochs, lrs "
        f"{gt['protocol']['finetune']['learning_rates']}); best = max over the lrs. "
        f"Fine-tune wall time {gt['last_run_wall_seconds'] / 60:.1f} min with {gt['processes']} "
        f"process(es); per-pair times sum to {gt['pair_cpu_seconds_total'] / 60:.1f} min.",
        "",
        "Best fine-tune accuracy over the models (all models / the 36 normal ones), the best model, "
        "the best of the deliberately poor models, how often lr 1e-3 won, and weighted Kendall tau "
        "between linear-probe and fine-tune accuracy:",
        "",
        "| task | min | median | max | std | normal min | best model | best poor model | lr 1e-3 won | tau_w(lp, ft) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for task, rows in gt["tasks"].items():
        acc = np.array([rows[n]["best"] for n in names])
        lp = np.array([rows[n]["linear_probe"] for n in names])
        normal = np.array([rows[n]["best"] for n in names if kind[n] == "normal"])
        best = names[int(np.argmax(acc))]
        bp = max(poor, key=lambda n: rows[n]["best"])
        lr3 = np.mean([rows[n]["best_lr"] == "0.001" for n in names])
        tw = stats.weightedtau(lp, acc).correlation
        lines.append(f"| {task} | {acc.min():.3f} | {np.median(acc):.3f} | {acc.max():.3f} | "
                     f"{acc.std():.3f} | {normal.min():.3f} | {best} | {bp} {rows[bp]['best']:.3f} | "
                     f"{lr3:.0%} | {tw:.2f} |")
    with open(args.out, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
