"""The audio knowledge space's assets (called by scripts/make_assets.py):

    audio/probe_set.npy             float32 [P, 16000]: 1 s clips at 16 kHz mono in [-1, 1], in a
                                    balanced order (any prefix holds every bucket in proportion)
    audio/probe_index.json          source, class and shift of every probe row
    audio/reference_encoder.pt      E: forward(x [N, 16000]) -> float32 [N, 64]
    demo/audio/<name>.pt|.json      audio demo models: forward(x) -> logits, embed(x)
    demo/query_audio/<class>/NNN.wav  4 English command words x 20 WAV files (16-bit PCM; a few
                                    at 22,050 Hz, a few stereo)
    spaces.json                     the audio space appended as the last entry

Probe set: clean clips of every source (English words, English digits, digits in 12 other
languages, all spoken by espeak-ng), the classes of a source in turn, then shifted copies
(audio_data.SHIFTS) of fresh draws. Rows are ordered by colour_data.balanced_order over (shift,
source, class).
Data split (audio_data.SPLITS, a fixed hash of each speaker = voice + variant): probe set <-
"probe"; reference encoder <- "encoder"; demo models <- "source" (their held-out accuracy on
"query"); the query folder <- "query".
"""
import json
import os
import time
import wave

import numpy as np
import scipy.signal
import torch

from . import audio_data as ad
from . import audio_nets as an
from . import colour_data

# Clean rows per source, and rows per source in each shift (fresh draws after the clean ones).
PROBE_CLEAN = {"words-en": 500, "digits-en": 300, "digits-intl": 400}
PROBE_PER_SHIFT = {"words-en": 60, "digits-en": 35, "digits-intl": 45}


def make_clips(words, rng, shifts):
    """[N, 16000] clips: words[i] placed clean (shifts[i] == "clean") or under shifts[i]."""
    clips = np.zeros((len(words), ad.CLIP), np.float32)
    for shift in ("clean",) + ad.SHIFTS:
        idx = [i for i, s in enumerate(shifts) if s == shift]
        if not idx:
            continue
        group = [words[i] for i in idx]
        clips[idx] = (ad.place_all(group, rng) if shift == "clean"
                      else ad.shifted_clips(group, shift, rng))
    return clips


def random_shifts(n, share, rng):
    """n shift names: "clean", or with probability `share` one of audio_data.SHIFTS."""
    return ["clean" if rng.random() >= share else ad.SHIFTS[int(rng.integers(len(ad.SHIFTS)))]
            for _ in range(n)]


def build_probe_set(seed):
    """Returns (clips [P, 16000] in balanced order, their [source, class, shift] rows)."""
    rng = np.random.default_rng(seed)
    specs, shifts = [], []
    for source in ad.SOURCES:
        n_clean, n_shift = PROBE_CLEAN[source], PROBE_PER_SHIFT[source]
        specs += ad.draw_specs("probe", source, n_clean + n_shift * len(ad.SHIFTS), rng)
        shifts += ["clean"] * n_clean + [s for s in ad.SHIFTS for _ in range(n_shift)]
    clips = make_clips(ad.synthesize(specs), rng, shifts)
    keys = [(sh, s["source"], s["cls"]) for s, sh in zip(specs, shifts)]
    order = colour_data.balanced_order(keys, seed)
    rows = [[keys[i][1], keys[i][2], keys[i][0]] for i in order]
    return clips[order], rows


# Reference encoder: one class per spoken word (25 English words, 10 digits in 13 languages),
# ENCODER_PER_CLASS clips of encoder-split speakers each, a share ENCODER_SHIFTED shifted.
ENCODER_PER_CLASS = 20
ENCODER_SHIFTED = 0.4
ENCODER_EPOCHS = 10
ENCODER_SPEED_CLIPS = 512
HELD_OUT_PER_CLASS = 4


def word_specs(split, per_class, rng):
    """Every word class of the space (audio_data.draw_specs' "word"), about per_class each."""
    return (ad.draw_specs(split, "words-en", per_class * len(ad.ENGLISH_WORDS), rng)
            + ad.draw_specs(split, "digits-en", per_class * 10, rng)
            + ad.draw_specs(split, "digits-intl", per_class * 10 * len(ad.INTL_LANGUAGES), rng))


