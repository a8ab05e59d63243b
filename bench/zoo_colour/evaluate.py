#!/usr/bin/python3
"""Brute-force offline evaluation of the transferability metrics on the colour zoo (NumPy/SciPy,
independent of the server): every model is run on every task's train split (resized to its
input), every metric is computed on its real outputs, and each metric's ranking of the models is
compared per task with the fine-tune ground truth (weighted Kendall tau, scipy defaults, and
rel@1 = accuracy of the top-scored model / best accuracy).

    /usr/bin/python3 bench/zoo_colour/evaluate.py --zoo bench/zoo_colour/artifacts/zoo \
        --ground-truth bench/zoo_colour/results/ground_truth.json --assets build/assets \
        --cache bench/zoo_colour/artifacts/cache --out bench/zoo_colour/results/evaluation.json \
        --table bench/zoo_colour/results/evaluation.md

Features: "full" = embed(x) as the model returns it; "pcK" = the query features' own top K
principal components (what the dock's stage 2 does before LogME and shrinkage H-score; every
metric at pc32, LogME and shrinkage H-score also at pc16 and pc64).
default = rank fusion of LogME and shrinkage H-score on pc32 (today's default).
With --assets, stage-1 probe proxies too: each query sample's nearest probe sample in the space's
reference encoder (colour-small for 32 px models, colour-large for 64 px models, from spaces.json)
and the model's stored outputs on it stand in for its outputs on the query.
"""
import argparse
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Small matrices: BLAS worker threads only spin on a loaded machine.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "select"))
import study  # noqa: E402  (bench/select/study.py: metric wrappers, PCA, tau_w, rel@1, fusion)

mo = study.mo
torch.set_num_threads(1)


def resized(x_u8, size):
    x = torch.from_numpy(x_u8.astype(np.float32) / 255.0)
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0.0, 1.0)
    return x.numpy()


def run(module, x, batch=256):
    feats, logits = [], []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i:i + batch])
            logits.append(module(xb).double().numpy())
            feats.append(module.embed(xb).double().numpy())
    return np.concatenate(feats), np.concatenate(logits)


def load_spaces(assets):
    """{input size: (probe float32 [P, 3, S, S], reference encoder)} from spaces.json."""
    with open(os.path.join(assets, "spaces.json")) as f:
        spaces = json.load(f)["spaces"]
    out = {}
    for s in spaces:
        if s["channels"] != 3:
            continue
        size = s["reference_input_shape"][-1]
        probe = np.load(os.path.join(assets, s["probe_set"])).astype(np.float32) / 255.0
        enc = torch.jit.load(os.path.join(assets, s["reference_encoder"]))
        enc.eval()
        out[size] = (probe, enc, s["name"])
    return out


def extract(args, models, tasks, spaces):
    os.makedirs(args.cache, exist_ok=True)
    data = {t["name"]: np.load(os.path.join(args.zoo, t["train_file"])) for t in tasks}
    task_x = {(tn, s): resized(z["x"], s) for tn, z in data.items() for s in (32, 64)}
    labels = {tn: z["y"].astype(np.int64) for tn, z in data.items()}
    keys = {}
    for size, (probe, enc, _) in spaces.items():
        with torch.inference_mode():
            pk = torch.cat([enc(torch.from_numpy(probe[i:i + 256]))
                            for i in range(0, len(probe), 256)]).double().numpy()
            keys[size] = {"probe": pk}
            for tn in labels:
                keys[size][tn] = enc(torch.from_numpy(task_x[(tn, size)])).double().numpy()
    feats = {}
    t0 = time.time()
    for i, m in enumerate(models):
        path = os.path.join(args.cache, f"{m['name']}.npz")
        if os.path.exists(path):
            z = np.load(path)
            feats[m["name"]] = {k: z[k].astype(np.float64) for k in z.files}
            continue
        module = torch.jit.load(os.path.join(args.zoo, m["file"]))
        module.eval()
        size = m["input_size"]
        d = {}
        for tn in labels:
            d[f"{tn}_f"], d[f"{tn}_l"] = run(module, task_x[(tn, size)])
        if size in spaces:
            d["probe_f"], d["probe_l"] = run(module, spaces[size][0])
        np.savez(path, **{k: v.astype(np.float32) for k, v in d.items()})
        feats[m["name"]] = d
        print(f"  extracted {i + 1}/{len(models)} {m['name']} ({time.time() - t0:.0f} s)",
              flush=True)
    return labels, feats, keys


FULL = {"logme": mo.logme, "shrinkage_hscore": mo.shrinkage_hscore, "hscore": mo.hscore,
        "gbc": mo.gbc, "tmi": mo.tmi}
PCA_METRICS = ("logme", "shrinkage_hscore", "hscore", "gbc", "tmi")
LOGIT = {"leep": mo.leep, "nce": mo.nce}


