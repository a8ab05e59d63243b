#!/usr/bin/python3
"""Does a trained alignment version improve modeldock's rankings on tasks it never saw?

    /usr/bin/python3 bench/learning/run_learning.py [--build-dir build] [--zoo1-only|--zoo2-only]
    /usr/bin/python3 bench/learning/run_learning.py --smoke     # smoke zoo of run_quality, 2 folds

For each zoo (zoo1 = bench/zoo, zoo2 = bench/zoo2) the script registers every model once in a
fresh data dir (the template; run_quality's helpers), then runs every experiment on its own copy
of that dir, so no experiment sees another's records. One experiment:
  1. `modeldock report TRAIN_SPLIT --labels L --outcomes CSV --source import` for every training
     task, CSV = `model,accuracy` with the ground truth of the quality benchmark (best fine-tune
     accuracy) for every model except the held-out "cold" ones (~25 %, seeded; never reported);
  2. `modeldock train --wait` (the version's validation figures and `adopted` are kept);
  3. on every test task, `recommend --top N` with `--metric none` (stage 1) and with the default
     options, once with the trained version serving (`alignments use V`, also when it was not
     adopted) and once with `alignments use 0` (untrained);
  4. weighted Kendall tau (scipy.stats.weightedtau, as run_quality) and rel@1 of each ranking,
     over all models and restricted to the warm (reported) and cold (never reported) models.
Experiments: cross-validation over tasks (--folds, tasks split by a seeded permutation; each task
is tested once) and a learning curve (1, 2, 4, 8 reported tasks while fewer than the zoo's,
--curve-reps seeded draws each, tested on all remaining tasks).

"served" in the tables is what a user would get: the trained version where it was adopted, the
untrained ranking otherwise. "prior only" ranks the trained responses by their `prior` alone.

Writes results.json and results.md (bench/learning/, or bench/learning/artifacts/smoke/ with
--smoke); every raw CLI response and the servers' logs go to bench/learning/artifacts/ (not
committed). The binaries and assets are copied out of --build-dir first, so a rebuild during the
run cannot swap them.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.dont_write_bytecode = True  # no __pycache__ in bench/quality
sys.path.insert(0, os.path.join(REPO, "bench", "quality"))
import run_quality as rq  # noqa: E402

ART = os.path.join(HERE, "artifacts")
PIPELINES = ["stage1", "default"]          # run_quality method names (rq.method_args)
VARIANTS = ["untrained", "trained"]        # measured; "served" is derived
MEASURES = ["tau_w", "rel@1", "tau_w_warm", "rel@1_warm", "tau_w_cold", "rel@1_cold"]
LEARNING_COMMANDS = ["report", "records", "train", "alignments"]


def _log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --------------------------------------------------------------------------- binaries

class Binaries:
    """Copies of the server, the CLI, the worker and the assets (a rebuild cannot swap them)."""

    def __init__(self, build_dir, asset_dir, dest):
        src = {"server": os.path.join(build_dir, "server", "modeldock-server"),
               "client": os.path.join(build_dir, "client", "modeldock")}
        for cand in (os.path.join(build_dir, "sandbox", "modeldock-worker"),
                     os.path.join(build_dir, "server", "modeldock-worker")):
            if os.access(cand, os.X_OK):
                src["worker"] = cand
                break
        for key in ("server", "client"):
            if not os.access(src[key], os.X_OK):
                sys.exit(f"run_learning: {src[key]} not found; build the server and CLI first")
        self.info = {}
        for key, path in src.items():
            os.makedirs(os.path.join(dest, key), exist_ok=True)
            copy = os.path.join(dest, key, os.path.basename(path))
            shutil.copy2(path, copy)
            setattr(self, key, copy)
            self.info[os.path.basename(path)] = {
                "path": path, "size_bytes": os.path.getsize(path),
                "built_utc": datetime.datetime.fromtimestamp(
                    os.path.getmtime(path), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")}
        self.assets = os.path.join(dest, "assets")
        shutil.copytree(asset_dir or os.path.join(build_dir, "assets"), self.assets)
        # The server's default worker is the build tree's; point it at the copy.
        self.server_args = (["--worker-binary", self.worker] if hasattr(self, "worker") else [])
        self.help = subprocess.run([self.client, "--help"], capture_output=True, text=True).stdout

    def has_commands(self, names):
        sub = self.help.split("Subcommands:", 1)[-1]
        words = {line.split()[0] for line in sub.splitlines() if line.strip()}
        return [n for n in names if n not in words]


# --------------------------------------------------------------------------- measures

def subset_measures(order, acc, subset):
    """tau_w and rel@1 of the ranking restricted to the model indices in `subset`."""
    subset = sorted(subset)
    if len(subset) < 2:
        return {"tau_w": float("nan"), "rel@1": float("nan")}
    local = {i: k for k, i in enumerate(subset)}
    sub_order = [local[i] for i in order if i in local]
    m = rq.ranking_measures(sub_order, np.asarray(acc)[subset])
    return {"tau_w": m["tau_w"], "rel@1": m["rel@1"]}


def measures(order, acc, warm, cold):
    m = rq.ranking_measures(order, acc)
    out = {"tau_w": m["tau_w"], "rel@1": m["rel@1"], "tau": m["tau"], "rel@3": m["rel@3"]}
    for label, subset in (("warm", warm), ("cold", cold)):
        s = subset_measures(order, acc, subset)
        out[f"tau_w_{label}"], out[f"rel@1_{label}"] = s["tau_w"], s["rel@1"]
    return out


def _nanmean(values):
    v = [x for x in values if x is not None and not np.isnan(x)]
    return float(np.mean(v)) if v else float("nan")


def _nanstd(values):
    v = [x for x in values if x is not None and not np.isnan(x)]
    return float(np.std(v)) if len(v) > 1 else float("nan")


# --------------------------------------------------------------------------- one zoo

class Zoo:
    def __init__(self, key, zoo_dir, gt_path):
        self.key, self.dir, self.gt_path = key, os.path.abspath(zoo_dir), os.path.abspath(gt_path)
        for p in (os.path.join(self.dir, "zoo.json"), os.path.join(self.dir, "tasks.json"),
                  self.gt_path):
            if not os.path.exists(p):
                sys.exit(f"run_learning: {p} missing (see bench/README.md, bench/zoo2/README.md, "
                         "bench/learning/make_more_tasks.py)")
        with open(os.path.join(self.dir, "zoo.json")) as f:
            self.names = [m["name"] for m in json.load(f)["models"]]
        with open(os.path.join(self.dir, "tasks.json")) as f:
            self.tasks = json.load(f)["tasks"]
        with open(self.gt_path) as f:
            gt = json.load(f)["tasks"]
        self.acc = {}
        for t in self.tasks:
            rows = gt.get(t["name"], {})
            a = np.array([rows[m]["best"] if m in rows else np.nan for m in self.names])
            if np.isnan(a).any():
                sys.exit(f"run_learning: ground truth incomplete for {key} task {t['name']}")
            self.acc[t["name"]] = a
        self.task_by_name = {t["name"]: t for t in self.tasks}

    def dataset_args(self, task_name):
        """The train split, exactly as run_quality passes it to recommend."""
        t = self.task_by_name[task_name]
        return [os.path.join(self.dir, t["train_images"]), "--labels",
                os.path.join(self.dir, t["train_labels"])]


class Runner:
    def __init__(self, args, bins, zoo, work):
        self.args, self.bins, self.zoo, self.work = args, bins, zoo, work
        self.log_dir = os.path.join(args.artifacts, "logs", zoo.key)
        os.makedirs(self.log_dir, exist_ok=True)
        self.template = os.path.join(work, zoo.key, "template")
        self.raw = []           # every CLI response, to artifacts/raw_<zoo>.json
        self.warnings = set()   # spec mismatches seen (e.g. a missing field)

    def cli(self, address, cli_args, exp):
        resp, wall = rq.cli(self.bins.client, address, cli_args, timeout=self.args.call_timeout)
        self.raw.append({"experiment": exp, "args": cli_args, "wall_millis": round(wall, 1),
                         "response": resp})
        return resp, wall

    def train(self, address, exp):
        """`train --wait`: (JSON or None, error or None). A failed training may still print its
        JSON (state "failed") on stdout, exit status 1."""
        cmd = [self.bins.client, "--server", address, "--json", "--timeout",
               str(self.args.call_timeout), "train", "--wait"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=self.args.call_timeout + 60)
        wall = (time.perf_counter() - t0) * 1000.0
        try:
            resp = json.loads(proc.stdout)
        except ValueError:
            resp = None
        self.raw.append({"experiment": exp, "args": ["train", "--wait"], "wall_millis": round(wall, 1),
                         "returncode": proc.returncode, "response": resp, "stderr": proc.stderr})
        error = None
        if proc.returncode != 0 or not isinstance(resp, dict) or resp.get("state") == "failed":
            error = ((resp or {}).get("reason") or (resp or {}).get("message") or proc.stderr.strip()
                     or f"exit status {proc.returncode}")
            error = re.sub(r"\s*\(request r-[^)]*\)", "", error).strip()[-400:]
        return resp, error

    def start(self, data_dir, name):
        return rq.Server(self.bins.server, self.bins.assets, data_dir,
                         os.path.join(self.log_dir, f"{name}.log"), self.bins.server_args)

    def wait_ready(self, address, exp, timeout=600):
        t0 = time.time()
        while True:
            listing, _ = rq.cli(self.bins.client, address, ["list"])
            state = {m["name"]: m.get("state") for m in listing["models"]}
            pending = [n for n in self.zoo.names if state.get(n) not in ("READY", "FAILED")]
            if not pending:
                return [n for n in self.zoo.names if state.get(n) == "FAILED"]
            if time.time() - t0 > timeout:
                raise RuntimeError(f"{exp}: models not READY after {timeout} s: {pending[:5]}")
            time.sleep(1)

    def make_template(self):
        os.makedirs(os.path.dirname(self.template), exist_ok=True)
        _log(f"{self.zoo.key}: registering {len(self.zoo.names)} models into the template data dir")
        server = self.start(self.template, "template")
        try:
            reg = rq.register_zoo(self.bins.client, server.address, self.zoo.dir, self.zoo.names,
                                  self.args.register_timeout)
        finally:
            server.stop()
        _log(f"{self.zoo.key}: registered in {reg['wall_seconds']} s; failed: {list(reg['failed']) or 'none'}")
        return reg

    # ----------------------------------------------------------------- one experiment

    def experiment(self, name, train_tasks, test_tasks, cold):
        zoo, args = self.zoo, self.args
        n = len(zoo.names)
        cold_set = set(cold)
        warm = [i for i in range(n) if zoo.names[i] not in cold_set]
        cold_idx = [i for i in range(n) if zoo.names[i] in cold_set]
        data = os.path.join(self.work, zoo.key, name)
        shutil.copytree(self.template, data)
        t0 = time.time()
        exp = {"name": name, "train_tasks": list(train_tasks), "test_tasks": list(test_tasks),
               "cold_models": sorted(cold), "reports": [], "evaluations": {}}
        server = self.start(data, name)
        try:
            addr = server.address
            exp["failed_models"] = self.wait_ready(addr, name)
            version = None
            if not args.no_learning:
                for task in train_tasks:
                    csv_path = os.path.join(self.work, zoo.key, f"{name}-{task}.csv")
                    acc = zoo.acc[task]
                    with open(csv_path, "w") as f:
                        for i in warm:
                            f.write(f"{zoo.names[i]},{acc[i]:.6g}\n")
                    resp, wall = self.cli(addr, ["report", *zoo.dataset_args(task), "--outcomes",
                                                 csv_path, "--source", "import"], name)
                    exp["reports"].append({"task": task, "outcomes": len(warm),
                                           "wall_millis": round(wall, 1)})
                records, _ = self.cli(addr, ["records", "--limit", "10000"], name)
                # Reported outcomes only: the reports' stage-2 standings (source stage2) land in
                # the background.
                exp["num_records"] = _count_records(records, skip_source="stage2")
                expected = len(warm) * len(train_tasks)
                if exp["num_records"] is not None and exp["num_records"] != expected:
                    self.warnings.add(f"`records` listed {exp['num_records']} outcomes after "
                                      f"{expected} were reported ({zoo.key} {name})")
                if args.weak:
                    # What every labelled recommendation leaves when the operator allows it.
                    exp["weak_recorded"] = 0
                    for task in train_tasks:
                        resp, _ = self.cli(addr, ["recommend", *zoo.dataset_args(task), "--top",
                                                  str(n)], f"{name}/weak/{task}")
                        exp["weak_recorded"] += int((resp or {}).get("recorded_outcomes", 0))
                t1 = time.time()
                train, error = self.train(addr, name)
                exp["train_wall_seconds"] = round(time.time() - t1, 1)
                if error:  # e.g. FAILED_PRECONDITION: too few usable tasks
                    exp["train_error"] = error
                    if train:
                        exp["train_failed_response"] = train
                else:
                    exp["train"] = train
                    version = train.get("version")
                    if not isinstance(version, int) or version <= 0:
                        self.warnings.add(f"`train --wait --json` gave version {version!r}")
                        version = None
                self.cli(addr, ["alignments"], name)  # kept in the raw file only
            exp["version"] = version
            exp["adopted"] = bool(exp.get("train", {}).get("adopted")) if version else False
            variants = ([("trained", version)] if version else []) + [("untrained", 0)]
            for variant, v in variants:
                if not args.no_learning:
                    self.cli(addr, ["alignments", "use", str(v)], name)
                for task in test_tasks:
                    for pipe in PIPELINES:
                        resp, wall = self.cli(addr, ["recommend", *zoo.dataset_args(task), "--top",
                                                     str(n), *rq.method_args(pipe, n)],
                                              f"{name}/{variant}/{task}/{pipe}")
                        exp["evaluations"][f"{variant}/{task}/{pipe}"] = self.evaluate(
                            resp, wall, pipe, variant, v, task, warm, cold_idx)
        finally:
            server.stop()
            if not args.keep_data:
                shutil.rmtree(data, ignore_errors=True)
        exp["wall_seconds"] = round(time.time() - t0, 1)
        return exp

    def evaluate(self, resp, wall, pipe, variant, version, task, warm, cold_idx):
        zoo = self.zoo
        acc = zoo.acc[task]
        order, _, missing = rq.evaluate_response(pipe, resp, zoo.names)
        got = resp.get("alignment_version")
        if got is None and not self.args.no_learning:
            self.warnings.add("recommend --json has no top-level `alignment_version`")
        elif got is not None and got != version:
            self.warnings.add(f"recommend served alignment_version {got} after "
                              f"`alignments use {version}`")
        ev = {"measures": measures(order, acc, warm, cold_idx), "wall_millis": round(wall, 1),
              "alignment_version": got, "num_scored": resp.get("num_scored"),
              "total_millis": (resp.get("timings") or {}).get("total_millis")}
        if missing:
            ev["missing_models"] = [zoo.names[i] for i in missing]
        if resp.get("warnings"):
            ev["warnings"] = resp["warnings"]
        if variant == "trained":
            pos = {nm: i for i, nm in enumerate(zoo.names)}
            prior = {pos[r["name"]]: r["prior"] for r in resp["results"]
                     if r.get("name") in pos and isinstance(r.get("prior"), (int, float))}
            if len(prior) < len(zoo.names):
                self.warnings.add("recommend results lack `prior` for some or all models")
            if prior:
                # Ties (e.g. equal priors) keep the server's order.
                rank = {i: k for k, i in enumerate(order)}
                p_order = sorted(prior, key=lambda i: (-prior[i], rank[i]))
                p_order += [i for i in order if i not in prior]
                ev["prior_only"] = measures(p_order, acc, warm, cold_idx)
        return ev

    # ----------------------------------------------------------------- the two studies

    def cross_validation(self):
        args, zoo = self.args, self.zoo
        names_t = [t["name"] for t in zoo.tasks]
        folds = min(args.folds, len(names_t))
        perm = np.random.default_rng([args.seed, 1]).permutation(len(names_t))
        out = []
        for f, test_idx in enumerate(np.array_split(perm, folds)):
            test = [names_t[i] for i in sorted(test_idx)]
            train = [t for t in names_t if t not in test]
            cold = self.draw_cold([args.seed, 2, f])
            _log(f"{zoo.key} fold {f + 1}/{folds}: {len(train)} training tasks, test {test}, "
                 f"{len(cold)} cold models")
            exp = self.experiment(f"cv{f}", train, test, cold)
            exp["fold"] = f
            _log(f"{zoo.key} fold {f + 1}: {_train_summary(exp)}; {exp['wall_seconds']} s")
            out.append(exp)
        return out

    def learning_curve(self):
        args, zoo = self.args, self.zoo
        names_t = [t["name"] for t in zoo.tasks]
        sizes = [k for k in args.curve_sizes if k < len(names_t)]
        out = []
        for k in sizes:
            for rep in range(args.curve_reps):
                rng = np.random.default_rng([args.seed, 3, k, rep])
                train = [names_t[i] for i in sorted(rng.choice(len(names_t), k, replace=False))]
                test = [t for t in names_t if t not in train]
                cold = self.draw_cold([args.seed, 4, k, rep])
                _log(f"{zoo.key} curve {k} task(s), rep {rep + 1}/{args.curve_reps}: train {train}")
                exp = self.experiment(f"lc{k}r{rep}", train, test, cold)
                exp["num_train_tasks"], exp["rep"] = k, rep
                _log(f"{zoo.key} curve {k}/{rep + 1}: {_train_summary(exp)}; {exp['wall_seconds']} s")
                out.append(exp)
        return out

    def draw_cold(self, seed):
        n = len(self.zoo.names)
        k = 0
        if self.args.cold_fraction > 0:  # at least one cold model, at least two warm ones
            k = min(n - 2, max(1, int(round(self.args.cold_fraction * n))))
        rng = np.random.default_rng(seed)
        return sorted(self.zoo.names[i] for i in rng.choice(n, k, replace=False))


def _count_records(resp, skip_source=None):
    if skip_source and isinstance(resp, dict) and isinstance(resp.get("records"), list):
        return sum(1 for r in resp["records"] if r.get("source") != skip_source)
    if isinstance(resp, list):
        return len(resp)
    if isinstance(resp, dict):
        if isinstance(resp.get("total_records"), int):  # the listing may be limited
            return resp["total_records"]
        for key in ("records", "outcomes"):
            if isinstance(resp.get(key), list):
                return len(resp[key])
        lists = [v for v in resp.values() if isinstance(v, list)]
        if len(lists) == 1:
            return len(lists[0])
    return None


def _train_summary(exp):
    if exp.get("train"):
        t = exp["train"]
        return f"version {t.get('version')} adopted={t.get('adopted')} ({t.get('reason', '')})"
    if exp.get("train_error"):
        return f"no version: {exp['train_error']}"
    return "no training (--no-learning)"


# --------------------------------------------------------------------------- summaries

def _variant_eval(exp, variant, task, pipe):
    """The evaluation a variant got; "served" = trained where adopted, else untrained."""
    if variant == "served":
        variant = "trained" if exp.get("adopted") else "untrained"
    if variant == "prior_only":
        ev = exp["evaluations"].get(f"trained/{task}/{pipe}")
        return ev and ev.get("prior_only")
    ev = exp["evaluations"].get(f"{variant}/{task}/{pipe}")
    return ev and ev["measures"]


def summarize_cv(folds):
    """Means over all test tasks (each tested once) per pipeline and variant, and paired
    trained-untrained differences per task."""
    out = {}
    for pipe in PIPELINES:
        out[pipe] = {}
        for variant in VARIANTS + ["served", "prior_only"]:
            rows = [_variant_eval(e, variant, t, pipe) for e in folds for t in e["test_tasks"]]
            rows = [r for r in rows if r]
            out[pipe][variant] = ({m: _nanmean([r[m] for r in rows]) for m in MEASURES}
                                  if rows else None)
            if rows:
                out[pipe][variant]["tasks"] = len(rows)
        for variant in ("trained", "served"):
            diffs = {}
            for m in ("tau_w", "rel@1", "tau_w_warm", "tau_w_cold"):
                d = []
                for e in folds:
                    for t in e["test_tasks"]:
                        a = _variant_eval(e, variant, t, pipe)
                        b = _variant_eval(e, "untrained", t, pipe)
                        if a and b and not (np.isnan(a[m]) or np.isnan(b[m])):
                            d.append(a[m] - b[m])
                diffs[m] = {"mean": _nanmean(d), "better": sum(x > 1e-9 for x in d),
                            "worse": sum(x < -1e-9 for x in d), "tasks": len(d)}
                if m == "tau_w" and len(d) >= 5 and any(abs(x) > 1e-12 for x in d):
                    diffs[m]["wilcoxon_p"] = float(stats.wilcoxon(d).pvalue)
            out[pipe][f"{variant}_minus_untrained"] = diffs
    return out


def summarize_curve(exps):
    out = []
    for k in sorted({e["num_train_tasks"] for e in exps}):
        group = [e for e in exps if e["num_train_tasks"] == k]
        row = {"num_train_tasks": k, "reps": len(group),
               "trained_versions": sum(1 for e in group if e.get("version")),
               "adopted": sum(1 for e in group if e.get("adopted")),
               "train_errors": sorted({e["train_error"] for e in group if e.get("train_error")}),
               "test_tasks_per_rep": len(group[0]["test_tasks"])}
        for pipe in PIPELINES:
            row[pipe] = {}
            for variant in VARIANTS + ["served"]:
                per_rep = []
                for e in group:
                    rows = [_variant_eval(e, variant, t, pipe) for t in e["test_tasks"]]
                    rows = [r for r in rows if r]
                    if rows:
                        per_rep.append({m: _nanmean([r[m] for r in rows]) for m in MEASURES})
                row[pipe][variant] = ({m: _nanmean([r[m] for r in per_rep]) for m in MEASURES} |
                                      {f"{m}_std": _nanstd([r[m] for r in per_rep])
                                       for m in ("tau_w", "rel@1")} | {"reps": len(per_rep)}
                                      if per_rep else None)
        out.append(row)
    return out


# Columns of the versions table: these first (when the train JSON has them), then any other
# number or flag of the version; its *reason fields are listed under the table.
VERSION_FIELDS = ["num_queries", "folds", "validation_untrained", "validation_trained", "weight",
                  "shrinkage", "sharpness", "training_seconds"]
VERSION_SKIP = {"version", "adopted", "serving", "created", "num_records", "validation_serving"}


def _version_json(train):
    """The version's fields: `result` of `train --wait --json` (else its top level)."""
    train = train or {}
    return train["result"] if isinstance(train.get("result"), dict) else train


