#!/usr/bin/python3
"""Samples before models, served: the latency budget on queries of thousands of samples (issue 21).

    nice -n 10 env OPENBLAS_NUM_THREADS=1 /usr/bin/python3 bench/quality/budget_check.py \
        --build-dir /work/snap17/build --zoo /work/rot/zoo2 \
        [--tasks q_fm10_n20 ...] [--budgets 250 500 1000 2000 5000] [--per-class 300]

What: over the per-request latency budget (`modeldock recommend --budget-ms`) stage 2 scores
every model on a class-stratified half, quarter, ... of the query, down to max(64, 10 per class)
samples, and only below that floor keeps the stage-1 candidates that fit
(dock/stage2_budget.cc CandidatesWithinBudget; BENCHMARKS 2o). This script measures that through
a real server (started from BUILD_DIR with a fresh data dir, zoo registered with the CLI, as
bench/quality/run_quality.py does: its Server / cli / register_zoo / evaluate_response /
ranking_measures are imported) on queries large enough for the budget to bind.

Queries: for each chosen zoo2 task, PER_CLASS samples of each of its classes drawn the way
bench/zoo2/make_zoo2.py's make_task draws the task's splits (data.sample_fmnist from the t10k
split, then the task's shift), but from the union of the task's query-train and query-test
ranges (t10k indices 2000-9999; about 800 images per class), seeded per task; so a query holds
the task's own train and test images and others of the same classes and shift. Written as IDX
files under --query-dir.

Per query, in this order (the dock caches model outputs per (model, dataset)):
  1. for each budget, ascending: the default pipeline with --budget-ms B, cold (first call on the
     subset it picks; different budgets usually pick different subset sizes, hence different
     datasets; a call that reuses another's outputs shows output-cache hits) and warm (repeat);
  2. brute force (every model on every sample; cold, then warm);
  3. the old rule, optional (--old-rule): --candidates N with N = the models the budget affords
     at brute force's cold per-model cost (N = max(10, floor(M B / brute_cold_stage2_ms))); these run
     after brute force on cached outputs, so only their rankings are meaningful.
Each call records the server's total latency, num_scored, num_samples_scored, mode, mode_reason,
the timings, the output-cache hits/misses and the 1-minute load average; each ranking is compared
with brute force's on the same query (weighted Kendall tau of the two rank orders, top-1
agreement) and with the task's fine-tune ground truth (tau_w, rel@1: the ground truth was
measured for the task, not for the query's size).

Writes OUT/budget_check.json, OUT/budget_check.md and the server's log (--from-json J rewrites
J's markdown only). Time: the default (4 queries of 2,400-6,000 samples, 6 budgets, old rule) took
6 min on 2 shared cores at load 3 (registration 25-40 s; brute force 18-56 s per query).
"""
import argparse
import json
import os
import platform
import re
import shutil
import sys
import tempfile
import time

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "bench", "zoo2"))
sys.path.insert(0, os.path.join(REPO, "bench", "zoo"))
import run_quality as rq  # noqa: E402  (Server, cli, register_zoo, evaluate_response, ...)

DEFAULT_TASKS = ["q_fm10_n20", "q_fm10_noise_n30", "q_fm6_contrast_n25", "q_footbag_inv_n50"]
QUERY_RANGE = range(2000, 10000)  # data.FMNIST_QUERY_TRAIN + data.FMNIST_QUERY_TEST


def make_query(zoo_task, per_class, out_dir, seed):
    """IDX files of per_class images of each of the task's classes, with the task's shift."""
    import data  # bench/zoo/data.py
    import make_zoo2  # bench/zoo2/make_zoo2.py: shift_images, _key, CLASS_NAMES
    classes = [make_zoo2.CLASS_NAMES.index(c) for c in zoo_task["classes"]]
    name = zoo_task["name"]
    x, y = data.sample_fmnist("t10k", QUERY_RANGE, classes, per_class,
                              make_zoo2._key(seed, name, "budget-query"))
    x = make_zoo2.shift_images(x, zoo_task["shift"], make_zoo2._key(seed, name, "budget-shift"))
    perm = np.random.default_rng(make_zoo2._key(seed, name, "budget-order")).permutation(len(x))
    files = data.write_task_files(out_dir, f"{name}_big{per_class}", (x[perm], y[perm]),
                                  (x[:1], y[:1]))
    return ([os.path.join(out_dir, files["train_images"]), "--labels",
             os.path.join(out_dir, files["train_labels"])], len(x))


