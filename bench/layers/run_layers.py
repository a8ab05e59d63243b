#!/usr/bin/python3
"""Layer selection (issue 12, part 3): does the dock pick the layer of a model that fine-tunes
best, and does scoring every exported layer improve the model ranking?

    /usr/bin/python3 bench/layers/run_layers.py --build-dir /tmp/layers-build/build
    /usr/bin/python3 bench/layers/run_layers.py --from-raw      # re-evaluate saved responses

Per zoo (A = bench/zoo models, B = zoo2 models; make_layers.py, finetune_layers.py) two server
runs, each on a fresh data dir and a free port, binaries copied out of --build-dir first
(bench/headless/run_headless.py's approach; bench/quality/run_quality.py's Server and cli helpers,
imported as run_headless does):
  layers  the multi-layer files (embed_layers + layer_names)
  plain   the original single-layer files of the same models
For every task's train split: `modeldock recommend --json --top N` with every method in METHODS
(brute force: every model scored). Raw responses: artifacts/run/responses_<zoo>.json.

Measures per zoo and method (results.json / results.md):
  (a) layer pick: fraction of (model, task) where the returned `layer` is the ground-truth best
      layer (ties: any layer with the best accuracy counts), mean / max accuracy lost (best-layer
      accuracy - chosen-layer accuracy, points), against "deepest layer" and "random layer"
      (expected value);
  (b) within-model agreement: Kendall tau and weighted tau (scipy defaults) between
      layer_scores and per-layer fine-tuned accuracy, per (model, task), averaged;
  (c) model ranking: tau_w / rel@1 of the returned model order against best-layer ground truth
      (max over a model's layers), for the layers run and the plain run; plus against the
      deepest-layer (= plain, embed) ground truth; and end-to-end rel@1: accuracy of the top
      model at the layer the dock names / best (model, layer) accuracy.
Metric selection: the layer-picking metric is chosen on zoo A (lowest mean accuracy lost) and
reported on zoo B as the check.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "bench", "quality"))
import run_quality as rq  # noqa: E402

METRICS = ["fusion", "logme", "tmi", "shrinkage_hscore", "hscore", "gbc", "sfda"]
METHODS = ["default"] + [f"brute_{m}" for m in METRICS]
VARIANTS = ["layers", "plain"]
ZOOS = ["A", "B"]


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def copy_binaries(build_dir, asset_dir, dest):
    """As run_headless.copy_binaries: a rebuild during the run cannot swap the binaries."""
    src = {"server": os.path.join(build_dir, "server", "modeldock-server"),
           "client": os.path.join(build_dir, "client", "modeldock"),
           "worker": os.path.join(build_dir, "sandbox", "modeldock-worker")}
    out, info = {}, {}
    for key, path in src.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"run_layers: {path} not found; build the server, CLI and worker first")
        os.makedirs(os.path.join(dest, key), exist_ok=True)
        out[key] = os.path.join(dest, key, os.path.basename(path))
        shutil.copy2(path, out[key])
        info[os.path.basename(path)] = {
            "path": path, "size_bytes": os.path.getsize(path),
            "built_utc": datetime.datetime.fromtimestamp(
                os.path.getmtime(path), datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")}
    out["assets"] = os.path.join(dest, "assets")
    shutil.copytree(asset_dir or os.path.join(build_dir, "assets"), out["assets"])
    return out, info


def git_commit(build_dir):
    try:
        return subprocess.run(["git", "-C", build_dir, "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def python_check(python_dir, address, zoo, task, responses, n):
    """The same brute-force fusion call through the Python client (client/python/modeldock, from
    BUILD/python): its layer and layer_scores must equal the CLI's."""
    sys.path.insert(0, python_dir)
    import modeldock  # noqa: E402
    sys.path.pop(0)
    sys.path.insert(0, os.path.join(REPO, "bench", "zoo"))
    import finetune  # noqa: E402  (read_idx)
    x = finetune.read_idx(os.path.join(zoo, task["train_images"]))[:, None].astype(np.float32) / 255.0
    y = finetune.read_idx(os.path.join(zoo, task["train_labels"])).astype(np.int64)
    with modeldock.Client(address) as dock:
        res = dock.recommend(x, labels=y, top=n, metric="fusion", brute_force=True)
    cli = next(r["response"] for r in responses
               if r["task"] == task["name"] and r["method"] == "brute_fusion")
    by_cli = {r["name"]: r for r in cli["results"]}
    rows, mismatch = [], []
    for r in res:
        c = by_cli.get(r.name, {})
        py_ls = [(l.name, l.dim, round(l.score, 9)) for l in r.layer_scores]
        cli_ls = [(l["name"], l["dim"], round(l["score"], 9)) for l in c.get("layer_scores", [])]
        rows.append({"name": r.name, "rank": r.rank, "layer": r.layer, "layer_scores": py_ls})
        if r.layer != c.get("layer") or py_ls != cli_ls or r.rank != c.get("rank"):
            mismatch.append(r.name)
    return {"task": task["name"], "mode": res.mode, "results": rows, "mismatch": mismatch,
            "summary": f"{len(rows)} results, {len(mismatch)} differ from the CLI's "
                       f"(layer, layer_scores, rank)"}


