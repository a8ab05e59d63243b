#!/usr/bin/python3
"""Independent NumPy/SciPy/sklearn oracle for scoring/metrics.h.

Usage: metrics_oracle.py OUT_DIR

Writes seeded fixtures into OUT_DIR: per fixture NAME.features.f32 / NAME.logits.f32 (row-major
little-endian float32) and NAME.labels.i32, plus manifest.json with shapes and the expected value
of every metric. The expected values are computed in float64 from the float32 values written,
with library routines where they exist (cKDTree with p=inf, scipy digamma, numpy SVD / pinv,
sklearn LedoitWolf and PCA, scipy generalised eigh) rather than the C++ code's shortcuts.

Conventions shared with the C++ (choices METHODS.md leaves open) are marked "convention".
"""
import json
import os
import sys

import numpy as np
from scipy import linalg as sla
from scipy.spatial import cKDTree
from scipy.special import digamma, softmax
from sklearn.covariance import LedoitWolf
from sklearn.decomposition import PCA


def present(y):
    """Convention: every metric works on the classes with samples, relabelled 0..K-1."""
    classes, inverse = np.unique(y, return_inverse=True)
    return len(classes), inverse


def tmi(f, y, k=3):
    x = f - f.mean(axis=0, keepdims=True)
    n, d = x.shape
    terms = []
    for c in np.unique(y):
        xc = x[y == c]
        n_c = len(xc)
        if n_c <= k:  # convention: such classes are left out of the mean
            continue
        dist, _ = cKDTree(xc).query(xc, k=k + 1, p=np.inf)
        r = np.maximum(dist[:, -1], 1.0)
        h = -digamma(k) + digamma(n_c) + d / n_c * np.sum(np.log(2.0 * r))
        terms.append(n_c / n * h)
    return float(np.mean(terms))


def logme(f, y):
    num_c, y = present(y)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > max(1e-10, 1e-6 * s.max())  # convention: 1e-6 of the largest is a numerical zero
    u, s = u[:, keep], s[keep]
    sigma = s ** 2
    evidences = []
    for c in range(num_c):
        yc = (y == c).astype(np.float64)
        x2 = (u.T @ yc) ** 2
        res_x2 = yc @ yc - x2.sum()
        alpha, beta = 1.0, 1.0
        for _ in range(11):
            t = alpha / beta
            gamma = np.sum(sigma / (sigma + t))
            m2 = np.sum(sigma * x2 / (t + sigma) ** 2)
            res2 = np.sum(x2 / (1.0 + sigma / t) ** 2) + res_x2
            alpha = gamma / (m2 + 1e-5)
            beta = (n - gamma) / (res2 + 1e-5)
            if abs(alpha / beta - t) / t <= 1e-3:
                break
        ev = (d / 2.0 * np.log(alpha) + n / 2.0 * np.log(beta)
              - 0.5 * np.sum(np.log(alpha + beta * sigma)) - beta / 2.0 * res2
              - alpha / 2.0 * m2 - n / 2.0 * np.log(2.0 * np.pi))
        evidences.append(ev / n)
    return float(np.mean(evidences))


def leep(logits, y):
    theta = softmax(logits, axis=1)
    n = len(y)
    joint = np.zeros((y.max() + 1, theta.shape[1]))
    np.add.at(joint, y, theta / n)
    p_y_given_z = joint / joint.sum(axis=0, keepdims=True)
    p = np.einsum("iz,iz->i", theta, p_y_given_z[y])
    return float(np.mean(np.log(p)))


def nce(logits, y):
    z = np.argmax(logits, axis=1)
    n = len(y)
    joint = np.zeros((y.max() + 1, logits.shape[1]))
    np.add.at(joint, (y, z), 1.0 / n)
    p_z = joint.sum(axis=0)
    total = 0.0
    for yy, zz in zip(*np.nonzero(joint)):
        total += joint[yy, zz] * np.log(joint[yy, zz] / p_z[zz])
    return float(total)


def class_mean_rows(f, y):
    g = np.zeros_like(f)
    for c in np.unique(y):
        g[y == c] = f[y == c].mean(axis=0)
    return g


def pinv(a):
    # Convention: cutoff D * eps relative to the largest singular value.
    return np.linalg.pinv(a, rcond=a.shape[0] * np.finfo(np.float64).eps)


def hscore(f, y):
    covf = np.atleast_2d(np.cov(f, rowvar=False))  # [D, D] also when D = 1
    covg = np.atleast_2d(np.cov(class_mean_rows(f, y), rowvar=False))
    return float(np.trace(pinv(covf) @ covg))


def shrinkage_hscore(f, y):
    f = f - f.mean(axis=0, keepdims=True)
    lw = LedoitWolf(assume_centered=False).fit(f)
    covg = np.atleast_2d(np.cov(class_mean_rows(f, y), rowvar=False))
    return float(np.trace(pinv(lw.covariance_) @ ((1.0 - lw.shrinkage_) * covg)))


def gbc(f, y):
    if f.shape[1] > 64:
        f = PCA(n_components=64, svd_solver="full").fit_transform(f)
    stats = {}
    for c in np.unique(y):
        fc = f[y == c]
        stats[c] = (fc.mean(axis=0), np.mean(np.maximum(fc.var(axis=0), 1e-4)))
    total = 0.0
    for c1 in stats:
        for c2 in stats:
            if c1 == c2:
                continue
            (m1, s1), (m2, s2) = stats[c1], stats[c2]
            s = (s1 + s2) / 2.0
            db = np.sum((m1 - m2) ** 2 / s) / 8.0 + 0.5 * (np.log(s) - 0.5 * np.log(s1)
                                                          - 0.5 * np.log(s2))
            total += np.exp(-db)
    return float(-total)


