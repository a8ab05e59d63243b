#!/usr/bin/python3
"""Adds seeded query tasks to a benchmark zoo, for the learning benchmark's "more records" study.

    /usr/bin/python3 bench/learning/make_more_tasks.py --zoo zoo2 --count 16 \
        --out bench/learning/artifacts/zoo2x
    /usr/bin/python3 bench/zoo/finetune.py --zoo bench/learning/artifacts/zoo2x --jobs 2 \
        --out bench/learning/artifacts/zoo2x/ground_truth.json

bench/zoo has 12 tasks and zoo2 8, so a cross-validation fold trains on 9 or 6 reported tasks: a
model's prior is a mean over a handful of tasks. A dock in use sees many more. This script builds
OUT as the source zoo plus COUNT new tasks drawn from a seed (class subsets, domain shifts, small
data budgets: cheap to fine-tune on), made with the zoo's own make_task (same data partition, same
file layout). OUT/models and the original task folders are symbolic links into the source zoo;
OUT/finetune.jsonl starts with the source zoo's ground truth (same protocol id), so finetune.py
only runs the new (model, task) pairs. The source zoo is not modified.
"""
import argparse
import json
import os
import shutil
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
ZOOS = {  # key -> (artifact dir, ground truth, folder of its make_zoo script)
    "zoo1": ("bench/zoo/artifacts/zoo", "bench/zoo/results/ground_truth.json", "bench/zoo"),
    "zoo2": ("bench/zoo2/artifacts/zoo2", "bench/zoo2/results/ground_truth.json", "bench/zoo2"),
}
SHIFTS = [None, None, "inv", "rot90", "blur", "noise"]  # clean twice as often as each shift
BUDGETS = [10, 15, 20]                                   # labelled train images per class


def draw_specs(key, count, seed, data):
    """`count` task specs in the zoo's own spec format, from `seed`."""
    rng = np.random.default_rng([seed, int(key[-1])])
    specs, names = [], set()
    while len(specs) < count:
        n_train = int(rng.choice(BUDGETS))
        glyphs = key == "zoo1" and rng.random() < 0.4
        if glyphs:
            pool = list(rng.choice([data.DIGITS, data.UPPER, data.LOWER]))
            k = int(rng.integers(4, min(10, len(pool)) + 1))
            classes = "".join(sorted(rng.choice(pool, k, replace=False)))
            shift = rng.choice([None, None, "inv", "blur", "noise"])
            label = f"gl{k}"
        else:
            k = int(rng.integers(3, 11))
            classes = sorted(int(c) for c in rng.choice(10, k, replace=False))
            shifts = SHIFTS + (["contrast"] if key == "zoo2" else [])
            shift = shifts[int(rng.integers(len(shifts)))]
            label = f"fm{k}"
        name = f"x{len(specs):02d}_{label}{'_' + shift if shift else ''}_n{n_train}"
        if name in names:
            continue
        names.add(name)
        if key == "zoo1":
            specs.append((name, "glyphs" if glyphs else "fmnist", classes, shift, n_train, 30))
        else:
            specs.append((name, classes, shift, n_train, 50))
    return specs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", choices=sorted(ZOOS), required=True)
    ap.add_argument("--count", type=int, default=16, help="new tasks")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    src_rel, gt_rel, script_dir = ZOOS[args.zoo]
    src, out = os.path.join(REPO, src_rel), os.path.abspath(args.out)
    sys.path.insert(0, os.path.join(REPO, "bench", "zoo"))  # data.py
    sys.path.insert(0, os.path.join(REPO, script_dir))
    import data
    make = __import__("make_zoo" if args.zoo == "zoo1" else "make_zoo2")

    with open(os.path.join(src, "tasks.json")) as f:
        src_tasks = json.load(f)
    os.makedirs(os.path.join(out, "tasks"), exist_ok=True)
    if not os.path.exists(os.path.join(out, "models")):
        os.symlink(os.path.join(src, "models"), os.path.join(out, "models"))
    shutil.copyfile(os.path.join(src, "zoo.json"), os.path.join(out, "zoo.json"))
    for t in src_tasks["tasks"]:
        link = os.path.join(out, "tasks", t["name"])
        if not os.path.exists(link):
            os.symlink(os.path.join(src, "tasks", t["name"]), link)

    specs = draw_specs(args.zoo, args.count, args.seed, data)
    if args.zoo == "zoo1":
        fonts = data.split_fonts(src_tasks["seed"])
        new = [make.make_task(out, src_tasks["seed"], s, fonts) for s in specs]
    else:
        new = [make.make_task(out, src_tasks["seed"], s) for s in specs]
    with open(os.path.join(out, "tasks.json"), "w") as f:
        json.dump({**src_tasks, "extra_tasks_seed": args.seed,
                   "tasks": src_tasks["tasks"] + new}, f, indent=1)

    # The source zoo's pairs, as finetune.py's cache (it skips pairs already in it).
    with open(os.path.join(REPO, gt_rel)) as f:
        gt = json.load(f)
    jsonl = os.path.join(out, "finetune.jsonl")
    if not os.path.exists(jsonl):
        with open(jsonl, "w") as f:
            for task, rows in gt["tasks"].items():
                for model, r in rows.items():
                    f.write(json.dumps({"model": model, "task": task, "protocol": gt["protocol_id"],
                                        **r, "seconds": 0}) + "\n")
    for t in new:
        print(f"{t['name']}: {t['num_classes']} classes {t['classes']}, shift {t['shift']}, "
              f"{t['num_train']} train / {t['num_test']} test images")
    print(f"{out}: {len(src_tasks['tasks'])} + {len(new)} tasks")


if __name__ == "__main__":
    main()
