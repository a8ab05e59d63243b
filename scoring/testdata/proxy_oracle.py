#!/usr/bin/python3
"""Independent NumPy/SciPy oracle for scoring/proxy.h (stage-1 probe proxies and rank fusion).

Usage: proxy_oracle.py OUT_DIR

Writes seeded fixtures into OUT_DIR (row-major little-endian float32 / int32 files) and
manifest.json with the expected values:
  * neighbours: for each query row, the k probe rows of highest cosine similarity (argsort of the
    similarity matrix, stable, so ties go to the lower index),
  * proxy: the mean of the probe values over those neighbours,
  * compressed: PCA of the probe features (numpy eigh of the covariance; sign convention: each
    direction's largest-magnitude loading positive),
  * ranks / fusion: scipy.stats.rankdata (average ties) and its mean over lists,
  * proxy_logme / proxy_shrinkage_hscore: metrics_oracle's LogME and shrinkage H-score on the
    proxy of the compressed features (the whole stage-1 pipeline for one model),
  * model_*: the default stage-2 fusion over four models of different feature widths (each
    reduced to its own top principal components, LogME and shrinkage H-score, rank-fused).
"""
import json
import os
import sys

import numpy as np
from scipy import stats

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import metrics_oracle  # noqa: E402


def neighbours(q, p, k):
    qn = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-300)
    pn = p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-300)
    s = qn @ pn.T
    return np.argsort(-s, axis=1, kind="stable")[:, :k]


def compress(f, dim):
    x = f - f.mean(axis=0, keepdims=True)
    cov = x.T @ x / len(x)
    w, v = np.linalg.eigh(cov)
    v = v[:, ::-1][:, :min(dim, f.shape[1])]
    for c in range(v.shape[1]):
        if v[np.argmax(np.abs(v[:, c])), c] < 0:
            v[:, c] = -v[:, c]
    return x @ v


def drop_null_components(z):
    """scoring::DropNullComponents: the leading columns of compress() whose variance is above
    1e-10 of the first column's (at least one)."""
    ss = np.sum(z * z, axis=0)
    keep = 1
    while keep < z.shape[1] and ss[keep] > 1e-10 * ss[0]:
        keep += 1
    return z[:, :keep]


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(11)
    n_q, n_p, d_key, d_feat, k, dim, classes = 60, 300, 12, 20, 3, 6, 3
    # Query keys near a few probe keys, so neighbours are well separated (no near-ties).
    probe_keys = rng.normal(size=(n_p, d_key))
    y = rng.integers(0, classes, size=n_q).astype(np.int32)
    y[:classes] = np.arange(classes)
    query_keys = probe_keys[rng.integers(0, n_p, size=n_q)] + 0.05 * rng.normal(size=(n_q, d_key))
    # Probe features with a few dominant directions, as penultimate features have.
    probe_feat = rng.normal(size=(n_p, d_feat)) * np.linspace(3.0, 0.1, d_feat)[None, :]
    probe_keys = probe_keys.astype(np.float32)
    query_keys = query_keys.astype(np.float32)
    probe_feat = probe_feat.astype(np.float32)
    nb = neighbours(query_keys.astype(np.float64), probe_keys.astype(np.float64), k)
    proxy_raw = probe_feat.astype(np.float64)[nb].mean(axis=1)
    compressed = compress(probe_feat.astype(np.float64), dim)
    # The C++ pipeline gathers from the float32-stored compressed features.
    proxy_c = compressed.astype(np.float32).astype(np.float64)[nb].mean(axis=1)
    lists = [rng.normal(size=9), np.array([1.0, 2.0, 2.0, 3.0, -1.0, 5.0, 5.0, 5.0, 0.0])]
    for name, arr in (("probe_keys", probe_keys), ("query_keys", query_keys),
                      ("probe_feat", probe_feat)):
        arr.astype("<f4").tofile(os.path.join(out, name + ".f32"))
    y.astype("<i4").tofile(os.path.join(out, "labels.i32"))
    manifest = {
        "n_q": n_q, "n_p": n_p, "d_key": d_key, "d_feat": d_feat, "k": k, "dim": dim,
        "classes": classes,
        "neighbours": nb.reshape(-1).tolist(),
        "proxy_raw": proxy_raw.reshape(-1).tolist(),
        "compressed": compressed.reshape(-1).tolist(),
        "lists": [l.tolist() for l in lists],
        "ranks": [stats.rankdata(l).tolist() for l in lists],
        "fusion": np.mean([stats.rankdata(l) for l in lists], axis=0).tolist(),
        "proxy_logme": metrics_oracle.logme(proxy_c, y),
        "proxy_shrinkage_hscore": metrics_oracle.shrinkage_hscore(proxy_c, y),
    }
    # The default stage-2 fusion over four "models": each model's query features reduced to its
    # own top `fusion_dim` principal components, LogME and shrinkage H-score on those, rank-fused.
    fusion_dim = 8
    widths = [5, 12, 30, 64]
    model_logme, model_shrink = [], []
    for mi, width in enumerate(widths):
        centres = rng.normal(size=(classes, width)) * (1.0 + mi) / np.sqrt(width)
        feats = (centres[y] + rng.normal(size=(n_q, width))).astype(np.float32)
        feats.astype("<f4").tofile(os.path.join(out, f"model{mi}.f32"))
        reduced = compress(feats.astype(np.float64), fusion_dim).astype(np.float32).astype(np.float64)
        model_logme.append(metrics_oracle.logme(reduced, y))
        model_shrink.append(metrics_oracle.shrinkage_hscore(reduced, y))
    manifest["fusion_dim"] = fusion_dim
    manifest["model_widths"] = widths
    manifest["model_logme"] = model_logme
    manifest["model_shrinkage_hscore"] = model_shrink
    manifest["model_fusion"] = np.mean([stats.rankdata(model_logme),
                                        stats.rankdata(model_shrink)], axis=0).tolist()
    with open(os.path.join(out, "manifest.json"), "w") as fh:
        json.dump(manifest, fh)


if __name__ == "__main__":
    main()
