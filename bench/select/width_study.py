#!/usr/bin/python3
"""Why the default fusion loses to its own members on some docks, and which width/fusion to serve
(issue 21). Offline, in NumPy, independent of the server:

  extract  every zoo model's embed features on every query task's train split (what stage 2
           scores), cached per model in CACHE/<model>.npz
  score    LogME and shrinkage H-score (scoring/testdata/metrics_oracle.py conventions) of every
           (model, task) on the raw features and on the features' own top-k principal components
           (centred, as scoring::CompressFeatures), for k from fixed widths and from rules in D
           (feature width), N (query samples) and K (query classes); writes SCORES.json
  select   single members and rank / z-score fusions of (LogME view, shrinkage-H view, weight),
           every one scored with weighted Kendall tau against fine-tune accuracy on every zoo;
           a default is chosen leave-one-zoo-out (best mean over the other zoos) and reported on
           the zoo left out, with the issue's two checks (within 0.02 of the zoo's best single
           metric; not below its own best member by more than 0.02)

  nice -n 10 /usr/bin/python3 bench/select/width_study.py extract --zoo Z --cache C
  nice -n 10 /usr/bin/python3 bench/select/width_study.py score --zoo Z --cache C \
      --ground-truth GT --out S.json
  /usr/bin/python3 bench/select/width_study.py select S1.json S2.json S3.json [--json OUT]

Committed: width_selection.{txt,json} (select over zoo1, zoo2 and zoo3; zoo3 scored against its
linear-probe ground truth, bench/zoo3/README.md); docs/BENCHMARKS.md section 2e reads them.
"""
import argparse
import itertools
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "scoring", "testdata"))
import metrics_oracle as mo  # noqa: E402


def read_idx(path):
    with open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_zoo(zoo):
    models = [m["name"] for m in json.load(open(os.path.join(zoo, "zoo.json")))["models"]]
    tasks = json.load(open(os.path.join(zoo, "tasks.json")))["tasks"]
    return models, tasks


# --------------------------------------------------------------------------- extract

def cache_model_outputs(zoo, cache, models, outputs_of):
    """For every model not cached yet: loads ZOO/models/<model>.pt (one torch thread, inference
    mode) and saves `outputs_of(module, model)` ({key: array}) to CACHE/<model>.npz."""
    import torch
    torch.set_num_threads(1)
    os.makedirs(cache, exist_ok=True)
    t0 = time.time()
    for i, m in enumerate(models):
        path = os.path.join(cache, f"{m}.npz")
        if os.path.exists(path):
            continue
        module = torch.jit.load(os.path.join(zoo, "models", f"{m}.pt"))
        module.eval()
        with torch.inference_mode():
            out = outputs_of(module, m)
        np.savez(path + ".tmp.npz", **out)
        os.replace(path + ".tmp.npz", path)
        print(f"  {i + 1}/{len(models)} {m} ({time.time() - t0:.0f} s)", flush=True)


def extract(args, with_logits=False):
    """Every model's embed features (key: the task's name) on every task's train split, and with
    `with_logits` its class outputs too (key: "logits:" + the task's name), cached per model."""
    import torch
    models, tasks = load_zoo(args.zoo)
    xs = {t["name"]: read_idx(os.path.join(args.zoo, t["train_images"]))[:, None].astype(np.float32) / 255.0
          for t in tasks}

    def outputs_of(module, _):
        out = {}
        for tn, x in xs.items():
            out[tn] = module.embed(torch.from_numpy(x)).numpy().astype(np.float32)
            if with_logits:
                out["logits:" + tn] = module(torch.from_numpy(x)).numpy().astype(np.float32)
        return out

    cache_model_outputs(args.zoo, args.cache, models, outputs_of)


# --------------------------------------------------------------------------- score

