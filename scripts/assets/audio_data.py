"""Spoken words and digits from Debian's espeak-ng, shifted with Debian's sox, as 1 s clips at
16 kHz mono (float32 in [-1, 1]).

Everything here is a pure function of the installed espeak-ng and sox and a seed:

    from assets import audio_data as ad
    specs = ad.draw_specs("probe", "words-en", 100, rng)     # what to say, who says it, how
    words = ad.synthesize(specs)                             # float32 at 16 kHz, variable length
    clips = ad.place_all(words, rng)                         # [N, 16000], centred with jitter
    shifted = ad.shift_words(words, "reverb", rng)           # then place_all / finish_shift

Speakers are an espeak-ng language voice with one of its voice variants ("en-us+Andy"). A
speaker's split is a fixed hash of its name (SPLITS, the text and colour shares), so the probe
set, the reference encoder, the demo models and the query folder never hear the same speaker.
Words are synthesized in-process through libespeak-ng (the library of the espeak-ng command, the
same voices and output; one command per word would cost ~100 ms each) by worker processes
that each take a fixed batch of words: the library carries a little state from one word to the
next, so a fresh process per fixed batch keeps the output reproducible. Resampling 22,050 ->
16,000 Hz and the speed, pitch and reverb shifts run through sox over batches of words
separated by silence (one sox process per batch), cut apart at the known positions.
Sources and licences: scripts/assets/README.md.
"""
import concurrent.futures
import ctypes
import json
import os
import subprocess
import sys
import zlib

import numpy as np

SAMPLE_RATE = 16000
CLIP = 16000                 # one second
ESPEAK_RATE = 22050          # espeak-ng's output rate
ESPEAK_DATA = "/usr/lib/x86_64-linux-gnu/espeak-ng-data"

SPLITS = (("probe", 0.20), ("encoder", 0.30), ("source", 0.30), ("query", 0.20))

# English voices (accents) and the languages whose digits are spoken, with their voices.
ENGLISH_VOICES = ("en", "en-us", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan",
                  "en-gb-x-gbcwmd", "en-029", "en-us-nyc")
LANGUAGE_VOICES = {
    "en": ENGLISH_VOICES, "de": ("de",), "fr": ("fr", "fr-be", "fr-ch"), "es": ("es", "es-419"),
    "it": ("it",), "nl": ("nl",), "pt": ("pt", "pt-br"), "pl": ("pl",), "ru": ("ru",),
    "sv": ("sv",), "fi": ("fi",), "tr": ("tr",), "cs": ("cs",),
}
COMMANDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
OTHER_WORDS = ("bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
               "backward", "forward", "follow", "learn", "visual")
ENGLISH_WORDS = COMMANDS + OTHER_WORDS
DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

# Sources of the probe set: (class names, how a class is spoken).
SOURCES = ("words-en", "digits-en", "digits-intl")
INTL_LANGUAGES = tuple(lang for lang in LANGUAGE_VOICES if lang != "en")

# Licence of the generated speech (scripts/assets/README.md): espeak-ng is GPL-3.0-or-later and
# its copyright file says nothing about its output; GPL-3 section 2 covers a program's output only
# if its content is itself a covered work. The clips say our own short words.
AUDIO_LICENSE = "LicenseRef-espeak-ng-output"

RATE_RANGE = (110, 230)      # espeak-ng -s, words per minute (default 175)
PITCH_RANGE = (20, 80)       # espeak-ng -p, 0..99 (default 50)

SHIFTS = ("noise", "speed", "pitch", "reverb", "gain", "offset")
SPEED_FACTORS = (0.8, 0.9, 1.15, 1.3)        # sox speed (tempo and pitch together)
PITCH_CENTS = (-500, -250, 250, 500)         # sox pitch (tempo kept)
REVERB_ARGS = (("40", "50", "60"), ("70", "50", "100"), ("100", "30", "100"))  # sox reverb
GAINS = (0.08, 0.25, 3.0, 8.0)               # then clipped to [-1, 1]
NOISE_SNR_DB = (5.0, 20.0)

