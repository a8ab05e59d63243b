#!/usr/bin/python3
"""Tests of the colour assets: the balanced probe order and the split on synthetic data (exact
oracles), then the built asset directory against the contract the dock reads (spaces.json, probe
sets, probe order, reference encoders, demo models, query folder).

    /usr/bin/python3 scripts/assets/colour_assets_test.py [ASSET_DIR]
ASSET_DIR defaults to $MODELDOCK_ASSET_DIR; the asset checks fail (not skip) when it is missing.
"""
import collections
import json
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from assets import colour_data as cd  # noqa: E402

ASSET_DIR = os.environ.get("MODELDOCK_ASSET_DIR", "")


def max_prefix_deviation(buckets, order):
    """max over prefixes L and buckets b of |count_b(L) - L * n_b / N|."""
    total = collections.Counter(buckets)
    n = len(buckets)
    seen = collections.Counter()
    worst = 0.0
    for length, i in enumerate(order, 1):
        seen[buckets[i]] += 1
        for b, nb in total.items():
            worst = max(worst, abs(seen[b] - length * nb / n))
    return worst


class BalancedOrderTest(unittest.TestCase):
    def test_every_prefix_is_proportional_within_one_row(self):
        rng = np.random.default_rng(5)
        sizes = {f"b{i}": int(s) for i, s in enumerate(rng.integers(1, 60, size=25))}
        buckets = [b for b, s in sizes.items() for _ in range(s)]
        rng.shuffle(buckets)
        order = cd.balanced_order([(b,) for b in buckets], seed=3)
        self.assertEqual(sorted(order.tolist()), list(range(len(buckets))))
        self.assertLessEqual(max_prefix_deviation(buckets, order), 1.0 + 1e-9)
        # A naive order (bucket after bucket) is far from proportional: the check can fail.
        naive = np.argsort(np.array(buckets), kind="stable")
        self.assertGreater(max_prefix_deviation(buckets, naive), 10.0)

    def test_second_level_is_balanced_within_each_group_and_overall(self):
        rng = np.random.default_rng(7)
        keys = [(f"s{int(rng.integers(4))}", f"c{int(rng.integers(6))}") for _ in range(900)]
        order = cd.balanced_order(keys, seed=2)
        self.assertLessEqual(max_prefix_deviation([k[0] for k in keys], order), 1.0 + 1e-9)
        for top in {k[0] for k in keys}:
            seq = [keys[i][1] for i in order if keys[i][0] == top]
            self.assertLessEqual(max_prefix_deviation(seq, np.arange(len(seq))), 1.0 + 1e-9)
        # Overall, each top group adds less than one row of deviation per second-level class.
        self.assertLess(max_prefix_deviation([k[1] for k in keys], order), 4.0 + 1e-9)

    def test_keeps_the_order_within_a_leaf_and_is_deterministic(self):
        keys = [("a",), ("b",), ("a",), ("c",), ("a",), ("b",)]
        order = cd.balanced_order(keys, seed=1)
        self.assertEqual([i for i in order if keys[i] == ("a",)], [0, 2, 4])
        self.assertEqual(order.tolist(), cd.balanced_order(keys, seed=1).tolist())

    def test_interleave_by_round_robins_over_groups(self):
        items = ["x1", "x2", "x3", "y1", "z1", "z2"]
        self.assertEqual(cd.interleave_by(items, key=lambda s: s[0]),
                         ["x1", "y1", "z1", "x2", "z2", "x3"])


class SplitTest(unittest.TestCase):
    def test_split_is_a_fixed_function_with_the_declared_shares(self):
        keys = [f"emoji/{i:05X}" for i in range(20000)]
        got = collections.Counter(cd.split_of(k) for k in keys)
        for name, share in cd.SPLITS:
            self.assertAlmostEqual(got[name] / len(keys), share, delta=0.015, msg=name)
        self.assertEqual([cd.split_of(k) for k in keys[:50]], [cd.split_of(k) for k in keys[:50]])


