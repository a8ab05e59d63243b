#!/usr/bin/python3
"""Checks the pieces of member_study.py that docs/BENCHMARKS.md 2q rests on: the fusion is
scoring::WeightedRankFusion (weighted mean of rank / number of models, -inf lowest), and the
feature members see the components the features vary in (scoring::DropNullComponents), or with
--pad-null zero columns up to min(32, D), as the dock did before."""
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import member_study as ms  # noqa: E402

mo = ms.mo


def query(seed, n, d, k):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    f = rng.normal(size=(n, d)) + 2.0 * np.eye(k, d)[y]
    logits = rng.normal(size=(n, 5))
    return f, logits, y


def top_components(f, k):
    x = f - f.mean(axis=0)
    u, sv, _ = np.linalg.svd(x, full_matrices=False)
    return u[:, :k] * sv[:k]


class MemberStudyTest(unittest.TestCase):
    def tearDown(self):
        ms.PAD_NULL = False

    def test_fusion_is_the_weighted_mean_of_normalised_ranks(self):
        members = {"logme": np.array([3.0, 1.0, 2.0]), "gbc": np.array([1.0, -np.inf, 5.0])}
        got = ms.fused(members, {"logme": 1.0, "gbc": 0.5})
        # ranks: logme 3, 1, 2; gbc 2, 1, 3 (-inf lowest); each / 3, weights 1 and 0.5
        want = (np.array([3, 1, 2]) / 3 + 0.5 * np.array([2, 1, 3]) / 3) / 1.5
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)

    def test_features_varying_in_fewer_directions_keep_only_those(self):
        # 20 samples in 64 dimensions vary in 19 directions once centred.
        f, logits, y = query(1, 20, 64, 2)
        got = ms.member_values(f, logits, y)
        z = top_components(f, 19)
        self.assertAlmostEqual(got["logme"], mo.logme(z, y), places=10)
        self.assertAlmostEqual(got["gbc"], mo.gbc(z, y), places=10)
        self.assertAlmostEqual(got["nce"], mo.nce(logits, y), places=12)
        # --pad-null: 32 columns, the last 13 zero, as the dock before session 17.
        ms.PAD_NULL = True
        padded = ms.member_values(f, logits, y)
        zp = np.hstack([z, np.zeros((20, 13))])
        self.assertAlmostEqual(padded["logme"], mo.logme(zp, y), places=10)
        self.assertNotAlmostEqual(padded["logme"], got["logme"], places=3)

    def test_full_rank_features_keep_32_components(self):
        f, logits, y = query(2, 100, 48, 4)
        got = ms.member_values(f, logits, y)
        self.assertAlmostEqual(got["logme"], mo.logme(top_components(f, 32), y), places=10)


if __name__ == "__main__":
    unittest.main()
