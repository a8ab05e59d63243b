"""The data partition and label sets of the speech zoo, on scripts/assets/audio_data.py (the
dock's audio space: espeak-ng words and digits, sox shifts, 1 s clips at 16 kHz mono).

audio_data.split_of (a fixed hash of each speaker, "<voice>+<variant>") gives four disjoint
speaker sets: "probe" (the dock's audio probe set), "encoder" (the audio reference encoder),
"source" and "query". Here:
- source models train on "source" speakers only; VAL_SHARE of the speakers of each language (and
  gender) -- those with the smallest second hash of the name, at least one -- are kept for
  validation accuracy only;
- query tasks use "query" speakers only; within a task, a third hash of the speaker (TASK_SALT)
  splits each language's speakers into task-train (TASK_TRAIN_SHARE, at least one) and task-test
  speakers, so no voice of a task's test clips is heard in its train clips.

A class is a list of (language, text) pairs that may say it, plus an optional speaker gender
(espeak-ng's voice variants declare one). A clip of a class picks a pair and a speaker of that
language and gender in turn, with a random speaking rate and pitch (audio_data's ranges).
"""
import hashlib
import json
import os
import sys
import zlib

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts"))
from assets import audio_data as ad  # noqa: E402

VAL_SALT = "zoo_audio-val-v1"
VAL_SHARE = 0.12
TASK_SALT = "zoo_audio-task-v1"
TASK_TRAIN_SHARE = 0.35


def crc(*parts):
    return zlib.crc32("/".join(map(str, parts)).encode("utf-8"))


def _share(salt, name):
    return (crc(salt, name) % 100000) / 100000.0


def first_share(pool, salt, share):
    """The speakers of `pool` with the smallest hash (salt, name): round(share x its size), at
    least one and at most all but one (a pool of one: that one). A fixed choice per pool."""
    ranked = sorted(pool, key=lambda s: (_share(salt, s), s))
    k = min(max(1, int(round(share * len(ranked)))), max(1, len(ranked) - 1))
    return set(ranked[:k])


def val_speakers(pool):
    """Source speakers of a pool (a language and gender) kept for validation (never trained on)."""
    return first_share(pool, VAL_SALT, VAL_SHARE)


def task_train_speakers(pool):
    """Query speakers of a pool whose clips go to a task's train split (the rest: test)."""
    return first_share(pool, TASK_SALT, TASK_TRAIN_SHARE)


_GENDER = {}


def gender(speaker):
    """'female', 'male' or None: the `gender` line of the speaker's espeak-ng voice variant."""
    variant = speaker.split("+", 1)[1]
    if variant not in _GENDER:
        g = None
        with open(os.path.join(ad.ESPEAK_DATA, "voices", "!v", variant), errors="replace") as f:
            for line in f:
                words = line.split()
                if len(words) >= 2 and words[0] == "gender" and words[1] in ("female", "male"):
                    g = words[1]
        _GENDER[variant] = g
    return _GENDER[variant]


def word(w, lang="en"):
    return (w, [(lang, w)], None)


def digit_class(d, langs):
    return (ad.DIGIT_NAMES[d], [(lang, str(d)) for lang in langs], None)


def language_class(lang):
    return (lang, [(lang, str(d)) for d in range(10)], None)


def gender_class(g, texts, lang="en"):
    return (g, [(lang, t) for t in texts], g)


INTL = ad.INTL_LANGUAGES                      # 12 languages besides English
LANG8 = ("en", "de", "fr", "es", "it", "nl", "pl", "ru")
GENDER_TEXTS = ad.OTHER_WORDS                 # what the gender sources hear
NATO = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot")

# Source label sets: name -> [(label, [(language, text)], gender or None)].
LABEL_SETS = {
    "cmd10": [word(w) for w in ad.COMMANDS],
    "other15": [word(w) for w in ad.OTHER_WORDS],
    "words25": [word(w) for w in ad.ENGLISH_WORDS],
    "digits-en": [digit_class(d, ("en",)) for d in range(10)],
    "digits-de": [digit_class(d, ("de",)) for d in range(10)],
    "digits-fr": [digit_class(d, ("fr",)) for d in range(10)],
    "digits-intl": [digit_class(d, INTL) for d in range(10)],
    "lang8": [language_class(lang) for lang in LANG8],
    "gender2": [gender_class(g, GENDER_TEXTS) for g in ("female", "male")],
}


def speakers(split, lang, want_gender, part=None):
    """Speakers of `lang` in `split`, of a gender if given; part(pool) -> the subset to use."""
    pool = [s for s in ad.speakers(lang, split) if want_gender is None or gender(s) == want_gender]
    if part is None:
        return pool
    keep = part(pool)
    return [s for s in pool if s in keep]


def draw(split, classes, per_class, rng, part=None):
    """per_class specs per class (the classes in turn): audio_data spec dicts (text, speaker,
    rate, pitch) plus label (the class index). part: pool of speakers -> the ones to use."""
    pools = {}
    specs = []
    for i in range(per_class * len(classes)):
        k = i % len(classes)
        _, pairs, g = classes[k]
        lang, text = pairs[int(rng.integers(len(pairs)))]
        if (lang, g) not in pools:
            pools[(lang, g)] = speakers(split, lang, g, part)
            if not pools[(lang, g)]:
                raise ValueError(f"no {split} speaker of {lang} ({g})")
        pool = pools[(lang, g)]
        specs.append({"text": text, "speaker": pool[int(rng.integers(len(pool)))],
                      "rate": int(rng.integers(ad.RATE_RANGE[0], ad.RATE_RANGE[1] + 1)),
                      "pitch": int(rng.integers(ad.PITCH_RANGE[0], ad.PITCH_RANGE[1] + 1)),
                      "label": k})
    return specs


def source_specs(label_set, per_class, val_per_class, seed):
    classes = LABEL_SETS[label_set]
    rng = np.random.default_rng(crc(seed, "source", label_set))
    train = draw("source", classes, per_class, rng,
                 part=lambda pool: set(pool) - val_speakers(pool))
    val = draw("source", classes, val_per_class, rng, part=val_speakers)
    return train, val, [label for label, _, _ in classes]


def query_specs(name, classes, n_train, n_test, seed):
    rng = np.random.default_rng(crc(seed, "query", name))
    train = draw("query", classes, n_train, rng, part=task_train_speakers)
    test = draw("query", classes, n_test, rng,
                part=lambda pool: set(pool) - task_train_speakers(pool))
    return train, test


def synthesize_cached(specs, cache_dir):
    """audio_data.synthesize(specs), cached in cache_dir/words-<sha1 of what is said>.npz (the
    words concatenated + their lengths), so each word is synthesized once."""
    items = [[s["text"], s["speaker"], s["rate"], s["pitch"]] for s in specs]
    key = hashlib.sha1(json.dumps(items).encode("utf-8")).hexdigest()[:20]
    path = os.path.join(cache_dir, f"words-{key}.npz")
    if os.path.exists(path):
        z = np.load(path)
        cuts = np.cumsum(z["lengths"])[:-1]
        return [w.copy() for w in np.split(z["samples"], cuts)]
    words = ad.synthesize(specs)
    os.makedirs(cache_dir, exist_ok=True)
    tmp = path + f".tmp{os.getpid()}.npz"
    np.savez(tmp, samples=np.concatenate(words) if words else np.zeros(0, np.float32),
             lengths=np.array([len(w) for w in words], np.int64))
    os.replace(tmp, path)
    return words
