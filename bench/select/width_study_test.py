#!/usr/bin/python3
"""Checks the pieces of width_study.py that the selection in docs/BENCHMARKS.md 2e rests on:
its shrinkage H-score without D x D matrices against scoring/testdata/metrics_oracle.py (sklearn's
Ledoit-Wolf, NumPy's pinv) on seeded data, N < D and N > D; the "p percent of the variance" width
on features with a known spectrum; and the fusions' rank handling of -inf (degenerate features)."""
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import width_study as ws  # noqa: E402


def blobs(seed, n, d, k, offset=5.0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    f = rng.normal(size=(n, d)) + 3.0 * np.eye(k, d)[y] + offset * rng.normal(size=d)
    f[:, :3] *= 10.0  # a few wide directions, as unnormalised features have
    return f, y


class WidthStudyTest(unittest.TestCase):
    def test_shrinkage_hscore_matches_the_oracle(self):
        for seed, (n, d, k) in enumerate([(100, 50, 5), (60, 300, 10), (150, 600, 20), (40, 2, 3)]):
            f, y = blobs(seed, n, d, k)
            got = ws.shrinkage_hscore_raw(f, y)
            want = ws.mo.shrinkage_hscore(f, y)
            self.assertAlmostEqual(got, want, delta=1e-9 * abs(want), msg=f"n={n} d={d}")

    def test_one_column_needs_no_shrinkage(self):
        # scoring/hscore.cc: a 1 x 1 covariance is the same whatever the shrinkage, taken as 0;
        # then the score is Cov(g) / Var(f) with the unbiased and the biased estimate.
        f, y = blobs(7, 50, 1, 2, offset=0.0)
        x = f[:, 0] - f[:, 0].mean()
        g = ws.mo.class_mean_rows(x[:, None], y)[:, 0]
        want = np.sum(g ** 2) / (len(x) - 1) / (np.sum(x ** 2) / len(x))
        self.assertAlmostEqual(ws.shrinkage_hscore_raw(f, y), want, places=10)

    def test_variance_width(self):
        sv = np.sqrt(np.array([50.0, 30.0, 15.0, 4.0, 1.0]))  # shares 0.5, 0.8, 0.95, 0.99, 1
        self.assertEqual(ws.variance_k(sv, 0.5), 1)
        self.assertEqual(ws.variance_k(sv, 0.9), 3)
        self.assertEqual(ws.variance_k(sv, 0.95), 3)
        self.assertEqual(ws.variance_k(sv, 0.99), 4)

    def test_degenerate_scores_rank_last(self):
        r = ws.ranks([0.3, -np.inf, 0.1, np.nan])
        self.assertEqual(list(r), [4.0, 1.5, 3.0, 1.5])
        z = ws.zs([1.0, 2.0, -np.inf])
        self.assertEqual(int(np.argmin(z)), 2)


if __name__ == "__main__":
    unittest.main(verbosity=2)