WORKER_BATCH = 200
GAP = 8000                   # silence between words in a sox batch (samples at 16 kHz)
MARGIN = 800                 # kept before a word's place after sox (pitch moves it)
REVERB_TAIL = 8000           # a reverb tail is cut 0.5 s after the word's end


def split_of(speaker, salt="audio-split-v1"):
    """Which of SPLITS a speaker ("<voice>+<variant>") belongs to (fixed hash of the name)."""
    u = (zlib.crc32((salt + "/" + speaker).encode("utf-8")) % 100000) / 100000.0
    edge = 0.0
    for name, fraction in SPLITS:
        edge += fraction
        if u < edge:
            return name
    return SPLITS[-1][0]


def variants():
    """espeak-ng's voice variants (file names under voices/!v), sorted."""
    root = os.path.join(ESPEAK_DATA, "voices", "!v")
    if not os.path.isdir(root):
        raise RuntimeError(f"no espeak-ng voice variants in {root}: install espeak-ng "
                           "(scripts/setup.sh)")
    return sorted(n for n in os.listdir(root) if os.path.isfile(os.path.join(root, n)))


def speakers(language, split):
    """Speakers ("<voice>+<variant>") of `language` in `split`, sorted."""
    return [s for s in (f"{v}+{var}" for v in LANGUAGE_VOICES[language] for var in variants())
            if split_of(s) == split]


def classes_of(source):
    if source == "words-en":
        return ENGLISH_WORDS
    if source == "digits-en":
        return DIGIT_NAMES
    if source == "digits-intl":
        return INTL_LANGUAGES
    raise ValueError(f"unknown audio source {source!r}")


def draw_specs(split, source, n, rng, classes=None):
    """n clips of `source` spoken by `split`'s speakers, the classes in turn: dicts with text,
    speaker, rate, pitch, source, cls (a word, a digit name or a language) and word (the class
    a word classifier learns: the English word, or "<lang>/<digit>")."""
    classes = classes_of(source) if classes is None else classes
    pools = {}
    specs = []
    for i in range(n):
        cls = classes[i % len(classes)]
        if source == "digits-intl":
            lang, digit = cls, int(rng.integers(10))
            text, word = str(digit), f"{lang}/{DIGIT_NAMES[digit]}"
        else:
            lang = "en"
            text = str(DIGIT_NAMES.index(cls)) if source == "digits-en" else cls
            word = f"en/{cls}"
        if lang not in pools:
            pools[lang] = speakers(lang, split)
        pool = pools[lang]
        specs.append({"text": text, "speaker": pool[int(rng.integers(len(pool)))],
                      "rate": int(rng.integers(RATE_RANGE[0], RATE_RANGE[1] + 1)),
                      "pitch": int(rng.integers(PITCH_RANGE[0], PITCH_RANGE[1] + 1)),
                      "source": source, "cls": cls, "word": word})
    return specs


# ------------------------------------------------------------------------------------------------
# Synthesis

def _worker_main():
    """Reads [[text, speaker, rate, pitch], ...] (JSON) on stdin; writes per word an int32 sample
    count and the int16 samples at ESPEAK_RATE to stdout."""
    lib = ctypes.CDLL("libespeak-ng.so.1")
    callback_type = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                     ctypes.c_void_p)
    chunks = []

    def collect(wav, n, _events):
        if wav and n > 0:
            chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        return 0

    callback = callback_type(collect)
    # AUDIO_OUTPUT_SYNCHRONOUS, default buffer, default data path, espeakINITIALIZE_DONT_EXIT.
    rate = lib.espeak_Initialize(2, 0, None, 0x8000)
    if rate != ESPEAK_RATE:
        raise RuntimeError(f"espeak-ng initialised at {rate} Hz, expected {ESPEAK_RATE}")
    lib.espeak_SetSynthCallback(callback)
    out = sys.stdout.buffer
    for text, speaker, wpm, pitch in json.load(sys.stdin):
        chunks.clear()
        if lib.espeak_SetVoiceByName(speaker.encode()) != 0:
            raise RuntimeError(f"espeak-ng has no voice {speaker!r}")
        lib.espeak_SetParameter(1, int(wpm), 0)      # espeakRATE
        lib.espeak_SetParameter(3, int(pitch), 0)    # espeakPITCH
        data = text.encode("utf-8") + b"\0"
        # POS_CHARACTER, espeakCHARS_UTF8.
        if lib.espeak_Synth(data, len(data), 0, 1, 0, 1, None, None) != 0:
            raise RuntimeError(f"espeak-ng could not say {text!r} as {speaker}")
        wav = np.concatenate(chunks) if chunks else np.zeros(0, np.int16)
        out.write(np.int32(len(wav)).tobytes() + wav.astype("<i2").tobytes())
    out.flush()


