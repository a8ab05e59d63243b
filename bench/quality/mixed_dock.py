#!/usr/bin/python3
"""A mixed dock: grey and colour models in one server, queries of each kind (issue 23, item 4).

    /usr/bin/python3 bench/quality/mixed_dock.py --build-dir build \
        --grey-zoo ART/zooA --colour-zoo ART/zoo_colour [--out bench/quality/mixed_dock]

Registers every model of a grey zoo (bench/zoo: 28x28 grey, the grey knowledge space) and of the
colour zoo (bench/zoo_colour: 32/64 px colour, colour-small) with one modeldock-server, then asks
each zoo's query tasks (train splits; tasks with complete fine-tune ground truth) for a full
ranking of the whole dock with stage 1 alone (--metric none) and the default pipeline. Every
model takes either kind of query (grey models see colour converted to grey, colour models see grey
repeated over three channels), so a query ranks all of them; the ground truth covers its own
zoo's models only. Reported per kind of query:
- tau_w and rel@1 of the ranking restricted to its own zoo's models (compare with the same zoo
  alone in a dock: bench/quality/run_quality.py),
- how many of the top 5 and top 10 are models of the other kind, and the rank of the first
  own-kind model. (Whether an other-kind model could transfer better is not known: no fine-tune
  ground truth crosses kinds; a grey clothing query answered with emoji models is read as noise.)
Writes OUT.json and OUT.md.
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from run_quality import Server, cli, ranking_measures, register_zoo  # noqa: E402

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))


def load_zoo(zoo, gt_path):
    with open(os.path.join(zoo, "zoo.json")) as f:
        names = [m["name"] for m in json.load(f)["models"]]
    with open(os.path.join(zoo, "tasks.json")) as f:
        tasks = json.load(f)["tasks"]
    with open(gt_path) as f:
        gt = json.load(f)["tasks"]
    tasks = [t for t in tasks if all(n in gt.get(t["name"], {}) for n in names)]
    acc = {t["name"]: np.array([gt[t["name"]][n]["best"] for n in names]) for t in tasks}
    return names, tasks, acc


def dataset_args(zoo, task):
    if "train_file" in task:
        return [os.path.join(zoo, task["train_file"])]
    return [os.path.join(zoo, task["train_images"]), "--labels",
            os.path.join(zoo, task["train_labels"])]


def measure(resp, own, other, acc):
    ranked = [r["name"] for r in sorted(resp["results"], key=lambda r: r["rank"])]
    pos = {n: i for i, n in enumerate(own)}
    order = [pos[n] for n in ranked if n in pos]
    order += [i for i in range(len(own)) if i not in order]
    m = ranking_measures(order, acc)
    others = set(other)
    first_own = next((i + 1 for i, n in enumerate(ranked) if n in pos), None)
    return {"tau_w": m["tau_w"], "rel@1": m["rel@1"],
            "other_in_top5": sum(n in others for n in ranked[:5]),
            "other_in_top10": sum(n in others for n in ranked[:10]),
            "first_own_rank": first_own, "num_ranked": len(ranked),
            "total_millis": resp.get("timings", {}).get("total_millis"),
            "num_scored": resp.get("num_scored"), "mode": resp.get("mode")}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--grey-zoo", required=True)
    ap.add_argument("--grey-gt", default=os.path.join(REPO, "bench/zoo/results/ground_truth.json"))
    ap.add_argument("--colour-zoo", required=True)
    ap.add_argument("--colour-gt",
                    default=os.path.join(REPO, "bench/zoo_colour/results/ground_truth.json"))
    ap.add_argument("--out", default=os.path.join(HERE, "mixed_dock"))
    args = ap.parse_args()
    zoos = {"grey": (args.grey_zoo, *load_zoo(args.grey_zoo, args.grey_gt)),
            "colour": (args.colour_zoo, *load_zoo(args.colour_zoo, args.colour_gt))}
    total = sum(len(z[1]) for z in zoos.values())
    server_bin = os.path.join(args.build_dir, "server", "modeldock-server")
    client_bin = os.path.join(args.build_dir, "client", "modeldock")
    tmp = tempfile.mkdtemp(prefix="modeldock-mixed-")
    server = Server(server_bin, os.path.join(args.build_dir, "assets"), os.path.join(tmp, "data"),
                    os.path.join(tmp, "server.log"))
    result = {"models": {k: len(z[1]) for k, z in zoos.items()}, "registration": {},
              "queries": {}}
    try:
        for kind, (zoo, names, _, _) in zoos.items():
            result["registration"][kind] = register_zoo(client_bin, server.address, zoo, names,
                                                        3600)
            print(f"registered {kind}: {result['registration'][kind]['wall_seconds']} s",
                  flush=True)
        for kind, (zoo, names, tasks, acc) in zoos.items():
            other = [n for k, z in zoos.items() if k != kind for n in z[1]]
            for task in tasks:
                for method, extra in (("stage1", ["--metric", "none"]), ("default", [])):
                    resp, _ = cli(client_bin, server.address,
                                  ["recommend", *dataset_args(zoo, task), "--top", str(total),
                                   *extra])
                    row = measure(resp, names, other, acc[task["name"]])
                    result["queries"].setdefault(kind, {}).setdefault(method, {})[
                        task["name"]] = row
                    print(f"{kind:6s} {task['name']:18s} {method:8s} " + json.dumps(row),
                          flush=True)
        result["server_peak_rss_kib"] = server.rss_kib()
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    write(args.out, result)


def write(out, result):
    with open(out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    lines = [f"Mixed dock: {result['models']} models; registration "
             f"{ {k: v['wall_seconds'] for k, v in result['registration'].items()} } s; "
             f"server peak RSS {result.get('server_peak_rss_kib')} KiB.", "",
             "| queries | method | tau_w (own zoo) | rel@1 | other kind in top 5 | in top 10 | "
             "first own-kind rank (mean) | median total ms |", "|---|---|---|---|---|---|---|---|"]
    for kind, methods in result["queries"].items():
        for method, rows in methods.items():
            v = list(rows.values())
            lines.append(
                f"| {kind} ({len(v)} tasks) | {method} | "
                f"{np.mean([r['tau_w'] for r in v]):.3f} | {np.mean([r['rel@1'] for r in v]):.3f} | "
                f"{np.mean([r['other_in_top5'] for r in v]):.2f} | "
                f"{np.mean([r['other_in_top10'] for r in v]):.2f} | "
                f"{np.mean([r['first_own_rank'] for r in v]):.2f} | "
                f"{np.median([r['total_millis'] or np.nan for r in v]):.0f} |")
    with open(out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
