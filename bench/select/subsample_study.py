#!/usr/bin/python3
"""When the latency budget cannot run every model on every query sample, what should stage 2
give up: models (score the stage-1 top fraction, rank the rest by stage 1: the served rule) or
samples (score every model on a class-stratified fraction of the query)? Offline, in NumPy,
independent of the server (issue 21: on the held-out docks the served default sat next to its
25 % two-stage figure and far below its members scored on every model).

  extract  every zoo model's embed features and class outputs on every query task's train
           split, cached per model in CACHE/<model>.npz
  study    the default fusion (LogME + shrinkage H-score on the top 32 principal components,
           NCE on the class outputs; equal-weight rank fusion as scoring::WeightedRankFusion) for
           every task under two ways of spending a fraction f of the full stage-2 work:
             rows    every model, on a class-stratified f of the query samples (seeds 0-4;
                     at least 2 per class)
             models  the stage-1 top ceil(f * M) models on every sample, the rest in stage-1
                     order after them; stage 1 = the server's own stage-1 ranking (a run_quality
                     raw file) and a random order (20 seeds): the held-out docks' stage 1 sits
                     between the two (tau_w 0.31-0.57 there, 0.75 on zoo2)
           weighted Kendall tau against fine-tune accuracy, mean over tasks; writes OUT (JSON)
           and prints a table

  nce      the same fusion with NCE's rank weighted 0, 0.25, ..., 1 (every model, every sample)

  nice -n 10 /usr/bin/python3 bench/select/subsample_study.py extract --zoo Z --cache C
  /usr/bin/python3 bench/select/subsample_study.py study --zoo Z --cache C --ground-truth GT \
      [--stage1 RAW.json] --out OUT.json
  /usr/bin/python3 bench/select/subsample_study.py nce --zoo Z --cache C --ground-truth GT
"""
import argparse
import json
import math
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import width_study as ws  # noqa: E402

mo = ws.mo
FRACTIONS = [1.0, 0.5, 0.25, 0.125]
ROW_SEEDS = 5
RANDOM_STAGE1_SEEDS = 20
PER_CLASS = [2, 5, 10, 20]  # absolute rows per class (classes with fewer keep all of theirs)
# A held-out-like stage 1: the served stage-1 rank plus Gaussian noise of this many model
# counts (20 seeds); its own tau_w is reported beside the two-stage figure.
NOISE = 0.5
NOISE_GT = 0.8
FUSION_DIMS = 32  # kFusionDims


def extract(args):
    ws.extract(args, with_logits=True)


def stratified_rows(y, frac, seed, per_class=None):
    """A class-stratified fraction of the rows: ceil(frac * n_c) of each class, at least 2 (or
    min(n_c, per_class) of each when per_class is given)."""
    rng = np.random.default_rng(seed)
    keep = []
    for c in np.unique(y):
        idx = np.flatnonzero(y == c)
        take = (min(len(idx), per_class) if per_class else
                min(len(idx), max(2, math.ceil(frac * len(idx)))))
        keep.extend(rng.choice(idx, size=take, replace=False).tolist())
    return np.sort(np.asarray(keep))


def member_scores(f, logits, y):
    """(LogME, shrinkage H) on the top-32 centred principal components, NCE on the outputs."""
    f = f.astype(np.float64)
    xc = f - f.mean(axis=0, keepdims=True)
    u, sv, _ = np.linalg.svd(xc, full_matrices=False)
    if not sv.size or sv.max() <= 0:
        return -np.inf, -np.inf, mo.nce(logits, y)
    k = min(FUSION_DIMS, f.shape[1])
    z = u[:, :k] * sv[:k]
    return mo.logme(z, y), ws.shrinkage_hscore_raw(z, y), mo.nce(logits, y)


def fuse(members):
    """Equal-weight rank fusion (normalised ranks; -inf lowest), as scoring::WeightedRankFusion."""
    members = np.asarray(members, dtype=np.float64)  # [models, metrics]
    n = members.shape[0]
    return np.mean([ws.ranks(members[:, j]) / n for j in range(members.shape[1])], axis=0)


def tau_w(order_score, acc):
    return float(stats.weightedtau(order_score, acc).correlation)


def rel1(order_score, acc):
    return float(acc[int(np.argmax(order_score))] / acc.max())


