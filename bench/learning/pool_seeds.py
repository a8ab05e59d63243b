#!/usr/bin/python3
"""Pools cross-validation runs of run_learning.py made with different --seed values.

    /usr/bin/python3 bench/learning/pool_seeds.py DIR [DIR ...] > pooled.md

Each DIR holds a results.json of `run_learning.py --no-curve --seed S --out-dir DIR`. One seed
draws other folds and other cold models, so several seeds say more about whether a trained
version helps on unseen tasks than one split of 8-12 tasks can. Per zoo and pipeline: mean tau_w
of the untrained, trained (forced on) and served rankings over every (seed, test task) pair, the
paired differences, how many pairs got better / worse, and a Wilcoxon signed-rank p over the
pairs (the pairs share tasks across seeds, so p is optimistic: read it as a summary, not a test).
Also per zoo: versions adopted, and the shrinkage target each version chose. For a zoo extended
by make_more_tasks.py (`run_learning.py --more-tasks`), the same table again for the zoo's own
tasks and for the added ones (named x00_...).
"""
import json
import sys

from scipy.stats import wilcoxon


def main(dirs):
    runs = [json.load(open(f"{d}/results.json")) for d in dirs]
    seeds = [r["meta"]["seed"] for r in runs]
    print(f"Pooled over seeds {seeds} ({', '.join(dirs)}).\n")
    zoos = []  # every zoo of the runs, in the order they ran (zoo1, zoo2 or zoo1x, zoo2x, ...)
    for run in runs:
        zoos += [z for z in run["zoos"] if z not in zoos]
    for zoo in zoos:
        pairs = {}  # (pipeline, ranking) -> list of (task, tau_w) over (seed, task)
        adopted = versions = 0
        targets = {}
        for run in runs:
            if zoo not in run["zoos"]:
                continue
            for fold in run["zoos"][zoo]["cv"]:
                versions += 1
                adopted += bool(fold["adopted"])
                message = fold["train"].get("message", "")
                target = ("calibration line" if "stage-1 calibration" in message
                          else "facts" if "facts prediction" in message else "not named (older build)")
                targets[target] = targets.get(target, 0) + 1
                for task in fold["test_tasks"]:
                    for pipeline in ("stage1", "default"):
                        ev = fold["evaluations"]
                        untrained = ev[f"untrained/{task}/{pipeline}"]["measures"]["tau_w"]
                        trained = ev[f"trained/{task}/{pipeline}"]["measures"]["tau_w"]
                        served = trained if fold["adopted"] else untrained
                        for name, value in (("untrained", untrained), ("trained", trained),
                                            ("served", served)):
                            pairs.setdefault((pipeline, name), []).append((task, value))
        if not pairs:
            continue
        n = len(pairs[("stage1", "untrained")])
        print(f"## {zoo}: {n} (seed, test task) pairs; {adopted} of {versions} versions adopted; "
              f"target chosen: " + ", ".join(f"{k} {v}" for k, v in sorted(targets.items())) + "\n")
        table(pairs, lambda task: True)
        # Zoos extended by make_more_tasks.py: its tasks are named x00_..., the zoo's own not.
        if any(task.startswith("x") for task, _ in pairs[("stage1", "untrained")]):
            print("The zoo's own tasks only:\n")
            table(pairs, lambda task: not task.startswith("x"))
            print("The added tasks (make_more_tasks.py) only:\n")
            table(pairs, lambda task: task.startswith("x"))


def table(pairs, keep):
    print("| pipeline | untrained | trained | served | trained - untrained | better / worse "
          "| Wilcoxon p | served - untrained | better / worse |")
    print("|---|---|---|---|---|---|---|---|---|")
    for pipeline in ("stage1", "default"):
        u, t, s = ([v for task, v in pairs[(pipeline, name)] if keep(task)]
                   for name in ("untrained", "trained", "served"))
        dt = [a - b for a, b in zip(t, u)]
        ds = [a - b for a, b in zip(s, u)]
        nonzero = [d for d in dt if abs(d) > 1e-12]
        p = wilcoxon(nonzero).pvalue if len(nonzero) >= 2 else float("nan")
        mean = lambda v: sum(v) / len(v)
        count = lambda v: f"{sum(d > 1e-12 for d in v)} / {sum(d < -1e-12 for d in v)}"
        print(f"| {pipeline} | {mean(u):.3f} | {mean(t):.3f} | {mean(s):.3f} | "
              f"{mean(dt):+.4f} | {count(dt)} | {p:.3f} | {mean(ds):+.4f} | {count(ds)} |")
    print()


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
