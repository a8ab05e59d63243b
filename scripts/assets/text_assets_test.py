#!/usr/bin/python3
"""Tests of the text assets: the split, the shifts and the TorchScript tokenizers on fixed inputs
(exact oracles), then the built asset directory against the contract the dock reads (spaces.json's
text entry, text/probe_texts.jsonl, the text reference encoder, the text demo models, the query
CSV, MANIFEST.json).

    /usr/bin/python3 scripts/assets/text_assets_test.py [ASSET_DIR]
ASSET_DIR defaults to $MODELDOCK_ASSET_DIR; the asset checks fail (not skip) when it is missing.
"""
import collections
import csv
import hashlib
import json
import os
import sys
import unittest

import numpy as np
import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from assets import text_data as td  # noqa: E402
from assets import text_nets as tn  # noqa: E402
from assets.colour_assets_test import max_prefix_deviation  # noqa: E402

ASSET_DIR = os.environ.get("MODELDOCK_ASSET_DIR", "")

# Inputs every text model must take: empty, NUL and control characters, non-ASCII, 64 KiB.
ODD_TEXTS = ["", "\x00", "\x01\x02\x1b[31m\x7f", "Grüße, ß, 日本語, 😀", "a" * 65536,
             "é" * 40000, " \t\n\r ", "x"]