def collect_one(bins, zoo, variant, names, tasks, log_path, timeout_s, python_dir=None):
    model_dir = os.path.join(zoo, "models" if variant == "layers" else "plain")
    work = tempfile.mkdtemp(prefix=f"modeldock-layers-{variant}-")
    server = rq.Server(bins["server"], bins["assets"], os.path.join(work, "data"), log_path,
                       extra_args=["--worker-binary", bins["worker"]])
    out = {"responses": [], "errors": []}
    try:
        t0 = time.time()
        for name in names:
            rq.cli(bins["client"], server.address,
                   ["register", os.path.join(model_dir, f"{name}.pt"),
                    "--metadata", os.path.join(model_dir, f"{name}.json"), "--no-wait"])
        while True:
            listing, _ = rq.cli(bins["client"], server.address, ["list"])
            state = {m["name"]: m for m in listing["models"]}
            pending = [n for n in names if state.get(n, {}).get("state") not in ("READY", "FAILED")]
            if not pending:
                break
            if time.time() - t0 > timeout_s:
                raise RuntimeError(f"not probed after {timeout_s} s: {pending}")
            time.sleep(1)
        out["registration"] = {
            "wall_seconds": round(time.time() - t0, 1),
            "failed": {n: state[n].get("state_reason", "") for n in names
                       if state[n]["state"] == "FAILED"},
            "listing": [state[n] for n in names]}
        print(f"  {variant}: registered {len(names)} in {out['registration']['wall_seconds']} s; "
              f"failed {list(out['registration']['failed'])}", flush=True)
        show, _ = rq.cli(bins["client"], server.address, ["show", names[0]])
        out["show_example"] = show
        n = len(names)
        for task in tasks:
            images = os.path.join(zoo, task["train_images"])
            labels = os.path.join(zoo, task["train_labels"])
            for method in METHODS:
                try:
                    resp, wall = rq.cli(bins["client"], server.address,
                                        ["recommend", images, "--labels", labels, "--top", str(n),
                                         *rq.method_args(method, n)])
                except RuntimeError as e:
                    out["errors"].append({"task": task["name"], "method": method, "error": str(e)})
                    print(f"    {task['name']:20s} {method:24s} ERROR {str(e)[:300]}", flush=True)
                    continue
                out["responses"].append({"task": task["name"], "method": method,
                                         "wall_millis": wall, "response": resp})
                print(f"    {task['name']:20s} {method:24s} scored {resp.get('num_scored')}/"
                      f"{resp.get('num_compatible')} in {wall:6.0f} ms (server "
                      f"{resp.get('timings', {}).get('total_millis', 0):.0f} ms)", flush=True)
        if variant == "layers" and python_dir:
            out["python_client_check"] = python_check(python_dir, server.address, zoo, tasks[0],
                                                      out["responses"], len(names))
            print(f"  python client check: {out['python_client_check']['summary']}", flush=True)
        out["server_peak_rss_kib"] = server.rss_kib()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return out


