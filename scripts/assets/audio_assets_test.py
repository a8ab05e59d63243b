#!/usr/bin/python3
"""Tests of the audio assets: the speaker split, espeak-ng synthesis, sox batches, placement and
shifts, the log-mel frontend against a NumPy oracle and the audio nets after scripting (exact
oracles where there is one), then the built asset directory against the contract the dock reads
(spaces.json's audio entry, audio/probe_set.npy and probe_index.json, the audio reference encoder,
the audio demo models, the query folder, MANIFEST.json).

    /usr/bin/python3 scripts/assets/audio_assets_test.py [ASSET_DIR]
ASSET_DIR defaults to $MODELDOCK_ASSET_DIR; the asset checks fail (not skip) when it is missing.
"""
import collections
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest
import wave

import numpy as np
import scipy.signal
import torch

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))
from assets import audio_data as ad  # noqa: E402
from assets import audio_nets as an  # noqa: E402
from assets.colour_assets_test import max_prefix_deviation  # noqa: E402

ASSET_DIR = os.environ.get("MODELDOCK_ASSET_DIR", "")


def odd_inputs():
    """Inputs every audio model must take: uniform [0, 1] (what admission sends), silence, a
    full-scale square wave, out-of-range values, NaN and +-Inf."""
    rng = np.random.default_rng(0)
    x = np.zeros((6, ad.CLIP), np.float32)
    x[0] = rng.uniform(0, 1, ad.CLIP)
    x[2] = np.sign(np.sin(np.arange(ad.CLIP) * 0.05))
    x[3] = rng.normal(0, 1e6, ad.CLIP)
    x[4, ::7] = np.nan
    x[5, ::5] = np.inf
    x[5, 1::5] = -np.inf
    return torch.from_numpy(x)


class SplitTest(unittest.TestCase):
    def test_split_is_a_fixed_function_with_the_declared_shares(self):
        keys = [f"voice-{i}+variant" for i in range(20000)]
        got = collections.Counter(ad.split_of(k) for k in keys)
        for name, share in ad.SPLITS:
            self.assertAlmostEqual(got[name] / len(keys), share, delta=0.015, msg=name)
        self.assertEqual(ad.split_of("en-us+Andy"), ad.split_of("en-us+Andy"))

    def test_speakers_of_a_split_are_theirs_only(self):
        seen = {}
        for split, _ in ad.SPLITS:
            for s in ad.speakers("en", split):
                self.assertEqual(ad.split_of(s), split)
                self.assertNotIn(s, seen)
                seen[s] = split
        self.assertEqual(len(seen), len(ad.ENGLISH_VOICES) * len(ad.variants()))

    def test_draw_specs_takes_classes_in_turn_from_the_split(self):
        specs = ad.draw_specs("source", "digits-intl", 24, np.random.default_rng(3))
        self.assertEqual([s["cls"] for s in specs[:12]], list(ad.INTL_LANGUAGES))
        for s in specs:
            self.assertEqual(ad.split_of(s["speaker"]), "source")
            self.assertTrue(s["speaker"].split("+")[0] in ad.LANGUAGE_VOICES[s["cls"]])
            self.assertEqual(s["word"], f"{s['cls']}/{ad.DIGIT_NAMES[int(s['text'])]}")
        with self.assertRaises(ValueError):
            ad.draw_specs("probe", "music", 1, np.random.default_rng(0))