# Width rules: label -> k from (D, N, K); None = the raw features (no centring, no projection).
# Every k is capped at the rank of the centred features (what CompressFeatures keeps is
# min(k, D) columns; beyond the rank they are zero and change neither metric).
FIXED = [8, 16, 32, 64, 128]
RULES = {"raw": lambda d, n, k: None, "all": lambda d, n, k: d}
RULES.update({f"pc{w}": (lambda w: lambda d, n, k: w)(w) for w in FIXED})
RULES.update({
    "K": lambda d, n, k: k, "2K": lambda d, n, k: 2 * k, "4K": lambda d, n, k: 4 * k,
    "max32_2K": lambda d, n, k: max(32, 2 * k), "max32_4K": lambda d, n, k: max(32, 4 * k),
    "N/8": lambda d, n, k: n // 8, "N/4": lambda d, n, k: n // 4, "N/2": lambda d, n, k: n // 2,
    "D/4": lambda d, n, k: max(1, d // 4), "D/2": lambda d, n, k: max(1, d // 2),
})
VARIANCE = [0.9, 0.95, 0.99]


def shrinkage_hscore_raw(f, y):
    """metrics_oracle.shrinkage_hscore without forming D x D matrices (D up to 1,568): the
    Ledoit-Wolf target and shrinkage from sklearn's formulas, the inverse from the thin SVD of
    the centred features. Checked against the oracle in `score` on the first pairs."""
    x = f - f.mean(axis=0, keepdims=True)
    n, d = x.shape
    sq = np.sum(x * x, axis=1)
    mu = sq.sum() / n / d
    gram = x @ x.T
    delta_ = np.sum(gram ** 2) / n ** 2
    beta_ = np.sum(sq ** 2)
    beta = 1.0 / (d * n) * (beta_ / n - delta_)
    delta = (delta_ - 2.0 * mu * sq.sum() / n + d * mu ** 2) / d
    beta = min(beta, delta)
    # One column: any shrinkage gives the same 1 x 1 estimate; scoring/hscore.cc takes 0.
    s = 0.0 if beta == 0 or d == 1 or delta <= 0 else beta / delta
    _, sv, vt = np.linalg.svd(x, full_matrices=False)
    lam = sv ** 2 / n
    g = mo.class_mean_rows(x, y)
    g = g - g.mean(axis=0, keepdims=True)
    gv = g @ vt.T
    if s * mu <= 0:  # no shrinkage: the pseudo-inverse with the oracle's cutoff
        keep = lam > d * np.finfo(np.float64).eps * lam.max()
        return float(np.sum(gv[:, keep] ** 2 / lam[keep]) / (n - 1))
    inside = np.sum(gv ** 2 / ((1 - s) * lam + s * mu))
    outside = (np.sum(g * g) - np.sum(gv ** 2)) / (s * mu)
    return float((1.0 - s) * (inside + outside) / (n - 1))


def variance_k(sv, frac):
    c = np.cumsum(sv ** 2) / np.sum(sv ** 2)
    return int(np.searchsorted(c, frac) + 1)


def score(args):
    models, tasks = load_zoo(args.zoo)
    feats = {m: np.load(os.path.join(args.cache, f"{m}.npz")) for m in models}
    rules = list(RULES) + [f"v{int(v * 100)}" for v in VARIANCE]
    out = {"zoo": args.zoo, "ground_truth": os.path.abspath(args.ground_truth), "models": models,
           "tasks": [t["name"] for t in tasks], "meta": {}, "dims": {}, "widths": {}, "scores": {}}
    checked = 0
    t0 = time.time()
    for t in tasks:
        tn = t["name"]
        y = read_idx(os.path.join(args.zoo, t["train_labels"])).astype(np.int64)
        n, k_cls = len(y), len(np.unique(y))
        out["meta"][tn] = {"N": n, "K": k_cls}
        for m in models:
            f = feats[m][tn].astype(np.float64)
            d = f.shape[1]
            out["dims"][m] = d
            xc = f - f.mean(axis=0, keepdims=True)
            u, sv, _ = np.linalg.svd(xc, full_matrices=False)
            rank = int(np.sum(sv > max(1e-10, 1e-6 * sv.max()))) if sv.size and sv.max() > 0 else 0
            by_k = {}
            for r in rules:
                if r.startswith("v"):
                    k = variance_k(sv, int(r[1:]) / 100.0) if rank else 1
                else:
                    k = RULES[r](d, n, k_cls)
                if k is not None:
                    k = max(1, min(k, d, max(rank, 1)))
                out["widths"].setdefault(r, {}).setdefault(tn, []).append(k)
                if k not in by_k:
                    if k is None:
                        lm = mo.logme(f, y)
                        sh = shrinkage_hscore_raw(f, y)
                        if checked < 3 and d <= 600:
                            ref = mo.shrinkage_hscore(f, y)
                            assert abs(sh - ref) <= 1e-6 * max(1.0, abs(ref)), (m, tn, sh, ref)
                            checked += 1
                    else:
                        z = u[:, :k] * sv[:k]
                        lm = mo.logme(z, y) if rank else -np.inf
                        sh = shrinkage_hscore_raw(z, y) if rank else -np.inf
                    by_k[k] = (lm, sh)
                lm, sh = by_k[k]
                out["scores"].setdefault(f"logme@{r}", {}).setdefault(tn, []).append(float(lm))
                out["scores"].setdefault(f"shrink@{r}", {}).setdefault(tn, []).append(float(sh))
        print(f"  {tn}: N={n} K={k_cls} ({time.time() - t0:.0f} s)", flush=True)
    with open(args.out, "w") as fh:
        json.dump(out, fh)


# --------------------------------------------------------------------------- select

def ranks(v):
    v = np.asarray(v, dtype=np.float64)
    v = np.where(np.isfinite(v), v, -1e300)
    return stats.rankdata(v)


def zs(v):
    v = np.asarray(v, dtype=np.float64)
    finite = np.isfinite(v)
    # Degenerate features (-inf, NaN) below every finite score, as in the rank fusion.
    lo = v[finite].min() - (np.ptp(v[finite]) + 1.0) if finite.any() else 0.0
    v = np.where(finite, v, lo)
    s = v.std()
    return (v - v.mean()) / s if s > 0 else np.zeros_like(v)


def attach_accuracy(z):
    """Fine-tune accuracy ("best" of finetune.py) of every model on every task, read from the
    ground truth named in the score file (so scores can be computed before it is complete);
    tasks the ground truth lacks are left out."""
    gt = json.load(open(z["ground_truth"]))
    z["tasks"] = [t for t in z["tasks"] if t in gt["tasks"]]
    z["accuracy"] = {t: [gt["tasks"][t][m]["best"] for m in z["models"]] for t in z["tasks"]}
    return z


def candidate_scores(z, spec, task):
    """spec: ("single", name) or (kind, logme view, shrink view, weight of LogME)."""
    if spec[0] == "single":
        return ranks(z["scores"][spec[1]][task])
    kind, lv, sv, w = spec
    f = ranks if kind == "rank" else zs
    return w * f(z["scores"][f"logme@{lv}"][task]) + (1 - w) * f(z["scores"][f"shrink@{sv}"][task])


def evaluate(z, spec):
    tws, rels = [], []
    for t in z["tasks"]:
        s = candidate_scores(z, spec, t)
        acc = np.asarray(z["accuracy"][t])
        tws.append(float(stats.weightedtau(s, acc).correlation))
        rels.append(float(acc[int(np.argmax(s))] / acc.max()))
    return float(np.mean(tws)), float(np.mean(rels))


def label(spec):
    if spec[0] == "single":
        return spec[1]
    kind, lv, sv, w = spec
    return f"{kind}({w:g} logme@{lv} + {1 - w:g} shrink@{sv})"


def select(args):
    zoos = [attach_accuracy(json.load(open(p))) for p in args.scores]
    names = [os.path.basename(os.path.normpath(z["zoo"])) for z in zoos]
    names = ["zoo1" if n == "zoo" else n for n in names]
    views = sorted({k.split("@")[1] for k in zoos[0]["scores"]})
    singles = [("single", f"{m}@{v}") for m in ("logme", "shrink") for v in views]
    fusions = [(kind, lv, sv, w) for kind in ("rank", "z") for lv in views for sv in views
               for w in (0.25, 0.5, 0.75)]
    table = {}
    for spec in singles + fusions:
        table[label(spec)] = [evaluate(z, spec) for z in zoos]
    tw = {k: np.array([e[0] for e in v]) for k, v in table.items()}
    lines = []

    def row(k):
        return "  ".join(f"{tw[k][i]:.3f}/{table[k][i][1]:.3f}" for i in range(len(zoos)))

    lines.append("tau_w/rel@1 per zoo: " + ", ".join(names))
    lines.append("== single metrics (best 12 by mean, then every raw and pc32)")
    for k in sorted((label(s) for s in singles), key=lambda k: -tw[k].mean())[:12]:
        lines.append(f"  {k:58s} {row(k)}  mean {tw[k].mean():.3f}")
    for k in ("logme@raw", "shrink@raw", "logme@pc32", "shrink@pc32"):
        lines.append(f"  {k:58s} {row(k)}  mean {tw[k].mean():.3f}")
    lines.append("== per view, tau_w per zoo: LogME | shrinkage H | rank(0.5 + 0.5) on that view")
    for v in views:
        f = label(("rank", v, v, 0.5))
        cells = "  ".join(f"{tw['logme@' + v][i]:.3f} {tw['shrink@' + v][i]:.3f} {tw[f][i]:.3f}"
                          for i in range(len(zoos)))
        lines.append(f"  {v:10s} {cells}")
    lines.append("== served before: rank(0.5 logme@pc32 + 0.5 shrink@pc32): " +
                 row(label(("rank", "pc32", "pc32", 0.5))))
    best_single = [max(tw[label(s)][i] for s in singles) for i in range(len(zoos))]
    best_single_raw = [max(tw["logme@raw"][i], tw["shrink@raw"][i]) for i in range(len(zoos))]
    same_view = {label(("rank", v, v, 0.5)) for v in views}
    result = {"zoos": names, "tasks": [len(z["tasks"]) for z in zoos],
              "table": {k: [[round(a, 4), round(b, 4)] for a, b in v] for k, v in table.items()
                        if k in same_view or not k.startswith(("rank(", "z("))},
              "lozo": []}
    families = {
        "every fusion (kind, LogME view, shrinkage-H view, weight)": fusions,
        "one view for both, equal-weight rank fusion": [f for f in fusions
                                                        if f[0] == "rank" and f[1] == f[2] and f[3] == 0.5],
    }
    for family, specs in families.items():
        lines.append(f"#### leave one zoo out over: {family} ({len(specs)} candidates)")
        result["lozo"] += lozo(zoos, names, specs, tw, table, best_single, best_single_raw, lines, row)
    fusion_labels = [label(s) for s in fusions]
    allpick = max(fusion_labels, key=lambda k: tw[k].mean())
    lines.append(f"== best over all zoos: {allpick}: {row(allpick)}")
    print("\n".join(lines))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=1)