def collect(args, key):
    zoo = os.path.join(HERE, "artifacts", f"zoo{key}")
    with open(os.path.join(zoo, "zoo.json")) as f:
        names = [m["name"] for m in json.load(f)["models"]]
    with open(os.path.join(zoo, "tasks.json")) as f:
        tasks = json.load(f)["tasks"]
    run_dir = os.path.join(HERE, "artifacts", "run")
    os.makedirs(run_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="modeldock-layers-bin-")
    bins, info = copy_binaries(args.build_dir, args.asset_dir, work)
    raw = {"date_utc": _now(), "git_commit": git_commit(args.build_dir), "build_dir": args.build_dir,
           "binaries": info, "zoo": key, "models": names, "methods": METHODS, "variants": {}}
    try:
        for variant in VARIANTS:
            print(f"zoo{key} {variant}", flush=True)
            raw["variants"][variant] = collect_one(
                bins, zoo, variant, names, tasks, os.path.join(run_dir, f"server_{key}_{variant}.log"),
                args.register_timeout, python_dir=os.path.join(args.build_dir, "python"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    path = os.path.join(run_dir, f"responses_{key}.json")
    with open(path, "w") as f:
        json.dump(raw, f)
    print(f"wrote {path}", flush=True)
    return raw


# --------------------------------------------------------------------------- evaluation

def _nanmean(v):
    v = [x for x in v if x is not None and not np.isnan(x)]
    return float(np.mean(v)) if v else float("nan")


def evaluate_zoo(raw, gt, zoo_meta, tasks):
    names = raw["models"]
    meta = {m["name"]: m for m in zoo_meta["models"]}
    res = {"methods": {}, "baselines": {}, "problems": []}
    acc = {}  # (task, model) -> {layer: best acc}
    for t in tasks:
        for nm in names:
            acc[(t["name"], nm)] = {ln: v["best"] for ln, v in gt["tasks"][t["name"]][nm]["layers"].items()}

    # Baselines for (a).
    def pick_stats(chosen_fn):
        lost, correct, within1, normal = [], [], [], []
        for (tn, nm), a in acc.items():
            best = max(a.values())
            lost_m, corr_m, w1 = chosen_fn(tn, nm, a, best)
            lost.append(lost_m)
            correct.append(corr_m)
            within1.append(w1)
            if meta[nm].get("kind") == "normal":
                normal.append(lost_m)
        return {"pick_accuracy": float(np.mean(correct)), "mean_lost_pts": 100 * float(np.mean(lost)),
                "mean_lost_pts_normal": 100 * float(np.mean(normal)),
                "max_lost_pts": 100 * float(np.max(lost)), "within_1pt": float(np.mean(within1)),
                "pairs": len(lost)}

    def deepest(tn, nm, a, best):
        v = a[meta[nm]["layer_names"][-1]]
        return best - v, float(v >= best - 1e-9), float(best - v <= 0.01 + 1e-9)

    def rand(tn, nm, a, best):
        vs = list(a.values())
        return (best - float(np.mean(vs)), float(np.mean([v >= best - 1e-9 for v in vs])),
                float(np.mean([best - v <= 0.01 + 1e-9 for v in vs])))

    def shallowest(tn, nm, a, best):
        v = a[meta[nm]["layer_names"][0]]
        return best - v, float(v >= best - 1e-9), float(best - v <= 0.01 + 1e-9)

    def lp_oracle(tn, nm, a, best):
        # Reference, not a method: the layer whose frozen features give the best linear probe on
        # the task's *test* split (what a perfect frozen-feature score could at most know).
        lp = {ln: v["linear_probe"] for ln, v in gt["tasks"][tn][nm]["layers"].items()}
        ln = max(meta[nm]["layer_names"][::-1], key=lambda x: lp[x])
        v = a[ln]
        return best - v, float(v >= best - 1e-9), float(best - v <= 0.01 + 1e-9)

    def other_seed(tn, nm, a, best):
        # Noise reference: the best layer of one fine-tune seed, judged by the other seed's values
        # (both directions averaged). What an oracle of a single independent run would achieve.
        L = gt["tasks"][tn][nm]["layers"]
        names_l = meta[nm]["layer_names"]
        out = []
        for s_pick, s_eval in ((0, 1), (1, 0)):
            ln = max(names_l[::-1], key=lambda x: L[x]["best_per_seed"][s_pick])
            ev = {x: L[x]["best_per_seed"][s_eval] for x in names_l}
            b = max(ev.values())
            out.append((b - ev[ln], float(ev[ln] >= b - 1e-9), float(b - ev[ln] <= 0.01 + 1e-9)))
        return tuple(float(np.mean(v)) for v in zip(*out))

    def widest(tn, nm, a, best):
        # Heuristic: the widest layer (ties: the deeper). Single metrics on raw features pick it
        # often (their values grow with D).
        names_l, dims = meta[nm]["layer_names"], meta[nm]["layer_dims"]
        ln = max(range(len(names_l)), key=lambda i: (dims[i], i))
        v = a[names_l[ln]]
        return best - v, float(v >= best - 1e-9), float(best - v <= 0.01 + 1e-9)

    res["baselines"] = {"deepest": pick_stats(deepest), "random": pick_stats(rand),
                        "widest": pick_stats(widest),
                        "other_seed": pick_stats(other_seed),
                        "shallowest": pick_stats(shallowest),
                        "linear_probe_oracle": pick_stats(lp_oracle)}
    # Max lost for random: worst layer (the expectation's max is reported above).
    res["baselines"]["random"]["note"] = "expected value over a uniform layer choice per (model, task)"

    resp = {(v, r["task"], r["method"]): r for v in raw["variants"]
            for r in raw["variants"][v]["responses"]}
    for method in METHODS:
        per_task, picks, within = {}, [], []
        for t in tasks:
            tn = t["name"]
            best_acc = np.array([max(acc[(tn, nm)].values()) for nm in names])
            deep_acc = np.array([acc[(tn, nm)][meta[nm]["layer_names"][-1]] for nm in names])
            best_pair = float(best_acc.max())
            row = {}
            for variant in VARIANTS:
                r = resp.get((variant, tn, method))
                if r is None:
                    row[variant] = None
                    continue
                r = r["response"]
                order, _, missing = rq.evaluate_response(method, r, names)
                if missing:
                    res["problems"].append(f"{variant} {tn} {method}: missing {[names[i] for i in missing]}")
                m_best = rq.ranking_measures(order, best_acc)
                m_deep = rq.ranking_measures(order, deep_acc)
                top = r["results"][0] if r["results"] else None
                e2e = None
                if top is not None:
                    layer = top.get("layer") or meta[top["name"]]["layer_names"][-1]
                    a = acc[(tn, top["name"])]
                    e2e = a.get(layer, float("nan")) / best_pair
                row[variant] = {"tau_w_best": m_best["tau_w"], "tau_best": m_best["tau"],
                                "rel@1_best": m_best["rel@1"], "tau_w_deepest": m_deep["tau_w"],
                                "rel@1_deepest": m_deep["rel@1"], "rel@1_end_to_end": e2e,
                                "total_millis": r.get("timings", {}).get("total_millis"),
                                "num_scored": r.get("num_scored")}
                if variant != "layers":
                    continue
                for x in r["results"]:
                    nm = x["name"]
                    if nm not in meta:
                        continue
                    a = acc[(tn, nm)]
                    lnames = meta[nm]["layer_names"]
                    best = max(a.values())
                    chosen = x.get("layer") or ""
                    ls = x.get("layer_scores") or []
                    rec = {"task": tn, "model": nm, "arch": meta[nm]["arch"], "chosen": chosen,
                           "gt_best_layer": gt["tasks"][tn][nm]["best_layer"],
                           "acc": a, "layer_scores": {s.get("name"): s.get("score") for s in ls},
                           "layer_dims": {s.get("name"): s.get("dim") for s in ls},
                           "score": x.get("score"), "stage2_score": x.get("stage2_score")}
                    if chosen not in a:
                        res["problems"].append(f"{tn} {method} {nm}: chosen layer {chosen!r} not in {lnames}")
                        rec["lost"] = None
                    else:
                        rec["lost"] = best - a[chosen]
                        rec["correct"] = a[chosen] >= best - 1e-9
                    if sorted(rec["layer_scores"]) != sorted(lnames):
                        lacking = sorted(set(lnames) - set(rec["layer_scores"]))
                        extra = sorted(set(rec["layer_scores"]) - set(lnames))
                        warn = [w for w in r.get("warnings", []) if nm in w]
                        res["problems"].append(f"{tn} {method} {nm}: no layer_scores entry for "
                                               f"{lacking}{f', unknown {extra}' if extra else ''}"
                                               f"{f' (server warning: {warn[0]})' if warn else ''}")
                    # The model's score is its best layer's score.
                    sc = [v for v in rec["layer_scores"].values() if v is not None]
                    if sc and x.get("stage2_score") is not None and chosen in rec["layer_scores"]:
                        rec["chosen_is_max_score"] = rec["layer_scores"][chosen] >= max(sc) - 1e-12
                    # (b) within-model agreement.
                    common = [ln for ln in lnames if rec["layer_scores"].get(ln) is not None]
                    if len(common) >= 2:
                        s = np.array([rec["layer_scores"][ln] for ln in common], dtype=float)
                        g = np.array([a[ln] for ln in common], dtype=float)
                        if np.std(g) > 0 and np.std(s) > 0:
                            rec["tau"] = float(stats.kendalltau(s, g).correlation)
                            rec["tau_w"] = float(stats.weightedtau(s, g).correlation)
                    picks.append(rec)
            per_task[tn] = row
        ok = [p for p in picks if p["lost"] is not None]
        pick = None
        if ok:
            lost = np.array([p["lost"] for p in ok])
            pick = {"pick_accuracy": float(np.mean([p["correct"] for p in ok])),
                    "mean_lost_pts": 100 * float(lost.mean()), "max_lost_pts": 100 * float(lost.max()),
                    "within_1pt": float(np.mean(lost <= 0.01 + 1e-9)), "pairs": len(ok),
                    "mean_lost_pts_normal": 100 * float(np.mean([p["lost"] for p in ok
                                                                 if meta[p["model"]].get("kind") == "normal"])),
                    "pairs_expected": len(acc),
                    "chosen_deepest_frac": float(np.mean([p["chosen"] == meta[p["model"]]["layer_names"][-1]
                                                          for p in ok])),
                    "chosen_widest_frac": float(np.mean([
                        meta[p["model"]]["layer_dims"][meta[p["model"]]["layer_names"].index(p["chosen"])]
                        == max(meta[p["model"]]["layer_dims"]) for p in ok])),
                    "chosen_is_max_score_frac": _nanmean([float(p["chosen_is_max_score"]) for p in ok
                                                          if "chosen_is_max_score" in p]),
                    "per_arch": {}}
            for arch in sorted({p["arch"] for p in ok}):
                q = [p for p in ok if p["arch"] == arch]
                la = np.array([p["lost"] for p in q])
                pick["per_arch"][arch] = {"pick_accuracy": float(np.mean([p["correct"] for p in q])),
                                          "mean_lost_pts": 100 * float(la.mean()),
                                          "pairs": len(q)}
        within_m = {"tau": _nanmean([p.get("tau", np.nan) for p in picks]),
                    "tau_w": _nanmean([p.get("tau_w", np.nan) for p in picks]),
                    "pairs": sum("tau" in p for p in picks),
                    "pairs_multi_layer_gt_4plus": _nanmean([p.get("tau_w", np.nan) for p in picks
                                                            if len(meta[p["model"]]["layer_names"]) >= 3])}
        mean = {}
        for variant in VARIANTS:
            rows = [per_task[t["name"]][variant] for t in tasks if per_task[t["name"]][variant]]
            mean[variant] = {k: _nanmean([r[k] for r in rows]) for k in
                             ("tau_w_best", "tau_best", "rel@1_best", "tau_w_deepest",
                              "rel@1_deepest", "rel@1_end_to_end", "total_millis")} if rows else None
        res["methods"][method] = {"pick": pick, "within_model": within_m, "model_ranking": mean,
                                  "per_task": per_task, "picks": picks}
    # Ground-truth summary.
    gaps = [gt["tasks"][t["name"]][nm]["gap_best_minus_deepest"] for t in tasks for nm in names]
    spreads = [gt["tasks"][t["name"]][nm]["spread"] for t in tasks for nm in names]
    best_is = {}
    for t in tasks:
        for nm in names:
            b = gt["tasks"][t["name"]][nm]["best_layer"]
            pos = meta[nm]["layer_names"].index(b)
            key = "deepest" if pos == len(meta[nm]["layer_names"]) - 1 else (
                "shallowest" if pos == 0 else "middle")
            best_is[key] = best_is.get(key, 0) + 1
    res["ground_truth"] = {"pairs": len(gaps), "best_layer_position": best_is,
                           "mean_gap_best_minus_deepest_pts": 100 * float(np.mean(gaps)),
                           "median_gap_pts": 100 * float(np.median(gaps)),
                           "frac_gap_over_1pt": float(np.mean(np.array(gaps) > 0.01)),
                           "frac_gap_over_5pt": float(np.mean(np.array(gaps) > 0.05)),
                           "mean_spread_pts": 100 * float(np.mean(spreads))}
    for v in VARIANTS:
        res.setdefault("registration", {})[v] = {k: raw["variants"][v]["registration"][k]
                                                 for k in ("wall_seconds", "failed")}
        res.setdefault("errors", {})[v] = raw["variants"][v]["errors"]
    return res


# --------------------------------------------------------------------------- report

def _f(x, d=3):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{d}f}"


def select_metric(res_a):
    # "default" is the pipeline (fusion, scored_all on these small zoos), not a metric choice.
    cands = [m for m in METHODS if m != "default" and res_a["methods"][m]["pick"]]
    return min(cands, key=lambda m: (res_a["methods"][m]["pick"]["mean_lost_pts"],
                                     -res_a["methods"][m]["pick"]["pick_accuracy"]))


def markdown(results):
    L = ["# Layer selection (issue 12, part 3): results", "",
         f"Generated by bench/layers/run_layers.py on {results['meta']['date_utc']} UTC, build "
         f"{results['meta'].get('git_commit')} ({results['meta'].get('build_dir')}). Ground truth: "
         "per-layer fine-tuned accuracy (bench/layers/results/ground_truth_{A,B}.json, protocol of "
         "bench/zoo/finetune.py on the network truncated at each layer). Brute force: every model "
         "scored. Accuracy lost = best-layer accuracy - chosen-layer accuracy, in points.", ""]
    sel = results.get("selected_metric")
    if sel:
        L += [f"**Layer-picking method selected on zoo A: `{sel}`** (lowest mean accuracy lost "
              "among the brute-force metrics); zoo B is the check.", ""]
    if sel and all(k in results["zoos"] for k in ZOOS):
        L += ["| zoo | method | pick accuracy | mean lost (pts) | deepest: pick / lost | random: "
              "pick / lost | other seed (noise ref.): pick / lost | tau_w layers (within model) | "
              "model tau_w best-GT, layers / plain |", "|---|---|---|---|---|---|---|---|---|"]
        for key in ZOOS:
            r = results["zoos"][key]
            p, b, w = r["methods"][sel]["pick"], r["baselines"], r["methods"][sel]["within_model"]
            mr = r["methods"][sel]["model_ranking"]
            L.append(f"| {key} | {sel} | {_f(p['pick_accuracy'])} | {_f(p['mean_lost_pts'], 2)} | "
                     f"{_f(b['deepest']['pick_accuracy'])} / {_f(b['deepest']['mean_lost_pts'], 2)} | "
                     f"{_f(b['random']['pick_accuracy'])} / {_f(b['random']['mean_lost_pts'], 2)} | "
                     f"{_f(b['other_seed']['pick_accuracy'])} / {_f(b['other_seed']['mean_lost_pts'], 2)} | "
                     f"{_f(w['tau_w'])} | {_f(mr['layers']['tau_w_best'])} / {_f(mr['plain']['tau_w_best'])} |")
        L.append("")
    for key in ZOOS:
        r = results["zoos"].get(key)
        if r is None:
            continue
        g = r["ground_truth"]
        L += [f"## zoo {key} ({results['meta']['zoos'][key]['models']} models, "
              f"{results['meta']['zoos'][key]['tasks']} tasks, {g['pairs']} (model, task) pairs)", "",
              f"Ground truth: best layer is the deepest in {g['best_layer_position'].get('deepest', 0)}, "
              f"a middle one in {g['best_layer_position'].get('middle', 0)}, the shallowest in "
              f"{g['best_layer_position'].get('shallowest', 0)} pairs; best minus deepest: mean "
              f"{g['mean_gap_best_minus_deepest_pts']:.2f} pts, median {g['median_gap_pts']:.2f}, "
              f"> 1 pt in {100 * g['frac_gap_over_1pt']:.0f}%, > 5 pts in "
              f"{100 * g['frac_gap_over_5pt']:.0f}%; mean spread (best - worst layer) "
              f"{g['mean_spread_pts']:.1f} pts.", "",
              "### (a) Layer pick and (b) within-model agreement", "",
              "| method | pick accuracy | within 1 pt | mean lost (pts) | mean lost, normal models "
              "(pts) | max lost (pts) | chose deepest | chose widest | tau (layers) | tau_w (layers) | "
              "pairs |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        for m in METHODS:
            x = r["methods"][m]
            p, w = x["pick"], x["within_model"]
            if p is None:
                L.append(f"| {m} | n/a (no `layer` in the responses) | | | | | | | | | |")
                continue
            L.append(f"| {m} | {_f(p['pick_accuracy'])} | {_f(p['within_1pt'])} | "
                     f"{_f(p['mean_lost_pts'], 2)} | {_f(p['mean_lost_pts_normal'], 2)} | "
                     f"{_f(p['max_lost_pts'], 1)} | {_f(p['chosen_deepest_frac'])} | "
                     f"{_f(p['chosen_widest_frac'])} | {_f(w['tau'])} | {_f(w['tau_w'])} | "
                     f"{p['pairs']}/{p['pairs_expected']} |")
        for b in ("deepest", "random", "shallowest", "widest", "linear_probe_oracle", "other_seed"):
            p = r["baselines"][b]
            L.append(f"| baseline: {b} layer | {_f(p['pick_accuracy'])} | {_f(p['within_1pt'])} | "
                     f"{_f(p['mean_lost_pts'], 2)} | {_f(p['mean_lost_pts_normal'], 2)} | "
                     f"{_f(p['max_lost_pts'], 1)} | | | | | {p['pairs']} |")
        L += ["", "### (c) Model ranking (means over tasks)", "",
              "tau_w / rel@1 against the best-layer ground truth (a model's accuracy = its best "
              "layer's); against the deepest-layer ground truth (= the plain models' usual ground "
              "truth); end-to-end rel@1 = accuracy of the top model at the layer the dock names "
              "(plain: its embed) / best (model, layer) accuracy.", "",
              "| method | layers: tau_w best-GT | plain: tau_w best-GT | layers: tau_w deepest-GT | "
              "plain: tau_w deepest-GT | layers: rel@1 best-GT | plain: rel@1 best-GT | "
              "layers: rel@1 end-to-end | plain: rel@1 end-to-end | server ms layers / plain |",
              "|---|---|---|---|---|---|---|---|---|---|"]
        for m in METHODS:
            mr = r["methods"][m]["model_ranking"]
            a, b = mr["layers"] or {}, mr["plain"] or {}
            L.append(f"| {m} | {_f(a.get('tau_w_best'))} | {_f(b.get('tau_w_best'))} | "
                     f"{_f(a.get('tau_w_deepest'))} | {_f(b.get('tau_w_deepest'))} | "
                     f"{_f(a.get('rel@1_best'))} | {_f(b.get('rel@1_best'))} | "
                     f"{_f(a.get('rel@1_end_to_end'))} | {_f(b.get('rel@1_end_to_end'))} | "
                     f"{_f(a.get('total_millis'), 0)} / {_f(b.get('total_millis'), 0)} |")
        show = [m for m in dict.fromkeys(["brute_fusion", sel]) if m]
        for m in show:
            p = r["methods"][m]["pick"]
            if not p:
                continue
            L += ["", f"Per architecture, `{m}`: " + "; ".join(
                f"{a} pick {v['pick_accuracy']:.2f}, lost {v['mean_lost_pts']:.2f} pts ({v['pairs']})"
                for a, v in p["per_arch"].items())]
        if r["problems"]:
            L += ["", f"Layers missing from layer_scores, or other problems ({len(r['problems'])}; "
                  "first 3): " + "; ".join(r["problems"][:3])]
        errs = {v: e for v, e in r["errors"].items() if e}
        if errs:
            L += ["", "Errors: " + "; ".join(f"{v}: {e[0]['task']} {e[0]['method']}: "
                                              f"{e[0]['error'][:300]} ({len(e)} calls)"
                                              for v, e in errs.items())]
        L.append("")
    return "\n".join(L) + "\n"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="/tmp/layers-build/build")
    ap.add_argument("--asset-dir", default=None)
    ap.add_argument("--zoo", choices=["A", "B", "both"], default="both")
    ap.add_argument("--from-raw", action="store_true", help="evaluate artifacts/run/responses_*.json")
    ap.add_argument("--register-timeout", type=float, default=1800)
    ap.add_argument("--out-dir", default=HERE)
    args = ap.parse_args()
    args.build_dir = os.path.abspath(args.build_dir)
    keys = ZOOS if args.zoo == "both" else [args.zoo]
    results = {"zoos": {}, "meta": {"zoos": {}}}
    for key in keys:
        zoo = os.path.join(HERE, "artifacts", f"zoo{key}")
        with open(os.path.join(zoo, "zoo.json")) as f:
            zoo_meta = json.load(f)
        with open(os.path.join(zoo, "tasks.json")) as f:
            tasks = json.load(f)["tasks"]
        with open(os.path.join(HERE, "results", f"ground_truth_{key}.json")) as f:
            gt = json.load(f)
        if not gt.get("complete"):
            sys.exit(f"run_layers: ground truth {key} incomplete (finetune_layers.py)")
        if args.from_raw:
            with open(os.path.join(HERE, "artifacts", "run", f"responses_{key}.json")) as f:
                raw = json.load(f)
        else:
            raw = collect(args, key)
        results["zoos"][key] = evaluate_zoo(raw, gt, zoo_meta, tasks)
        results["meta"]["zoos"][key] = {"models": len(raw["models"]), "tasks": len(tasks),
                                        "source": zoo_meta["source"]}
        results["meta"].update({"date_utc": raw["date_utc"], "git_commit": raw["git_commit"],
                                "build_dir": raw["build_dir"], "binaries": raw["binaries"]})
    results["meta"]["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform()}
    if "A" in results["zoos"] and any(results["zoos"]["A"]["methods"][m]["pick"] for m in METHODS):
        results["selected_metric"] = select_metric(results["zoos"]["A"])
    os.makedirs(args.out_dir, exist_ok=True)
    full = os.path.join(HERE, "artifacts", "run", "results_full.json")
    os.makedirs(os.path.dirname(full), exist_ok=True)
    with open(full, "w") as f:
        json.dump(results, f)
    md = markdown(results)
    for r in results["zoos"].values():
        for m in r["methods"].values():
            m.pop("picks")
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out_dir, "results.md"), "w") as f:
        f.write(md)
    print(md)


if __name__ == "__main__":
    main()