def _shrunk(cov, lam):
    d = cov.shape[0]
    return (1.0 - lam) * cov + lam * np.trace(cov) / d * np.eye(d)


def _power_largest(a, steps=3):
    x = a.sum(axis=1)
    for _ in range(steps):
        t = a @ x
        yv = t / np.linalg.norm(t)
        t = a @ yv
        x = t / np.linalg.norm(t)
    return x @ a @ yv


def _fisher(x, y, num_c, lam):
    """Regularised LDA as TencentARC/SFDA: generalised eigh(Sb, Sw'), all eigenvectors."""
    n, d = x.shape
    priors = np.bincount(y, minlength=num_c) / n
    means = np.stack([x[y == c].mean(axis=0) for c in range(num_c)])
    sw = np.zeros((d, d))
    for c in range(num_c):
        sw += priors[c] * np.atleast_2d(np.cov(x[y == c].T, bias=True))
    if lam is None:
        lam = max(np.exp(-5.0 * _power_largest(sw)), 1e-10)
    st = _shrunk(np.cov(x.T, bias=True), lam)
    sw_shrunk = _shrunk(sw, lam)
    evals, evecs = sla.eigh(st - sw_shrunk, sw_shrunk)
    evecs = evecs[:, np.argsort(evals)[::-1]]
    coef = means @ evecs @ evecs.T
    intercept = -0.5 * np.diag(means @ coef.T) + np.log(priors)
    return softmax(x @ coef.T + intercept, axis=1), means, lam


def sfda(f, y):
    num_c, y = present(y)
    prob, means, lam = _fisher(f, y, num_c, None)
    soft = softmax(prob, axis=1)
    outer = (means.sum(axis=0, keepdims=True) - means) / (num_c - 1)
    p = soft[np.arange(len(y)), y][:, None]
    mixed = p * f + (1.0 - p) * outer[y]
    prob, _, _ = _fisher(mixed, y, num_c, lam)
    return float(np.mean(prob[np.arange(len(y)), y]))


METRICS = {
    "tmi": tmi, "logme": logme, "hscore": hscore, "shrinkage_hscore": shrinkage_hscore,
    "gbc": gbc, "sfda": sfda,
}
LOGIT_METRICS = {"leep": leep, "nce": nce}


def make_fixture(seed, sizes, d, cs, scales=None, separation=4.0, noise=1.0, duplicates=0):
    rng = np.random.default_rng(seed)
    y = np.concatenate([np.full(n_c, c, dtype=np.int32) for c, n_c in enumerate(sizes)])
    # Class centres ~ separation apart (in units of the per-sample noise), whatever D is.
    centres = rng.normal(size=(len(sizes), d)) * separation / np.sqrt(d)
    f = centres[y] + rng.normal(size=(len(y), d)) * noise
    if scales is not None:
        f = f * scales[None, :]
    if duplicates:
        # Exact duplicate samples inside class 0: zero kNN distances must be clamped.
        f[1:1 + duplicates] = f[0]
    w = rng.normal(size=(d, cs)) / np.sqrt(d)
    logits = (f / (np.abs(f).mean() + 1e-12)) @ w * 2.0 + rng.normal(size=(len(y), cs)) * 0.5
    perm = rng.permutation(len(y))
    return f[perm].astype(np.float32), logits[perm].astype(np.float32), y[perm]


FIXTURES = [
    # name, seed, class sizes, D, Cs, num_classes, extra kwargs, metrics not compared (reason)
    ("small", 1, [25, 20, 15], 5, 4, 3, dict(noise=4.0, separation=12.0, duplicates=4), {}),
    ("scales", 2, [80, 70, 60, 50, 37, 3], 40, 10, 7,
     dict(scales=np.logspace(-3, 2, 40), separation=6.0), {}),
    ("wide", 3, [30, 20, 20, 10], 100, 6, 4, dict(separation=5.0), {
        "sfda": "N - K < D: the within-class covariance is singular and the adaptive shrinkage "
                "is ~1e-10, so the discriminant overfits (score saturates at 1) and its solve "
                "is dominated by round-off; not a meaningful comparison"}),
    ("large", 4, [100] * 10, 256, 20, 10, dict(separation=3.0), {}),
    ("tiny", 5, [40, 30, 30, 20], 16, 5, 4, dict(scales=np.full(16, 0.01)), {}),
    # Four all-zero columns, like dead ReLU units: rank-deficient features.
    ("dead", 6, [60, 50, 40], 16, 5, 3, dict(scales=np.r_[np.ones(12), np.zeros(4)]), {}),
]


def main():
    out_dir = sys.argv[1]
    os.makedirs(out_dir, exist_ok=True)
    manifest = {"fixtures": []}
    for name, seed, sizes, d, cs, num_classes, kwargs, skip in FIXTURES:
        f32, logits32, y = make_fixture(seed, sizes, d, cs, **kwargs)
        f32.tofile(os.path.join(out_dir, name + ".features.f32"))
        logits32.tofile(os.path.join(out_dir, name + ".logits.f32"))
        y.astype("<i4").tofile(os.path.join(out_dir, name + ".labels.i32"))
        f = f32.astype(np.float64)
        logits = logits32.astype(np.float64)
        expected = {m: fn(f, y) for m, fn in METRICS.items()}
        expected.update({m: fn(logits, y) for m, fn in LOGIT_METRICS.items()})
        manifest["fixtures"].append({
            "name": name, "n": int(len(y)), "d": d, "cs": cs, "num_classes": num_classes,
            "expected": expected, "skip": skip,
        })
    with open(os.path.join(out_dir, "manifest.json"), "w") as fh:
        json.dump(manifest, fh, indent=1)


if __name__ == "__main__":
    main()