class SynthesisTest(unittest.TestCase):
    SPECS = [{"text": "yes", "speaker": "en-us+Andy", "rate": 150, "pitch": 40},
             {"text": "7", "speaker": "de+klatt", "rate": 200, "pitch": 60},
             {"text": "stop", "speaker": "en+m3", "rate": 175, "pitch": 50}]

    def test_synthesis_is_reproducible_and_resampled(self):
        words = ad.synthesize(self.SPECS)
        again = ad.synthesize(self.SPECS)
        for w, a in zip(words, again):
            self.assertEqual(w.dtype, np.float32)
            self.assertTrue(np.array_equal(w, a))
            self.assertTrue(0.1 * ad.SAMPLE_RATE < len(w) < 1.5 * ad.SAMPLE_RATE, len(w))
            self.assertGreater(float(np.abs(w).max()), 0.05)
        self.assertFalse(np.array_equal(words[0][:1000], words[2][:1000]))

    def test_the_first_word_of_a_worker_is_what_the_espeak_ng_command_says(self):
        spec = self.SPECS[2]
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "w.wav")
            subprocess.run(["espeak-ng", "-v", spec["speaker"], "-s", str(spec["rate"]), "-p",
                            str(spec["pitch"]), "-w", path, spec["text"]], check=True)
            with wave.open(path) as f:
                self.assertEqual((f.getframerate(), f.getnchannels()), (ad.ESPEAK_RATE, 1))
                cli = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32)
        ours = ad.resample_words([cli / 32768.0])[0]
        np.testing.assert_allclose(ad.synthesize([spec])[0], ours, atol=1e-6)

    def test_sox_batch_cuts_words_apart_exactly(self):
        rng = np.random.default_rng(1)
        words = [rng.uniform(-0.5, 0.5, n).astype(np.float32) for n in (300, 1, 4000, 77)]
        for margin in (0, 50):
            pieces = ad.sox_batch(words, ad.SAMPLE_RATE, [], 1.0, 200, margin)
            for w, p in zip(words, pieces):
                self.assertEqual(len(p), margin + len(w) + 100)
                np.testing.assert_allclose(p[margin:margin + len(w)], w, atol=1e-6)
                self.assertEqual(float(np.abs(p[:margin]).max(initial=0)), 0.0)
        # speed 2 halves every word and its place.
        pieces = ad.sox_batch(words[2:3] * 3, ad.SAMPLE_RATE, ["speed", "2", "rate", "16000"],
                              0.5, 2000, 0)
        self.assertEqual([len(p) for p in pieces], [2500] * 3)

    def test_resampling_keeps_a_tone(self):
        t = np.arange(ad.ESPEAK_RATE) / ad.ESPEAK_RATE
        tone = (0.5 * np.sin(2 * np.pi * 1000 * t)).astype(np.float32)
        out = ad.resample_words([tone, tone[:441 * 7]])
        self.assertEqual(abs(len(out[0]) - ad.SAMPLE_RATE) <= 2, True, len(out[0]))
        spectrum = np.abs(np.fft.rfft(out[0][1000:-1000]))
        freq = np.argmax(spectrum) * ad.SAMPLE_RATE / (len(out[0]) - 2000)
        self.assertAlmostEqual(freq, 1000, delta=2)
        self.assertAlmostEqual(len(out[1]), 320 * 7, delta=2)


