#!/usr/bin/python3
"""Tests of the speech zoo's parts: every architecture against the audio model contract
(scripted = eager, odd inputs, a clip's features independent of its batch), the data partition
(source models hear only source speakers, validation speakers are never trained on, a task's
train and test speakers are disjoint query speakers, gender classes hold that gender only), the
word cache, and a task's WAV folder holding the very numbers of its NPZ.

    /usr/bin/python3 bench/zoo_audio/zoo_audio_test.py
"""
import os
import sys
import tempfile
import unittest
import wave

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_audio as da  # noqa: E402
import make_zoo_audio as mz  # noqa: E402
import nets_audio as na  # noqa: E402
from assets import audio_data as ad  # noqa: E402


def odd_clips():
    rng = np.random.default_rng(3)
    x = np.zeros((6, ad.CLIP), np.float32)
    x[1] = rng.uniform(0.0, 1.0, ad.CLIP)                          # DC + noise
    x[2] = np.sin(np.arange(ad.CLIP) * 2 * np.pi * 440 / ad.SAMPLE_RATE)
    x[3, ::100] = np.nan
    x[3, 1::100] = np.inf
    x[4] = 50.0 * rng.standard_normal(ad.CLIP)                     # far out of range
    x[5, 8000] = 1e-30
    return torch.from_numpy(x)


class NetsTest(unittest.TestCase):
    def nets(self):
        for arch in na.ARCHS:
            for size in ("l", "s"):
                torch.manual_seed(7)
                net = na.build(arch, 3, size).eval()
                yield f"{arch}-{size}", net, torch.jit.script(net)

    def test_contract_on_odd_inputs(self):
        x = odd_clips()
        for name, net, scripted in self.nets():
            with self.subTest(net=name), torch.no_grad():
                logits, feats = scripted(x), scripted.embed(x)
                self.assertEqual(tuple(logits.shape), (len(x), 3))
                self.assertEqual(feats.dim(), 2)
                self.assertEqual(feats.shape[0], len(x))
                self.assertTrue(torch.isfinite(logits).all() and torch.isfinite(feats).all())
                torch.testing.assert_close(feats, net.embed(x), rtol=1e-5, atol=1e-5)
                torch.testing.assert_close(logits, net.head(feats), rtol=1e-5, atol=1e-5)

    def test_features_do_not_depend_on_the_batch(self):
        x = odd_clips()
        for name, _, scripted in self.nets():
            with self.subTest(net=name), torch.no_grad():
                together = scripted.embed(x)
                for i in range(len(x)):
                    torch.testing.assert_close(scripted.embed(x[i:i + 1])[0], together[i],
                                               rtol=1e-4, atol=1e-5)

    def test_transformer_patches(self):
        net = na.build("transformer", 2).eval()
        mel = torch.zeros(1, 40, 101)
        self.assertEqual(net.features(mel).shape[1], 64)
        # 101 frames -> 25 patches of 4 frames: frame 100 is dropped, frame 99 is not.
        base = net.features(mel)
        mel[0, :, 100] = 5.0
        torch.testing.assert_close(net.features(mel), base)
        mel[0, :, 99] = 5.0
        self.assertFalse(torch.allclose(net.features(mel), base))


