#!/usr/bin/python3
"""How well does modeldock rank feature extractors among classifiers? zoo2h (bench/headless):
zoo2's 40 classifiers + feature extractors (autoencoder encoders, SimCLR backbones, headless
copies of 4 zoo2 classifiers), against fine-tune ground truth (finetune_headless.py).

    /usr/bin/python3 bench/headless/run_headless.py [--build-dir build]
    /usr/bin/python3 bench/headless/run_headless.py --smoke          # zoo2h-smoke (build it first)
    /usr/bin/python3 bench/headless/run_headless.py --from-raw bench/headless/artifacts/run/responses.json

Copies modeldock-server, modeldock, modeldock-worker and the assets out of --build-dir (a rebuild
cannot swap them mid-run), starts the server on a free port with a fresh data dir
(bench/quality/run_quality.py's Server and cli helpers, imported), registers every model
(extractors with --feature-extractor, besides the sidecar's "kind"), then asks for a full ranking
(--top N) of every task with the default pipeline and with --metric none (stage 1). Reports:
  - tau_w, tau, rel@1, rel@3 over all models (run_quality.ranking_measures);
  - tau_w and rel@1 restricted to the classifiers, to all extractors, and to the trained (not
    headless) extractors: the returned order filtered to the subset, against the subset's truth;
  - mixed fairness: each headless copy against its classifier, difference of score, stage-2 score
    and similarity, and of rank (should be ~0);
  - where extractors land: returned rank against ground-truth rank among all N models.
Writes OUT_DIR/results.json and results.md (default bench/headless/; --smoke: artifacts/run-smoke/),
the raw CLI responses (default artifacts/run/responses.json) and, next to them, results_full.json
(results.json plus every (task, model) landing row).
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

METHODS = ["stage1", "default"]
SUBSETS = ["all", "classifiers", "extractors", "trained_extractors"]
RANDOM_SEEDS = 20


def _now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")


def copy_binaries(build_dir, asset_dir, dest):
    src = {"server": os.path.join(build_dir, "server", "modeldock-server"),
           "client": os.path.join(build_dir, "client", "modeldock"),
           "worker": os.path.join(build_dir, "sandbox", "modeldock-worker")}
    out, info = {}, {}
    for key, path in src.items():
        if not os.access(path, os.X_OK):
            sys.exit(f"run_headless: {path} not found; build the server, CLI and worker first")
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


def register_all(client, address, zoo, entries, timeout_s):
    """rq.register_zoo, plus --feature-extractor for the extractors; checks the kind the server
    reports."""
    t0 = time.time()
    for m in entries:
        args = ["register", os.path.join(zoo, "models", f"{m['name']}.pt"),
                "--metadata", os.path.join(zoo, "models", f"{m['name']}.json"), "--no-wait"]
        if m["model_kind"] == "feature_extractor":
            args.append("--feature-extractor")
        rq.cli(client, address, args)
    names = [m["name"] for m in entries]
    while True:
        listing, _ = rq.cli(client, address, ["list"])
        state = {m["name"]: m for m in listing["models"]}
        pending = [n for n in names if state.get(n, {}).get("state") not in ("READY", "FAILED")]
        if not pending:
            break
        if time.time() - t0 > timeout_s:
            raise RuntimeError(f"models still not probed after {timeout_s} s: {pending[:5]}...")
        time.sleep(2)
    kinds = {n: state[n].get("kind") for n in names}
    wrong = {m["name"]: kinds[m["name"]] for m in entries if kinds[m["name"]] != m["model_kind"]}
    return {"wall_seconds": round(time.time() - t0, 1),
            "probe_millis": {n: state[n].get("probe_millis") for n in names},
            "feature_dim": {n: state[n].get("feature_dim") for n in names},
            "kind": kinds, "kind_mismatch": wrong,
            "failed": {n: state[n].get("state_reason", "") for n in names
                       if state[n]["state"] == "FAILED"}}


def collect(args, zoo, entries, tasks):
    names = [m["name"] for m in entries]
    n = len(names)
    work = tempfile.mkdtemp(prefix="modeldock-headless-")
    bins, info = copy_binaries(args.build_dir, args.asset_dir, os.path.join(work, "bin"))
    os.makedirs(os.path.dirname(os.path.abspath(args.raw)), exist_ok=True)
    log_path = os.path.join(os.path.dirname(os.path.abspath(args.raw)), "server.log")
    print(f"starting {bins['server']} (work dir {work}, log {log_path})", flush=True)
    server = rq.Server(bins["server"], bins["assets"], os.path.join(work, "data"), log_path,
                       extra_args=["--worker-binary", bins["worker"]])
    responses = []
    try:
        reg = register_all(bins["client"], server.address, zoo, entries, args.register_timeout)
        print(f"registered {n} models in {reg['wall_seconds']} s; failed: {list(reg['failed'])}; "
              f"kind mismatches: {reg['kind_mismatch'] or 'none'}", flush=True)
        for task in tasks:
            images = os.path.join(zoo, task["train_images"])
            labels = os.path.join(zoo, task["train_labels"])
            # stage1 first (runs no model), then default with a cold output cache.
            for method in METHODS:
                resp, wall = rq.cli(bins["client"], server.address,
                                    ["recommend", images, "--labels", labels, "--top", str(n),
                                     *rq.method_args(method, n)])
                responses.append({"task": task["name"], "method": method, "wall_millis": wall,
                                  "response": resp})
                print(f"  {task['name']:20s} {method:8s} scored {resp.get('num_scored')}/"
                      f"{resp.get('num_compatible')} in {wall:7.0f} ms", flush=True)
        peak = server.rss_kib()
    finally:
        server.stop()
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
    raw = {"date_utc": _now(), "git_commit": rq._git_head(), "build_dir": args.build_dir,
           "binaries": info, "models": names, "registration": reg, "server_peak_rss_kib": peak,
           "responses": responses}
    with open(args.raw, "w") as f:
        json.dump(raw, f)
    print(f"wrote {args.raw}", flush=True)
    return raw


# --------------------------------------------------------------------------- evaluation

def subset_measures(order, acc, subset):
    """tau_w and rel@1 of the returned order restricted to `subset` (model indices)."""
    sub = [i for i in order if i in subset]
    idx = {m: k for k, m in enumerate(sorted(subset))}
    sub_acc = acc[sorted(subset)]
    m = rq.ranking_measures([idx[i] for i in sub], sub_acc)
    return {"tau_w": m["tau_w"], "rel@1": m["rel@1"], "rel@3": m["rel@3"], "tau": m["tau"]}


def gt_ranks(acc):
    """1 = best; ties share the average rank."""
    return stats.rankdata(-acc, method="average")


def evaluate(raw, entries, tasks, gt):
    names = [m["name"] for m in entries]
    n = len(names)
    pos = {nm: i for i, nm in enumerate(names)}
    kind = {m["name"]: m["model_kind"] for m in entries}
    family = {m["name"]: m.get("family", "classifier") for m in entries}
    headless = {m["name"]: m["headless_of"] for m in entries if m.get("family") == "headless"}
    subsets = {"all": set(range(n)),
               "classifiers": {pos[m] for m in names if kind[m] == "classifier"},
               "extractors": {pos[m] for m in names if kind[m] == "feature_extractor"},
               "trained_extractors": {pos[m] for m in names
                                      if kind[m] == "feature_extractor" and m not in headless}}
    resp = {(r["task"], r["method"]): r for r in raw["responses"]}
    acc = {t["name"]: np.array([gt["tasks"][t["name"]][m]["best"] for m in names]) for t in tasks}
    lp = {t["name"]: np.array([gt["tasks"][t["name"]][m]["linear_probe"] for m in names])
          for t in tasks}

    results = {"methods": {}, "subset_sizes": {k: len(v) for k, v in subsets.items()}}
    for method in METHODS:
        per_task, fair, land, warnings, missing_all = {}, [], [], {}, {}
        for task in tasks:
            tn = task["name"]
            r = resp[(tn, method)]["response"]
            order, scores, missing = rq.evaluate_response(method, r, names)
            if missing:
                missing_all[tn] = [names[i] for i in missing]
            if r.get("warnings"):
                warnings[tn] = r["warnings"]
            a = acc[tn]
            row = {"all": rq.ranking_measures(order, a, scores)}
            for s in SUBSETS[1:]:
                row[s] = subset_measures(order, a, subsets[s])
            for s in SUBSETS:  # secondary: against the linear-probe accuracy (frozen features)
                row[s]["tau_w_lp"] = subset_measures(order, lp[tn], subsets[s])["tau_w"]
            row["num_scored"] = r.get("num_scored")
            row["wall_millis"] = round(resp[(tn, method)]["wall_millis"], 1)
            row["total_millis"] = r.get("timings", {}).get("total_millis")
            per_task[tn] = row
            by_name = {x["name"]: x for x in r["results"]}
            rank = {names[i]: k + 1 for k, i in enumerate(order)}
            true_rank = gt_ranks(a)
            for h, cls in headless.items():
                x, y = by_name.get(h), by_name.get(cls)
                if x is None or y is None:
                    continue
                fair.append({"task": tn, "copy": h, "classifier": cls,
                             "rank_copy": rank[h], "rank_classifier": rank[cls],
                             "rank_diff": rank[h] - rank[cls],
                             **{f"{k}_diff": (None if x.get(k) is None or y.get(k) is None
                                              else float(x[k]) - float(y[k]))
                                for k in ("score", "stage2_score", "similarity", "stage1_score",
                                          "prior")},
                             "scored_copy": x.get("scored"), "scored_classifier": y.get("scored"),
                             "score_copy": x.get("score"), "score_classifier": y.get("score"),
                             "reason_copy": x.get("reason"), "reason_classifier": y.get("reason")})
            for i, nm in enumerate(names):
                land.append({"task": tn, "model": nm, "kind": kind[nm], "family": family[nm],
                             "rank": rank[nm], "true_rank": float(true_rank[i]),
                             "displacement": rank[nm] - float(true_rank[i]), "acc": float(a[i]),
                             "scored": by_name.get(nm, {}).get("scored"),
                             "reason": by_name.get(nm, {}).get("reason")})
        mean = {s: {k: float(np.nanmean([per_task[t["name"]][s][k] for t in tasks]))
                    for k in per_task[tasks[0]["name"]][s]} for s in SUBSETS}
        results["methods"][method] = {"cli_args": rq.method_args(method, n), "mean": mean,
                                      "per_task": per_task, "fairness": fair, "landing": land,
                                      "warnings": warnings, "missing_models": missing_all}
    # Random rankings (mean over seeds), same subsets.
    per_task = {}
    for task in tasks:
        a = acc[task["name"]]
        draws = []
        for seed in range(RANDOM_SEEDS):
            perm = list(np.random.default_rng([seed, 12345]).permutation(n))
            d = {"all": rq.ranking_measures(perm, a)}
            for s in SUBSETS[1:]:
                d[s] = subset_measures(perm, a, subsets[s])
            draws.append(d)
        per_task[task["name"]] = {s: {k: float(np.mean([d[s][k] for d in draws]))
                                      for k in ("tau_w", "rel@1", "rel@3", "tau")} for s in SUBSETS}
    results["methods"]["random"] = {
        "mean": {s: {k: float(np.mean([per_task[t["name"]][s][k] for t in tasks]))
                     for k in ("tau_w", "rel@1", "rel@3", "tau")} for s in SUBSETS},
        "per_task": per_task, "seeds": RANDOM_SEEDS}
    results["landing_summary"] = landing_summary(results, entries, tasks)
    results["fairness_summary"] = fairness_summary(results)
    results["ground_truth_summary"] = gt_summary(entries, tasks, acc)
    return results


def landing_summary(results, entries, tasks):
    out = {}
    for method in METHODS:
        land = results["methods"][method]["landing"]
        per_model = {}
        for m in entries:
            rows = [r for r in land if r["model"] == m["name"]]
            per_model[m["name"]] = {
                "kind": m["model_kind"], "family": m.get("family", "classifier"),
                "mean_rank": float(np.mean([r["rank"] for r in rows])),
                "mean_true_rank": float(np.mean([r["true_rank"] for r in rows])),
                "mean_displacement": float(np.mean([r["displacement"] for r in rows])),
                "mean_abs_displacement": float(np.mean([abs(r["displacement"]) for r in rows])),
                "mean_acc": float(np.mean([r["acc"] for r in rows]))}
        fams = {}
        for nm, p in per_model.items():
            fams.setdefault(p["family"], []).append(p)
        per_family = {f: {"models": len(v),
                          "mean_displacement": float(np.mean([p["mean_displacement"] for p in v])),
                          "mean_abs_displacement": float(np.mean(
                              [r["displacement"] if False else abs(r["displacement"])
                               for r in land if r["family"] == f])),
                          "mean_rank": float(np.mean([p["mean_rank"] for p in v])),
                          "mean_true_rank": float(np.mean([p["mean_true_rank"] for p in v]))}
                      for f, v in fams.items()}
        out[method] = {"per_model": per_model, "per_family": per_family}
    return out


def fairness_summary(results):
    out = {}
    for method in METHODS:
        fair = results["methods"][method]["fairness"]
        if not fair:
            out[method] = None
            continue

        def mx(key):
            v = [abs(r[key]) for r in fair if r[key] is not None]
            return float(max(v)) if v else None

        out[method] = {"pairs": len(fair), "max_abs_score_diff": mx("score_diff"),
                       "max_abs_stage2_score_diff": mx("stage2_score_diff"),
                       "max_abs_similarity_diff": mx("similarity_diff"),
                       "max_abs_prior_diff": mx("prior_diff"),
                       "mean_abs_rank_diff": float(np.mean([abs(r["rank_diff"]) for r in fair])),
                       "max_abs_rank_diff": int(max(abs(r["rank_diff"]) for r in fair)),
                       "mean_rank_diff": float(np.mean([r["rank_diff"] for r in fair])),
                       "scored_mismatch": sum(r["scored_copy"] != r["scored_classifier"] for r in fair),
                       "equal_score_adjacent": sum(r["score_diff"] == 0 and abs(r["rank_diff"]) == 1
                                                   for r in fair)}
    return out


def gt_summary(entries, tasks, acc):
    names = [m["name"] for m in entries]
    out = {}
    for t in tasks:
        a = acc[t["name"]]
        tr = gt_ranks(a)
        ext = [i for i, m in enumerate(entries) if m["model_kind"] == "feature_extractor"
               and m.get("family") != "headless"]
        best_ext = max(ext, key=lambda i: a[i]) if ext else None
        out[t["name"]] = {"best_model": names[int(np.argmax(a))], "best_acc": float(a.max()),
                          "best_trained_extractor": names[best_ext] if best_ext is not None else None,
                          "best_trained_extractor_acc": float(a[best_ext]) if best_ext is not None else None,
                          "best_trained_extractor_true_rank": float(tr[best_ext]) if best_ext is not None else None}
    return out


# --------------------------------------------------------------------------- report

def _f(x, d=3):
    return "n/a" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{d}f}"


def markdown(results, entries, tasks):
    meta = results["meta"]
    n = meta["num_models"]
    sizes = results["subset_sizes"]
    ms = results["methods"]
    L = [f"# Feature extractors among classifiers: ranking quality on zoo2h ({n} models, "
         f"{meta['num_tasks']} tasks)", "",
         f"Generated by bench/headless/run_headless.py on {meta['date_utc']} UTC (repository HEAD "
         f"{meta['git_commit']}; modeldock-server built "
         f"{(meta['binaries'].get('modeldock-server') or {}).get('built_utc', '?')} UTC). zoo2h = "
         f"zoo2's {sizes['classifiers']} classifiers + {sizes['extractors']} feature extractors "
         f"({sizes['trained_extractors']} trained without labels: autoencoder encoders and SimCLR "
         f"backbones; {sizes['extractors'] - sizes['trained_extractors']} headless copies of zoo2 "
         f"classifiers). Ground truth: best fine-tune test accuracy "
         f"({meta['ground_truth']}); for the extractors the new head sits on forward(x); headless "
         f"copies carry their classifier's values. Full rankings (--top {n}); means over tasks. "
         f"Restricted measures: the returned order filtered to the subset, against the subset's "
         f"ground truth. Random: mean of {RANDOM_SEEDS} seeded permutations.", "",
         "| method | tau_w all | tau all | rel@1 all | rel@3 all | tau_w classifiers | rel@1 classifiers "
         f"| tau_w extractors ({sizes['extractors']}) | rel@1 extractors | tau_w trained extractors "
         f"({sizes['trained_extractors']}) | rel@1 trained extractors | scored | latency ms |",
         "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for m in METHODS + ["random"]:
        mean = ms[m]["mean"]
        if m == "random":
            sc, lat = "-", "-"
        else:
            pt = ms[m]["per_task"].values()
            sc = str(int(np.median([r["num_scored"] or 0 for r in pt])))
            tot = [r["total_millis"] for r in pt if r["total_millis"] is not None]
            lat = _f(float(np.median(tot)), 0) if tot else "-"
        L.append(f"| {m} | {_f(mean['all']['tau_w'])} | {_f(mean['all']['tau'])} | "
                 f"{_f(mean['all']['rel@1'])} | {_f(mean['all']['rel@3'])} | "
                 f"{_f(mean['classifiers']['tau_w'])} | {_f(mean['classifiers']['rel@1'])} | "
                 f"{_f(mean['extractors']['tau_w'])} | {_f(mean['extractors']['rel@1'])} | "
                 f"{_f(mean['trained_extractors']['tau_w'])} | "
                 f"{_f(mean['trained_extractors']['rel@1'])} | {sc} | {lat} |")
    L += ["", "Secondary: weighted tau of the same rankings against the linear-probe accuracy (frozen "
          "features, the ground truth's `linear_probe`):", "",
          "| method | all | classifiers | extractors | trained extractors |", "|---|---|---|---|---|"]
    for m in METHODS:
        mean = ms[m]["mean"]
        L.append(f"| {m} | " + " | ".join(_f(mean[s]["tau_w_lp"]) for s in SUBSETS) + " |")
    ref = results.get("zoo2_reference")
    if ref:
        L += ["", f"For reference, zoo2 alone (40 classifiers, {ref['source']}, an earlier server "
              f"build): stage1 tau_w {_f(ref['stage1'])}, default tau_w {_f(ref['default'])}."]

    L += ["", "## Mixed fairness: headless copies against their classifiers", "",
          "A headless copy's forward is its classifier's embed, and its ground truth is the "
          "classifier's, so an unbiased dock gives both the same score and adjacent ranks. "
          "Differences are copy minus classifier; rank difference > 0 = the copy is ranked lower.", ""]
    for m in METHODS:
        s = results["fairness_summary"][m]
        if s is None:
            continue
        L.append(f"- {m}: {s['pairs']} (copy, task) pairs; max |score diff| "
                 f"{_f(s['max_abs_score_diff'], 6)}, max |stage-2 score diff| "
                 f"{_f(s['max_abs_stage2_score_diff'], 6)}, max |similarity diff| "
                 f"{_f(s['max_abs_similarity_diff'], 6)}, max |prior diff| "
                 f"{_f(s['max_abs_prior_diff'], 6)}; rank difference mean {s['mean_rank_diff']:+.2f}, "
                 f"mean |.| {s['mean_abs_rank_diff']:.2f}, max |.| {s['max_abs_rank_diff']}; "
                 f"scored differently in {s['scored_mismatch']} pairs; equal score and adjacent "
                 f"ranks (a tie the server broke) in {s['equal_score_adjacent']} of {s['pairs']}.")
    L += ["", "| method | task | copy | rank copy / classifier | score copy / classifier | "
          "score diff | similarity diff |", "|---|---|---|---|---|---|---|"]
    for m in METHODS:
        for r in ms[m]["fairness"]:
            L.append(f"| {m} | {r['task']} | {r['copy']} | {r['rank_copy']} / {r['rank_classifier']} "
                     f"| {_f(r['score_copy'], 4)} / {_f(r['score_classifier'], 4)} | "
                     f"{_f(r['score_diff'], 6)} | {_f(r['similarity_diff'], 6)} |")

    L += ["", "## Where the extractors land", "",
          "Per model, means over the tasks: returned rank and ground-truth rank among all "
          f"{n} models (1 = best; ties share the average rank); displacement = returned - true "
          "(> 0: ranked lower than its fine-tuned accuracy deserves).", "",
          "| family | models | mean true rank | stage1: mean rank | stage1: mean displacement | "
          "stage1: mean abs displacement | default: mean rank | default: mean displacement | "
          "default: mean abs displacement |", "|---|---|---|---|---|---|---|---|---|"]
    ls = results["landing_summary"]
    for fam in ls["default"]["per_family"]:
        a, b = ls["stage1"]["per_family"][fam], ls["default"]["per_family"][fam]
        L.append(f"| {fam} | {b['models']} | {b['mean_true_rank']:.1f} | {a['mean_rank']:.1f} | "
                 f"{a['mean_displacement']:+.1f} | {a['mean_abs_displacement']:.1f} | "
                 f"{b['mean_rank']:.1f} | {b['mean_displacement']:+.1f} | {b['mean_abs_displacement']:.1f} |")
    L += ["", "| extractor | family | mean fine-tuned acc | mean true rank | stage1 mean rank | "
          "default mean rank | default mean displacement |", "|---|---|---|---|---|---|---|"]
    for m in entries:
        if m["model_kind"] != "feature_extractor":
            continue
        a, b = ls["stage1"]["per_model"][m["name"]], ls["default"]["per_model"][m["name"]]
        L.append(f"| {m['name']} | {b['family']} | {b['mean_acc']:.3f} | {b['mean_true_rank']:.1f} | "
                 f"{a['mean_rank']:.1f} | {b['mean_rank']:.1f} | {b['mean_displacement']:+.1f} |")

    L += ["", "## Per task", "", "| task | best model (acc) | best trained extractor (acc, true rank) "
          "| stage1 tau_w all / extr. | default tau_w all / extr. | default rel@1 all / extr. |",
          "|---|---|---|---|---|---|"]
    for t in tasks:
        g = results["ground_truth_summary"][t["name"]]
        s1, d = ms["stage1"]["per_task"][t["name"]], ms["default"]["per_task"][t["name"]]
        L.append(f"| {t['name']} | {g['best_model']} ({g['best_acc']:.3f}) | "
                 f"{g['best_trained_extractor']} ({_f(g['best_trained_extractor_acc'])}, "
                 f"{_f(g['best_trained_extractor_true_rank'], 1)}) | {_f(s1['all']['tau_w'])} / "
                 f"{_f(s1['extractors']['tau_w'])} | {_f(d['all']['tau_w'])} / "
                 f"{_f(d['extractors']['tau_w'])} | {_f(d['all']['rel@1'])} / {_f(d['extractors']['rel@1'])} |")
    warn = {m: ms[m]["warnings"] for m in METHODS if ms[m]["warnings"]}
    if warn:
        L += ["", "Server warnings (first task each):"]
        for m, w in warn.items():
            t0 = next(iter(w))
            L.append(f"- {m} ({len(w)} tasks), {t0}: " + "; ".join(w[t0])[:600])
    reg = results["registration"]
    probe = [v for v in reg["probe_millis"].values() if v is not None]
    L += ["", f"Registration of {len(reg['probe_millis'])} models: {reg['wall_seconds']} s wall; "
          f"probe time per model median {_f(float(np.median(probe)), 0) if probe else 'n/a'} ms; "
          f"failed: {reg['failed'] or 'none'}; kind as reported by the server differs from the "
          f"manifest for: {reg.get('kind_mismatch') or 'none'}."]
    return "\n".join(L) + "\n"


def zoo2_reference():
    path = os.path.join(REPO, "bench", "quality", "zoo2", "results.json")
    try:
        with open(path) as f:
            r = json.load(f)
        return {"source": "bench/quality/zoo2/results.json",
                "stage1": r["methods"]["stage1"]["mean"]["tau_w"],
                "default": r["methods"]["default"]["mean"]["tau_w"]}
    except (OSError, KeyError, ValueError):
        return None


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--asset-dir", default=None, help="default BUILD_DIR/assets")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--zoo", default=None)
    ap.add_argument("--ground-truth", default=None)
    ap.add_argument("--out-dir", default=None)
    ap.add_argument("--raw", default=None)
    ap.add_argument("--from-raw", default=None, help="evaluate saved raw responses (no server)")
    ap.add_argument("--register-timeout", type=float, default=3600)
    ap.add_argument("--keep-data", action="store_true")
    args = ap.parse_args()
    art = os.path.join(HERE, "artifacts")
    sub = "zoo2h-smoke" if args.smoke else "zoo2h"
    zoo = os.path.abspath(args.zoo or os.path.join(art, sub))
    args.ground_truth = args.ground_truth or (os.path.join(zoo, "ground_truth.json") if args.smoke
                                              else os.path.join(HERE, "results", "ground_truth.json"))
    args.out_dir = args.out_dir or (os.path.join(art, "run-smoke") if args.smoke else HERE)
    args.raw = args.raw or os.path.join(art, "run-smoke" if args.smoke else "run", "responses.json")
    args.build_dir = os.path.abspath(args.build_dir)
    with open(os.path.join(zoo, "zoo.json")) as f:
        entries = json.load(f)["models"]
    with open(os.path.join(zoo, "tasks.json")) as f:
        tasks = json.load(f)["tasks"]
    with open(args.ground_truth) as f:
        gt = json.load(f)
    names = [m["name"] for m in entries]
    for t in tasks:
        miss = [m for m in names if m not in gt["tasks"].get(t["name"], {})]
        if miss:
            sys.exit(f"run_headless: ground truth lacks {t['name']} x {miss[:3]}...")
    if args.from_raw:
        with open(args.from_raw) as f:
            raw = json.load(f)
        if raw["models"] != names:
            sys.exit(f"run_headless: {args.from_raw} was made with another zoo")
    else:
        raw = collect(args, zoo, entries, tasks)
    results = evaluate(raw, entries, tasks, gt)
    results["registration"] = raw["registration"]
    results["server_peak_rss_kib"] = raw["server_peak_rss_kib"]
    results["zoo2_reference"] = None if args.smoke else zoo2_reference()
    results["meta"] = {"date_utc": raw["date_utc"], "git_commit": raw["git_commit"],
                       "binaries": raw["binaries"], "zoo": os.path.relpath(zoo, REPO),
                       "num_models": len(names), "num_tasks": len(tasks),
                       "tasks": [t["name"] for t in tasks],
                       "ground_truth": os.path.relpath(os.path.abspath(args.ground_truth), REPO),
                       "model_kind": {m["name"]: m["model_kind"] for m in entries},
                       "family": {m["name"]: m.get("family", "classifier") for m in entries},
                       "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                   "cpu": rq._cpu_model()}}
    os.makedirs(args.out_dir, exist_ok=True)
    # The per-(task, model) landing rows go next to the raw responses; results.json keeps the
    # per-model and per-family summaries.
    with open(os.path.join(os.path.dirname(os.path.abspath(args.raw)), "results_full.json"), "w") as f:
        json.dump(results, f)
    md = markdown(results, entries, tasks)
    for method in METHODS:
        results["methods"][method].pop("landing")
    with open(os.path.join(args.out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    with open(os.path.join(args.out_dir, "results.md"), "w") as f:
        f.write(md)
    print(md)
    print(f"wrote {args.out_dir}/results.json and results.md")


if __name__ == "__main__":
    main()
