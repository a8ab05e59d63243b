#!/usr/bin/python3
"""Builds the speech benchmark zoo and its query tasks, reproducibly from a seed.

    nice -n 5 /usr/bin/python3 bench/zoo_audio/make_zoo_audio.py \
        --out bench/zoo_audio/artifacts/zoo --seed 0 [--jobs 2] [--smoke] [--only a,b]

Writes into OUT:
  models/<name>.pt + .json      TorchScript audio model (forward(x [N, 16000]) -> logits,
                                embed(x)) + sidecar (task audio_classification, input_shape
                                [16000])
  tasks/<task>/{train,test}.npz samples float32 [N, 16000] (16 kHz mono in [-1, 1]), labels int64
                                (indices into class_labels, which is sorted), class_labels
  tasks/<task>/train_wav/<class>/NNN.wav   the train split as a WAV class folder (tasks with
                                "wav": the CLI's query path), 16-bit PCM 16 kHz mono
  zoo.json, tasks.json          manifests (as bench/zoo_text's)
  ../cache/words-*.npz          synthesized words (each said once; reused by later runs)
Data partition: data_audio.py (source models <- "source" speakers, tasks <- "query" speakers).
torch.set_num_threads(1) per process, at most 2 processes.
"""
import argparse
import json
import multiprocessing as mp
import os
import sys
import time
import wave

if os.environ.get("PYTHONHASHSEED") != "0":  # TorchScript writes constants in hash order
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import data_audio as da  # noqa: E402
import nets_audio as na  # noqa: E402
from assets import audio_assets as aa  # noqa: E402
from assets import audio_data as ad  # noqa: E402
from assets import audio_nets as an  # noqa: E402

# Source tasks: name -> (label set of data_audio.LABEL_SETS, share of shifted training clips).
SOURCES = {s: (s, 0.0) for s in da.LABEL_SETS}
SOURCES["cmd10mixed"] = ("cmd10", 0.6)   # 60% of the training clips under audio_data.SHIFTS
BUDGETS = {"l": 80, "s": 15}              # training clips per class
EPOCHS = {"l": {"cnn": 10, "gru": 10, "transformer": 14, "mlp": 30},
          "s": {"cnn": 25, "gru": 25, "transformer": 30, "mlp": 60}}
VAL_PER_CLASS = 15
BATCH = 64

# (source, budget[, kind]) per architecture; kind: normal | shuffled (labels permuted) |
# barely (2 optimiser steps) | short (1 epoch).
_ZOO = {
    "cnn": [("cmd10", "l"), ("other15", "l"), ("words25", "l"), ("digits-en", "l"),
            ("lang8", "l"), ("gender2", "l"), ("digits-intl", "l"), ("cmd10", "s"),
            ("cmd10mixed", "l"), ("cmd10", "l", "shuffled")],
    "gru": [("cmd10", "l"), ("digits-en", "l"), ("lang8", "l"), ("digits-de", "l"),
            ("gender2", "s"), ("words25", "l"), ("cmd10", "l", "barely")],
    "transformer": [("cmd10", "l"), ("words25", "l"), ("lang8", "l"), ("digits-intl", "l"),
                    ("digits-en", "s"), ("other15", "l", "short")],
    "mlp": [("lang8", "l"), ("gender2", "l"), ("cmd10", "l"), ("digits-fr", "l")],
}

# Query tasks: name, classes, train per class, test per class, shift, note[, "wav"].
TASKS = [
    ("q_cmd4_n8", [da.word(w) for w in ("left", "right", "on", "off")], 8, 40, None,
     "4 English command words (in cmd10 and words25)", "wav"),
    ("q_nato6_n8", [da.word(w) for w in da.NATO], 8, 30, None,
     "6 NATO alphabet words that no source model heard"),
    ("q_digits_en_noise_n6", da.LABEL_SETS["digits-en"], 6, 30, "noise",
     "English digits in noise (5-20 dB SNR)"),
    ("q_digits_it_n6", [da.digit_class(d, ("it",)) for d in range(10)], 6, 30, None,
     "Italian digits (only the digits-intl sources heard Italian digits)"),
    ("q_lang5_reverb_n8", [da.language_class(lang) for lang in ("de", "fr", "es", "nl", "sv")],
     8, 40, "reverb", "language of a spoken digit, with room echo (sv is in no source)"),
    ("q_gender_digits_n10",
     [da.gender_class(g, [str(d) for d in range(10)]) for g in ("female", "male")], 10, 60, None,
     "speaker gender on English digits (the gender2 sources heard other words)"),
    ("q_cmd10_speed_n5", da.LABEL_SETS["cmd10"], 5, 30, "speed",
     "the 10 command words, sped up or slowed down (sox speed 0.8-1.3)"),
    ("q_other8_offset_n6", [da.word(w) for w in ad.OTHER_WORDS[:8]], 6, 30, "offset",
     "8 of the other words, anywhere in the clip (up to half cut off)"),
]