def _version_fields(train):
    return {k: v for k, v in _version_json(train).items()
            if k not in VERSION_SKIP and isinstance(v, (bool, int, float))}


def _version_reasons(train):
    return {k: v for k, v in _version_json(train).items()
            if k.endswith("reason") and isinstance(v, str) and v}


# --------------------------------------------------------------------------- markdown

def _f(x, d=3):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{d}f}"


def _sd(x, d=3):
    return "" if x is None or (isinstance(x, float) and np.isnan(x)) else f" ± {x:.{d}f}"


def markdown(res):
    meta = res["meta"]
    server = (meta["binaries"] or {}).get("modeldock-server", {})
    L = ["# Learning from reported outcomes: does a trained alignment version rank unseen tasks better?",
         "",
         f"Generated by bench/learning/run_learning.py on {meta['date_utc']} UTC (repository HEAD "
         f"{meta['git_commit']}" + (f" with {len(meta['git_modified'])} modified tracked files"
                                    if meta.get("git_modified") else "") +
         f"; modeldock-server built {server.get('built_utc', '?')} UTC) on "
         f"{meta['machine']['cpus']} CPUs ({meta['machine']['cpu']}); command: `{meta['command']}`; "
         f"wall {meta['wall_minutes']:.1f} min.",
         "",
         "Protocol: every experiment runs a server on its own copy of a data dir in which every "
         "zoo model was registered once. The training tasks' train splits are reported with "
         "`modeldock report ... --outcomes CSV --source import`, where the accuracy is the quality "
         "benchmark's ground truth (best fine-tune test accuracy), for every model except "
         f"{meta['cold_fraction']:.0%} held-out *cold* models (seeded, never reported). Then "
         "`train --wait`, and every test task's train split is ranked in full (`--top N`) by "
         "stage 1 (`--metric none`) and by the default pipeline, with the trained version "
         "serving (`alignments use V`, also when it was not adopted) and untrained "
         "(`alignments use 0`). tau_w = weighted Kendall tau (scipy.stats.weightedtau), rel@1 = "
         "fine-tuned accuracy of the top model / the best one; *warm*/*cold*: the same measures "
         "on the ranking restricted to the reported / never-reported models. *served* = trained "
         "where the version was adopted, untrained otherwise (what a user gets); *prior only* = "
         "the trained responses re-sorted by their `prior` field alone." +
         (" **Weak records (`--weak`)**: the servers run with `--learn-from-recommendations` and "
          "every training task is also recommended (default pipeline) before `train`, so the "
          "stage-2 standings of every scored model, cold ones included, are weak records."
          if meta.get("weak") else ""),
         ""]
    for key, z in res["zoos"].items():
        if "cv" not in z:
            continue
        cvs = z["cv_summary"]
        L += [f"## {key}: {z['num_models']} models, {z['num_tasks']} tasks ({z['zoo']})", "",
              f"Cross-validation over tasks: {len(z['cv'])} folds, every task tested once "
              f"(means over the {z['num_tasks']} test tasks).", "",
              "| pipeline | ranking | tau_w | rel@1 | tau_w warm | rel@1 warm | tau_w cold | rel@1 cold |",
              "|---|---|---|---|---|---|---|---|"]
        for pipe in PIPELINES:
            for variant in VARIANTS + ["served", "prior_only"]:
                r = cvs[pipe][variant]
                if not r:
                    L.append(f"| {pipe} | {variant.replace('_', ' ')} | " + " | ".join(["n/a"] * 6) + " |")
                    continue
                L.append(f"| {pipe} | {variant.replace('_', ' ')} | " +
                         " | ".join(_f(r[m]) for m in MEASURES) + " |")
        L += ["", "Trained (and served) minus untrained, per test task (`better`/`worse`: tasks; "
              "Wilcoxon signed-rank p over the tasks):", "",
              "| pipeline | ranking | measure | mean difference | better | worse | tasks | Wilcoxon p |",
              "|---|---|---|---|---|---|---|---|"]
        for pipe in PIPELINES:
            for variant in ("trained", "served"):
                for m, d in cvs[pipe].get(f"{variant}_minus_untrained", {}).items():
                    p = _f(d.get("wilcoxon_p"), 3) if "wilcoxon_p" in d else "-"
                    L.append(f"| {pipe} | {variant} | {m} | {_f(d['mean'], 4)} | {d['better']} | "
                             f"{d['worse']} | {d['tasks']} | {p} |")
        # Versions trained per fold.
        found = []
        for e in z["cv"]:
            found += [k for k in _version_fields(e.get("train")) if k not in found]
        nums = [k for k in VERSION_FIELDS if k in found] + [k for k in found if k not in VERSION_FIELDS]
        cols = ["fold", "training tasks", "reported outcomes", "version", "adopted", *nums]
        L += ["", "Versions trained (one per fold; figures from `train --wait --json`; validation "
              "= the server's own held-out tau_w over the reported tasks):", "",
              "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        reasons = []
        for e in z["cv"]:
            fl = _version_fields(e.get("train"))
            cell = lambda v: (_f(v, 4) if isinstance(v, float) else  # noqa: E731
                              ("yes" if v else "no") if isinstance(v, bool) else str(v))
            cells = [e["fold"], len(e["train_tasks"]), e.get("num_records", "?"),
                     e.get("version") or "-", "yes" if e.get("adopted") else "no",
                     *(cell(fl[k]) if k in fl else "" for k in nums)]
            L.append("| " + " | ".join(str(c) for c in cells) + " |")
            rs = _version_reasons(e.get("train"))
            if e.get("train_error"):
                rs = {"error": e["train_error"]}
            reasons += [f"- fold {e['fold']} {k}: {v}" for k, v in rs.items()]
        if reasons:
            L += [""] + reasons
        L += ["", "tau_w per test task (cross-validation):", "",
              "| task | fold | stage1 untrained | stage1 trained | default untrained | default trained |",
              "|---|---|---|---|---|---|"]
        for e in z["cv"]:
            for t in e["test_tasks"]:
                cells = []
                for pipe in PIPELINES:
                    for variant in VARIANTS:
                        r = _variant_eval(e, variant, t, pipe)
                        cells.append(_f(r["tau_w"]) if r else "n/a")
                L.append(f"| {t} | {e['fold']} | " + " | ".join(cells) + " |")
        L.append("")
    if any("curve" in z for z in res["zoos"].values()):
        L += ["## Learning curve", "",
              "k training tasks drawn at random (seeded), tested on all the other tasks; means over "
              "the test tasks, then mean ± std over the repetitions. `versions` = repetitions in "
              "which `train` produced a version (adopted ones in brackets).", "",
              "| zoo | k | test tasks | versions | pipeline | tau_w untrained | tau_w trained | "
              "tau_w served | rel@1 untrained | rel@1 trained | tau_w cold untrained | tau_w cold trained |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for key, z in res["zoos"].items():
            for row in z.get("curve_summary", []):
                for pipe in PIPELINES:
                    u, t, s = (row[pipe].get(v) for v in ("untrained", "trained", "served"))
                    g = lambda r, m: _f(r[m]) + _sd(r.get(f"{m}_std")) if r else "n/a"  # noqa: E731
                    L.append(f"| {key} | {row['num_train_tasks']} | {row['test_tasks_per_rep']} | "
                             f"{row['trained_versions']}/{row['reps']} ({row['adopted']}) | {pipe} | "
                             f"{g(u, 'tau_w')} | {g(t, 'tau_w')} | {g(s, 'tau_w')} | {g(u, 'rel@1')} | "
                             f"{g(t, 'rel@1')} | {_f(u['tau_w_cold']) if u else 'n/a'} | "
                             f"{_f(t['tau_w_cold']) if t else 'n/a'} |")
        errs = sorted({err for z in res["zoos"].values() for row in z.get("curve_summary", [])
                       for err in row["train_errors"]})
        if errs:
            L += ["", "`train` refused: " + "; ".join(errs)]
        L.append("")
    L += ["## Run", ""]
    for key, z in res["zoos"].items():
        L.append(f"- {key}: template registration {z['registration']['wall_seconds']} s "
                 f"(failed: {list(z['registration']['failed']) or 'none'}); cross-validation "
                 f"{z.get('cv_wall_seconds', '-')} s, learning curve {z.get('curve_wall_seconds', '-')} s; "
                 f"median recommend wall: stage1 {_f(z['median_wall_millis'].get('stage1'), 0)} ms, "
                 f"default {_f(z['median_wall_millis'].get('default'), 0)} ms; untrained rankings "
                 + (f"differed between experiments for {', '.join(z['untrained_varies'])}."
                    if z.get("untrained_varies") else "identical in every experiment."))
    if res["spec_warnings"]:
        L += ["", "Warnings (the CLI differed from what the script expects):", ""]
        L += [f"- {w}" for w in res["spec_warnings"]]
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- main

def run_zoo(args, bins, zoo, work):
    runner = Runner(args, bins, zoo, work)
    out = {"zoo": os.path.relpath(zoo.dir, REPO), "ground_truth": os.path.relpath(zoo.gt_path, REPO),
           "num_models": len(zoo.names), "num_tasks": len(zoo.tasks),
           "tasks": [t["name"] for t in zoo.tasks]}
    out["registration"] = runner.make_template()
    try:
        if not args.no_cv:
            t0 = time.time()
            out["cv"] = runner.cross_validation()
            out["cv_wall_seconds"] = round(time.time() - t0, 1)
            out["cv_summary"] = summarize_cv(out["cv"])
        if not args.no_curve:
            t0 = time.time()
            out["curve"] = runner.learning_curve()
            out["curve_wall_seconds"] = round(time.time() - t0, 1)
            out["curve_summary"] = summarize_curve(out["curve"])
    finally:
        with open(os.path.join(args.artifacts, f"raw_{zoo.key}.json"), "w") as f:
            json.dump(runner.raw, f)
    walls = {p: [] for p in PIPELINES}
    for e in out.get("cv", []) + out.get("curve", []):
        for key, ev in e["evaluations"].items():
            walls[key.rsplit("/", 1)[1]].append(ev["wall_millis"])
    out["median_wall_millis"] = {p: float(np.median(w)) if w else float("nan") for p, w in walls.items()}
    # The untrained ranking of a task should not depend on the experiment (records, versions).
    seen = {}
    for e in out.get("cv", []) + out.get("curve", []):
        for key, ev in e["evaluations"].items():
            if key.startswith("untrained/"):
                seen.setdefault(key, set()).add(round(ev["measures"]["tau_w"], 9))
    out["untrained_varies"] = sorted(k.split("/", 1)[1] for k, v in seen.items() if len(v) > 1)
    return out, runner.warnings


def _rounded(obj, digits=6):
    if isinstance(obj, float):
        return round(obj, digits) if np.isfinite(obj) else obj
    if isinstance(obj, dict):
        return {k: _rounded(v, digits) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v, digits) for v in obj]
    return obj


def _git_modified():
    """Tracked files modified in the work tree (the binaries may not be HEAD's)."""
    try:
        out = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=no"],
                             capture_output=True, text=True).stdout
    except OSError:
        return []
    return [line[3:] for line in out.splitlines() if line.strip()]


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--asset-dir", default=None, help="default BUILD_DIR/assets")
    ap.add_argument("--smoke", action="store_true",
                    help="run_quality's smoke zoo (built if missing), 2 folds; outputs under "
                         "artifacts/smoke")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--zoo1-only", action="store_true")
    g.add_argument("--zoo2-only", action="store_true")
    ap.add_argument("--more-tasks", nargs="?", const="x", default=None, metavar="SUFFIX",
                    help="the zoos with seeded extra tasks (bench/learning/artifacts/zoo1SUFFIX "
                         "and zoo2SUFFIX, SUFFIX default x, built by make_more_tasks.py + "
                         "bench/zoo/finetune.py) instead of bench/zoo and zoo2")
    ap.add_argument("--folds", type=int, default=None, help="cross-validation folds (4; smoke 2)")
    ap.add_argument("--curve-sizes", default="1,2,4,8",
                    help="training-task counts of the learning curve (those < the zoo's tasks)")
    ap.add_argument("--curve-reps", type=int, default=3)
    ap.add_argument("--cold-fraction", type=float, default=0.25)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--no-cv", action="store_true", help="skip the cross-validation")
    ap.add_argument("--no-curve", action="store_true", help="skip the learning curve")
    ap.add_argument("--latency-budget-ms", type=float, default=None,
                    help="passed to the servers: a large budget makes the default pipeline score "
                         "every model however loaded the machine is (its choice is timed)")
    ap.add_argument("--weak", action="store_true",
                    help="servers run with --learn-from-recommendations, and every training task "
                         "is also recommended (default pipeline) before training, so its scored "
                         "models' stage-2 standings (cold models included) are weak records")
    ap.add_argument("--server-arg", action="append", default=[], metavar="FLAG",
                    help="one more flag for the servers (repeatable; e.g. "
                         "--server-arg=--no-report-standings for the arm without the reports' "
                         "stage-2 standings)")
    ap.add_argument("--no-learning", action="store_true",
                    help="skip report/records/train/alignments (untrained rankings only: checks the "
                         "rest of the script against a server without the learning commands)")
    ap.add_argument("--out-dir", default=None, help="results.{json,md} (default bench/learning)")
    ap.add_argument("--artifacts", default=None,
                    help="raw responses and logs (default bench/learning/artifacts)")
    ap.add_argument("--call-timeout", type=float, default=1800)
    ap.add_argument("--register-timeout", type=float, default=3600)
    ap.add_argument("--keep-data", action="store_true", help="keep the experiments' data dirs")
    args = ap.parse_args()
    args.curve_sizes = [int(x) for x in args.curve_sizes.split(",") if x.strip()]
    zoo_art = os.path.join(REPO, "bench", "zoo", "artifacts")
    if args.smoke:
        smoke = os.path.join(zoo_art, "zoo-smoke")
        gt = os.path.join(smoke, "ground_truth.json")
        rq.ensure_smoke_zoo(smoke, gt)
        specs = [("smoke", smoke, gt)]
        args.folds = args.folds or 2
        args.out_dir = args.out_dir or os.path.join(ART, "smoke")
        args.artifacts = args.artifacts or os.path.join(ART, "smoke")
    else:
        specs = [("zoo1", os.path.join(zoo_art, "zoo"),
                  os.path.join(REPO, "bench", "zoo", "results", "ground_truth.json")),
                 ("zoo2", os.path.join(REPO, "bench", "zoo2", "artifacts", "zoo2"),
                  os.path.join(REPO, "bench", "zoo2", "results", "ground_truth.json"))]
        if args.more_tasks:
            specs = [(key + args.more_tasks, os.path.join(ART, key + args.more_tasks),
                      os.path.join(ART, key + args.more_tasks, "ground_truth.json"))
                     for key, _, _ in specs]
        if args.zoo1_only:
            specs = specs[:1]
        if args.zoo2_only:
            specs = specs[1:]
        args.folds = args.folds or 4
        args.out_dir = args.out_dir or HERE
        args.artifacts = args.artifacts or ART
    os.makedirs(args.out_dir, exist_ok=True)
    os.makedirs(args.artifacts, exist_ok=True)
    zoos = [Zoo(*s) for s in specs]  # fail early on missing zoos or ground truth

    t_start = time.time()
    work = tempfile.mkdtemp(prefix="modeldock-learning-")
    try:
        bins = Binaries(os.path.abspath(args.build_dir), args.asset_dir, os.path.join(work, "bin"))
        if args.weak:
            bins.server_args = bins.server_args + ["--learn-from-recommendations"]
        if args.latency_budget_ms:
            bins.server_args = bins.server_args + ["--latency-budget-ms", f"{args.latency_budget_ms:g}"]
        bins.server_args = bins.server_args + args.server_arg
        missing = bins.has_commands(LEARNING_COMMANDS)
        if missing and not args.no_learning:
            sys.exit(f"run_learning: {bins.client} has no {', '.join(missing)} command(s); "
                     f"rebuild, or run with --no-learning")
        res = {"meta": {
            "date_utc": rq._now(), "git_commit": rq._git_head(), "git_modified": _git_modified(),
            "command": " ".join([os.path.relpath(sys.argv[0], REPO)] + sys.argv[1:]),
            "build_dir": os.path.abspath(args.build_dir), "binaries": bins.info,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "cpu": rq._cpu_model()},
            "seed": args.seed, "folds": args.folds, "cold_fraction": args.cold_fraction,
            "curve_sizes": args.curve_sizes, "curve_reps": args.curve_reps,
            "no_learning": args.no_learning, "weak": args.weak,
            "server_args": bins.server_args,
            "ground_truth_field": "best fine-tune test accuracy (as bench/quality)"},
            "zoos": {}, "spec_warnings": []}
        warnings = set()
        for zoo in zoos:
            _log(f"{zoo.key}: {len(zoo.names)} models, {len(zoo.tasks)} tasks ({zoo.dir})")
            res["zoos"][zoo.key], w = run_zoo(args, bins, zoo, work)
            warnings |= w
        res["spec_warnings"] = sorted(warnings)
        res["meta"]["wall_minutes"] = (time.time() - t_start) / 60
    finally:
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work}")
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(_rounded(res), f, indent=1)
    md = markdown(res)
    with open(os.path.join(args.out_dir, "results.md"), "w") as f:
        f.write(md)
    print(md)
    for w in res["spec_warnings"]:
        print(f"WARNING: {w}")
    print(f"wrote {args.out_dir}/results.json and results.md; raw responses and server logs in {args.artifacts}")


if __name__ == "__main__":
    main()