def _synth_batch(items):
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--synth-worker"],
                          input=json.dumps(items).encode(), stdout=subprocess.PIPE, check=True)
    raw, pos, words = proc.stdout, 0, []
    for _ in items:
        n = int(np.frombuffer(raw, "<i4", 1, pos)[0])
        words.append(np.frombuffer(raw, "<i2", n, pos + 4).astype(np.float32) / 32768.0)
        pos += 4 + 2 * n
    return resample_words(words)


def sox(signal, rate_in, rate_out, effects):
    """float32 mono `signal` through `sox -R -D ... effects` (raw float32 in and out)."""
    fmt = ["-t", "raw", "-e", "floating-point", "-b", "32", "-c", "1"]
    cmd = (["sox", "-R", "-D", "-V1"] + fmt + ["-r", str(rate_in), "-"] + fmt
           + ["-r", str(rate_out), "-"] + list(effects))
    proc = subprocess.run(cmd, input=np.ascontiguousarray(signal, "<f4").tobytes(),
                          stdout=subprocess.PIPE, check=True)
    return np.frombuffer(proc.stdout, "<f4").copy()


def sox_batch(words, rate_in, effects, ratio, gap, margin=0):
    """Applies sox `effects` to every word at once: each word gets gap / 2 samples of silence
    on both sides (and a few more at the end so that every boundary maps to a whole output
    sample), they are joined, run through sox and cut apart at the words' places scaled by
    `ratio` (output / input length): each piece starts `margin` input samples before its word
    (sox pitch moves a word by up to ~20 ms) and ends gap / 2 after it (a reverb tail, cut
    there; silence is trimmed later). Nothing of a neighbour gets in while margin < gap / 2."""
    step = 441 if rate_in == ESPEAK_RATE else 1
    half = gap // 2
    padded = [np.pad(w, (half, half + (-(len(w) + 2 * half)) % step)) for w in words]
    starts = np.cumsum([0] + [len(p) for p in padded])
    out = sox(np.concatenate(padded) if padded else np.zeros(0, np.float32), rate_in,
              SAMPLE_RATE if rate_in == ESPEAK_RATE else rate_in, effects)
    pieces = []
    for i, w in enumerate(words):
        lo = int(round((starts[i] + half - margin) * ratio))
        hi = int(round((starts[i] + half + len(w) + half) * ratio))
        pieces.append(out[lo:hi])
    return pieces


def resample_words(words):
    """Words at ESPEAK_RATE -> 16 kHz (sox's rate effect, one process), silence trimmed."""
    out = sox_batch(words, ESPEAK_RATE, ["rate", "-h", str(SAMPLE_RATE)],
                    SAMPLE_RATE / ESPEAK_RATE, 441 * 20)
    return [trim(w) for w in out]


def trim(word, rel=0.01):
    """Drops leading and trailing samples below rel x the peak."""
    peak = float(np.abs(word).max()) if len(word) else 0.0
    if peak == 0.0:
        return word[:0]
    loud = np.flatnonzero(np.abs(word) >= rel * peak)
    return word[loud[0]:loud[-1] + 1]


def synthesize(specs, workers=2):
    """Every spec spoken: float32 words at 16 kHz, silence trimmed (batches of WORKER_BATCH in
    fresh worker processes, `workers` at a time)."""
    items = [[s["text"], s["speaker"], s["rate"], s["pitch"]] for s in specs]
    batches = [items[i:i + WORKER_BATCH] for i in range(0, len(items), WORKER_BATCH)]
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(_synth_batch, batches))
    return [w for batch in results for w in batch]


