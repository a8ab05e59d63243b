#!/usr/bin/python3
"""Tests of the grey probe set's shifted copies (scripts/assets/probe_shifts.py, including the
extra shifts bench/rotations uses) on exact oracles, then the built probe_set_28.npy against
MANIFEST.json: every shifted block is the shift of the clean rows it names.

    /usr/bin/python3 scripts/assets/grey_probe_test.py [ASSET_DIR]
ASSET_DIR defaults to $MODELDOCK_ASSET_DIR; the asset checks fail (not skip) when it is missing.
"""
import json
import os
import sys
import unittest

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from assets import probe_shifts as ps  # noqa: E402

ASSET_DIR = os.environ.get("MODELDOCK_ASSET_DIR", "")


def seeded_images(n=6, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)


class ShiftTest(unittest.TestCase):
    def test_quarter_turns_move_a_marked_pixel(self):
        x = np.zeros((1, 28, 28), np.uint8)
        x[0, 0, 27] = 255  # top right
        corner = {"rot90": (0, 0), "rot180": (27, 0), "rot270": (27, 27)}  # counter-clockwise
        for shift, (r, c) in corner.items():
            y = ps.shift_images(x, shift, seed=0)
            self.assertEqual(y[0, r, c], 255, shift)
            self.assertEqual(int(y.sum()), 255, shift)

    def test_inverted_then_rotated_is_both(self):
        x = seeded_images()
        for turn in ("rot90", "rot180", "rot270"):
            expect = ps.shift_images(ps.shift_images(x, "inv", 0), turn, 0)
            np.testing.assert_array_equal(ps.shift_images(x, "inv+" + turn, 0), expect)
        np.testing.assert_array_equal(ps.shift_images(x, "inv", 0), 255 - x)

    def test_random_angles_are_seeded_and_keep_the_range(self):
        x = seeded_images()
        a, b = ps.shift_images(x, "rotany", 7), ps.shift_images(x, "rotany", 7)
        np.testing.assert_array_equal(a, b)
        self.assertFalse(np.array_equal(a, ps.shift_images(x, "rotany", 8)))
        self.assertEqual(a.dtype, np.uint8)
        # A full disc of one grey value stays that value at its centre under any rotation.
        yy, xx = np.mgrid[:28, :28]
        disc = (((yy - 13.5) ** 2 + (xx - 13.5) ** 2) < 100).astype(np.uint8)[None] * 200
        self.assertEqual(ps.shift_images(disc, "rotany", 3)[0, 14, 14], 200)

    def test_unknown_shift_is_refused(self):
        with self.assertRaises(ValueError):
            ps.shift_images(seeded_images(1), "rot45", 0)

    def test_extra_shifts_leave_the_default_blocks_as_they_were(self):
        fm, gl = seeded_images(5, 1), seeded_images(4, 2)
        shifts = ps.SHIFTS + ps.EXTRA_SHIFTS
        blocks = ps.shifted_copies(fm, gl, 3, 2, seed=11, shifts=shifts)
        blocks = blocks.reshape(len(shifts), 5, 28, 28)
        src = np.concatenate([fm[:3], gl[:2]])
        for i, shift in enumerate(shifts):
            np.testing.assert_array_equal(blocks[i], ps.shift_images(src, shift, 11 + i), shift)
        default = ps.shifted_copies(fm, gl, 3, 2, seed=11).reshape(len(ps.SHIFTS), 5, 28, 28)
        np.testing.assert_array_equal(blocks[:len(ps.SHIFTS)], default)


class BuiltProbeSetTest(unittest.TestCase):
    def test_every_shifted_block_is_the_shift_of_its_clean_rows(self):
        self.assertTrue(ASSET_DIR and os.path.isdir(ASSET_DIR), f"no asset dir {ASSET_DIR!r}")
        with open(os.path.join(ASSET_DIR, "MANIFEST.json")) as f:
            info = json.load(f)["probe_set"]
        probe = np.load(os.path.join(ASSET_DIR, info["file"]))[:, 0]
        self.assertEqual(info["shifts"], list(ps.SHIFTS))
        n_fm, n_gl = info["fmnist_count"], info["glyph_count"]
        sh_fm, sh_gl = info["shifted_per_shift"]
        per = sh_fm + sh_gl
        self.assertEqual(len(probe), n_fm + n_gl + len(ps.SHIFTS) * per)
        src = np.concatenate([probe[:sh_fm], probe[n_fm:n_fm + sh_gl]])
        for i, shift in enumerate(ps.SHIFTS):
            if shift in ("noise", "rotany"):
                continue  # seeded from make_assets' seed table: checked through the shape only
            block = probe[n_fm + n_gl + i * per:n_fm + n_gl + (i + 1) * per]
            np.testing.assert_array_equal(block, ps.shift_images(src, shift, 0), shift)


if __name__ == "__main__":
    if len(sys.argv) > 1:
        ASSET_DIR = sys.argv.pop(1)
    unittest.main()