class ShiftTest(unittest.TestCase):
    def test_shifts_match_their_definitions(self):
        rng = np.random.default_rng(0)
        x = rng.integers(0, 256, size=(3, 8, 8, 3), dtype=np.uint8)
        inv = cd.shift_images(x, "inv", 0)
        np.testing.assert_array_equal(inv, 255 - x)
        rot = cd.shift_images(x, "rot90", 0)
        np.testing.assert_array_equal(rot, np.rot90(x, k=1, axes=(1, 2)))
        grey = cd.shift_images(x, "grey", 0).astype(int)
        self.assertTrue((grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all())
        low = cd.shift_images(x, "lowcontrast", 0)
        self.assertGreaterEqual(int(low.min()), 76)
        self.assertLessEqual(int(low.max()), 179)
        with self.assertRaises(ValueError):
            cd.shift_images(x, "sepia", 0)


class AssetDirTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(ASSET_DIR and os.path.exists(os.path.join(ASSET_DIR, "spaces.json")),
                        f"no spaces.json in {ASSET_DIR!r} (scripts/make_assets.py builds it)")
        with open(os.path.join(ASSET_DIR, "spaces.json")) as f:
            self.spaces = json.load(f)

    def test_spaces_manifest_follows_the_contract(self):
        self.assertEqual(self.spaces["version"], 1)
        # The image spaces come first; other input kinds (text_assets_test.py) follow them.
        names = [s["name"] for s in self.spaces["spaces"]]
        self.assertEqual(names[:3], ["grey", "colour-small", "colour-large"])
        grey, small, large = self.spaces["spaces"][:3]
        self.assertEqual((grey["probe_set"], grey["reference_encoder"]),
                         ("probe_set_28.npy", "reference_encoder.pt"))
        self.assertEqual(small["reference_input_shape"], [3, 32, 32])
        self.assertEqual(large["reference_input_shape"], [3, 64, 64])
        self.assertEqual((small["max_side"] + 1, large["min_side"]), (65, 65))
        for s in self.spaces["spaces"]:
            for key in ("probe_set", "reference_encoder"):
                self.assertTrue(os.path.exists(os.path.join(ASSET_DIR, s[key])), s[key])

    def test_probe_sets_have_the_declared_shape_and_balanced_prefixes(self):
        import torch
        for s in self.spaces["spaces"][1:3]:
            probe = np.load(os.path.join(ASSET_DIR, s["probe_set"]))
            c, h, w = s["reference_input_shape"]
            self.assertEqual((probe.dtype, probe.shape[1:]), (np.uint8, (c, h, w)))
            self.assertLessEqual(len(probe), 3000 if h == 32 else 1500)
            with open(os.path.join(os.path.dirname(os.path.join(ASSET_DIR, s["probe_set"])),
                                   "probe_index.json")) as f:
                rows = json.load(f)["rows"]
            self.assertEqual(len(rows), len(probe))
            # Every prefix holds each shift in proportion (within a row), and each source within
            # a row per shift group (8 groups).
            shifts = [r[2] for r in rows]
            self.assertLessEqual(max_prefix_deviation(shifts, np.arange(len(rows))), 1.0 + 1e-9)
            sources = [r[0] for r in rows]
            self.assertLess(max_prefix_deviation(sources, np.arange(len(rows))),
                            len(set(shifts)) + 1e-9)
            enc = torch.jit.load(os.path.join(ASSET_DIR, s["reference_encoder"]))
            with torch.no_grad():
                e = enc(torch.from_numpy(probe[:8].astype(np.float32) / 255.0))
            self.assertEqual(e.shape[0], 8)
            self.assertLessEqual(e.shape[1], 128)
            self.assertTrue(torch.isfinite(e).all())

    def test_colour_demo_models_and_query_folder(self):
        import torch
        from PIL import Image
        demo = os.path.join(ASSET_DIR, "demo", "colour")
        names = sorted(f[:-3] for f in os.listdir(demo) if f.endswith(".pt"))
        self.assertEqual(len(names), 2)
        for name in names:
            with open(os.path.join(demo, name + ".json")) as f:
                side = json.load(f)
            self.assertEqual(side["input_shape"], [3, 32, 32])
            model = torch.jit.load(os.path.join(demo, name + ".pt"))
            x = torch.rand(4, 3, 32, 32)
            with torch.no_grad():
                self.assertEqual(tuple(model(x).shape), (4, len(side["class_labels"])))
                self.assertEqual(model.embed(x).dim(), 2)
        qdir = os.path.join(ASSET_DIR, "demo", "query_emoji")
        classes = sorted(os.listdir(qdir))
        self.assertEqual(len(classes), 4)
        for c in classes:
            files = sorted(os.listdir(os.path.join(qdir, c)))
            self.assertEqual(len(files), 30)
            with Image.open(os.path.join(qdir, c, files[0])) as im:
                self.assertEqual((im.mode, im.size), ("RGB", (32, 32)))


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        ASSET_DIR = sys.argv.pop(1)
    unittest.main()