WORDS = {}  # label set -> (train words, val words, specs, val specs, labels); before forking


def zoo_specs(smoke=False):
    specs = []
    for arch, rows in _ZOO.items():
        for row in rows:
            src, budget = row[:2]
            kind = row[2] if len(row) > 2 else "normal"
            suffix = "" if kind == "normal" else f"-{kind}"
            specs.append((f"{arch}-{src}{suffix}-{budget}", arch, src, budget, kind))
    if smoke:
        specs = [s for s in specs if s[2] == "cmd10" and s[3] == "l" and s[4] == "normal"]
    return specs


def synthesize_sources(specs, seed, cache):
    for label_set in sorted({SOURCES[s[2]][0] for s in specs}):
        if label_set in WORDS:
            continue
        train, val, labels = da.source_specs(label_set, BUDGETS["l"], VAL_PER_CLASS, seed)
        words = da.synthesize_cached(train + val, cache)
        WORDS[label_set] = (words[:len(train)], words[len(train):], train, val, labels)


def train_source_model(job):
    out, seed, (name, arch, src, budget, kind) = job
    torch.set_num_threads(1)
    t0, cpu0 = time.time(), time.process_time()
    label_set, share = SOURCES[src]
    words, val_words, specs, val_specs, labels = WORDS[label_set]
    n = BUDGETS[budget] * len(labels)     # the classes come in turn: a balanced prefix
    words, specs = words[:n], specs[:n]
    rng = np.random.default_rng(da.crc(seed, name, "clips"))
    shifts = (aa.random_shifts(n, share, rng) if share > 0 else ["clean"] * n)
    clips = aa.make_clips(words, rng, shifts)
    val_clips = ad.place_all(val_words, np.random.default_rng(da.crc(seed, label_set, "val")))
    y = np.array([s["label"] for s in specs], np.int64)
    vy = np.array([s["label"] for s in val_specs], np.int64)
    if kind == "shuffled":
        y = np.random.default_rng(da.crc(seed, name, "shuffle")).permutation(y)
    epochs = 1 if kind == "short" else EPOCHS[budget][arch]
    if kind == "barely":  # two optimiser steps on 2 batches of a seeded choice
        pick = np.random.default_rng(da.crc(seed, name, "barely")).permutation(n)[:2 * BATCH]
        clips, y, epochs = clips[pick], y[pick], 1
    torch.manual_seed(da.crc(seed, name, "init"))
    net = na.build(arch, len(labels), budget)
    train_acc = an.train(net, an.log_mels(clips), y, epochs, da.crc(seed, name, "order"),
                         batch_size=BATCH, lr=na.LR[arch])
    val_acc = an.accuracy(net, val_clips, vy)
    with torch.no_grad():
        dim = int(net.embed(torch.zeros(2, ad.CLIP)).shape[1])
    models_dir = os.path.join(out, "models")
    torch.jit.script(net).save(os.path.join(models_dir, f"{name}.pt"))
    desc = (f"{arch} on {src} ({len(labels)} classes, {BUDGETS[budget]} clips per class"
            + (f", {share:.0%} shifted" if share else "") + ("" if kind == "normal" else f", {kind}")
            + ")")
    sidecar = {"name": name, "version": "1.0.0", "description": desc,
               "task": "audio_classification", "input_shape": [ad.CLIP], "class_labels": labels,
               "license": ad.AUDIO_LICENSE, "tags": ["bench", "zoo_audio", arch, src]}
    with open(os.path.join(models_dir, f"{name}.json"), "w") as f:
        json.dump(sidecar, f, indent=1)
    return {"name": name, "arch": arch, "source": src, "label_set": label_set,
            "shifted_share": share, "budget": budget, "per_class": BUDGETS[budget], "kind": kind,
            "classes": labels, "train_samples": len(y), "val_samples": len(vy), "epochs": epochs,
            "lr": na.LR[arch], "batch_size": BATCH,
            "parameters": int(sum(p.numel() for p in net.parameters())), "feature_dim": dim,
            "train_acc": round(train_acc, 4), "val_acc": round(val_acc, 4),
            "seconds": round(time.time() - t0, 1),
            "cpu_seconds": round(time.process_time() - cpu0, 1), "file": f"models/{name}.pt",
            "sidecar": f"models/{name}.json"}


def task_clips(words, shift, rng):
    return ad.place_all(words, rng) if shift is None else ad.shifted_clips(words, shift, rng)


