#!/usr/bin/python3
"""Offline study behind modeldock's ranking defaults (issue: recommendations that hold up on docks
they were not tuned on).

For one benchmark zoo (models, query tasks, fine-tune ground truth) it computes, in NumPy and
independently of the server:
  * every stage-2 metric on each model's real outputs on each task (brute force),
  * kNN leave-one-out accuracy on embed features,
  * rank and z-score fusions of metric subsets,
  * stage-1 *probe proxies*: each query sample is matched to its nearest probe samples (in the
    reference encoder's space or in pixel space) and a model's stored outputs on those probe
    samples stand in for its outputs on the query; metrics are computed on those proxy features
    (optionally PCA-compressed per model, as the dock stores them),
  * the two-stage pipeline at 25% candidates.
Every row is scored with weighted Kendall tau against the fine-tune accuracy (scipy defaults),
per task, then averaged; select.py picks defaults on one zoo and reports them on another.

Usage: study.py --zoo DIR --ground-truth FILE --assets BUILD/assets --cache DIR --out FILE.json
"""
import argparse
import itertools
import json
import os
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import stats  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "scoring", "testdata"))
sys.path.insert(0, os.path.join(REPO, "scripts"))
import metrics_oracle as mo  # noqa: E402
from assets import probe_shifts  # noqa: E402

torch.set_num_threads(1)


def read_idx(path):
    with open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def run_model(module, x, want_embed=True, batch=512):
    """x: float32 [N,1,28,28] in [0,1] -> (embed or None, logits)."""
    feats, logits = [], []
    with torch.inference_mode():
        for i in range(0, len(x), batch):
            xb = torch.from_numpy(x[i:i + batch])
            logits.append(module(xb).double().numpy())
            if want_embed and hasattr(module, "embed"):
                feats.append(module.embed(xb).double().numpy())
    return (np.concatenate(feats) if feats else None), np.concatenate(logits)


def default_probe_set(assets):
    """The clean probe set of make_assets.py plus shifted copies (probe_shifts), exactly as the
    dock's default asset builder writes it when it already includes them."""
    probe = np.load(os.path.join(assets, "probe_set_28.npy"))[:, 0]
    if len(probe) > 2000:  # already augmented by make_assets.py
        return probe
    fm, gl = probe[:1000], probe[1000:2000]
    return np.concatenate([probe, probe_shifts.shifted_copies(fm, gl, 300, 150, seed=103)])


# --------------------------------------------------------------------------- extraction

def extract(args, models, tasks):
    """Caches per model: probe embed/logits; per (model, task): embed/logits on the train split."""
    os.makedirs(args.cache, exist_ok=True)
    probe = default_probe_set(args.assets)
    probe_x = probe[:, None].astype(np.float32) / 255.0
    ref = torch.jit.load(os.path.join(args.assets, "reference_encoder.pt"))
    ref.eval()
    out = {"probe_ref": run_model(ref, probe_x, want_embed=False)[1], "probe_pix": probe_x.reshape(len(probe_x), -1)}
    task_data = {}
    for t in tasks:
        x = read_idx(os.path.join(args.zoo, t["train_images"]))[:, None].astype(np.float32) / 255.0
        y = read_idx(os.path.join(args.zoo, t["train_labels"])).astype(np.int64)
        task_data[t["name"]] = (x, y, run_model(ref, x, want_embed=False)[1])
    out["tasks"] = task_data
    feats = {}
    t0 = time.time()
    for mi, m in enumerate(models):
        path = os.path.join(args.cache, f"{m}.npz")
        if os.path.exists(path):
            z = np.load(path)
            feats[m] = {k: z[k] for k in z.files}
            continue
        module = torch.jit.load(os.path.join(args.zoo, "models", f"{m}.pt"))
        module.eval()
        d = {}
        d["probe_f"], d["probe_l"] = run_model(module, probe_x)
        for tn, (x, _, _) in task_data.items():
            d[f"{tn}_f"], d[f"{tn}_l"] = run_model(module, x)
        np.savez(path, **{k: v.astype(np.float32) for k, v in d.items()})
        feats[m] = {k: v.astype(np.float32) for k, v in d.items()}
        print(f"  extracted {mi + 1}/{len(models)} {m} ({time.time() - t0:.0f} s)", flush=True)
    out["feats"] = feats
    return out


