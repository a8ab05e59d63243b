#!/usr/bin/python3
"""Rank, then tune (issue 27): is the tuned winner of the top K better than trusting the top-1?

    /usr/bin/python3 bench/tune/run_tune.py --zoo2-only                 # bench/zoo2, 8 tasks
    /usr/bin/python3 bench/tune/run_tune.py --zoo1-only --learn-tasks 7 # bench/zoo + learning
    /usr/bin/python3 bench/tune/run_tune.py --smoke                     # run_quality's smoke zoo

Starts modeldock-server on a fresh data dir (bench/quality/run_quality.py's Server, copies of the
binaries as bench/learning/run_learning.py makes them), registers every zoo model with the CLI,
then for every task's train split runs, through the CLI with --json,

    modeldock tune TRAIN --labels L --top K --seed S --budget-s K*P --out winner_K.pt

for K = 1, 3, 5 (in that order), each K its own run. dock/tuner.cc gives every candidate
budget / K of training time, so the budget is passed as K x P: every candidate of every run gets
the same P seconds, and with P far above what 10 epochs take, the budget never cuts a candidate
(checked: stop_reason is never "budget"), so a candidate's tune does not depend on K (checked:
the validation accuracies of candidates shared by two runs are compared).

Per task and K: the tuned winner (highest validation accuracy on the tune's own 20 % split of the
train split); whether it is the true best model by the zoo's fine-tune ground truth (`best` of
bench/zoo/finetune.py: 12 epochs, two learning rates, selected on the test split); the ground
truth accuracy of the winner and of the ranking's top-1; and the test-split accuracy of the
tuned winner's file itself (torch.jit.load, eval mode, argmax of forward), whose difference to
K = 1's is the accuracy gained by tuning K candidates instead of trusting the top-1.

With --learn-tasks N (issue 27's "what tunes do to the next recommendations"): the tasks are
split by a seeded permutation into N learning tasks and the rest. The learning tasks are tuned
first (3 tunes each, K = 1, 3, 5; each leaves outcome records of source `tune`); then
`modeldock train --wait`, and every other task is recommended (--top all; the default pipeline
and stage 1) with the trained version (`alignments use V`) and untrained (`alignments use 0`),
scored by weighted Kendall tau against the ground truth as bench/learning does (warm = models
with a tune record, cold = the others). Then `alignments use 0` and the other tasks are tuned,
so every tune of the benchmark ranks with the untrained version.

The server runs with --torch-threads 1 --worker-threads 1 and a latency budget large enough that
the default pipeline scores every compatible model (its choice of candidates is otherwise timed,
so the top-K would depend on the machine's load); OMP_NUM_THREADS=1. Writes
bench/tune/results/<zoo>.json and .md; the tuned files, raw responses and the server log go to
bench/tune/artifacts/ (not committed).
"""
import argparse
import hashlib
import json
import os
import shutil
import struct
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(REPO, "bench", "quality"))
sys.path.insert(0, os.path.join(REPO, "bench", "learning"))
import run_quality as rq  # noqa: E402
import run_learning as rl  # noqa: E402