class SplitAndShiftTest(unittest.TestCase):
    def test_split_is_a_fixed_function_with_the_declared_shares(self):
        keys = [f"text number {i}" for i in range(20000)]
        got = collections.Counter(td.split_of(k) for k in keys)
        for name, share in td.SPLITS:
            self.assertAlmostEqual(got[name] / len(keys), share, delta=0.015, msg=name)
        self.assertEqual(td.split_of("Hello"), td.split_of("Hello"))
        self.assertIn(td.split_of(""), [n for n, _ in td.SPLITS])

    def test_parse_fortunes_splits_on_percent_lines_only(self):
        raw = "first\nline\n%\nsecond 50% off\n%\n\n%\nthird\n"
        self.assertEqual([e for e in td.parse_fortunes(raw) if e],
                         ["first\nline", "second 50% off", "third"])

    def test_shifts_match_their_definitions(self):
        rng = np.random.default_rng(0)
        text = "The Quick brown fox jumps over the lazy dog. Über straße!"
        self.assertEqual(td.shift_text(text, "upper", rng), text.upper())
        self.assertEqual(td.shift_text(text, "lower", rng), text.lower())
        cut = td.shift_text(text, "truncate", rng)
        self.assertTrue(text.startswith(cut) and 0 < len(cut) <= len(text) // 2)
        spaced = td.shift_text(text, "whitespace", rng)
        self.assertEqual(spaced.split(), text.split())
        self.assertNotEqual(spaced, text)
        typo = td.shift_text(text * 4, "typos", np.random.default_rng(1))
        self.assertNotEqual(typo, text * 4)
        self.assertLess(abs(len(typo) - 4 * len(text)), 0.1 * 4 * len(text))
        self.assertEqual(typo, td.shift_text(text * 4, "typos", np.random.default_rng(1)))
        self.assertLessEqual(len(td.shift_text("w " * 900, "whitespace", rng)), 1000)
        with self.assertRaises(ValueError):
            td.shift_text(text, "rot13", rng)


class TokenizerTest(unittest.TestCase):
    def test_text_bytes_are_utf8_bytes_of_the_ascii_lowercased_text(self):
        self.assertEqual(tn.text_bytes("", 10).tolist(), [256, 257])
        # 'A' folds to 'a'; 'Ä' (C3 84) is not folded by TorchScript's lower().
        self.assertEqual(tn.text_bytes("AbÄ\x00", 10).tolist(), [256, 97, 98, 195, 132, 0, 257])
        self.assertEqual(tn.text_bytes("abcdef", 3).tolist(), [256, 97, 98, 99, 257])
        # Exactly A-Z fold: '@' (64) and '[' (91) around them stay.
        self.assertEqual(tn.text_bytes("@AZ[az", 10).tolist(), [256, 64, 97, 122, 91, 97, 122, 257])

    def test_hashed_ngrams_count_and_range(self):
        for text in ["", "a", "hello", "日本"]:
            n = len(text.encode("utf-8"))
            ids = tn.hashed_ngrams(text, 100, 1000, 3)
            self.assertEqual(ids.numel(), n + (n + 1) + n, text)
            self.assertTrue(bool(((ids >= 0) & (ids < 1000)).all()))
        self.assertEqual(tn.hashed_ngrams("abc", 100, 1000, 3).tolist(),
                         tn.hashed_ngrams("ABC", 100, 1000, 3).tolist())
        self.assertNotEqual(tn.hashed_ngrams("abc", 100, 1000, 3).tolist(),
                            tn.hashed_ngrams("abc", 100, 1000, 4).tolist())

    def test_collate_padded(self):
        x, lengths = tn.collate_padded([torch.tensor([1, 2, 3]), torch.tensor([4])], 2)
        self.assertEqual(x.tolist(), [[1, 2, 3], [4, 258, 258]])
        self.assertEqual(lengths.tolist(), [3, 1])
        ids, offsets = tn.collate_bags([torch.tensor([5, 6]), torch.tensor([7])])
        self.assertEqual((ids.tolist(), offsets.tolist()), ([5, 6, 7], [0, 2]))

    def test_untrained_nets_follow_the_contract_after_scripting(self):
        torch.manual_seed(0)
        for net in (tn.NgramMLP(3, buckets=512), tn.CharCNN(3), tn.CharGRU(3)):
            net.eval()
            scripted = torch.jit.script(net)
            with torch.no_grad():
                logits = scripted(ODD_TEXTS)
                self.assertEqual(tuple(logits.shape), (len(ODD_TEXTS), 3))
                self.assertTrue(bool(torch.isfinite(logits).all()))
                torch.testing.assert_close(logits, net(ODD_TEXTS))
                self.assertEqual(scripted.embed(ODD_TEXTS).shape[0], len(ODD_TEXTS))
                # A text's output does not depend on the rest of its batch (padding, offsets).
                torch.testing.assert_close(scripted(ODD_TEXTS[3:4])[0], logits[3])


def read_probe(asset_dir):
    with open(os.path.join(asset_dir, "text", "probe_texts.jsonl"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


class AssetDirTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(ASSET_DIR and os.path.exists(os.path.join(ASSET_DIR, "spaces.json")),
                        f"no spaces.json in {ASSET_DIR!r} (scripts/make_assets.py builds it)")
        with open(os.path.join(ASSET_DIR, "spaces.json")) as f:
            self.spaces = json.load(f)["spaces"]

    def test_text_space_follows_the_image_spaces(self):
        # The audio space (audio_assets_test.py) comes after it.
        self.assertEqual([s["name"] for s in self.spaces][:4],
                         ["grey", "colour-small", "colour-large", "text"])
        text = self.spaces[3]
        self.assertEqual(sorted(text), ["description", "input_kind", "name", "probe_set",
                                        "reference_encoder"])
        self.assertEqual((text["input_kind"], text["probe_set"], text["reference_encoder"]),
                         ("text", "text/probe_texts.jsonl", "text/reference_encoder.pt"))

    def test_probe_rows_follow_the_contract(self):
        rows = read_probe(ASSET_DIR)
        self.assertTrue(2000 <= len(rows) <= 4000, len(rows))
        buckets = []
        for row in rows:
            self.assertEqual(sorted(row), ["label", "text"])
            self.assertTrue(0 < len(row["text"]) <= 1000, row["label"])
            source, cls, shift = row["label"].split("/")
            self.assertIn(source, td.SOURCES)
            self.assertIn(shift, ("clean",) + td.SHIFTS)
            self.assertTrue(cls)
            buckets.append((source, cls, shift))
            if shift == "clean":  # clean probes come from the probe split only
                self.assertEqual(td.split_of(row["text"]), "probe", row["text"][:60])
        shifts = [b[2] for b in buckets]
        self.assertGreater(shifts.count("clean") / len(rows), 0.5)
        # Every prefix holds each shift in proportion (within a row), each source within a row
        # per shift group, and the first 5% already every source and shift.
        order = np.arange(len(rows))
        self.assertLessEqual(max_prefix_deviation(shifts, order), 1.0 + 1e-9)
        self.assertLess(max_prefix_deviation([b[0] for b in buckets], order),
                        len(set(shifts)) + 1e-9)
        head = buckets[:len(rows) // 20]
        self.assertEqual({b[0] for b in head}, set(td.SOURCES))
        self.assertEqual({b[2] for b in head}, set(shifts))
        # A bucket's rows are spread over the file, not bunched: the first half holds about half.
        counts = collections.Counter(buckets)
        first = collections.Counter(buckets[:len(rows) // 2])
        for bucket, n in counts.items():
            self.assertLessEqual(abs(first[bucket] - n / 2), 0.5 * len(set(shifts)) + 1, bucket)

    def test_reference_encoder_shape_determinism_and_robustness(self):
        enc = torch.jit.load(os.path.join(ASSET_DIR, "text", "reference_encoder.pt"))
        texts = [r["text"] for r in read_probe(ASSET_DIR)[:64]]
        with torch.no_grad():
            e = enc(texts)
            self.assertEqual((e.dtype, tuple(e.shape)), (torch.float32, (64, 64)))
            self.assertTrue(torch.equal(e, enc(texts)))
            torch.testing.assert_close(enc(texts[5:6])[0], e[5])
            odd = enc(ODD_TEXTS)
            self.assertEqual(tuple(odd.shape), (len(ODD_TEXTS), 64))
            self.assertTrue(bool(torch.isfinite(odd).all()))
            # Truncated inside: a 64 KiB string embeds as its first 2,000 bytes.
            torch.testing.assert_close(odd[4], enc(["a" * 2000])[0])
            self.assertFalse(torch.equal(enc(["a" * 1999])[0], odd[4]))

    def test_reference_encoder_separates_the_sources(self):
        """Leave-one-out 1-NN (cosine) of clean probes by source: languages and licences apart."""
        enc = torch.jit.load(os.path.join(ASSET_DIR, "text", "reference_encoder.pt"))
        rows = [r for r in read_probe(ASSET_DIR) if r["label"].endswith("/clean")][:600]
        with torch.no_grad():
            e = torch.nn.functional.normalize(enc([r["text"] for r in rows]), dim=1)
        sim = e @ e.T
        sim.fill_diagonal_(-2.0)
        sources = [r["label"].split("/")[0] for r in rows]
        hits = sum(sources[j] == s for s, j in zip(sources, sim.argmax(1).tolist()))
        self.assertGreater(hits / len(rows), 0.8)

    def test_demo_models_follow_the_text_contract(self):
        demo = os.path.join(ASSET_DIR, "demo", "text")
        names = sorted(f[:-3] for f in os.listdir(demo) if f.endswith(".pt"))
        self.assertGreaterEqual(len(names), 3)
        for name in names:
            with open(os.path.join(demo, name + ".json")) as f:
                side = json.load(f)
            self.assertEqual((side["name"], side["task"]), (name, "text_classification"))
            self.assertEqual(side.get("input_shape", []), [])
            self.assertIn("text", side["tags"])
            self.assertTrue(side["license"])
            model = torch.jit.load(os.path.join(demo, name + ".pt"))
            with torch.no_grad():
                logits = model(ODD_TEXTS)
                self.assertEqual(tuple(logits.shape), (len(ODD_TEXTS), len(side["class_labels"])))
                self.assertTrue(bool(torch.isfinite(logits).all()))
                self.assertTrue(torch.equal(logits, model(ODD_TEXTS)))
                emb = model.embed(ODD_TEXTS)
                self.assertEqual((emb.dim(), emb.shape[0]), (2, len(ODD_TEXTS)))

    def test_query_csv(self):
        with open(os.path.join(ASSET_DIR, "demo", "query_text.csv"), newline="",
                  encoding="utf-8") as f:
            reader = csv.reader(f)
            self.assertEqual(next(reader), ["text", "label"])
            rows = list(reader)
        labels = collections.Counter(label for _, label in rows)
        self.assertEqual(len(labels), 4)
        self.assertEqual(set(labels.values()), {30})
        for text, _ in rows:
            self.assertEqual(td.split_of(text), "query", text[:60])
        with open(os.path.join(ASSET_DIR, "demo", "text", "english-fortune-topics-cnn.json")) as f:
            self.assertLessEqual(set(labels), set(json.load(f)["class_labels"]))

    def test_manifest_lists_the_text_files(self):
        with open(os.path.join(ASSET_DIR, "MANIFEST.json")) as f:
            manifest = json.load(f)
        wanted = ["text/probe_texts.jsonl", "text/reference_encoder.pt", "demo/query_text.csv"]
        wanted += ["demo/text/" + n for n in os.listdir(os.path.join(ASSET_DIR, "demo", "text"))]
        for rel in wanted:
            self.assertIn(rel, manifest["files"])
            with open(os.path.join(ASSET_DIR, rel), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(),
                                 manifest["files"][rel]["sha256"], rel)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        ASSET_DIR = sys.argv.pop(1)
    unittest.main()