class PlacementAndShiftTest(unittest.TestCase):
    def test_place_puts_the_word_where_asked(self):
        word = np.linspace(0.1, 1.0, 100).astype(np.float32)
        clip = ad.place(word, 50, 0.5)
        self.assertEqual(clip.shape, (ad.CLIP,))
        np.testing.assert_allclose(clip[50:150], word * 0.5, rtol=1e-6)
        self.assertEqual(float(np.abs(clip[:50]).sum() + np.abs(clip[150:]).sum()), 0.0)
        cut = ad.place(word, -30, 1.0)  # the first 30 samples fall before the clip
        np.testing.assert_allclose(cut[:70], word[30:], rtol=1e-6)
        end = ad.place(word, ad.CLIP - 10, 1.0)
        np.testing.assert_allclose(end[-10:], word[:10] / word[9], rtol=1e-6)
        self.assertEqual(float(np.abs(ad.place(word[:0], 5, 0.5)).max()), 0.0)

    def test_gain_noise_and_offset(self):
        rng = np.random.default_rng(2)
        words = [np.sin(np.arange(4000) * 0.1).astype(np.float32) * 0.5 for _ in range(40)]
        clean = ad.place_all(words, np.random.default_rng(5))
        gained = ad.finish_shift(clean, "gain", np.random.default_rng(6))
        for c, g in zip(clean, gained):
            ratio = float(np.abs(g).max() / np.abs(c).max())
            self.assertTrue(any(abs(ratio - min(k, 1.0 / np.abs(c).max()) / 1.0) < 1e-4
                                for k in ad.GAINS), ratio)
        noisy = ad.finish_shift(clean, "noise", rng)
        for c, n in zip(clean, noisy):
            snr = 10 * np.log10(np.mean(c ** 2) / np.mean((n - c) ** 2))
            self.assertTrue(ad.NOISE_SNR_DB[0] - 0.5 < snr < ad.NOISE_SNR_DB[1] + 0.5, snr)
        offset = ad.shifted_clips(words, "offset", rng)
        starts = [int(np.flatnonzero(np.abs(c) > 0)[0]) for c in offset]
        self.assertEqual(min(starts), 0)  # some words start before the clip
        self.assertTrue(all(float(np.abs(c).max()) > 0.1 for c in offset))  # none cut away
        self.assertGreater(max(starts), ad.CLIP // 2)
        for shift in ad.SHIFTS:
            clips = ad.shifted_clips(words[:8], shift, rng)
            self.assertEqual((clips.dtype, clips.shape), (np.float32, (8, ad.CLIP)))
            self.assertLessEqual(float(np.abs(clips).max()), 1.0)
        with self.assertRaises(ValueError):
            ad.shift_words(words, "reverse", rng)

    def test_speed_pitch_and_reverb_act_as_sox_says(self):
        rng = np.random.default_rng(4)
        words = [np.sin(np.arange(8000) * 0.2).astype(np.float32) * 0.5 for _ in range(12)]
        for w in ad.shift_words(words, "speed", rng):
            self.assertTrue(any(abs(len(w) - 8000 / f) < 60 for f in ad.SPEED_FACTORS), len(w))
        for w in ad.shift_words(words, "pitch", rng):
            self.assertLess(abs(len(w) - 8000), 2 * ad.MARGIN)
        for w in ad.shift_words(words, "reverb", rng):
            self.assertGreater(len(w), 8000 + 200)  # the tail
            self.assertLessEqual(len(w), 8000 + ad.REVERB_TAIL)


class FrontendAndNetsTest(unittest.TestCase):
    def test_mel_filterbank(self):
        fb = an.mel_filterbank()
        self.assertEqual(fb.shape, (an.N_FFT // 2 + 1, an.MELS))
        self.assertTrue((fb >= 0).all())
        freqs = np.linspace(0, an.SAMPLE_RATE / 2, fb.shape[0])
        centres = freqs[fb.argmax(0)]
        self.assertTrue((np.diff(centres) >= 0).all())
        self.assertEqual(float(fb[freqs > an.F_MAX + 1].sum()), 0.0)

    def test_log_mel_matches_a_numpy_oracle(self):
        x = np.random.default_rng(7).uniform(-0.8, 0.8, (3, ad.CLIP)).astype(np.float32)
        x[1] = 0.3 * np.sin(2 * np.pi * 440 * np.arange(ad.CLIP) / ad.SAMPLE_RATE)
        got = an.LogMel()(torch.from_numpy(x)).numpy()
        window = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(an.N_FFT) / an.N_FFT)  # periodic Hann
        for row, sig in zip(got, x.astype(np.float64)):
            sig = sig - sig.mean()
            padded = np.pad(sig, an.N_FFT // 2, mode="reflect")
            frames = np.stack([padded[i:i + an.N_FFT] * window
                               for i in range(0, len(sig) + 1, an.HOP)][:row.shape[1]])
            power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
            mel = np.log(power @ an.mel_filterbank().astype(np.float64) + 1e-6).T
            np.testing.assert_allclose(row, (mel - mel.mean()) / 4.0, atol=2e-4)
        self.assertEqual(got.shape, (3, an.MELS, ad.CLIP // an.HOP + 1))
        # A 440 Hz tone is loudest in the band whose centre is nearest 440 Hz.
        freqs = np.linspace(0, an.SAMPLE_RATE / 2, an.N_FFT // 2 + 1)
        centres = freqs[an.mel_filterbank().argmax(0)]
        self.assertLessEqual(abs(int(got[1].mean(1).argmax()) -
                                 int(np.abs(centres - 440).argmin())), 1)

    def test_untrained_nets_follow_the_contract_after_scripting(self):
        torch.manual_seed(0)
        x = odd_inputs()
        for net in (an.MelCNN(3), an.MelGRU(3), an.PooledMLP(3),
                    an.AudioEmbedder(an.MelCNN(5))):
            net.eval()
            scripted = torch.jit.script(net)
            with torch.no_grad():
                out = scripted(x)
                self.assertEqual(out.shape[0], len(x))
                self.assertTrue(bool(torch.isfinite(out).all()), type(net).__name__)
                torch.testing.assert_close(out, net(x))
                torch.testing.assert_close(scripted(x[2:3])[0], out[2], atol=1e-5, rtol=1e-5)
                if not isinstance(net, an.AudioEmbedder):
                    self.assertEqual(scripted.embed(x).dim(), 2)


def load_wav(path):
    """(float32 mono at 16 kHz, rate, channels) of a 16-bit PCM WAV (mixed down, resampled)."""
    with wave.open(path) as f:
        rate, channels, width = f.getframerate(), f.getnchannels(), f.getsampwidth()
        data = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768.0
    assert width == 2, path
    x = data.reshape(-1, channels).mean(1)
    if rate != ad.SAMPLE_RATE:
        g = np.gcd(rate, ad.SAMPLE_RATE)
        x = scipy.signal.resample_poly(x, ad.SAMPLE_RATE // g, rate // g)
    return x[:ad.CLIP].astype(np.float32), rate, channels


class AssetDirTest(unittest.TestCase):
    def setUp(self):
        self.assertTrue(ASSET_DIR and os.path.exists(os.path.join(ASSET_DIR, "spaces.json")),
                        f"no spaces.json in {ASSET_DIR!r} (scripts/make_assets.py builds it)")
        with open(os.path.join(ASSET_DIR, "spaces.json")) as f:
            self.spaces = json.load(f)["spaces"]

    def probe(self):
        x = np.load(os.path.join(ASSET_DIR, "audio", "probe_set.npy"))
        with open(os.path.join(ASSET_DIR, "audio", "probe_index.json")) as f:
            index = json.load(f)
        return x, index

    def test_audio_space_is_the_last_entry(self):
        self.assertEqual([s["name"] for s in self.spaces],
                         ["grey", "colour-small", "colour-large", "text", "audio"])
        self.assertEqual(self.spaces[-1], {
            "name": "audio", "input_kind": "audio", "probe_set": "audio/probe_set.npy",
            "reference_encoder": "audio/reference_encoder.pt", "reference_input_shape": [16000],
            "description": self.spaces[-1]["description"]})
        self.assertIn("espeak-ng", self.spaces[-1]["description"])

    def test_probe_rows_follow_the_contract(self):
        x, index = self.probe()
        self.assertEqual((x.dtype, x.ndim, x.shape[1]), (np.float32, 2, 16000))
        self.assertTrue(1500 <= len(x) <= 3000, len(x))
        self.assertTrue(np.isfinite(x).all())
        self.assertLessEqual(float(np.abs(x).max()), 1.0)
        self.assertGreater(float(np.abs(x).max(1).min()), 0.01)  # no silent row
        self.assertEqual(index["columns"], ["source", "class", "shift"])
        buckets = [tuple(r) for r in index["rows"]]
        self.assertEqual(len(buckets), len(x))
        for source, cls, shift in buckets:
            self.assertIn(source, ad.SOURCES)
            self.assertIn(cls, ad.classes_of(source))
            self.assertIn(shift, ("clean",) + ad.SHIFTS)
        shifts = [b[2] for b in buckets]
        self.assertGreater(shifts.count("clean") / len(x), 0.5)
        order = np.arange(len(x))
        self.assertLessEqual(max_prefix_deviation(shifts, order), 1.0 + 1e-9)
        self.assertLess(max_prefix_deviation([b[0] for b in buckets], order),
                        len(set(shifts)) + 1e-9)
        head = buckets[:len(x) // 20]
        self.assertEqual({b[0] for b in head}, set(ad.SOURCES))
        self.assertEqual({b[2] for b in head}, set(shifts))
        counts = collections.Counter(buckets)
        first = collections.Counter(buckets[:len(x) // 2])
        for bucket, n in counts.items():
            self.assertLessEqual(abs(first[bucket] - n / 2), 0.5 * len(set(shifts)) + 1, bucket)
        # No two rows alike.
        digests = {hashlib.sha256(row.tobytes()).hexdigest() for row in x}
        self.assertEqual(len(digests), len(x))

    def test_reference_encoder_shape_determinism_speed_free_robustness(self):
        enc = torch.jit.load(os.path.join(ASSET_DIR, "audio", "reference_encoder.pt"))
        x, _ = self.probe()
        batch = torch.from_numpy(x[:64])
        with torch.no_grad():
            e = enc(batch)
            self.assertEqual((e.dtype, tuple(e.shape)), (torch.float32, (64, 64)))
            self.assertTrue(torch.equal(e, enc(batch)))
            torch.testing.assert_close(enc(batch[5:6])[0], e[5], atol=1e-5, rtol=1e-5)
            odd = enc(odd_inputs())
            self.assertEqual(tuple(odd.shape), (6, 64))
            self.assertTrue(bool(torch.isfinite(odd).all()))

    def test_reference_encoder_separates_the_words(self):
        """Leave-one-out 1-NN (cosine) of clean probes: the same word (English words and digits)
        or the same language (digits-intl) is the nearest neighbour far above chance."""
        enc = torch.jit.load(os.path.join(ASSET_DIR, "audio", "reference_encoder.pt"))
        x, index = self.probe()
        keep = [i for i, r in enumerate(index["rows"]) if r[2] == "clean"][:800]
        with torch.no_grad():
            e = torch.nn.functional.normalize(enc(torch.from_numpy(x[keep])), dim=1)
        sim = e @ e.T
        sim.fill_diagonal_(-2.0)
        labels = [tuple(index["rows"][i][:2]) for i in keep]
        hits = sum(labels[j] == lab for lab, j in zip(labels, sim.argmax(1).tolist()))
        self.assertGreater(hits / len(keep), 0.5)

    def test_demo_models_follow_the_audio_contract(self):
        demo = os.path.join(ASSET_DIR, "demo", "audio")
        names = sorted(f[:-3] for f in os.listdir(demo) if f.endswith(".pt"))
        self.assertGreaterEqual(len(names), 3)
        x = odd_inputs()
        for name in names:
            with open(os.path.join(demo, name + ".json")) as f:
                side = json.load(f)
            self.assertEqual((side["name"], side["task"], side["input_shape"]),
                             (name, "audio_classification", [16000]))
            self.assertIn("audio", side["tags"])
            self.assertTrue(side["license"])
            model = torch.jit.load(os.path.join(demo, name + ".pt"))
            with torch.no_grad():
                logits = model(x)
                self.assertEqual(tuple(logits.shape), (len(x), len(side["class_labels"])))
                self.assertTrue(bool(torch.isfinite(logits).all()), name)
                self.assertTrue(torch.equal(logits, model(x)))
                emb = model.embed(x)
                self.assertEqual((emb.dim(), emb.shape[0]), (2, len(x)))
                self.assertTrue(bool(torch.isfinite(emb).all()), name)

    def test_query_folder_and_its_best_model(self):
        root = os.path.join(ASSET_DIR, "demo", "query_audio")
        classes = sorted(os.listdir(root))
        self.assertEqual(len(classes), 4)
        with open(os.path.join(ASSET_DIR, "MANIFEST.json")) as f:
            manifest = json.load(f)["files"]
        clips, labels, rates, channels = [], [], collections.Counter(), collections.Counter()
        for cls in classes:
            files = sorted(os.listdir(os.path.join(root, cls)))
            self.assertEqual(files, [f"{j:03d}.wav" for j in range(20)])
            for name in files:
                clip, rate, ch = load_wav(os.path.join(root, cls, name))
                rates[rate] += 1
                channels[ch] += 1
                clips.append(np.pad(clip, (0, ad.CLIP - len(clip))))
                labels.append(cls)
                # "'yes' said by en-us+Mr serious (query split), ..." (variant names have spaces)
                speaker = re.search(r" said by (.+) \(query split\)",
                                    manifest[f"demo/query_audio/{cls}/{name}"]["description"])[1]
                self.assertEqual(ad.split_of(speaker), "query", speaker)
        self.assertEqual(set(rates), {16000, 22050})
        self.assertEqual(set(channels), {1, 2})
        self.assertLess(rates[22050] + channels[2], len(clips) / 2)
        with open(os.path.join(ASSET_DIR, "demo", "audio", "speech-commands-cnn.json")) as f:
            names = json.load(f)["class_labels"]
        self.assertLessEqual(set(classes), set(names))
        model = torch.jit.load(os.path.join(ASSET_DIR, "demo", "audio", "speech-commands-cnn.pt"))
        with torch.no_grad():
            pred = model(torch.from_numpy(np.stack(clips))).argmax(1).tolist()
        accuracy = np.mean([names[p] == lab for p, lab in zip(pred, labels)])
        self.assertGreater(accuracy, 0.7)

    def test_manifest_lists_the_audio_files(self):
        with open(os.path.join(ASSET_DIR, "MANIFEST.json")) as f:
            manifest = json.load(f)
        wanted = ["audio/probe_set.npy", "audio/probe_index.json", "audio/reference_encoder.pt"]
        wanted += ["demo/audio/" + n for n in os.listdir(os.path.join(ASSET_DIR, "demo", "audio"))]
        root = os.path.join(ASSET_DIR, "demo", "query_audio")
        wanted += [f"demo/query_audio/{c}/{n}" for c in os.listdir(root)
                   for n in os.listdir(os.path.join(root, c))]
        for rel in wanted:
            self.assertIn(rel, manifest["files"])
            with open(os.path.join(ASSET_DIR, rel), "rb") as f:
                self.assertEqual(hashlib.sha256(f.read()).hexdigest(),
                                 manifest["files"][rel]["sha256"], rel)
        self.assertIn("audio", manifest["data_split"])
        self.assertGreaterEqual(manifest["audio"]["reference_encoder"]
                                ["clips_per_second_1_thread"], 1)


if __name__ == "__main__":
    if len(sys.argv) > 1 and not sys.argv[1].startswith("-"):
        ASSET_DIR = sys.argv.pop(1)
    unittest.main()