class PartitionTest(unittest.TestCase):
    def test_label_sets_are_sayable_and_disjoint(self):
        for name, classes in da.LABEL_SETS.items():
            with self.subTest(label_set=name):
                labels = [label for label, _, _ in classes]
                self.assertEqual(len(labels), len(set(labels)))
                keys = [(lang, text, g) for _, pairs, g in classes for lang, text in pairs]
                self.assertEqual(len(keys), len(set(keys)), "two classes say the same thing")
                for _, pairs, g in classes:
                    for lang, _ in pairs:
                        self.assertTrue(da.speakers("source", lang, g), (lang, g))

    def test_source_specs_use_source_speakers_and_keep_validation_apart(self):
        for label_set in ("cmd10", "lang8", "gender2", "digits-intl"):
            train, val, labels = da.source_specs(label_set, 12, 4, 0)
            with self.subTest(label_set=label_set):
                self.assertEqual(len(train), 12 * len(labels))
                self.assertEqual(len(val), 4 * len(labels))
                self.assertEqual(sorted({s["label"] for s in train}), list(range(len(labels))))
                speakers = [s["speaker"] for s in train + val]
                self.assertTrue(all(ad.split_of(s) == "source" for s in speakers))
                self.assertFalse({s["speaker"] for s in train} & {s["speaker"] for s in val})

    def test_tasks_use_query_speakers_with_disjoint_train_and_test(self):
        for spec in mz.TASKS:
            name, classes, n_train, n_test = spec[:4]
            train, test = da.query_specs(name, classes, n_train, n_test, 0)
            with self.subTest(task=name):
                self.assertEqual(len(train), n_train * len(classes))
                self.assertEqual(len(test), n_test * len(classes))
                speakers = [s["speaker"] for s in train + test]
                self.assertTrue(all(ad.split_of(s) == "query" for s in speakers))
                self.assertFalse({s["speaker"] for s in train} & {s["speaker"] for s in test})
                for s in train + test:
                    _, pairs, g = classes[s["label"]]
                    self.assertIn(s["text"], [t for _, t in pairs])
                    if g is not None:
                        self.assertEqual(da.gender(s["speaker"]), g)

    def test_first_share_is_a_fixed_nonempty_proper_subset(self):
        pool = [f"xx+v{i}" for i in range(20)]
        a = da.first_share(pool, "salt", 0.12)
        self.assertEqual(a, da.first_share(list(reversed(pool)), "salt", 0.12))
        self.assertEqual(len(a), 2)
        self.assertEqual(len(da.first_share(pool[:3], "salt", 0.01)), 1)
        self.assertEqual(len(da.first_share(pool[:2], "salt", 0.99)), 1)
        self.assertEqual(da.first_share(pool[:1], "salt", 0.5), {pool[0]})

    def test_gender_comes_from_the_variant_file(self):
        self.assertEqual(da.gender("en+f1"), "female")
        self.assertEqual(da.gender("de+m3"), "male")
        self.assertIsNone(da.gender("en+klatt"))


class FilesTest(unittest.TestCase):
    def test_word_cache_returns_what_was_synthesized(self):
        specs = da.draw("query", da.LABEL_SETS["cmd10"][:2], 2, np.random.default_rng(1))
        with tempfile.TemporaryDirectory() as tmp:
            first = da.synthesize_cached(specs, tmp)
            self.assertEqual(len(os.listdir(tmp)), 1)
            again = da.synthesize_cached(specs, tmp)
        self.assertEqual(len(first), len(specs))
        for a, b in zip(first, again):
            self.assertGreater(len(a), 1000)
            np.testing.assert_array_equal(a, b)

    def test_wav_folder_holds_the_npz_numbers(self):
        spec = ("q_tiny", [da.word("yes"), da.word("no")], 3, 2, None, "tiny", "wav")
        with tempfile.TemporaryDirectory() as tmp:
            task = mz.make_task(tmp, 0, spec, os.path.join(tmp, "cache"))
            z = np.load(os.path.join(tmp, task["train_file"]))
            self.assertEqual(task["class_labels"], ["no", "yes"])
            self.assertEqual(z["samples"].shape, (6, ad.CLIP))
            self.assertEqual(np.bincount(z["labels"]).tolist(), [3, 3])
            for k, label in enumerate(task["class_labels"]):
                folder = os.path.join(tmp, task["train_dir"], label)
                clips = z["samples"][z["labels"] == k]
                self.assertEqual(sorted(os.listdir(folder)), ["000.wav", "001.wav", "002.wav"])
                for j, clip in enumerate(clips):
                    with wave.open(os.path.join(folder, f"{j:03d}.wav")) as f:
                        self.assertEqual((f.getnchannels(), f.getframerate()), (1, ad.SAMPLE_RATE))
                        pcm = np.frombuffer(f.readframes(f.getnframes()), "<i2")
                    # libsndfile (the dock's WAV reader) scales 16-bit PCM by 1 / 32768.
                    np.testing.assert_array_equal((pcm / 32768.0).astype(np.float32), clip)


if __name__ == "__main__":
    unittest.main()