def clips_per_second(model, clips):
    """Single-thread throughput of `model` over `clips` (batches of 64)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        x = torch.from_numpy(np.ascontiguousarray(clips))
        with torch.no_grad():
            model(x[:64])
            start = time.perf_counter()
            for i in range(0, len(x), 64):
                model(x[i:i + 64])
            return len(x) / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


def build_encoder(out, probe, seeds, files, save_model, timer):
    rng = np.random.default_rng(seeds["audio_encoder_data"])
    specs = word_specs("encoder", ENCODER_PER_CLASS, rng)
    classes = sorted({s["word"] for s in specs})
    index = {w: k for k, w in enumerate(classes)}
    y = np.array([index[s["word"]] for s in specs], np.int64)
    clips = make_clips(ad.synthesize(specs), rng,
                       random_shifts(len(specs), ENCODER_SHIFTED, rng))
    held = word_specs("query", HELD_OUT_PER_CLASS, rng)
    held_clips = ad.place_all(ad.synthesize(held), rng)
    held_y = np.array([index[s["word"]] for s in held], np.int64)
    timer.step("audio encoder data")
    torch.manual_seed(seeds["audio_encoder_init"])
    net = an.MelCNN(len(classes), width=16, feature_dim=64)
    train_acc = an.train(net, an.log_mels(clips), y, ENCODER_EPOCHS, seeds["audio_encoder_train"],
                         batch_size=64, lr=4e-3)
    test_acc = an.accuracy(net, held_clips, held_y)
    path = os.path.join(out, "audio", "reference_encoder.pt")
    enc = save_model(an.AudioEmbedder(net), path)
    with torch.no_grad():
        dim = int(enc(torch.zeros(2, ad.CLIP)).shape[1])
    speed = clips_per_second(torch.jit.load(path), probe[:ENCODER_SPEED_CLIPS])
    print(f"    audio reference encoder: {len(classes)} word classes, train accuracy "
          f"{train_acc:.3f}, held-out (query split) accuracy {test_acc:.3f}, {speed:.0f} clips/s "
          "on one thread", flush=True)
    files["audio/reference_encoder.pt"] = (
        f"TorchScript audio reference encoder E: forward(x float32 [N, 16000]) -> [N, {dim}]; "
        "log-mel (torch.stft, 40 mel bands) + CNN trained on the encoder split "
        f"({len(classes)} spoken-word classes)")
    return {"file": "audio/reference_encoder.pt", "embedding_dim": dim, "classes": len(classes),
            "train_samples": len(y), "epochs": ENCODER_EPOCHS,
            "train_accuracy": round(train_acc, 4), "query_split_accuracy": round(test_acc, 4),
            "query_split_samples": len(held_y), "clips_per_second_1_thread": round(speed)}


def append_space(out, dim, rows):
    """Adds the audio space to spaces.json as its last entry (the others stay as they are)."""
    path = os.path.join(out, "spaces.json")
    with open(path) as f:
        spaces = json.load(f)
    if any(s["name"] == "audio" for s in spaces["spaces"]):
        raise AssertionError("spaces.json already has an audio space")
    spaces["spaces"].append({
        "name": "audio", "input_kind": "audio", "probe_set": "audio/probe_set.npy",
        "reference_encoder": "audio/reference_encoder.pt", "reference_input_shape": [ad.CLIP],
        "description": f"audio: {rows} one-second clips at 16 kHz of English words, English "
                       "digits and digits in 12 other languages spoken by espeak-ng voices, "
                       "with noisy/speed/pitch/reverb/gain/offset copies, in balanced order; "
                       f"E (log-mel CNN) -> {dim}-d"})
    with open(path, "w") as f:
        json.dump(spaces, f, indent=2)
        f.write("\n")


# Demo audio models: name, architecture, task, train clips per class, epochs, description, tags.
# Tasks: (label, audio_data source, classes of draw_specs) per class.
LANGUAGES = ("en", "de", "fr", "es", "it", "nl", "pl", "ru")
DEMOS = (
    ("speech-commands-cnn", "cnn", [(w, "words-en", (w,)) for w in ad.COMMANDS], 90, 12,
     "Ten English command words (yes, no, up, down, left, right, on, off, stop, go): CNN on "
     "log-mel features", ["audio", "speech", "keyword-spotting", "english", "cnn", "demo"]),
    ("english-digits-gru", "gru", [(d, "digits-en", (d,)) for d in ad.DIGIT_NAMES], 90, 12,
     "Spoken English digits zero to nine: GRU over mel frames",
     ["audio", "speech", "digits", "english", "gru", "demo"]),
    ("spoken-language-mlp", "mlp",
     [(lang, "digits-en" if lang == "en" else "digits-intl", None if lang == "en" else (lang,))
      for lang in LANGUAGES], 150, 40,
     "Language of a spoken digit (English, German, French, Spanish, Italian, Dutch, Polish, "
     "Russian): MLP on pooled log-mel statistics",
     ["audio", "speech", "language-identification", "mlp", "demo"]),
)
DEMO_SHIFTED = 0.3
DEMO_LR = {"cnn": 4e-3, "gru": 5e-3, "mlp": 5e-3}
DEMO_TEST_PER_CLASS = 30


def task_specs(split, classes, per_class, rng):
    specs, labels = [], []
    for k, (_, source, draw) in enumerate(classes):
        specs += ad.draw_specs(split, source, per_class, rng, classes=draw)
        labels += [k] * per_class
    return specs, np.array(labels, np.int64)


def make_net(kind, num_classes):
    if kind == "cnn":
        return an.MelCNN(num_classes, width=12, feature_dim=48)
    if kind == "gru":
        return an.MelGRU(num_classes, hidden=64, feature_dim=48)
    if kind == "mlp":
        return an.PooledMLP(num_classes, hidden=128, feature_dim=64)
    raise ValueError(kind)


def build_demos(out, seeds, files, save_model, sidecar, timer):
    demo_dir = os.path.join(out, "demo", "audio")
    os.makedirs(demo_dir, exist_ok=True)
    rng = np.random.default_rng(seeds["audio_demo_data"])
    info = {}
    for i, (name, kind, classes, per_class, epochs, desc, tags) in enumerate(DEMOS):
        specs, y = task_specs("source", classes, per_class, rng)
        clips = make_clips(ad.synthesize(specs), rng, random_shifts(len(y), DEMO_SHIFTED, rng))
        tspecs, ty = task_specs("query", classes, DEMO_TEST_PER_CLASS, rng)
        tclips = ad.place_all(ad.synthesize(tspecs), rng)
        torch.manual_seed(seeds["audio_demo_init"] + i)
        net = make_net(kind, len(classes))
        train_acc = an.train(net, an.log_mels(clips), y, epochs, seeds["audio_demo_train"] + i,
                             lr=DEMO_LR[kind])
        test_acc = an.accuracy(net, tclips, ty)
        save_model(net, os.path.join(demo_dir, name + ".pt"))
        labels = [label for label, _, _ in classes]
        side = sidecar(name, desc, labels, tags, input_shape=(ad.CLIP,),
                       task="audio_classification")
        side["license"] = ad.AUDIO_LICENSE
        with open(os.path.join(demo_dir, name + ".json"), "w") as f:
            json.dump(side, f, indent=2)
            f.write("\n")
        files[f"demo/audio/{name}.pt"] = f"audio demo model {name}: {desc}"
        files[f"demo/audio/{name}.json"] = f"sidecar of demo/audio/{name}.pt"
        with torch.no_grad():
            feature_dim = int(net.embed(torch.zeros(1, ad.CLIP)).shape[1])
        info[name] = {"architecture": kind, "classes": len(labels), "train_samples": len(y),
                      "test_samples": len(ty), "epochs": epochs, "feature_dim": feature_dim,
                      "train_accuracy": round(train_acc, 4), "test_accuracy": round(test_acc, 4)}
        print(f"    {name}: held-out (query split) accuracy {test_acc:.3f}", flush=True)
        timer.step(f"audio demo {name}")
    return info


QUERY_CLASSES = ("yes", "no", "up", "down")
QUERY_PER_CLASS = 20
QUERY_22050 = (3, 11, 17)     # file numbers written at 22,050 Hz (in every class)
QUERY_STEREO = (5, 11, 14)    # file numbers written as stereo (11: both)


def write_wav(path, clip, rate, stereo):
    """16-bit PCM WAV of a 16 kHz clip, resampled to `rate` (scipy polyphase) and/or doubled to
    two channels (the right one 0.8 x the left)."""
    if rate != ad.SAMPLE_RATE:
        g = np.gcd(rate, ad.SAMPLE_RATE)
        clip = scipy.signal.resample_poly(clip, rate // g, ad.SAMPLE_RATE // g)
    pcm = np.round(np.clip(clip, -1.0, 1.0) * 32767.0).astype("<i2")
    if stereo:
        pcm = np.stack([pcm, np.round(pcm * 0.8).astype("<i2")], 1)
    with wave.open(path, "wb") as f:
        f.setnchannels(2 if stereo else 1)
        f.setsampwidth(2)
        f.setframerate(rate)
        f.writeframes(pcm.tobytes())


def write_query(out, seed, files):
    """demo/query_audio/<word>/NNN.wav: QUERY_CLASSES x QUERY_PER_CLASS clips of query-split
    speakers, a share of them shifted."""
    rng = np.random.default_rng(seed)
    specs = ad.draw_specs("query", "words-en", len(QUERY_CLASSES) * QUERY_PER_CLASS, rng,
                          classes=QUERY_CLASSES)
    clips = make_clips(ad.synthesize(specs), rng, random_shifts(len(specs), 0.25, rng))
    root = os.path.join(out, "demo", "query_audio")
    count = {}
    for spec, clip in zip(specs, clips):
        j = count.get(spec["cls"], 0)
        count[spec["cls"]] = j + 1
        os.makedirs(os.path.join(root, spec["cls"]), exist_ok=True)
        rel = f"demo/query_audio/{spec['cls']}/{j:03d}.wav"
        rate = 22050 if j in QUERY_22050 else ad.SAMPLE_RATE
        write_wav(os.path.join(out, rel), clip, rate, j in QUERY_STEREO)
        files[rel] = (f"audio query: '{spec['cls']}' said by {spec['speaker']} (query split), "
                      f"{rate} Hz, {'stereo' if j in QUERY_STEREO else 'mono'} 16-bit PCM")
    return {"dir": "demo/query_audio", "class_labels": list(QUERY_CLASSES),
            "per_class": QUERY_PER_CLASS, "files_22050_hz": list(QUERY_22050),
            "files_stereo": list(QUERY_STEREO), "best_demo_model": "speech-commands-cnn"}


def build(out, seeds, timer, files, save_model, sidecar):
    """Writes the audio assets into `out`, adds their descriptions to `files`; returns the
    manifest section."""
    cpu0 = time.process_time()
    os.makedirs(os.path.join(out, "audio"), exist_ok=True)
    probe, rows = build_probe_set(seeds["audio_probe"])
    np.save(os.path.join(out, "audio", "probe_set.npy"), probe)
    with open(os.path.join(out, "audio", "probe_index.json"), "w") as f:
        json.dump({"columns": ["source", "class", "shift"], "rows": rows}, f, indent=2)
        f.write("\n")
    files["audio/probe_set.npy"] = (
        f"audio probe set: float32 [{len(probe)}, {ad.CLIP}] NPY, 1 s at 16 kHz mono in [-1, 1]; "
        "espeak-ng words and digits, clean and shifted, balanced order (audio_assets.py)")
    files["audio/probe_index.json"] = "source, class and shift of each row of audio/probe_set.npy"
    info = {"probe_rows": len(probe), "sources": list(ad.SOURCES), "shifts": list(ad.SHIFTS),
            "voice_variants": len(ad.variants()),
            "speakers_per_split": {s: sum(len(ad.speakers(lang, s)) for lang in ad.LANGUAGE_VOICES)
                                   for s, _ in ad.SPLITS},
            "license": ad.AUDIO_LICENSE}
    timer.step("audio probe set")
    info["reference_encoder"] = build_encoder(out, probe, seeds, files, save_model, timer)
    timer.step("audio reference encoder")
    append_space(out, info["reference_encoder"]["embedding_dim"], len(probe))
    files["spaces.json"] = ("manifest of knowledge spaces (grey, colour-small, colour-large, text, "
                            "audio)")
    info["demo"] = build_demos(out, seeds, files, save_model, sidecar, timer)
    info["query_audio"] = write_query(out, seeds["audio_query"], files)
    timer.step("audio query")
    # CPU time of this process (all threads; the synthesis workers and sox are not counted).
    info["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    return info