def lozo(zoos, names, fusions, tw, table, best_single, best_single_raw, lines, row):
    """Per zoo left out: the fusion with the best mean tau_w over the other zoos, and how it
    does on the zoo left out against the issue's two checks."""
    out = []
    fusion_labels = [label(s) for s in fusions]
    for h in range(len(zoos)):
        others = [i for i in range(len(zoos)) if i != h]
        ranked = sorted(fusion_labels, key=lambda k: -tw[k][others].mean())
        pick = ranked[0]
        spec = fusions[fusion_labels.index(pick)]
        own = max(tw[f"logme@{spec[1]}"][h], tw[f"shrink@{spec[2]}"][h])
        lines.append(f"== held out {names[h]}: chosen on {', '.join(names[i] for i in others)}: {pick}")
        lines.append(f"   on the others {tw[pick][others].mean():.3f}; on {names[h]} {tw[pick][h]:.3f} "
                     f"(rel@1 {table[pick][h][1]:.3f}); best single there {best_single[h]:.3f}, best raw "
                     f"single {best_single_raw[h]:.3f}, own best member {own:.3f}; served-before "
                     f"{tw[label(('rank', 'pc32', 'pc32', 0.5))][h]:.3f}")
        for k in ranked[:5]:
            lines.append(f"     {k:58s} {row(k)}")
        out.append({"held_out": names[h], "chosen": pick, "on_others": tw[pick][others].mean(),
                    "on_held_out": tw[pick][h], "rel1_held_out": table[pick][h][1],
                    "best_single": best_single[h], "best_raw_single": best_single_raw[h],
                    "own_best_member": own, "candidates": len(fusions)})
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("--zoo", required=True)
    e.add_argument("--cache", required=True)
    s = sub.add_parser("score")
    s.add_argument("--zoo", required=True)
    s.add_argument("--cache", required=True)
    s.add_argument("--ground-truth", required=True, help="read by select (may be written later)")
    s.add_argument("--out", required=True)
    c = sub.add_parser("select")
    c.add_argument("scores", nargs="+")
    c.add_argument("--json", default=None)
    args = ap.parse_args()
    {"extract": extract, "score": score, "select": select}[args.cmd](args)


if __name__ == "__main__":
    main()