def two_stage_score(fused_full, stage1_order, num):
    """Ranking score of 'score the stage-1 top num, then the rest in stage-1 order'."""
    m = len(fused_full)
    score = np.zeros(m)
    cand = stage1_order[:num]
    rest = stage1_order[num:]
    # Candidates first, by their fusion over the candidates only (the server ranks only them).
    sub = fused_full[cand]
    for rank, i in enumerate(np.asarray(cand)[np.argsort(-sub, kind="stable")]):
        score[i] = 2 * m - rank
    for rank, i in enumerate(rest):
        score[i] = m - rank
    return score


def study(args):
    models, tasks = ws.load_zoo(args.zoo)
    gt = json.load(open(args.ground_truth))["tasks"]
    tasks = [t for t in tasks if t["name"] in gt]
    feats = {m: np.load(os.path.join(args.cache, f"{m}.npz")) for m in models}
    stage1 = {}
    if args.stage1:
        for r in json.load(open(args.stage1))["responses"]:
            if r["method"] != "stage1":
                continue
            resp = r["response"]
            resp = json.loads(resp) if isinstance(resp, str) else resp
            names = [x["name"] for x in resp["results"]]
            stage1[r["task"]] = [models.index(n) for n in names if n in models]
    out = {"zoo": args.zoo, "fractions": FRACTIONS, "tasks": {}}
    t0 = time.time()
    for t in tasks:
        tn = t["name"]
        y_all = ws.read_idx(os.path.join(args.zoo, t["train_labels"])).astype(np.int64)
        acc = np.asarray([gt[tn][m]["best"] for m in models])
        rec = {"N": int(len(y_all)), "K": int(len(np.unique(y_all))), "rows": {}, "models": {}}
        full = None
        for frac in FRACTIONS:
            taus, rels = [], []
            for seed in (range(ROW_SEEDS) if frac < 1 else [0]):
                rows = stratified_rows(y_all, frac, seed) if frac < 1 else np.arange(len(y_all))
                y = y_all[rows]
                members = [member_scores(feats[m][tn][rows], feats[m]["logits:" + tn][rows], y)
                           for m in models]
                fused = fuse(members)
                if frac == 1:
                    full = fused
                    rec["members_full"] = {
                        name: tau_w(ws.ranks(np.asarray(members)[:, j]), acc)
                        for j, name in enumerate(["logme@32", "shrink@32", "nce"])}
                taus.append(tau_w(fused, acc))
                rels.append(rel1(fused, acc))
            rec["rows"][str(frac)] = {"tau_w": float(np.mean(taus)), "rel@1": float(np.mean(rels)),
                                      "rows": int(len(rows))}
        rec["per_class"] = {}
        for n_c in PER_CLASS:
            taus = []
            for seed in range(ROW_SEEDS):
                rows = stratified_rows(y_all, 1.0, seed, per_class=n_c)
                y = y_all[rows]
                members = [member_scores(feats[m][tn][rows], feats[m]["logits:" + tn][rows], y)
                           for m in models]
                taus.append(tau_w(fuse(members), acc))
            rec["per_class"][str(n_c)] = {"tau_w": float(np.mean(taus)), "rows": int(len(rows))}
        for frac in FRACTIONS[1:]:
            num = math.ceil(frac * len(models))
            entry = {"num": num}
            if tn in stage1:
                s = two_stage_score(full, stage1[tn], num)
                entry["served_stage1"] = {"tau_w": tau_w(s, acc), "rel@1": rel1(s, acc)}
            # Without a served stage 1, the noise goes on the ground truth's own ranks.
            rng = np.random.default_rng(1)
            base = np.zeros(len(models))
            if tn in stage1:
                base[stage1[tn]] = np.arange(len(models), 0, -1)
            else:
                base = stats.rankdata(acc)
            noise = NOISE if tn in stage1 else NOISE_GT
            taus, s1 = [], []
            for _ in range(RANDOM_STAGE1_SEEDS):
                noisy = base + rng.normal(0, noise * len(models), len(models))
                s1.append(tau_w(noisy, acc))
                taus.append(tau_w(two_stage_score(full, list(np.argsort(-noisy)), num), acc))
            entry["noisy_stage1"] = {"tau_w": float(np.mean(taus)),
                                     "stage1_tau_w": float(np.mean(s1))}
            rng = np.random.default_rng(0)
            taus, rels = [], []
            for _ in range(RANDOM_STAGE1_SEEDS):
                s = two_stage_score(full, list(rng.permutation(len(models))), num)
                taus.append(tau_w(s, acc))
                rels.append(rel1(s, acc))
            entry["random_stage1"] = {"tau_w": float(np.mean(taus)), "rel@1": float(np.mean(rels))}
            rec["models"][str(frac)] = entry
        if tn in stage1:
            order = stage1[tn]
            s = np.zeros(len(models))
            s[order] = np.arange(len(models), 0, -1)
            rec["stage1_alone"] = tau_w(s, acc)
        out["tasks"][tn] = rec
        print(f"  {tn}: N={rec['N']} K={rec['K']} ({time.time() - t0:.0f} s)", flush=True)
    summarize(out)
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=1)


