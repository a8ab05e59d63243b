#!/usr/bin/python3
"""Ranking quality of modeldock, measured through its real API against fine-tune ground truth.

    /usr/bin/python3 bench/quality/run_quality.py [--build-dir /work/main/build]
    /usr/bin/python3 bench/quality/run_quality.py --smoke     # tiny zoo, builds it if missing
    /usr/bin/python3 bench/quality/run_quality.py --zoo bench/zoo_text/artifacts/zoo \
        --ground-truth bench/zoo_text/results/ground_truth.json \
        --out-dir bench/zoo_text/results/server --plot bench/zoo_text/results/server/scores.png

Zoos: grey (bench/zoo, zoo2, zoo3: IDX task files), colour (bench/zoo_colour: one .npz per split)
text (bench/zoo_text: one CSV per split with `text` and `label` columns; the models' sidecars
say task "text_classification" and give no input shape, so `modeldock register --metadata` files
them as text models and `modeldock recommend train.csv` sends the texts) and audio
(bench/zoo_audio: sidecars say task "audio_classification" with input_shape [16000]; a task with
a `train_dir` (one sub-folder of WAV files per class) is sent by `modeldock recommend DIR`, the
others (an .npz with samples [N, 16000] and labels) by the Python client's
`Client.recommend(clips, labels=..., audio=True)` from BUILD_DIR/python).

Starts modeldock-server on a free port with a fresh data dir, registers every zoo model with the
`modeldock` CLI (--json), waits until all are READY, then for every query task's train split asks
for a full ranking (--top = number of models) with:
  stage1            --metric none                       (stage 1 only: probe proxies)
  default           no options                          (the default pipeline: latency budget,
                                                        rank fusion of LogME + shrinkage H)
  two_stage_25      --candidates ceil(N/4)              stage 2 on a quarter of the models (fusion)
  two_stage_25_tmi  --candidates ceil(N/4) --metric tmi the same with TMI
  brute_<metric>    --brute-force --metric M            for every stage-2 metric and the fusion
and compares each ranking with the best fine-tune accuracy (bench/zoo/finetune.py): weighted
Kendall tau (scipy.stats.weightedtau defaults), Kendall tau, Pearson r, rel@1, rel@3, hit@3; plus
a seeded random ranking averaged over --random-seeds seeds. Writes results.json, results.md and a
plot of the default pipeline's scores against fine-tuned accuracy.

Ranking metrics use the order the server returned (ties broken by the server). Pearson r uses the
returned score over the models that carry one: all of them for stage 1 and brute force, the
stage-2-scored candidates for the two-stage pipeline (the others are ranked by similarity after
them and have no comparable score).
"""
import argparse
import datetime
import json
import os
import platform
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
ZOO_DIR = os.path.join(REPO, "bench", "zoo")
METRICS = ["fusion", "tmi", "logme", "leep", "nce", "hscore", "shrinkage_hscore", "gbc", "sfda"]
MEASURES = ["tau_w", "tau", "pearson", "rel@1", "rel@3", "hit@3"]
# Secondary: weighted tau against the linear-probe accuracy (frozen features).
ALL_MEASURES = MEASURES + ["tau_w_lp"]


# --------------------------------------------------------------------------- ranking measures

def ranking_measures(order, acc, scores=None):
    """order: model indices best-first (the ranking); acc: ground truth per model index;
    scores: optional {index: score} for Pearson r. Returns a dict of MEASURES."""
    acc = np.asarray(acc, dtype=np.float64)
    n = len(acc)
    rank_score = np.empty(n)
    rank_score[np.asarray(order)] = np.arange(n, 0, -1)  # best = n
    out = {}
    out["tau_w"] = float(stats.weightedtau(rank_score, acc).correlation)
    out["tau"] = float(stats.kendalltau(rank_score, acc).correlation)
    if scores and len(scores) >= 3:
        idx = sorted(scores)
        s = np.array([scores[i] for i in idx], dtype=np.float64)
        a = acc[idx]
        out["pearson"] = (float(stats.pearsonr(s, a)[0])
                          if np.std(s) > 0 and np.std(a) > 0 else float("nan"))
    else:
        out["pearson"] = float("nan")
    best = acc.max()
    for k in (1, 3):
        out[f"rel@{k}"] = float(acc[np.asarray(order[:k])].max() / best) if best > 0 else float("nan")
    third = np.sort(acc)[::-1][min(2, n - 1)]
    out["hit@3"] = float(acc[order[0]] >= third)  # ties with the 3rd best count as a hit
    return out