# --------------------------------------------------------------------------- scores

def knn_loo(f, y, k=5):
    f = f / (np.linalg.norm(f, axis=1, keepdims=True) + 1e-12)
    s = f @ f.T
    np.fill_diagonal(s, -np.inf)
    nn = np.argsort(-s, axis=1)[:, :k]
    votes = y[nn]
    pred = np.array([np.bincount(v, minlength=y.max() + 1).argmax() for v in votes])
    return float((pred == y).mean())


FEATURE_METRICS = {
    "logme": mo.logme, "shrinkage_hscore": mo.shrinkage_hscore, "hscore": mo.hscore,
    "gbc": mo.gbc, "tmi": mo.tmi, "knn": knn_loo,
}
LOGIT_METRICS = {"leep": mo.leep, "nce": mo.nce}


def safe(fn, *a):
    try:
        v = float(fn(*a))
        return v if np.isfinite(v) else -1e300
    except Exception:  # noqa: BLE001 - a failed score ranks last, as in the dock
        return -1e300


def pca_own(f, dim):
    """The query features' own top `dim` principal components (what the dock's stage 2 does
    before LogME and shrinkage H-score: every model on the same number of dimensions)."""
    x = f - f.mean(0)
    w, v = np.linalg.eigh(x.T @ x / len(x))
    return x @ v[:, ::-1][:, :dim]


def pca_project(probe_f, dim):
    """Per-model compression as the dock stores it: centre on the probe mean, keep `dim` principal
    directions. Returns a function mapping features to the compressed space."""
    mu = probe_f.mean(0)
    c = probe_f - mu
    cov = c.T @ c / len(c)
    w, v = np.linalg.eigh(cov)
    v = v[:, ::-1][:, :dim]
    return lambda f: (f - mu) @ v


def neighbours(query_keys, probe_keys, k):
    q = query_keys / (np.linalg.norm(query_keys, axis=1, keepdims=True) + 1e-12)
    p = probe_keys / (np.linalg.norm(probe_keys, axis=1, keepdims=True) + 1e-12)
    s = q @ p.T
    return np.argsort(-s, axis=1)[:, :k]