def scores_for(models, labels, feats, keys, dims, cache):
    """{method: {task: array over models}}; each task's scores are cached in CACHE/scores_TASK.json
    (reused when the model list is the same)."""
    out = {}

    def put(method, tn, i, v):
        out.setdefault(method, {}).setdefault(tn, np.full(len(models), np.nan))[i] = v

    names = [m["name"] for m in models]
    for tn, y in labels.items():
        path = os.path.join(cache, f"scores_{tn}.json")
        if os.path.exists(path):
            with open(path) as f:
                saved = json.load(f)
            if saved["models"] == names:
                for method, values in saved["scores"].items():
                    out.setdefault(method, {})[tn] = np.array(values)
                continue
        t0 = time.time()
        nbr = {s: study.neighbours(k[tn], k["probe"], 1)[:, 0] for s, k in keys.items()}
        for i, m in enumerate(models):
            d = feats[m["name"]]
            f, lg = d[f"{tn}_f"], d[f"{tn}_l"]
            for name, fn in FULL.items():
                put(f"{name}/full", tn, i, study.safe(fn, f, y))
            for name, fn in LOGIT.items():
                put(name, tn, i, study.safe(fn, lg, y))
            for dim in dims:
                fq = study.pca_own(f, min(dim, f.shape[1]))
                for name in PCA_METRICS if dim == 32 else ("logme", "shrinkage_hscore"):
                    put(f"{name}/pc{dim}", tn, i, study.safe(FULL[name], fq, y))
            size = m["input_size"]
            if "probe_f" in d and size in nbr:
                nb = nbr[size]
                pf = study.pca_project(d["probe_f"], min(32, d["probe_f"].shape[1]))(d["probe_f"])
                put("stage1_proxy/logme_d32", tn, i, study.safe(mo.logme, pf[nb], y))
                put("stage1_proxy/shrinkage_hscore_d32", tn, i,
                    study.safe(mo.shrinkage_hscore, pf[nb], y))
                put("stage1_proxy/leep", tn, i,
                    study.safe(mo.leep, np.log(study.softmax(d["probe_l"])[nb] + 1e-12), y))
        with open(path, "w") as f:
            json.dump({"models": names, "scores": {m: out[m][tn].tolist() for m in out
                                                   if tn in out[m]}}, f)
        print(f"  scored {tn} ({time.time() - t0:.0f} s)", flush=True)
    return out


def add_fusions(scores, tasks):
    fusions = {
        "default: rank(logme, shrinkage_hscore)/pc32": ["logme/pc32", "shrinkage_hscore/pc32"],
        "rank(logme, shrinkage_hscore)/full": ["logme/full", "shrinkage_hscore/full"],
        "rank(leep, nce)": ["leep", "nce"],
        "rank(leep, logme/pc32)": ["leep", "logme/pc32"],
        "rank(leep, logme, shrinkage_hscore)/pc32": ["leep", "logme/pc32",
                                                     "shrinkage_hscore/pc32"],
        "rank(leep, shrinkage_hscore)/pc32": ["leep", "shrinkage_hscore/pc32"],
        "rank(nce, logme/pc32)": ["nce", "logme/pc32"],
    }
    if "stage1_proxy/leep" in scores:
        fusions["stage1_proxy/rank(logme, shrinkage_hscore)_d32"] = [
            "stage1_proxy/logme_d32", "stage1_proxy/shrinkage_hscore_d32"]
    for name, parts in fusions.items():
        if all(p in scores for p in parts):
            scores[name] = {t: study.fuse(scores, parts, "rank", t) for t in tasks}


def informative(task, acc):
    """False when even the best model is within 3 binomial standard errors of chance on the test
    split: the task's ranking is then noise, whatever the metric."""
    chance = 1.0 / task["num_classes"]
    return acc.max() >= chance + 3.0 * np.sqrt(chance * (1 - chance) / task["num_test"])


def summarise(scores, acc, tasks, kept):
    rows = {}
    for method, per_task in scores.items():
        taus = {t: study.tau_w(per_task[t], acc[t]) for t in tasks}
        rels = {t: study.rel1(per_task[t], acc[t]) for t in tasks}
        rows[method] = {"tau_w": taus, "rel1": rels,
                        "mean_tau_w": float(np.mean(list(taus.values()))),
                        "mean_rel1": float(np.mean(list(rels.values()))),
                        "mean_tau_w_informative": float(np.mean([taus[t] for t in kept])),
                        "mean_rel1_informative": float(np.mean([rels[t] for t in kept]))}
    return rows