def summarize(out):
    recs = list(out["tasks"].values())
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    print(f"{len(recs)} tasks; tau_w / rel@1, mean over tasks")
    if all("stage1_alone" in r for r in recs):
        print(f"  stage 1 alone (served): {mean([r['stage1_alone'] for r in recs]):.3f}")
    for j in ["logme@32", "shrink@32", "nce"]:
        print(f"  member {j}, every model, every row: {mean([r['members_full'][j] for r in recs]):.3f}")
    print("  fraction f | rows: all models on f of the samples | models: stage-1 top f on all"
          " samples (served stage 1 / random stage 1)")
    for frac in out["fractions"]:
        f = str(frac)
        row = f"  {frac:<6g}   | {mean([r['rows'][f]['tau_w'] for r in recs]):.3f} / " \
              f"{mean([r['rows'][f]['rel@1'] for r in recs]):.3f}"
        if frac < 1:
            ms = [r["models"][f] for r in recs]
            served = (f"{mean([m['served_stage1']['tau_w'] for m in ms]):.3f} / "
                      f"{mean([m['served_stage1']['rel@1'] for m in ms]):.3f}"
                      if all("served_stage1" in m for m in ms) else "-")
            rnd = (f"{mean([m['random_stage1']['tau_w'] for m in ms]):.3f} / "
                   f"{mean([m['random_stage1']['rel@1'] for m in ms]):.3f}")
            row += f" | {served}  ;  {rnd}"
            if all("noisy_stage1" in m for m in ms):
                row += (f"  ;  noisy stage 1 (its own tau_w "
                        f"{mean([m['noisy_stage1']['stage1_tau_w'] for m in ms]):.3f}): "
                        f"{mean([m['noisy_stage1']['tau_w'] for m in ms]):.3f}")
        print(row)
    print("  rows per class (all models): " + ", ".join(
        f"{n}: {mean([r['per_class'][str(n)]['tau_w'] for r in recs]):.3f}"
        for n in PER_CLASS))


def nce_weights(args):
    """The same fusion with NCE's rank weighted w (every model, every sample): mean tau_w."""
    models, tasks = ws.load_zoo(args.zoo)
    gt = json.load(open(args.ground_truth))["tasks"]
    weights = [0, 0.25, 0.5, 0.75, 1.0]
    taus = {w: [] for w in weights}
    feats = {m: np.load(os.path.join(args.cache, f"{m}.npz")) for m in models}
    for t in tasks:
        tn = t["name"]
        if tn not in gt:
            continue
        y = ws.read_idx(os.path.join(args.zoo, t["train_labels"])).astype(np.int64)
        acc = np.asarray([gt[tn][m]["best"] for m in models])
        members = np.asarray([member_scores(feats[m][tn], feats[m]["logits:" + tn], y)
                              for m in models])
        r = [ws.ranks(members[:, j]) / len(models) for j in range(3)]
        for w in weights:
            taus[w].append(tau_w((r[0] + r[1] + w * r[2]) / (2 + w), acc))
    print("NCE weight: " + ", ".join(f"{w:g}: {np.mean(v):.3f}" for w, v in taus.items()))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("--zoo", required=True)
    e.add_argument("--cache", required=True)
    s = sub.add_parser("study")
    s.add_argument("--zoo", required=True)
    s.add_argument("--cache", required=True)
    s.add_argument("--ground-truth", required=True)
    s.add_argument("--stage1", default=None, help="run_quality raw JSON with stage1 responses")
    s.add_argument("--out", required=True)
    n = sub.add_parser("nce")
    n.add_argument("--zoo", required=True)
    n.add_argument("--cache", required=True)
    n.add_argument("--ground-truth", required=True)
    args = ap.parse_args()
    {"extract": extract, "study": study, "nce": nce_weights}[args.cmd](args)


if __name__ == "__main__":
    main()