# ------------------------------------------------------------------------------------------------
# Placement and shifts

def place(word, start, peak):
    """A CLIP-sample clip holding `word` from sample `start` (may be negative or cut at the end),
    scaled to `peak` (a silent word stays silent)."""
    clip = np.zeros(CLIP, np.float32)
    lo, hi = max(start, 0), min(start + len(word), CLIP)
    if hi > lo:
        clip[lo:hi] = word[lo - start:hi - start]
    top = float(np.abs(clip).max())
    return clip * (peak / top) if top > 0 else clip


def place_all(words, rng, offset=False):
    """Clips for words: centred with +-0.1 s jitter (offset=True: anywhere with at least half
    of the word inside the clip, so up to half of it may be cut), peak 0.3..0.9."""
    clips = np.zeros((len(words), CLIP), np.float32)
    for i, w in enumerate(words):
        if offset:
            start = int(rng.integers(-(len(w) // 2), CLIP - len(w) // 2 + 1))
        else:
            start = (CLIP - len(w)) // 2 + int(rng.integers(-1600, 1601))
        clips[i] = place(w, start, float(rng.uniform(0.3, 0.9)))
    return clips


def _levels(n, levels, rng):
    return [int(rng.integers(len(levels))) for _ in range(n)]


def shift_words(words, shift, rng, workers=2):
    """Words under a sox shift (speed, pitch, reverb; one sox batch per level); other shifts
    leave the words as they are (finish_shift applies them to the placed clips)."""
    if shift not in SHIFTS:
        raise ValueError(f"unknown audio shift {shift!r}")
    if shift == "speed":
        levels = [(["speed", str(f), "rate", "-h", str(SAMPLE_RATE)], 1.0 / f, GAP, MARGIN)
                  for f in SPEED_FACTORS]
    elif shift == "pitch":
        levels = [(["pitch", str(c), "rate", "-h", str(SAMPLE_RATE)], 1.0, GAP, MARGIN)
                  for c in PITCH_CENTS]
    elif shift == "reverb":
        levels = [(["reverb"] + list(a), 1.0, 2 * REVERB_TAIL, 0) for a in REVERB_ARGS]
    else:
        return list(words)
    pick = _levels(len(words), levels, rng)
    out = [None] * len(words)

    def run(k):
        idx = [i for i, p in enumerate(pick) if p == k]
        effects, ratio, gap, margin = levels[k]
        return idx, sox_batch([words[i] for i in idx], SAMPLE_RATE, effects, ratio, gap, margin)

    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        for idx, pieces in pool.map(run, range(len(levels))):
            for i, piece in zip(idx, pieces):
                out[i] = trim(piece)
    return out


def finish_shift(clips, shift, rng):
    """The placed clips under noise or gain (others: unchanged); values stay in [-1, 1]."""
    clips = clips.copy()
    if shift == "noise":
        for i in range(len(clips)):
            snr = rng.uniform(*NOISE_SNR_DB)
            power = float(np.mean(clips[i] ** 2)) or 1e-4
            noise = rng.standard_normal(CLIP).astype(np.float32)
            if rng.random() < 0.5:  # brown-ish: integrated white noise, zero mean
                noise = np.cumsum(noise) / 30.0
                noise -= noise.mean()
            noise *= np.sqrt(power / 10 ** (snr / 10) / max(float(np.mean(noise ** 2)), 1e-12))
            clips[i] += noise
    elif shift == "gain":
        for i, k in enumerate(_levels(len(clips), GAINS, rng)):
            clips[i] *= GAINS[k]
    return np.clip(clips, -1.0, 1.0).astype(np.float32)


def shifted_clips(words, shift, rng):
    """[N, CLIP] clips of `words` under `shift` (one of SHIFTS)."""
    moved = shift_words(words, shift, rng)
    return finish_shift(place_all(moved, rng, offset=shift == "offset"), shift, rng)


if __name__ == "__main__" and sys.argv[1:] == ["--synth-worker"]:
    _worker_main()