def write_wav_folder(root, clips, labels, names):
    """root/<class>/NNN.wav, 16-bit PCM mono 16 kHz; clips hold q / 32768 with integer q, written
    as q: libsndfile (the dock's reader) gives back q / 32768, the very numbers of the NPZ."""
    count = {}
    for clip, k in zip(clips, labels):
        j = count.get(k, 0)
        count[k] = j + 1
        os.makedirs(os.path.join(root, names[k]), exist_ok=True)
        pcm = np.clip(np.round(clip * 32768.0), -32768, 32767).astype("<i2")
        with wave.open(os.path.join(root, names[k], f"{j:03d}.wav"), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(ad.SAMPLE_RATE)
            f.writeframes(pcm.tobytes())


def make_task(out, seed, spec, cache):
    name, classes, n_train, n_test, shift, note = spec[:6]
    wav = "wav" in spec[6:]
    train, test = da.query_specs(name, classes, n_train, n_test, seed)
    words = da.synthesize_cached(train + test, cache)
    rng = np.random.default_rng(da.crc(seed, name, "clips"))
    x = task_clips(words[:len(train)], shift, rng)
    tx = task_clips(words[len(train):], shift, rng)
    # 16-bit PCM values q / 32768 (as libsndfile reads them), so the .npz and the WAV folder
    # hold the same numbers.
    x, tx = (np.round(a * 32767.0) / 32768.0 for a in (x, tx))
    raw = [label for label, _, _ in classes]
    names = sorted(raw)
    y = np.array([names.index(raw[s["label"]]) for s in train], np.int64)
    ty = np.array([names.index(raw[s["label"]]) for s in test], np.int64)
    order = np.random.default_rng(da.crc(seed, name, "order")).permutation(len(y))
    x, y = x[order].astype(np.float32), y[order]
    d = os.path.join(out, "tasks", name)
    os.makedirs(d, exist_ok=True)
    np.savez(os.path.join(d, "train.npz"), samples=x, labels=y, class_labels=np.array(names))
    np.savez(os.path.join(d, "test.npz"), samples=tx.astype(np.float32), labels=ty,
             class_labels=np.array(names))
    task = {"name": name, "kind": "audio", "description": note, "class_labels": names,
            "num_classes": len(names), "shift": shift, "train_per_class": n_train,
            "test_per_class": n_test, "num_train": len(y), "num_test": len(ty),
            "train_speakers": len({s["speaker"] for s in train}),
            "test_speakers": len({s["speaker"] for s in test}),
            "format": "NPZ samples float32 [N, 16000] (16 kHz mono, 16-bit PCM values), labels "
                      "int64 indices into class_labels (sorted, as the dock indexes them)",
            "train_file": f"tasks/{name}/train.npz", "test_file": f"tasks/{name}/test.npz"}
    if wav:
        write_wav_folder(os.path.join(d, "train_wav"), x, y, names)
        task["train_dir"] = f"tasks/{name}/train_wav"
    return task


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="4 models and 2 tasks")
    ap.add_argument("--only", default=None, help="comma-separated model names to (re)train")
    ap.add_argument("--tasks-only", action="store_true", help="write the tasks, train nothing")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = os.path.abspath(args.out)
    cache = os.path.join(os.path.dirname(out), "cache")
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    t0 = time.time()
    tasks = [make_task(out, args.seed, t, cache) for t in (TASKS[:2] if args.smoke else TASKS)]
    with open(os.path.join(out, "tasks.json"), "w") as f:
        json.dump({"seed": args.seed, "smoke": args.smoke, "tasks": tasks}, f, indent=1)
    print(f"{len(tasks)} tasks in {time.time() - t0:.1f} s", flush=True)
    if args.tasks_only:
        return
    specs = zoo_specs(args.smoke)
    if args.only:
        keep = set(args.only.split(","))
        specs = [s for s in specs if s[0] in keep]
    zoo_path = os.path.join(out, "zoo.json")
    done = {}
    if os.path.exists(zoo_path):
        with open(zoo_path) as f:
            done = {m["name"]: m for m in json.load(f)["models"]}
    todo = [s for s in specs if s[0] not in done or args.only]
    synthesize_sources(todo, args.seed, cache)
    print(f"source words ready in {time.time() - t0:.1f} s", flush=True)
    cost = {"transformer": 0, "gru": 1, "cnn": 2, "mlp": 3}   # the slowest first
    todo.sort(key=lambda s: (cost[s[1]], s[0]))
    jobs = [(out, args.seed, s) for s in todo]
    with mp.get_context("fork").Pool(max(1, min(args.jobs, 2))) as pool:
        for i, m in enumerate(pool.imap_unordered(train_source_model, jobs), 1):
            done[m["name"]] = m
            print(f"[{i}/{len(jobs)}] {m['name']}: train {m['train_acc']:.3f} val "
                  f"{m['val_acc']:.3f} ({m['seconds']} s, CPU {m['cpu_seconds']} s; "
                  f"{time.time() - t0:.0f} s)", flush=True)
            names = [s[0] for s in zoo_specs(args.smoke)]
            with open(zoo_path, "w") as f:  # after every model: a resumable manifest
                json.dump({"seed": args.seed, "smoke": args.smoke,
                           "models": [done[n] for n in names if n in done]}, f, indent=1)
    print(f"zoo: {len(done)} models in {out} ({time.time() - t0:.1f} s)", flush=True)


if __name__ == "__main__":
    main()