def rank_scores(order):
    s = np.empty(len(order))
    s[np.asarray(order)] = np.arange(len(order), 0, -1)
    return s


def summarize(resp, wall, names, acc, brute_order=None):
    order, _, missing = rq.evaluate_response("default", resp, names)
    t = resp.get("timings", {})
    row = {
        "total_ms": t.get("total_millis"), "wall_ms": round(wall, 1),
        "num_scored": resp.get("num_scored"), "num_samples_scored": resp.get("num_samples_scored"),
        "mode": resp.get("mode"), "mode_reason": resp.get("mode_reason"),
        "timings": t, "load1": resp.get("load1"), "missing": len(missing),
        "order": order,
    }
    for k in ("num_cached", "output_cache_hits", "output_cache_misses"):
        if k in resp:
            row[k] = resp[k]
    # The plan's estimate (the reason's last "(estimated X ms)") and the estimate of every model
    # on every sample ("would take an estimated X ms"), against stage 2's measured time.
    reason = resp.get("mode_reason") or ""
    est = re.findall(r"\(estimated (\d+) ms\)", reason)
    est_all = re.findall(r"would take an estimated (\d+) ms", reason)
    row["est_ms"] = float(est[-1]) if est else None
    row["est_all_ms"] = float(est_all[0]) if est_all else None
    m = rq.ranking_measures(order, acc)
    row["gt_tau_w"], row["gt_rel@1"] = m["tau_w"], m["rel@1"]
    if brute_order is not None:
        row["bf_tau_w"] = float(stats.weightedtau(rank_scores(order),
                                                  rank_scores(brute_order)).correlation)
        row["bf_top1"] = bool(order[0] == brute_order[0])
    return row