def ground_truth_lines(gt, models, tasks):
    """Per task: spread of the best fine-tune accuracy, the best model, the share of models whose
    best lr was 1e-3, and tau_w(linear probe, fine-tune)."""
    lines = ["| task | min | median | max | std | best model | lr 1e-3 won | tau_w(lp, ft) |",
             "|---|---|---|---|---|---|---|---|"]
    for t in tasks:
        rows = gt["tasks"][t]
        acc = np.array([rows[m]["best"] for m in models])
        lp = np.array([rows[m]["linear_probe"] for m in models])
        lr3 = np.mean([rows[m]["best_lr"] == "0.001" for m in models])
        lines.append(f"| {t} | {acc.min():.3f} | {np.median(acc):.3f} | {acc.max():.3f} | "
                     f"{acc.std():.3f} | {models[int(np.argmax(acc))]} | {lr3:.0%} | "
                     f"{study.tau_w(lp, acc):.2f} |")
    return lines


def write_table(path, rows, tasks, header, gt_lines, kept):
    lines = [header, "", "Ground truth (best fine-tune accuracy over the models):", ""] + gt_lines
    dropped = [t for t in tasks if t not in kept]
    lines += ["", "Per metric, sorted by mean tau_w over all tasks. 'informative' leaves out "
              "the tasks where even the best model is within 3 binomial standard errors of "
              f"chance ({', '.join(dropped) or 'none'}).", "",
              "| method | mean tau_w | mean rel@1 | tau_w informative | rel@1 informative | "
              + " | ".join(tasks) + " |", "|---|---|---|---|---|" + "---|" * len(tasks)]
    for method, r in sorted(rows.items(), key=lambda kv: -kv[1]["mean_tau_w"]):
        lines.append(f"| {method} | {r['mean_tau_w']:.3f} | {r['mean_rel1']:.3f} | "
                     f"{r['mean_tau_w_informative']:.3f} | {r['mean_rel1_informative']:.3f} | "
                     + " | ".join(f"{r['tau_w'][t]:.2f}" for t in tasks) + " |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--ground-truth", default=None)
    ap.add_argument("--assets", default=None)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--table", default=None)
    ap.add_argument("--extract-only", action="store_true",
                    help="fill the feature cache (every task) and stop; no ground truth needed")
    ap.add_argument("--score-only", action="store_true",
                    help="fill the feature and score caches (every task); no ground truth needed")
    args = ap.parse_args()
    with open(os.path.join(args.zoo, "tasks.json")) as f:
        tasks = json.load(f)["tasks"]
    with open(os.path.join(args.zoo, "zoo.json")) as f:
        zoo_models = json.load(f)["models"]
    if args.extract_only or args.score_only:
        labels, feats, keys = extract(args, zoo_models, tasks,
                                      load_spaces(args.assets) if args.assets else {})
        if args.score_only:
            scores_for(zoo_models, labels, feats, keys, (16, 32, 64), args.cache)
        return
    with open(args.ground_truth) as f:
        gt = json.load(f)
    names = [t["name"] for t in tasks if len(gt["tasks"].get(t["name"], {})) == len(zoo_models)]
    tasks = [t for t in tasks if t["name"] in names]
    print(f"{len(zoo_models)} models, {len(tasks)} tasks with complete ground truth", flush=True)
    spaces = load_spaces(args.assets) if args.assets else {}
    labels, feats, keys = extract(args, zoo_models, tasks, spaces)
    t0 = time.time()
    scores = scores_for(zoo_models, labels, feats, keys, (16, 32, 64), args.cache)
    add_fusions(scores, names)
    acc = {t: np.array([gt["tasks"][t][m["name"]]["best"] for m in zoo_models]) for t in names}
    kept = [t["name"] for t in tasks if informative(t, acc[t["name"]])]
    rows = summarise(scores, acc, names, kept)
    print(f"scores in {time.time() - t0:.0f} s", flush=True)
    with open(args.out, "w") as f:
        json.dump({"zoo": os.path.relpath(args.zoo), "models": [m["name"] for m in zoo_models],
                   "tasks": names, "accuracy": {t: v.tolist() for t, v in acc.items()},
                   "scores": {m: {t: v.tolist() for t, v in d.items()}
                              for m, d in scores.items()},
                   "summary": rows}, f)
    if args.table:
        write_table(args.table, rows, names,
                    f"Colour zoo, brute force per metric: {len(zoo_models)} models, "
                    f"{len(names)} tasks (tau_w per task; evaluate.py)",
                    ground_truth_lines(gt, [m["name"] for m in zoo_models], names), kept)
    for method, r in sorted(rows.items(), key=lambda kv: -kv[1]["mean_tau_w"]):
        print(f"{method:50s} tau_w {r['mean_tau_w']:+.3f}  rel@1 {r['mean_rel1']:.3f}  "
              f"informative {r['mean_tau_w_informative']:+.3f} / {r['mean_rel1_informative']:.3f}")


if __name__ == "__main__":
    main()