KS = [1, 3, 5]
ART = os.path.join(HERE, "artifacts")
LATENCY_BUDGET_MS = 600000  # the default pipeline then scores every compatible model


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    _, _, ndim = struct.unpack(">HBB", raw[:4])
    dims = struct.unpack(">" + "I" * ndim, raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def test_accuracy(pt_path, zoo_dir, task):
    """Accuracy of a tuned TorchScript file on the task's test split: images / 255 as the CLI
    reads IDX, [N, 1, 28, 28], eval mode, argmax of forward(x) (the new head's logits; the task's
    labels are 0..C-1, which the dock keeps as class indices)."""
    import torch  # only here: the driver itself needs no torch otherwise
    torch.set_num_threads(1)
    x = read_idx(os.path.join(zoo_dir, task["test_images"])).astype(np.float32) / 255.0
    y = read_idx(os.path.join(zoo_dir, task["test_labels"])).astype(np.int64)
    model = torch.jit.load(pt_path, map_location="cpu")
    model.eval()
    pred = []
    with torch.no_grad():
        for i in range(0, len(x), 256):
            batch = torch.from_numpy(x[i:i + 256]).unsqueeze(1)
            pred.append(model(batch).argmax(1).numpy())
    return float((np.concatenate(pred) == y).mean())


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class Bench:
    def __init__(self, args, bins, zoo, art):
        self.args, self.bins, self.zoo, self.art = args, bins, zoo, art
        self.raw = []
        self.pos = {n: i for i, n in enumerate(zoo.names)}

    def cli(self, address, cli_args, tag):
        resp, wall = rq.cli(self.bins.client, address, cli_args, timeout=self.args.call_timeout)
        self.raw.append({"tag": tag, "args": cli_args, "wall_millis": round(wall, 1),
                         "response": resp})
        return resp, wall

    # ------------------------------------------------------------------ tunes of one task

    def tune_task(self, address, task_name, seed):
        zoo, args = self.zoo, self.args
        task = zoo.task_by_name[task_name]
        acc = zoo.acc[task_name]
        best_i = int(np.argmax(acc))
        runs = {}
        for k in KS:
            out = os.path.join(self.art, f"{task_name}-s{seed}-k{k}.pt")
            load0 = os.getloadavg()[0]
            resp, wall = self.cli(address, ["tune", *zoo.dataset_args(task_name), "--top", str(k),
                                            "--seed", str(seed),
                                            "--budget-s", f"{k * args.per_candidate_s:g}",
                                            "--max-epochs", str(args.max_epochs),
                                            "--patience", str(args.patience), "--out", out],
                                  f"tune/{task_name}/s{seed}/k{k}")
            load1 = os.getloadavg()[0]
            cands = resp["candidates"]
            winner = cands[resp["winner"]]
            wi = self.pos[winner["name"]]
            run = {
                "wall_seconds": round(wall / 1000.0, 2),
                "load_average_1min": [round(load0, 2), round(load1, 2)],
                "candidates": [{"name": c["name"], "predicted_rank": c["predicted_rank"],
                                "score": c["score"], "ok": c["ok"], "failure": c["failure"],
                                "val_accuracy": c["best_accuracy"], "best_epoch": c["best_epoch"],
                                "epochs_run": max(0, len(c["epochs"]) - 1),
                                "stop_reason": c["stop_reason"], "millis": c["millis"],
                                "ground_truth": float(acc[self.pos[c["name"]]])}
                               for c in cands],
                "winner": winner["name"], "winner_predicted_rank": winner["predicted_rank"],
                "winner_is_true_best": wi == best_i,
                "winner_ground_truth": float(acc[wi]),
                "winner_test_accuracy": test_accuracy(out, zoo.dir, task),
                "model_sha256": resp["model_sha256"], "file_sha256_matches": sha256(out) == resp["model_sha256"],
                "train_samples": resp["train_samples"], "val_samples": resp["val_samples"],
                "schedule": resp["schedule"], "recorded_outcomes": resp["recorded_outcomes"],
            }
            runs[k] = run
            _log(f"  {task_name:18s} s{seed} K={k}: winner {winner['name']} (rank {winner['predicted_rank']}), "
                 f"val {winner['best_accuracy']:.3f}, test {run['winner_test_accuracy']:.3f}, "
                 f"gt {run['winner_ground_truth']:.3f} (best {zoo.names[best_i]} {acc[best_i]:.3f}); "
                 f"{run['wall_seconds']:.1f} s, load {load0:.1f}")
        top1 = runs[1]["candidates"][0]["name"]
        row = {"task": task_name, "seed": seed, "true_best": zoo.names[best_i],
               "true_best_accuracy": float(acc[best_i]), "top1": top1,
               "top1_ground_truth": float(acc[self.pos[top1]]),
               "true_best_rank": None, "runs": {str(k): r for k, r in runs.items()}}
        ranking = [c["name"] for c in runs[5]["candidates"]]
        if zoo.names[best_i] in ranking:
            row["true_best_rank"] = ranking.index(zoo.names[best_i]) + 1
        row["checks"] = self.checks(runs)
        for k in KS[1:]:
            row[f"gain_test_k{k}"] = runs[k]["winner_test_accuracy"] - runs[1]["winner_test_accuracy"]
            row[f"gain_gt_k{k}"] = runs[k]["winner_ground_truth"] - runs[1]["winner_ground_truth"]
        for k in KS:  # the best the top K holds by the ground truth (a perfect selection)
            row[f"oracle_gt_k{k}"] = max(c["ground_truth"] for c in runs[5]["candidates"][:k])
        return row

    @staticmethod
    def checks(runs):
        """Did one run's candidate tune come out the same in another run (same model, same seed,
        same split), and did the budget ever cut a candidate?"""
        mismatch, compared = [], 0
        first = {}
        for k in KS:
            for c in runs[k]["candidates"]:
                if c["name"] in first:
                    compared += 1
                    if abs(first[c["name"]] - c["val_accuracy"]) > 1e-12:
                        mismatch.append(f"{c['name']} K={k}")
                else:
                    first[c["name"]] = c["val_accuracy"]
        tops = [[c["name"] for c in runs[k]["candidates"]] for k in KS]
        return {"same_ranking_prefix": all(t == tops[-1][:len(t)] for t in tops),
                "shared_candidates_compared": compared, "val_accuracy_mismatches": mismatch,
                "budget_stops": sum(c["stop_reason"] == "budget" for k in KS
                                    for c in runs[k]["candidates"]),
                "failed_candidates": sum(not c["ok"] for k in KS for c in runs[k]["candidates"]),
                "same_file_k3_k5": (runs[3]["model_sha256"] == runs[5]["model_sha256"]
                                    if runs[3]["winner"] == runs[5]["winner"] else None)}

    # ------------------------------------------------------------------ learning from tunes

    def learning(self, address, learn_tasks, test_tasks):
        zoo, n = self.zoo, len(self.zoo.names)
        records, _ = self.cli(address, ["records", "--limit", "10000"], "learn/records")
        recs = records.get("records", []) if isinstance(records, dict) else []
        by_source = {}
        for r in recs:
            by_source[r.get("source")] = by_source.get(r.get("source"), 0) + 1
        warm_names = {r.get("model") for r in recs if r.get("source") == "tune"}
        warm = [i for i, nm in enumerate(zoo.names) if nm in warm_names]
        cold = [i for i in range(n) if i not in set(warm)]
        out = {"learning_tasks": learn_tasks, "test_tasks": test_tasks,
               "records_by_source": by_source, "tuned_models": len(warm)}
        t0 = time.time()
        # run_learning's `train --wait` call and error parsing (its Runner's other state unused).
        runner = rl.Runner(self.args, self.bins, zoo, self.art)
        runner.raw = self.raw
        train, error = runner.train(address, "learn")
        out["train_wall_seconds"] = round(time.time() - t0, 1)
        version = None
        if error:
            out["train_error"] = error
        else:
            out["train"] = {k: train.get(k) for k in ("version", "adopted", "reason", "validation",
                                                       "state", "summary") if k in train}
            version = train.get("version")
        out["version"] = version
        out["adopted"] = bool((train or {}).get("adopted")) if version else False
        evals = {}
        for variant, v in ([("trained", version)] if version else []) + [("untrained", 0)]:
            self.cli(address, ["alignments", "use", str(v)], f"learn/use{v}")
            for task in test_tasks:
                for pipe in rl.PIPELINES:
                    resp, wall = self.cli(address, ["recommend", *zoo.dataset_args(task), "--top",
                                                    str(n), *rq.method_args(pipe, n)],
                                          f"learn/{variant}/{task}/{pipe}")
                    order, _, _ = rq.evaluate_response(pipe, resp, zoo.names)
                    evals[f"{variant}/{task}/{pipe}"] = {
                        **rl.measures(order, zoo.acc[task], warm, cold),
                        "alignment_version": resp.get("alignment_version"),
                        "wall_millis": round(wall, 1)}
        self.cli(address, ["alignments", "use", "0"], "learn/use0-after")
        out["evaluations"] = evals
        summary = {}
        for pipe in rl.PIPELINES:
            for variant in ("untrained", "trained"):
                rows = [evals.get(f"{variant}/{t}/{pipe}") for t in test_tasks]
                rows = [r for r in rows if r]
                if rows:
                    summary[f"{pipe}/{variant}"] = {m: rl._nanmean([r[m] for r in rows])
                                                    for m in rl.MEASURES}
        out["summary"] = summary
        return out

    # ------------------------------------------------------------------ the zoo

    def run(self):
        args, zoo = self.args, self.zoo
        names_t = [t["name"] for t in zoo.tasks]
        if args.tasks:
            names_t = [t for t in names_t if t in args.tasks.split(",")]
        learn, rest = [], names_t
        if args.learn_tasks:
            perm = np.random.default_rng([args.seed, 27]).permutation(len(names_t))
            learn = [names_t[i] for i in sorted(perm[:args.learn_tasks])]
            rest = [t for t in names_t if t not in learn]
        data = tempfile.mkdtemp(prefix="modeldock-tune-")
        t0 = time.time()
        server = rq.Server(self.bins.server, self.bins.assets, os.path.join(data, "data"),
                           os.path.join(self.art, "server.log"), self.bins.server_args)
        out = {"runs": {}, "order": learn + rest}
        try:
            reg = rq.register_zoo(self.bins.client, server.address, zoo.dir, zoo.names,
                                  args.register_timeout)
            out["registration"] = {"wall_seconds": reg["wall_seconds"], "failed": reg["failed"]}
            _log(f"{zoo.key}: {len(zoo.names)} models registered in {reg['wall_seconds']} s; "
                 f"failed {list(reg['failed']) or 'none'}")
            t_tune = time.time()
            # Seed 0 of the learning tasks first: the version is trained on 3 tunes per task.
            for task in learn:
                out["runs"][f"{task}/s{args.seeds[0]}"] = self.tune_task(server.address, task,
                                                                         args.seeds[0])
            if learn:
                out["learning"] = self.learning(server.address, learn, rest)
                s = out["learning"]["summary"]
                _log(f"{zoo.key}: learning from {3 * len(learn)} tunes: " + "; ".join(
                    f"{k} tau_w {v['tau_w']:.3f}" for k, v in s.items()))
            for task in learn + rest:
                for seed in args.seeds:
                    if f"{task}/s{seed}" not in out["runs"]:
                        out["runs"][f"{task}/s{seed}"] = self.tune_task(server.address, task, seed)
            out["tune_phase_wall_seconds"] = round(time.time() - t_tune, 1)
            out["server_peak_rss_kib"] = server.rss_kib()
        finally:
            server.stop()
            shutil.rmtree(data, ignore_errors=True)
        out["wall_minutes"] = round((time.time() - t0) / 60, 2)
        out["summary"] = summarize(out["runs"])
        return out


def summarize(runs_by_key):
    """Over all (task, seed) rows; gains also per task (mean over its seeds)."""
    rows = list(runs_by_key.values())
    s = {"num_rows": len(rows), "num_tasks": len({r["task"] for r in rows}),
         "seeds": sorted({r["seed"] for r in rows})}
    for k in KS:
        runs = [r["runs"][str(k)] for r in rows]
        s[f"k{k}"] = {
            "winner_is_true_best": sum(r["winner_is_true_best"] for r in runs),
            "true_best_in_top_k": sum(1 for r in rows if r["true_best_rank"] and r["true_best_rank"] <= k),
            "winner_differs_from_top1": sum(r["winner"] != rr["top1"] for r, rr in zip(runs, rows)),
            "mean_winner_ground_truth": float(np.mean([r["winner_ground_truth"] for r in runs])),
            "mean_oracle_ground_truth": float(np.mean([r[f"oracle_gt_k{k}"] for r in rows])),
            "mean_true_best_accuracy": float(np.mean([r["true_best_accuracy"] for r in rows])),
            "mean_winner_test_accuracy": float(np.mean([r["winner_test_accuracy"] for r in runs])),
            "mean_regret_ground_truth": float(np.mean([rr["true_best_accuracy"] - r["winner_ground_truth"]
                                                       for r, rr in zip(runs, rows)])),
            "wall_seconds_median": float(np.median([r["wall_seconds"] for r in runs])),
            "wall_seconds_mean": float(np.mean([r["wall_seconds"] for r in runs])),
            "candidate_seconds_mean": float(np.mean([c["millis"] / 1000.0 for r in runs
                                                     for c in r["candidates"]])),
            "epochs_run_mean": float(np.mean([c["epochs_run"] for r in runs for c in r["candidates"]])),
            "load_average_1min": [float(min(min(r["load_average_1min"]) for r in runs)),
                                  float(max(max(r["load_average_1min"]) for r in runs))],
        }
        if k > 1:
            g = [r[f"gain_test_k{k}"] for r in rows]
            s[f"k{k}"]["gain_test_mean"] = float(np.mean(g))
            s[f"k{k}"]["gain_test_sem"] = float(np.std(g, ddof=1) / np.sqrt(len(g))) if len(g) > 1 else None
            s[f"k{k}"]["gain_test_min_max"] = [float(min(g)), float(max(g))]
            s[f"k{k}"]["gain_test_positive_zero_negative"] = [sum(x > 1e-9 for x in g),
                                                              sum(abs(x) <= 1e-9 for x in g),
                                                              sum(x < -1e-9 for x in g)]
            s[f"k{k}"]["gain_ground_truth_mean"] = float(np.mean([r[f"gain_gt_k{k}"] for r in rows]))
    per_task = {}
    for r in rows:
        t = per_task.setdefault(r["task"], {"seeds": 0, **{f"gain_test_k{k}": 0.0 for k in KS[1:]},
                                            **{f"test_k{k}": 0.0 for k in KS}})
        t["seeds"] += 1
        for k in KS[1:]:
            t[f"gain_test_k{k}"] += r[f"gain_test_k{k}"]
        for k in KS:
            t[f"test_k{k}"] += r["runs"][str(k)]["winner_test_accuracy"]
    for t in per_task.values():
        for key in list(t):
            if key != "seeds":
                t[key] /= t["seeds"]
    s["per_task_mean_over_seeds"] = per_task
    s["checks"] = {
        "budget_stops": sum(r["checks"]["budget_stops"] for r in rows),
        "failed_candidates": sum(r["checks"]["failed_candidates"] for r in rows),
        "shared_candidates_compared": sum(r["checks"]["shared_candidates_compared"] for r in rows),
        "val_accuracy_mismatches": [f"{r['task']}/s{r['seed']}: {m}" for r in rows
                                    for m in r["checks"]["val_accuracy_mismatches"]],
        "rankings_agree": sum(r["checks"]["same_ranking_prefix"] for r in rows),
        "files_sha_ok": all(r["runs"][str(k)]["file_sha256_matches"] for r in rows for k in KS),
    }
    return s


def markdown(key, res):
    s = res["summary"]
    n = s["num_rows"]
    m = res["meta"]
    L = [f"# Rank, then tune on {key} ({s['num_tasks']} tasks x seeds {s['seeds']} = {n} rows, "
         f"{m['num_models']} models)", "",
         f"{m['date_utc']} UTC, commit {m['git_commit']}; {m['per_candidate_s']:g} s per candidate, "
         f"<= {m['max_epochs']} epochs, patience {m['patience']}; wall {res['wall_minutes']} min "
         f"(registration {res['registration']['wall_seconds']} s).", "",
         "| K | winner = true best | true best in top K | winner != top-1 | GT acc of winner | "
         "GT acc of best in top K | GT regret | test acc of tuned winner | gain over K=1 (test) "
         "| +/0/- | gain over K=1 (GT) | wall per tune (median) | load |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for k in KS:
        r = s[f"k{k}"]
        gain = (f"{r['gain_test_mean']:+.4f} +/- {r['gain_test_sem'] or 0:.4f} "
                f"[{r['gain_test_min_max'][0]:+.3f}, {r['gain_test_min_max'][1]:+.3f}]" if k > 1 else "-")
        pzn = "/".join(map(str, r["gain_test_positive_zero_negative"])) if k > 1 else "-"
        L.append(f"| {k} | {r['winner_is_true_best']}/{n} | {r['true_best_in_top_k']}/{n} | "
                 f"{r['winner_differs_from_top1']}/{n} | {r['mean_winner_ground_truth']:.3f} | "
                 f"{r['mean_oracle_ground_truth']:.3f} | {r['mean_regret_ground_truth']:.3f} | "
                 f"{r['mean_winner_test_accuracy']:.3f} | {gain} | {pzn} | "
                 f"{r.get('gain_ground_truth_mean', 0):+.3f} | {r['wall_seconds_median']:.1f} s | "
                 f"{r['load_average_1min'][0]:.1f}-{r['load_average_1min'][1]:.1f} |")
    L += ["", "Per task (winners and GT of the first seed; test accuracies and gains the mean over seeds):", "",
          "| task | true best (GT) | its rank | top-1 (GT) | K=3 winner (GT) | K=5 winner (GT) | "
          "test acc K=1 / 3 / 5 | gain K=3 / K=5 |", "|---|---|---|---|---|---|---|---|"]
    seen = set()
    for r in res["runs"].values():
        if r["task"] in seen:
            continue
        seen.add(r["task"])
        ru, pt = r["runs"], s["per_task_mean_over_seeds"][r["task"]]
        L.append(f"| {r['task']} | {r['true_best']} ({r['true_best_accuracy']:.3f}) | "
                 f"{r['true_best_rank'] or '>5'} | {r['top1']} ({r['top1_ground_truth']:.3f}) | "
                 f"{ru['3']['winner']} ({ru['3']['winner_ground_truth']:.3f}) | {ru['5']['winner']} "
                 f"({ru['5']['winner_ground_truth']:.3f}) | {pt['test_k1']:.3f} / {pt['test_k3']:.3f} / "
                 f"{pt['test_k5']:.3f} | {pt['gain_test_k3']:+.3f} / {pt['gain_test_k5']:+.3f} |")
    c = s["checks"]
    L += ["", f"Checks: {c['budget_stops']} candidates cut by the budget; {c['failed_candidates']} failed; "
          f"{c['shared_candidates_compared']} candidate tunes shared by two runs of one seed, "
          f"{len(c['val_accuracy_mismatches'])} with another validation accuracy; rankings of the "
          f"three runs agree on {c['rankings_agree']}/{n} rows; files match their SHA-256: {c['files_sha_ok']}."]
    if "learning" in res:
        lr = res["learning"]
        L += ["", f"Learning: {3 * len(lr['learning_tasks'])} tunes on {lr['learning_tasks']}; records "
              f"{lr['records_by_source']}; version {lr['version']} adopted {lr['adopted']}"
              f"{'; ' + lr['train_error'] if lr.get('train_error') else ''}. Tested on {lr['test_tasks']}.", "",
              "| pipeline / version | tau_w | rel@1 | tau_w warm | tau_w cold |", "|---|---|---|---|---|"]
        for key2, v in lr["summary"].items():
            L.append(f"| {key2} | {v['tau_w']:.3f} | {v['rel@1']:.3f} | {v['tau_w_warm']:.3f} | "
                     f"{v['tau_w_cold']:.3f} |")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--asset-dir", default=None)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--zoo1-only", action="store_true")
    g.add_argument("--zoo2-only", action="store_true")
    g.add_argument("--smoke", action="store_true")
    ap.add_argument("--zoo1", default=os.path.join(REPO, "bench", "zoo", "artifacts", "zoo"))
    ap.add_argument("--zoo2", default=os.path.join(REPO, "bench", "zoo2", "artifacts", "zoo2"))
    ap.add_argument("--tasks", default=None, help="comma-separated subset of the zoo's tasks")
    ap.add_argument("--per-candidate-s", type=float, default=60,
                    help="training seconds per candidate (--budget-s = K x this)")
    ap.add_argument("--max-epochs", type=int, default=10)
    ap.add_argument("--patience", type=int, default=3)
    ap.add_argument("--seeds", default="0,1,2",
                    help="tune seeds (split, heads, batch order); the ranking is the same for all")
    ap.add_argument("--learn-tasks", type=int, default=0,
                    help="tune this many tasks first, train, and measure the others' rankings")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--call-timeout", type=float, default=1800)
    ap.add_argument("--register-timeout", type=float, default=3600)
    args = ap.parse_args()
    args.seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    args.seed = args.seeds[0]  # the learning tasks' permutation
    os.environ["OMP_NUM_THREADS"] = "1"
    args.artifacts = ART  # run_learning.Runner's log dir
    specs = [("zoo1", args.zoo1, os.path.join(REPO, "bench", "zoo", "results", "ground_truth.json")),
             ("zoo2", args.zoo2, os.path.join(REPO, "bench", "zoo2", "results", "ground_truth.json"))]
    if args.smoke:
        smoke = os.path.join(REPO, "bench", "zoo", "artifacts", "zoo-smoke")
        gt = os.path.join(smoke, "ground_truth.json")
        rq.ensure_smoke_zoo(smoke, gt)
        specs = [("smoke", smoke, gt)]
        args.out_dir = os.path.join(ART, "smoke")
    elif args.zoo1_only:
        specs = specs[:1]
    elif args.zoo2_only:
        specs = specs[1:]
    zoos = [rl.Zoo(*s) for s in specs]
    os.makedirs(args.out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="modeldock-tunebench-")
    try:
        bins = rl.Binaries(os.path.abspath(args.build_dir), args.asset_dir, os.path.join(work, "bin"))
        bins.server_args += ["--torch-threads", "1", "--worker-threads", "1",
                             "--latency-budget-ms", str(LATENCY_BUDGET_MS)]
        for zoo in zoos:
            art = os.path.join(ART, zoo.key)
            os.makedirs(art, exist_ok=True)
            _log(f"{zoo.key}: {len(zoo.names)} models, {len(zoo.tasks)} tasks ({zoo.dir})")
            bench = Bench(args, bins, zoo, art)
            try:
                res = bench.run()
            finally:
                with open(os.path.join(art, "raw.json"), "w") as f:
                    json.dump(bench.raw, f)
            res["meta"] = {
                "date_utc": rq._now(), "git_commit": rq._git_head(),
                "git_modified": rl._git_modified(),
                "command": " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
                "zoo": os.path.relpath(zoo.dir, REPO) if zoo.dir.startswith(REPO) else zoo.dir,
                "ground_truth": os.path.relpath(zoo.gt_path, REPO),
                "ground_truth_field": "best fine-tune test accuracy (bench/zoo/finetune.py)",
                "num_models": len(zoo.names), "ks": KS, "seeds": args.seeds,
                "per_candidate_s": args.per_candidate_s, "max_epochs": args.max_epochs,
                "patience": args.patience, "server_args": bins.server_args,
                "omp_num_threads": 1, "binaries": bins.info,
                "machine": {"cpus": os.cpu_count(), "cpu": rq._cpu_model()}}
            with open(os.path.join(args.out_dir, f"{zoo.key}.json"), "w") as f:
                json.dump(rl._rounded(res), f, indent=1)
            md = markdown(zoo.key, res)
            with open(os.path.join(args.out_dir, f"{zoo.key}.md"), "w") as f:
                f.write(md)
            print(md, flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