def run(args):
    with open(os.path.join(args.zoo, "tasks.json")) as f:
        zoo_tasks = {t["name"]: t for t in json.load(f)["tasks"]}
    with open(os.path.join(args.zoo, "zoo.json")) as f:
        names = [m["name"] for m in json.load(f)["models"]]
    with open(args.ground_truth) as f:
        gt = json.load(f)["tasks"]
    n = len(names)
    server_bin = os.path.join(args.build_dir, "server", "modeldock-server")
    client_bin = os.path.join(args.build_dir, "client", "modeldock")
    asset_dir = os.path.join(args.build_dir, "assets")
    queries = {}
    for name in args.tasks:
        queries[name] = make_query(zoo_tasks[name], args.per_class, args.query_dir, args.seed)
        print(f"query {name}: {queries[name][1]} samples", flush=True)
    tmp = tempfile.mkdtemp(prefix="modeldock-budget-")
    os.makedirs(args.out_dir, exist_ok=True)
    log_path = os.path.join(tmp, "server.log")
    server_args = ["--worker-binary", os.path.join(args.build_dir, "sandbox", "modeldock-worker"),
                   *args.server_arg]
    server = rq.Server(server_bin, asset_dir, os.path.join(tmp, "data"), log_path, server_args)
    out = {"meta": {"build_dir": args.build_dir, "zoo": args.zoo, "per_class": args.per_class,
                    "budgets_ms": args.budgets, "models": names, "host": platform.node(),
                    "cores": os.cpu_count(), "git_head": rq._git_head(),
                    "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
           "queries": {}}
    try:
        reg = rq.register_zoo(client_bin, server.address, args.zoo, names, 3600)
        out["registration"] = {"wall_seconds": reg["wall_seconds"], "failed": reg["failed"]}
        print(f"registered {n} models in {reg['wall_seconds']} s", flush=True)

        def call(dataset, extra):
            """(response, wall ms); the response gains the 1-minute load average at the call."""
            load = os.getloadavg()[0]
            resp, wall = rq.cli(client_bin, server.address, ["recommend", *dataset, "--top",
                                                              str(n), *extra])
            resp["load1"] = round(max(load, os.getloadavg()[0]), 2)
            return resp, wall

        for name, (dataset, num) in queries.items():
            rows = gt[name]
            acc = np.array([rows[m]["best"] for m in names])
            raw = {}
            for b in args.budgets:
                for phase in ("cold", "warm"):
                    raw[(b, phase)] = call(dataset, ["--budget-ms", f"{b:g}"])
            bf_cold = call(dataset, ["--brute-force"])
            bf_warm = call(dataset, ["--brute-force"])
            bf = summarize(*bf_cold, names, acc)
            brute_order = bf["order"]
            q = {"num_samples": num, "num_classes": zoo_tasks[name]["num_classes"],
                 "shift": zoo_tasks[name]["shift"], "budgets": [],
                 "brute_force": {"cold": summarize(*bf_cold, names, acc, brute_order),
                                 "warm": summarize(*bf_warm, names, acc, brute_order)}}
            for b in args.budgets:
                entry = {"budget_ms": b}
                for phase in ("cold", "warm"):
                    entry[phase] = summarize(*raw[(b, phase)], names, acc, brute_order)
                q["budgets"].append(entry)
            if args.old_rule:
                bf_ms = q["brute_force"]["cold"]["timings"]["stage2_millis"]
                for entry in q["budgets"]:
                    k = min(n, max(10, int(n * entry["budget_ms"] / bf_ms)))
                    entry["old_rule"] = {"candidates": k, **summarize(
                        *call(dataset, ["--candidates", str(k)]), names, acc, brute_order)}
            out["queries"][name] = q
            print_query(name, q)
        out["server_peak_rss_kib"] = server.rss_kib()
    finally:
        server.stop()
        shutil.copy(log_path, os.path.join(args.out_dir, "server.log"))
        shutil.rmtree(tmp, ignore_errors=True)
    out["meta"]["finished_utc"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    return out


def _f(x, d=3):
    return "-" if x is None else (f"{x:.{d}f}" if isinstance(x, float) else str(x))


def table_rows(q):
    lines = []
    for e in q["budgets"]:
        c, w = e["cold"], e["warm"]
        old = e.get("old_rule")
        lines.append(
            f"| {e['budget_ms']:g} | {_f(c['total_ms'], 0)} ({c['load1']}) | "
            f"{_f(c['timings'].get('stage2_millis'), 0)} / {_f(c['est_ms'], 0)} | "
            f"{_f(w['total_ms'], 0)} | {c['num_samples_scored']} / {w['num_samples_scored']} | "
            f"{c['num_scored']} | {_f(c['bf_tau_w'])} / {'y' if c['bf_top1'] else 'n'} | "
            f"{_f(c['gt_tau_w'])} / {_f(c['gt_rel@1'])} | "
            + (f"{old['candidates']}: {_f(old['bf_tau_w'])} / {_f(old['gt_tau_w'])} / "
               f"{_f(old['gt_rel@1'])} |" if old else "- |"))
    c, w = q["brute_force"]["cold"], q["brute_force"]["warm"]
    lines.append(f"| brute force | {_f(c['total_ms'], 0)} ({c['load1']}) | "
                 f"{_f(c['timings'].get('stage2_millis'), 0)} / - | {_f(w['total_ms'], 0)}"
                 f" | {c['num_samples_scored']} | {c['num_scored']} | 1 / y | "
                 f"{_f(c['gt_tau_w'])} / {_f(c['gt_rel@1'])} | - |")
    return lines


HEADER = ["| budget ms | cold total ms (load) | cold stage 2 ms / estimate | warm total ms | "
          "samples scored cold / warm | "
          "models scored | vs brute force tau_w / top-1 | vs ground truth tau_w / rel@1 | "
          "old rule N: vs BF tau_w / GT tau_w / rel@1 |",
          "|---|---|---|---|---|---|---|---|---|"]


def print_query(name, q):
    print(f"\n{name} ({q['num_samples']} samples, {q['num_classes']} classes)")
    print("\n".join(HEADER + table_rows(q)), flush=True)


def markdown(out):
    lines = [f"# Samples before models, served ({out['meta']['started_utc']})", "",
             f"Server and CLI from `{out['meta']['build_dir']}` "
             f"({out['meta'].get('binaries', '')}; script at "
             f"{out['meta']['git_head']}); "
             f"zoo `{out['meta']['zoo']}` ({len(out['meta']['models'])} models, registered in "
             f"{out['registration']['wall_seconds']} s). Generated by "
             "`bench/quality/budget_check.py`; total = the server's `timings.total_millis` (query "
             "encoding and stage 1 included; up to main 2484615 the budget covered stage 2's "
             "estimate only, since b6e4a45 the whole call); load = "
             "the larger 1-minute load average before and after the call (2 shared cores); "
             "estimate = the plan's estimated stage-2 ms from `mode_reason`; tau_w / top-1 "
             "against brute force's ranking of the same query; ground truth = the task's "
             "fine-tune accuracies (measured for the task, not for this query's size); old "
             "rule = `--candidates N` on every sample, run after brute force on cached "
             "outputs (ranking only).", ""]
    for name, q in out["queries"].items():
        lines += [f"## {name}: {q['num_samples']} samples, {q['num_classes']} classes, "
                  f"shift {q['shift']}", ""] + HEADER + table_rows(q) + [""]
        lines += ["mode_reason (cold):", ""]
        for e in q["budgets"]:
            lines.append(f"- {e['budget_ms']} ms: {e['cold']['mode_reason']}")
        lines.append("")
    return "\n".join(lines) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--zoo", default="/work/rot/zoo2")
    ap.add_argument("--ground-truth",
                    default=os.path.join(REPO, "bench", "zoo2", "results", "ground_truth.json"))
    ap.add_argument("--tasks", nargs="+", default=DEFAULT_TASKS)
    ap.add_argument("--per-class", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--budgets", nargs="+", type=float, default=[250, 500, 1000, 2000, 5000, 10000])
    ap.add_argument("--old-rule", action="store_true")
    ap.add_argument("--query-dir", default=os.path.join(tempfile.gettempdir(), "budget-queries"))
    ap.add_argument("--out-dir", default=os.path.join(HERE, "budget"))
    ap.add_argument("--server-arg", action="append", default=[])
    ap.add_argument("--binaries-note", default=None,
                    help="what the binaries were built from (recorded in the results)")
    ap.add_argument("--from-json", default=None,
                    help="only rewrite the markdown of an earlier budget_check.json")
    args = ap.parse_args()
    if args.from_json:
        with open(args.from_json) as f:
            out = json.load(f)
        with open(os.path.splitext(args.from_json)[0] + ".md", "w") as f:
            f.write(markdown(out))
        return
    out = run(args)
    if args.binaries_note:
        out["meta"]["binaries"] = args.binaries_note
    for q in out["queries"].values():
        for e in [*q["budgets"], *q["brute_force"].values()]:
            for r in (e.get("cold"), e.get("warm"), e.get("old_rule"), e):
                if isinstance(r, dict):
                    r.pop("order", None)
    with open(os.path.join(args.out_dir, "budget_check.json"), "w") as f:
        json.dump(out, f, indent=1)
    with open(os.path.join(args.out_dir, "budget_check.md"), "w") as f:
        f.write(markdown(out))
    print(f"wrote {args.out_dir}/budget_check.json and .md")


if __name__ == "__main__":
    main()
