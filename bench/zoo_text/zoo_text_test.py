#!/usr/bin/python3
"""Tests of the text zoo's parts: every architecture against the text model contract (scripted =
eager, odd inputs, a text's features independent of its batch), and the data partition (source
models see only source-split texts outside validation; a task's train and test texts are disjoint
query-split texts; every label set's classes are disjoint; shifts are seeded).

    /usr/bin/python3 bench/zoo_text/zoo_text_test.py
"""
import os
import sys
import unittest

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_text as dt  # noqa: E402
import make_zoo_text as mz  # noqa: E402
import nets_text as nt  # noqa: E402
from assets import text_data as td  # noqa: E402

ODD_TEXTS = ["", "\x00", "\x01\x02\x1b[31m\x7f", "Grüße, ß, 日本語, 😀", "a" * 65536,
             "é" * 40000, " \t\n\r ", "x"]
RECORDS = None


def records():
    global RECORDS
    if RECORDS is None:
        RECORDS = td.load_texts()
    return RECORDS


class NetsTest(unittest.TestCase):
    def nets(self):
        for arch in nt.ARCHS:
            for size in ("l", "s"):
                torch.manual_seed(7)
                net = nt.build(arch, 3, size, salt=5).eval()
                yield f"{arch}-{size}", net, torch.jit.script(net)

    def test_contract_on_odd_inputs(self):
        for name, net, scripted in self.nets():
            with self.subTest(net=name), torch.no_grad():
                logits = scripted(ODD_TEXTS)
                feats = scripted.embed(ODD_TEXTS)
                self.assertEqual(tuple(logits.shape), (len(ODD_TEXTS), 3))
                self.assertEqual(feats.shape[0], len(ODD_TEXTS))
                self.assertTrue(torch.isfinite(logits).all() and torch.isfinite(feats).all())
                torch.testing.assert_close(scripted.embed(ODD_TEXTS), net.embed(ODD_TEXTS),
                                           rtol=1e-5, atol=1e-5)

    def test_features_do_not_depend_on_the_batch(self):
        texts = ["short", "a somewhat longer text, with punctuation!", "x" * 3000]
        for name, _, scripted in self.nets():
            with self.subTest(net=name), torch.no_grad():
                together = scripted.embed(texts)
                for i, t in enumerate(texts):
                    torch.testing.assert_close(scripted.embed([t])[0], together[i],
                                               rtol=1e-4, atol=1e-5)

    def test_transformer_patches_cover_the_text(self):
        # max_bytes 254 + 2 markers = 256 bytes = 64 patches of 4: all have a position.
        net = nt.build("transformer", 2).eval()
        x, lengths = net.collate([net.tokens("b" * 10000), net.tokens("")])
        self.assertEqual(tuple(x.shape), (2, 256))
        self.assertEqual(lengths.tolist(), [256, 2])
        self.assertEqual(net.position.num_embeddings, 64)
        x, _ = net.collate([net.tokens("abc")])   # 5 bytes -> padded to 8
        self.assertEqual(tuple(x.shape), (1, 8))


class PartitionTest(unittest.TestCase):
    def test_label_sets_have_disjoint_classes(self):
        for name, classes in dt.LABEL_SETS.items():
            with self.subTest(label_set=name):
                for r in records():
                    self.assertLessEqual(sum(pred(r) for _, pred in classes), 1, r["path"])
                for label, pred in classes:
                    self.assertTrue(any(pred(r) for r in records()), label)

    def test_source_models_see_only_the_source_split(self):
        for label_set in ("lang4", "tech2", "es6"):
            (x, y), (vx, vy), labels = dt.source_data(records(), label_set, 50, 10)
            with self.subTest(label_set=label_set):
                self.assertEqual(len(x), 50 * len(labels))
                self.assertEqual(sorted(set(y)), list(range(len(labels))))
                self.assertTrue(all(td.split_of(t) == "source" and not dt.is_val(t) for t in x))
                self.assertTrue(all(td.split_of(t) == "source" and dt.is_val(t) for t in vx))

    def test_tasks_use_the_query_split_with_disjoint_train_and_test(self):
        seen = set()
        for name, classes, n_train, n_test, _, _ in mz.TASKS:
            (x, y), (tx, ty) = dt.query_data(records(), classes, n_train, n_test)
            with self.subTest(task=name):
                self.assertTrue(all(td.split_of(t) == "query" for t in x + tx))
                self.assertTrue(all(dt.task_part(t) == "train" for t in x))
                self.assertTrue(all(dt.task_part(t) == "test" for t in tx))
                self.assertFalse(set(x) & set(tx))
                counts = np.bincount(y, minlength=len(classes))
                self.assertGreaterEqual(counts.min(), min(n_train, 10), counts)
                self.assertGreaterEqual(np.bincount(ty).min(), min(n_test, 20))
                seen.add(name)
        self.assertEqual(len(seen), len(mz.TASKS))

    def test_no_source_text_reaches_a_task(self):
        source = {r["text"] for r in records() if td.split_of(r["text"]) == "source"}
        for name, classes, n_train, n_test, _, _ in mz.TASKS:
            (x, _), (tx, _) = dt.query_data(records(), classes, n_train, n_test)
            self.assertFalse(source & set(x + tx), name)

    def test_shifts_are_seeded(self):
        texts = ["The quick brown fox jumps over the lazy dog, again and again.", "Hola"] * 20
        for shift in ("short", "typos_upper", "mixed"):
            with self.subTest(shift=shift):
                a = mz.shift_texts(texts, shift, 3)
                self.assertEqual(a, mz.shift_texts(texts, shift, 3))
                self.assertEqual(len(a), len(texts))
                self.assertTrue(all(0 < len(t) <= td.MAX_SHIFTED_CHARS for t in a))
        self.assertTrue(all(len(t) <= mz.SHORT_CHARS for t in mz.shift_texts(texts, "short", 0)))
        self.assertEqual(mz.shift_texts(texts, None, 0), texts)


if __name__ == "__main__":
    unittest.main()