def softmax(l):
    e = np.exp(l - l.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def compute_scores(data, models, tasks, proxy_variants, metrics, dims=(16, 32, 64)):
    """Returns {method: {task: np.array over models}}."""
    scores = {}

    def put(method, task, i, v):
        scores.setdefault(method, {}).setdefault(task, np.full(len(models), np.nan))[i] = v

    for ti, t in enumerate(tasks):
        print(f"  scoring task {ti + 1}/{len(tasks)} {t['name']}", flush=True)
        tn = t["name"]
        x, y, qref = data["tasks"][tn]
        nbr = {}
        for space, k in {(v[0], v[1]) for v in proxy_variants}:
            keys_q = qref if space == "ref" else x.reshape(len(x), -1)
            keys_p = data["probe_ref"] if space == "ref" else data["probe_pix"]
            nbr[(space, k)] = neighbours(keys_q, keys_p, k)
        for i, m in enumerate(models):
            d = data["feats"][m]
            f = d[f"{tn}_f"].astype(np.float64)
            lg = d[f"{tn}_l"].astype(np.float64)
            for name in metrics:
                if name in LOGIT_METRICS:
                    put(f"brute_{name}", tn, i, safe(LOGIT_METRICS[name], lg, y))
                else:
                    put(f"brute_{name}", tn, i, safe(FEATURE_METRICS[name], f, y))
            for dim in dims:
                fq = pca_own(f, dim)
                for name in ("logme", "shrinkage_hscore"):
                    put(f"brute_{name}_pc{dim}", tn, i, safe(FEATURE_METRICS[name], fq, y))
            pf_all = d["probe_f"].astype(np.float64)
            pl_all = d["probe_l"].astype(np.float64)
            for space, k, dim, pmetric in proxy_variants:
                nb = nbr[(space, k)]
                tag = f"proxy_{space}_k{k}_d{dim}_{pmetric}"
                if pmetric in LOGIT_METRICS:
                    p = softmax(pl_all)[nb].mean(1)
                    put(tag, tn, i, safe(LOGIT_METRICS[pmetric], np.log(p + 1e-12), y))
                else:
                    pf = pf_all if dim == 0 else pca_project(pf_all, dim)(pf_all)
                    put(tag, tn, i, safe(FEATURE_METRICS[pmetric], pf[nb].mean(1), y))
    return scores


def rank_within(v):
    return stats.rankdata(v)  # higher score -> higher rank


def zscore(v):
    s = v.std()
    return (v - v.mean()) / s if s > 0 else np.zeros_like(v)


def fuse(score_tables, methods, kind, task):
    vs = [score_tables[m][task] for m in methods]
    if kind == "rank":
        return np.mean([rank_within(v) for v in vs], axis=0)
    return np.mean([zscore(np.clip(v, -1e30, None)) for v in vs], axis=0)


def tau_w(score, acc):
    return float(stats.weightedtau(score, acc).correlation)


def rel1(score, acc):
    return float(acc[int(np.argmax(score))] / acc.max())


def two_stage(stage1, stage2_fn, fraction, n):
    """Top `fraction` by stage 1 re-ranked by stage 2 (computed on the candidates only), the rest
    after them by stage 1. Returns a rank score (higher = better) over all models."""
    c = max(1, int(np.ceil(fraction * n)))
    order1 = np.argsort(-stage1, kind="stable")
    cand = order1[:c]
    s2 = stage2_fn(cand)
    order = list(cand[np.argsort(-s2, kind="stable")]) + list(order1[c:])
    rs = np.empty(n)
    rs[np.asarray(order)] = np.arange(n, 0, -1)
    return rs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--zoo", required=True)
    ap.add_argument("--ground-truth", required=True)
    ap.add_argument("--assets", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--tmi", action="store_true", help="also TMI (slow)")
    ap.add_argument("--brute-only", action="store_true",
                    help="only LogME, shrinkage H-score (full and pc32), LEEP and NCE; no proxies")
    args = ap.parse_args()
    tasks = json.load(open(os.path.join(args.zoo, "tasks.json")))["tasks"]
    gt = json.load(open(args.ground_truth))
    models = [m for m in gt["models"] if os.path.exists(os.path.join(args.zoo, "models", f"{m}.pt"))]
    print(f"{len(models)} models, {len(tasks)} tasks", flush=True)
    data = extract(args, models, tasks)
    metrics = ["logme", "shrinkage_hscore", "hscore", "gbc", "knn", "leep", "nce"]
    if args.tmi:
        metrics.append("tmi")
    # Neighbour space (reference encoder / raw pixels), k, stored PCA dimension (0 = all), metric.
    proxy_variants = []
    for space in ("ref", "pix"):
        for k in (1, 5):
            for dim in (16, 32):
                for pm in ("logme", "shrinkage_hscore"):
                    proxy_variants.append((space, k, dim, pm))
    for pm in ("logme", "shrinkage_hscore", "knn", "leep"):
        proxy_variants.append(("ref", 1, 0, pm))
    proxy_variants.append(("ref", 1, 32, "knn"))
    dims = (16, 32, 64)
    if args.brute_only:
        metrics, proxy_variants, dims = ["logme", "shrinkage_hscore", "leep", "nce"], [], (32,)
    t0 = time.time()
    scores = compute_scores(data, models, tasks, proxy_variants, metrics, dims)
    print(f"scores in {time.time() - t0:.0f} s", flush=True)
    acc = {t["name"]: np.array([gt["tasks"][t["name"]][m]["best"] for m in models]) for t in tasks}
    out = {"zoo": args.zoo, "models": models, "tasks": [t["name"] for t in tasks],
           "accuracy": {k: v.tolist() for k, v in acc.items()},
           "scores": {m: {t: v.tolist() for t, v in d.items()} for m, d in scores.items()}}
    with open(args.out, "w") as f:
        json.dump(out, f)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