def mean_measures(per_task):
    out = {}
    for m in ALL_MEASURES:
        vals = [r[m] for r in per_task.values() if not np.isnan(r[m])]
        out[m] = float(np.mean(vals)) if vals else float("nan")
    return out


# --------------------------------------------------------------------------- server and CLI

class Server:
    """modeldock-server on 127.0.0.1:0 with a fresh data dir; stopped with SIGTERM."""

    def __init__(self, binary, asset_dir, data_dir, log_path, extra_args=()):
        self.log = open(log_path, "w")
        args = [binary, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                "--asset-dir", asset_dir, *extra_args]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        lines = queue.Queue()

        def pump():
            for line in self.proc.stdout:
                lines.put(line)
            lines.put(None)

        threading.Thread(target=pump, daemon=True).start()
        deadline = time.time() + 180
        self.address = None
        while time.time() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line is None:
                break
            if line.startswith("modeldock-server listening on "):
                self.address = line.split()[-1].strip()
                break
        if self.address is None:
            self.stop()
            raise RuntimeError(f"modeldock-server did not start; see {log_path}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()

    def rss_kib(self):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None


def cli(binary, address, args, timeout=1800):
    """Runs `modeldock --server ADDR --json ARGS`; returns (parsed JSON, wall milliseconds)."""
    cmd = [binary, "--server", address, "--json", "--timeout", str(timeout), *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 60)
    wall = (time.perf_counter() - t0) * 1000.0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return json.loads(proc.stdout), wall


def register_zoo(client, address, zoo, models, timeout_s):
    t0 = time.time()
    for name in models:
        cli(client, address, ["register", os.path.join(zoo, "models", f"{name}.pt"),
                              "--metadata", os.path.join(zoo, "models", f"{name}.json"),
                              "--no-wait"])
    # Poll until every model is READY or FAILED.
    while True:
        listing, _ = cli(client, address, ["list"])
        state = {m["name"]: m for m in listing["models"]}
        pending = [n for n in models if state.get(n, {}).get("state") not in ("READY", "FAILED")]
        if not pending:
            break
        if time.time() - t0 > timeout_s:
            raise RuntimeError(f"models still not probed after {timeout_s} s: {pending[:5]}...")
        time.sleep(2)
    wall = time.time() - t0
    probe = {n: state[n].get("probe_millis") for n in models}
    failed = {n: state[n].get("state_reason", "") for n in models if state[n]["state"] == "FAILED"}
    return {"wall_seconds": round(wall, 1), "probe_millis": probe, "failed": failed}


def python_client(build_dir, address):
    """The dock's Python client (BUILD_DIR/python: the package and its generated gRPC stubs)."""
    sys.path.insert(0, os.path.join(build_dir, "python"))
    import modeldock  # noqa: E402  (only needed for audio NPZ tasks)
    return modeldock.Client(address, timeout=1800)


def recommend_audio_npz(dock, path, n_models, method):
    """Client.recommend(clips, labels, audio=True) with `method`'s options, on an NPZ with
    samples float32 [N, T], labels (indices) and class_labels; returns (a dict in the CLI's
    --json layout for the fields this script reads, wall milliseconds). The Python client gives
    the server's total time only, not its per-stage timings or num_cached."""
    z = np.load(path)
    kwargs = {"top": n_models, "audio": True,
              "class_names": [str(c) for c in z["class_labels"]]}
    cli_args = method_args(method, n_models)
    if "--metric" in cli_args:
        kwargs["metric"] = cli_args[cli_args.index("--metric") + 1]
    if "--candidates" in cli_args:
        kwargs["candidates"] = int(cli_args[cli_args.index("--candidates") + 1])
    kwargs["brute_force"] = "--brute-force" in cli_args
    t0 = time.perf_counter()
    r = dock.recommend(np.ascontiguousarray(z["samples"], dtype=np.float32),
                       labels=z["labels"].astype(np.int64), **kwargs)
    wall = (time.perf_counter() - t0) * 1000.0
    resp = {"results": [{"rank": x.rank, "name": x.name, "score": x.score,
                         "similarity": x.similarity, "stage2_score": x.stage2_score,
                         "scored": x.scored} for x in r.results],
            "timings": {"total_millis": r.total_millis}, "num_scored": r.num_scored,
            "num_compatible": r.num_compatible, "num_cached": None, "mode": r.mode,
            "mode_reason": r.mode_reason, "label_source": r.label_source,
            "warnings": r.warnings, "client": "python"}
    return resp, wall


# --------------------------------------------------------------------------- the benchmark

def method_args(method, n_models):
    if method == "stage1":
        return ["--metric", "none"]
    if method == "default":
        return []
    if method.startswith("two_stage_25"):
        # Stage 2 limited to a quarter of the models (what large docks get by default).
        metric = method[len("two_stage_25"):].lstrip("_") or "fusion"
        return ["--metric", metric, "--candidates", str(-(-n_models // 4))]
    if method.startswith("two_stage_"):
        return ["--metric", method[len("two_stage_"):]]
    if method.startswith("brute_"):
        return ["--brute-force", "--metric", method[len("brute_"):]]
    raise ValueError(method)


def is_scored(resp, r):
    """The CLI JSON may omit `scored`; the stage-2-scored results are the first num_scored ranks."""
    if "scored" in r:
        return bool(r["scored"])
    return r["rank"] <= (resp.get("num_scored") or 0)


def evaluate_response(method, resp, names):
    """Ranking (indices best-first) and {index: score} from a recommend response. Stage 1 alone
    scores by similarity; otherwise only stage-2-scored results carry a score. Models missing from
    the response (e.g. skipped with a warning) are appended last in zoo order."""
    pos = {n: i for i, n in enumerate(names)}
    order, scores = [], {}
    for r in sorted(resp["results"], key=lambda r: r["rank"]):
        i = pos.get(r["name"])
        if i is None or i in order:
            continue
        order.append(i)
        if method == "stage1":
            scores[i] = float(r["similarity"])
        elif is_scored(resp, r):
            scores[i] = float(r["stage2_score"])
    missing = [i for i in range(len(names)) if i not in order]
    return order + missing, scores, missing


# Run order per task, which is also the table order. The dock caches model outputs per
# (model, dataset), so the order decides which call pays for running the models: stage1 runs none,
# default runs its candidates cold; the two_stage rows use the same stage-1 candidates (the
# candidate count does not depend on the metric), hence reuse those outputs; brute_tmi runs the
# remaining models and the later brute-force rows reuse everything.
METHODS = ["stage1", "default", "two_stage_25", "two_stage_25_tmi",
           *[f"brute_{m}" for m in METRICS]]


def collect(args, zoo, tasks, names):
    """Runs the server and every recommend call; returns (responses, registration, peak RSS)."""
    n = len(names)
    server_bin = os.path.join(args.build_dir, "server", "modeldock-server")
    client_bin = os.path.join(args.build_dir, "client", "modeldock")
    asset_dir = args.asset_dir or os.path.join(args.build_dir, "assets")
    for path in (server_bin, client_bin):
        if not os.access(path, os.X_OK):
            sys.exit(f"run_quality: {path} not found; build the server and CLI first")
    tmp = tempfile.mkdtemp(prefix="modeldock-quality-")
    log_path = os.path.join(os.path.dirname(os.path.abspath(args.raw)), "server.log")
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    print(f"starting {server_bin} (data dir {tmp}, log {log_path})", flush=True)
    server = Server(server_bin, asset_dir, os.path.join(tmp, "data"), log_path,
                    args.server_arg)
    # The dock caches model outputs per (model, dataset): the default pipeline runs right after
    # stage 1 so that its latency is measured with a cold cache; later rows reuse outputs.
    responses = {}
    try:
        reg = register_zoo(client_bin, server.address, zoo, names, args.register_timeout)
        print(f"registered {n} models in {reg['wall_seconds']} s; failed: {list(reg['failed'])}",
              flush=True)
        dock = None
        for task in tasks:
            if task.get("kind") == "audio" and "train_dir" not in task:
                # Audio NPZ (samples [N, 16000], labels): the CLI reads audio only as WAV class
                # folders, so these go through the Python client.
                dock = dock or python_client(args.build_dir, server.address)
            elif "train_dir" in task:  # audio zoo: a folder with one sub-folder of WAVs per class
                dataset = [os.path.join(zoo, task["train_dir"])]
            elif "train_file" in task:  # colour zoo: one .npz with x and y; text zoo: one CSV
                dataset = [os.path.join(zoo, task["train_file"])]
            else:
                dataset = [os.path.join(zoo, task["train_images"]), "--labels",
                           os.path.join(zoo, task["train_labels"])]
            for method in args.methods:
                if task.get("kind") == "audio" and "train_dir" not in task:
                    resp, wall = recommend_audio_npz(dock, os.path.join(zoo, task["train_file"]),
                                                     n, method)
                else:
                    resp, wall = cli(client_bin, server.address,
                                     ["recommend", *dataset, "--top", str(n),
                                      *method_args(method, n)])
                responses[(task["name"], method)] = (resp, wall)
                print(f"  {task['name']:16s} {method:26s} scored {resp.get('num_scored')}/"
                      f"{resp.get('num_compatible')} in {wall:7.0f} ms", flush=True)
        peak_rss = server.rss_kib()
    finally:
        server.stop()
        if not args.keep_data:
            shutil.rmtree(tmp, ignore_errors=True)
    binaries = {os.path.basename(b): {
        "path": b, "built_utc": datetime.datetime.fromtimestamp(
            os.path.getmtime(b), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
        "size_bytes": os.path.getsize(b)} for b in (server_bin, client_bin)}
    raw = {"date_utc": _now(), "git_commit": _git_head(), "build_dir": args.build_dir,
           "binaries": binaries,
           "models": names, "registration": reg, "server_peak_rss_kib": peak_rss,
           "responses": [{"task": t, "method": m, "wall_millis": w, "response": r}
                         for (t, m), (r, w) in responses.items()]}
    with open(args.raw, "w") as f:
        json.dump(raw, f)
    print(f"wrote {args.raw}", flush=True)
    return raw


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def run(args):
    zoo = os.path.abspath(args.zoo)
    with open(os.path.join(zoo, "zoo.json")) as f:
        zoo_meta = json.load(f)
    with open(os.path.join(zoo, "tasks.json")) as f:
        tasks = json.load(f)["tasks"]
    names = [m["name"] for m in zoo_meta["models"]]
    n = len(names)
    if not args.collect_only and not os.path.exists(args.ground_truth):
        sys.exit(f"run_quality: no ground truth at {args.ground_truth} (bench/zoo/finetune.py)")
    skipped = []
    if os.path.exists(args.ground_truth):
        # A task whose fine-tune ground truth is incomplete cannot be scored: left out, said.
        with open(args.ground_truth) as f:
            gt_tasks = json.load(f)["tasks"]
        skipped = [t["name"] for t in tasks if len(gt_tasks.get(t["name"], {})) < n]
        tasks = [t for t in tasks if t["name"] not in skipped]
        if skipped:
            print(f"run_quality: no complete ground truth for {skipped}: left out", flush=True)
    if args.from_raw:
        with open(args.from_raw) as f:
            raw = json.load(f)
        if raw["models"] != names:
            sys.exit(f"run_quality: {args.from_raw} was made with another zoo")
    else:
        raw = collect(args, zoo, tasks, names)
    if args.collect_only:
        return
    with open(args.ground_truth) as f:
        gt = json.load(f)
    responses = {(r["task"], r["method"]): (r["response"], r["wall_millis"]) for r in raw["responses"]}
    reg, peak_rss = raw["registration"], raw["server_peak_rss_kib"]
    methods = [m for m in METHODS if all((t["name"], m) in responses for t in tasks)]
    os.makedirs(args.out_dir, exist_ok=True)

    # Score every method on every task.
    results = {"methods": {}, "registration": reg, "server_peak_rss_kib": peak_rss}
    per_task_acc, per_task_lp = {}, {}
    for task in tasks:
        rows = gt["tasks"][task["name"]]
        per_task_acc[task["name"]] = np.array([rows[m]["best"] if m in rows else np.nan for m in names])
        per_task_lp[task["name"]] = np.array([rows[m]["linear_probe"] if m in rows else np.nan
                                              for m in names])
        if np.isnan(per_task_acc[task["name"]]).any():
            sys.exit(f"run_quality: ground truth incomplete for task {task['name']}")
    for method in methods:
        per_task, lat, scored, cached, warn, missing_all = {}, [], [], [], {}, {}
        recall = {1: [], 3: []}
        for task in tasks:
            resp, wall = responses[(task["name"], method)]
            order, scores, missing = evaluate_response(method, resp, names)
            if method != "stage1" and 0 < len(scores) < n:
                # Two-stage: which of the truly best models reached the stage-2 candidates.
                best_first = np.argsort(-per_task_acc[task["name"]], kind="stable")
                for k in recall:
                    recall[k].append(len(set(best_first[:k].tolist()) & set(scores)) / k)
            per_task[task["name"]] = ranking_measures(order, per_task_acc[task["name"]], scores)
            per_task[task["name"]]["tau_w_lp"] = ranking_measures(order, per_task_lp[task["name"]])["tau_w"]
            lat.append({"wall_millis": round(wall, 1), **resp.get("timings", {})})
            scored.append(resp.get("num_scored"))
            cached.append(resp.get("num_cached"))
            if resp.get("warnings"):
                warn[task["name"]] = resp["warnings"]
            if missing:
                missing_all[task["name"]] = [names[i] for i in missing]
        totals = [l.get("total_millis", np.nan) for l in lat]
        walls = [l["wall_millis"] for l in lat]
        results["methods"][method] = {
            "cli_args": method_args(method, n), "mean": mean_measures(per_task),
            "per_task": per_task,
            "num_scored": scored, "num_cached": cached, "latency_millis": lat,
            "median_total_millis": float(np.nanmedian(totals)),
            "median_wall_millis": float(np.median(walls)),
            "warnings": warn, "missing_models": missing_all,
        }
        if recall[1]:
            results["methods"][method]["candidate_recall"] = {
                f"top{k}": float(np.mean(v)) for k, v in recall.items()}
    # Random rankings, averaged over seeds.
    per_task = {}
    for task in tasks:
        acc = per_task_acc[task["name"]]
        draws = []
        for seed in range(args.random_seeds):
            rng = np.random.default_rng([seed, 12345])
            perm = list(rng.permutation(n))
            d = ranking_measures(perm, acc, {i: float(n - r) for r, i in enumerate(perm)})
            d["tau_w_lp"] = ranking_measures(perm, per_task_lp[task["name"]])["tau_w"]
            draws.append(d)
        per_task[task["name"]] = {m: float(np.mean([d[m] for d in draws])) for m in ALL_MEASURES}
    results["methods"]["random"] = {"mean": mean_measures(per_task), "per_task": per_task,
                                    "seeds": args.random_seeds}

    results["meta"] = {
        "date_utc": raw["date_utc"], "server_build_dir": raw["build_dir"],
        "binaries": raw.get("binaries"),
        "zoo": os.path.relpath(zoo, REPO), "num_models": n, "num_tasks": len(tasks),
        "tasks": [t["name"] for t in tasks], "tasks_left_out": skipped, "ground_truth": os.path.relpath(args.ground_truth, REPO),
        "ground_truth_field": "best fine-tune test accuracy",
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "cpu": _cpu_model()},
        "git_commit": raw["git_commit"],
    }
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out_dir, "results.md"), "w") as f:
        f.write(markdown(results, tasks, methods + ["random"]))
    if "default" in results["methods"]:  # the plot shows the default pipeline's scores
        plot(args.plot, tasks, names, zoo_meta, responses, per_task_acc,
             results["methods"]["default"]["per_task"])
    print(markdown(results, tasks, methods + ["random"]))
    print(f"wrote {args.out_dir}/results.json and results.md"
          + (f" and {args.plot}" if "default" in results["methods"] else ""))


def _cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _git_head():
    try:
        return subprocess.run(["git", "-C", REPO, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def _fmt(x, digits=3):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def markdown(results, tasks, methods):
    meta = results.get("meta", {})
    lines = [f"# Ranking quality ({meta.get('num_models')} models, {meta.get('num_tasks')} tasks)",
             "", f"Generated by bench/quality/run_quality.py on {meta.get('date_utc')} UTC "
             f"(repository HEAD {meta.get('git_commit')}; modeldock-server built "
             f"{((meta.get('binaries') or {}).get('modeldock-server') or {}).get('built_utc', '?')} "
             f"UTC). Ground truth: {meta.get('ground_truth_field')}.",
             "Means over tasks; `scored` = models scored in stage 2 per query (median); latency = "
             "server-side total of one recommend call (median over tasks). The dock caches model "
             "outputs per (model, dataset) and the calls run per task in the order of the table: "
             "stage1 runs no model; default starts cold and runs what it scores; the later rows "
             "reuse cached outputs, so their latencies are mostly scoring time (bench/speed "
             "measures cold latencies). Rank measures use the full returned order; Pearson r uses "
             "the returned score over the models that carry one (for `default` and the two_stage "
             "rows: only their stage-2 candidates). Random: mean of "
             f"{results['methods'].get('random', {}).get('seeds', '?')} seeded permutations.", "",
             "| method | tau_w | tau | Pearson r | rel@1 | rel@3 | hit@3 | scored | latency ms "
             "| tau_w vs linear probe |", "|---|---|---|---|---|---|---|---|---|---|"]
    for m in methods:
        r = results["methods"][m]
        mean = r["mean"]
        scored = (f"{int(np.median([s for s in r['num_scored'] if s is not None]))}"
                  if r.get("num_scored") and any(s is not None for s in r["num_scored"]) else "-")
        lat = _fmt(r.get("median_total_millis"), 0) if "median_total_millis" in r else "-"
        lines.append(f"| {m} | " + " | ".join(_fmt(mean[k]) for k in MEASURES) +
                     f" | {scored} | {lat} | {_fmt(mean['tau_w_lp'])} |")
    ms = results["methods"]
    if "default" in ms:
        sc = [x for x in ms["default"].get("num_scored", []) if x is not None]
        lines += ["", f"Default pipeline: tau_w {_fmt(ms['default']['mean']['tau_w'])}, rel@1 "
                  f"{_fmt(ms['default']['mean']['rel@1'])}; stage 2 scored "
                  f"{int(np.median(sc)) if sc else 'n/a'} of {meta.get('num_models')} models per "
                  f"query (median). Best method by tau_w: "
                  f"{max((m for m in methods if m != 'random'), key=lambda m: ms[m]['mean']['tau_w'])}."]
    pairs = [(mt, "two_stage_25" if mt == "fusion" else f"two_stage_25_{mt}", f"brute_{mt}")
             for mt in METRICS]
    pairs = [p for p in pairs if p[1] in ms and p[2] in ms]
    if pairs:
        lines += ["", "Two-stage (stage-1 candidates only) against brute force, same metric "
                  "(mean tau_w; rel@1):", "",
                  "| metric | two-stage tau_w | brute-force tau_w | difference | two-stage rel@1 "
                  "| brute-force rel@1 |", "|---|---|---|---|---|---|"]
        for mt, two, brute in pairs:
            a, b = ms[two]["mean"], ms[brute]["mean"]
            lines.append(f"| {mt} | {_fmt(a['tau_w'])} | {_fmt(b['tau_w'])} | "
                         f"{a['tau_w'] - b['tau_w']:+.3f} | {_fmt(a['rel@1'])} | {_fmt(b['rel@1'])} |")
        rec = ms.get("two_stage_25", {}).get("candidate_recall")
        if rec:
            lines += ["", f"The stage-2 candidates are the same for every metric (stage 1 picks them). "
                      f"They contain the model with the best fine-tuned accuracy in "
                      f"{_fmt(rec['top1'], 2)} of the tasks and {_fmt(rec['top3'], 2)} of the "
                      f"3 best models on average; everything outside them is ranked by stage-1 "
                      f"similarity, whatever the metric."]
    lines += ["", "Weighted Kendall tau per task:", "",
              "| task | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    for t in tasks:
        lines.append(f"| {t['name']} | " + " | ".join(
            _fmt(results["methods"][m]["per_task"][t["name"]]["tau_w"]) for m in methods) + " |")
    reg = results.get("registration")
    if reg:
        probe = [v for v in reg["probe_millis"].values() if v is not None]
        lines += ["", f"Registration of {len(reg['probe_millis'])} models: {reg['wall_seconds']} s "
                  f"wall; probe time per model median {_fmt(float(np.median(probe)), 0)} ms"
                  if probe else "", f"failed: {reg['failed'] or 'none'}"]
    return "\n".join(lines) + "\n"


def plot(path, tasks, names, zoo_meta, responses, per_task_acc, default_measures):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arch = {m["name"]: m["arch"] for m in zoo_meta["models"]}
    palette = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
               "tab:pink", "tab:olive", "tab:cyan"]
    archs = list(dict.fromkeys(m["arch"] for m in zoo_meta["models"]))  # zoo order
    colours = {a: palette[i % len(palette)] for i, a in enumerate(archs)}
    cols = min(4, len(tasks))
    rows = (len(tasks) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.4 * rows), squeeze=False)
    for ax, task in zip(axes.flat, tasks):
        resp, _ = responses[(task["name"], "default")]
        acc = per_task_acc[task["name"]]
        pos = {n: i for i, n in enumerate(names)}
        scored = [(r["name"], r["stage2_score"]) for r in resp["results"] if is_scored(resp, r)]
        unscored = [r["name"] for r in resp["results"] if not is_scored(resp, r)]
        xs = [s for _, s in scored]
        for name, s in scored:
            ax.scatter(s, acc[pos[name]], s=22, color=colours.get(arch.get(name), "k"),
                       edgecolor="k", linewidth=0.3, zorder=3)
        if unscored and xs:
            # Models outside the stage-2 candidates have no score: a grey strip at the left.
            span = (max(xs) - min(xs)) or max(abs(xs[0]), 1.0)
            x0 = min(xs) - 0.12 * span
            ax.scatter([x0] * len(unscored), [acc[pos[n]] for n in unscored], s=12,
                       facecolor="none", edgecolor="0.6", zorder=2)
            ax.axvline(x0 + 0.06 * span, color="0.85", lw=0.8)
        ax.ticklabel_format(axis="x", useOffset=False)
        m = default_measures[task["name"]]
        ax.set_title(f"{task['name']}  tau_w={m['tau_w']:.2f} rel@1={m['rel@1']:.2f}", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    for ax in axes[:, 0]:
        ax.set_ylabel("fine-tuned accuracy", fontsize=8)
    for ax in axes[-1, :]:
        ax.set_xlabel("default pipeline score (stage 2)", fontsize=8)
    handles = [plt.Line2D([], [], marker="o", ls="", color=c, label=a) for a, c in colours.items()]
    handles.append(plt.Line2D([], [], marker="o", ls="", mfc="none", mec="0.6",
                              label="not a stage-2 candidate"))
    fig.legend(handles=handles, loc="lower center", ncol=5, fontsize=8, frameon=False)
    fig.suptitle("modeldock default pipeline: score vs fine-tuned accuracy, per query task")
    fig.tight_layout(rect=(0, 0.04, 1, 0.97))
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def ensure_smoke_zoo(zoo, gt):
    """Builds the smoke zoo and its ground truth if missing (one command for CI)."""
    py = sys.executable
    if not os.path.exists(os.path.join(zoo, "zoo.json")):
        subprocess.run([py, os.path.join(ZOO_DIR, "make_zoo.py"), "--out", zoo, "--seed", "0",
                        "--smoke"], check=True)
    if not os.path.exists(gt):
        subprocess.run([py, os.path.join(ZOO_DIR, "finetune.py"), "--zoo", zoo, "--out", gt,
                        "--epochs", "5"], check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--asset-dir", default=None, help="default BUILD_DIR/assets")
    ap.add_argument("--smoke", action="store_true",
                    help="smoke zoo (bench/zoo/artifacts/zoo-smoke), outputs under artifacts/")
    ap.add_argument("--zoo", default=None)
    ap.add_argument("--ground-truth", default=None)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--plot", default=None,
                    help="the default pipeline's scores against fine-tuned accuracy (default: "
                         "OUT_DIR/quality_scores.png with --out-dir, else docs/img/)")
    ap.add_argument("--raw", default=None,
                    help="every raw CLI response (default under bench/zoo/artifacts/, not committed)")
    ap.add_argument("--collect-only", action="store_true",
                    help="only run the server and save the raw responses (no ground truth needed)")
    ap.add_argument("--from-raw", default=None,
                    help="evaluate saved raw responses instead of running the server")
    ap.add_argument("--random-seeds", type=int, default=20)
    ap.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS,
                    help="the rankings to ask for (default: all)")
    ap.add_argument("--register-timeout", type=float, default=3600)
    ap.add_argument("--keep-data", action="store_true", help="keep the server's temporary data dir")
    ap.add_argument("--server-arg", action="append", default=[],
                    help="passed to modeldock-server, e.g. --server-arg=--probe-budget-s=600 "
                         "(so that the box's load does not cut probing)")
    args = ap.parse_args()
    art = os.path.join(ZOO_DIR, "artifacts")
    if args.smoke:
        args.zoo = args.zoo or os.path.join(art, "zoo-smoke")
        args.ground_truth = args.ground_truth or os.path.join(art, "zoo-smoke", "ground_truth.json")
        args.out_dir = args.out_dir or os.path.join(art, "quality-smoke")
        args.plot = args.plot or os.path.join(args.out_dir, "quality_scores.png")
        args.raw = args.raw or os.path.join(args.out_dir, "responses.json")
        ensure_smoke_zoo(args.zoo, args.ground_truth)
    else:
        args.zoo = args.zoo or os.path.join(art, "zoo")
        args.ground_truth = args.ground_truth or os.path.join(ZOO_DIR, "results", "ground_truth.json")
        # The committed figure is the default run's only: a run into its own --out-dir plots
        # there too.
        default_plot = (os.path.join(args.out_dir, "quality_scores.png") if args.out_dir
                        else os.path.join(REPO, "docs", "img", "quality_scores.png"))
        args.out_dir = args.out_dir or HERE
        args.plot = args.plot or default_plot
        args.raw = args.raw or os.path.join(art, "quality", "responses.json")
    args.build_dir = os.path.abspath(args.build_dir)
    run(args)


if __name__ == "__main__":
    main()
