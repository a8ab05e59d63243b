"""Texts from Debian packages: fortune databases (English, German, Italian, Spanish) and the licence
texts of /usr/share/common-licenses, split in paragraphs.

Everything here is a pure function of the installed package files and a seed, so the text probe
set, the text reference encoder, the text demo models and their query draw reproducible, disjoint
samples:

    from assets import text_data as td
    records = td.load_texts()                       # dicts: text, source, cls, path
    probe = td.of_split(records, "probe")           # interleaved by (source, class)
    noisy = td.shift_text("Hello world", "typos", rng)

A record's split is a fixed hash of its text (SPLITS, the colour split's shares), so the same text
in two files stays in one split; duplicates are kept once (the first in sorted path order).
Sources and licences: scripts/assets/README.md.
"""
import os
import re
import zlib


FORTUNE_ROOT = "/usr/share/games/fortunes"
LICENSE_ROOT = "/usr/share/common-licenses"

# source name -> (Debian package, directory under FORTUNE_ROOT or None for the top level).
FORTUNE_SOURCES = (("fortunes", "fortunes", None),
                   ("fortunes-de", "fortunes-de", "de"),
                   ("fortunes-it", "fortunes-it", "it"),
                   ("fortunes-es", "fortunes-es", "es"))
LICENSE_SOURCE = ("common-licenses", "base-files")
SOURCES = tuple(s for s, _, _ in FORTUNE_SOURCES) + (LICENSE_SOURCE[0],)
# Licence names of the data (SPDX where one exists), per source (scripts/assets/README.md).
SOURCE_LICENSES = {
    "fortunes": "BSD-3-Clause",
    "fortunes-de": "GPL-2.0-or-later",
    "fortunes-it": "LicenseRef-public-domain",
    "fortunes-es": "GPL-2.0-or-later",
    "common-licenses": "LicenseRef-verbatim-copying",
}
# Databases that are pictures rather than prose, and the Spanish "off" (offensive) directory.
SKIP_CLASSES = {("fortunes", "ascii-art"), ("fortunes-de", "asciiart"), ("fortunes-it", "banner")}

MIN_CHARS = 8
MAX_CHARS = 900   # leaves room for the whitespace shift under the contract's 1,000
MIN_LICENSE_PARAGRAPH = 40

# Disjoint parts of the texts: the text probe set, the reference encoder's training data, the
# demo models (and a future text zoo's source models), then query tasks.
SPLITS = (("probe", 0.20), ("encoder", 0.30), ("source", 0.30), ("query", 0.20))
SHIFTS = ("typos", "upper", "lower", "truncate", "whitespace")


def split_of(text, salt="text-split-v1"):
    """Which of SPLITS `text` belongs to (a fixed hash of its UTF-8 bytes)."""
    u = (zlib.crc32((salt + "/" + text).encode("utf-8")) % 100000) / 100000.0
    edge = 0.0
    for name, fraction in SPLITS:
        edge += fraction
        if u < edge:
            return name
    return SPLITS[-1][0]


def parse_fortunes(raw):
    """A fortune database: entries separated by lines holding only '%'."""
    raw = raw.replace("\r\n", "\n")
    return [e.strip() for e in re.split(r"\n%\n", "\n" + raw + "\n")]


def _fortune_files(subdir):
    root = FORTUNE_ROOT if subdir is None else os.path.join(FORTUNE_ROOT, subdir)
    if not os.path.isdir(root):
        return []
    out = []
    for name in sorted(os.listdir(root)):
        path = os.path.join(root, name)
        if (os.path.islink(path) or not os.path.isfile(path) or name.endswith((".dat", ".u8"))
                or name.endswith("-pre")):
            continue
        out.append((re.sub(r"\.fortunes$", "", name), path))
    return out


def license_family(name):
    """GPL-3 -> GPL, LGPL-2.1 -> LGPL, CC0-1.0 -> CC0, Apache-2.0 -> Apache, BSD -> BSD."""
    return re.sub(r"-[0-9.]+$", "", name)


def _license_paragraphs():
    out = []
    if not os.path.isdir(LICENSE_ROOT):
        return out
    for name in sorted(os.listdir(LICENSE_ROOT)):
        path = os.path.join(LICENSE_ROOT, name)
        if os.path.islink(path) or not os.path.isfile(path):
            continue
        with open(path, encoding="utf-8") as f:
            paragraphs = re.split(r"\n\s*\n", f.read().replace("\r\n", "\n"))
        out += [(license_family(name), path, p.strip()) for p in paragraphs
                if len(p.strip()) >= MIN_LICENSE_PARAGRAPH]
    return out


def load_texts():
    """Every usable text: [{text, source, cls, path}] in a fixed order (sources in SOURCES
    order, files sorted, entries in file order), duplicates and over-long entries dropped."""
    candidates = []
    for source, _, subdir in FORTUNE_SOURCES:
        for cls, path in _fortune_files(subdir):
            if (source, cls) in SKIP_CLASSES:
                continue
            with open(path, encoding="utf-8", errors="replace") as f:
                candidates += [(source, cls, path, e) for e in parse_fortunes(f.read())]
    candidates += [(LICENSE_SOURCE[0], cls, path, p) for cls, path, p in _license_paragraphs()]
    seen = set()
    records = []
    for source, cls, path, text in candidates:
        if not MIN_CHARS <= len(text) <= MAX_CHARS or text in seen:
            continue
        seen.add(text)
        records.append({"text": text, "source": source, "cls": cls, "path": path})
    missing = [s for s in SOURCES if not any(r["source"] == s for r in records)]
    if missing:
        raise RuntimeError(f"no texts from {missing}: install the packages of scripts/setup.sh "
                           "(fortunes, fortunes-de, fortunes-it, fortunes-es, base-files)")
    return records


def interleave_by(items, key):
    """Round-robin over groups of `items` (by key(item), groups in first-seen order)."""
    groups = {}
    for it in items:
        groups.setdefault(key(it), []).append(it)
    lists = list(groups.values())
    out = []
    for i in range(max((len(g) for g in lists), default=0)):
        out += [g[i] for g in lists if i < len(g)]
    return out


def of_split(records, split, source=None):
    """Records of `split` (and `source`), interleaved by class so that any prefix is balanced."""
    keep = [r for r in records if split_of(r["text"]) == split
            and (source is None or r["source"] == source)]
    return interleave_by(keep, key=lambda r: (r["source"], r["cls"]))


# ------------------------------------------------------------------------------------------------
# Shifts

_KEYBOARD_NEIGHBOURS = "qwertyuiopasdfghjklzxcvbnm"


def _typos(text, rng, rate=0.05):
    chars = list(text)
    out = []
    i = 0
    while i < len(chars):
        c = chars[i]
        if c.isalpha() and rng.random() < rate:
            op = int(rng.integers(4))
            if op == 0 and i + 1 < len(chars):      # swap with the next character
                out += [chars[i + 1], c]
                i += 2
                continue
            if op == 1:                              # drop
                i += 1
                continue
            if op == 2:                              # double
                out += [c, c]
            else:                                    # substitute a letter
                out.append(_KEYBOARD_NEIGHBOURS[int(rng.integers(len(_KEYBOARD_NEIGHBOURS)))])
            i += 1
            continue
        out.append(c)
        i += 1
    result = "".join(out)
    return result if result.strip() else text


def _whitespace(text, rng):
    words = text.split()
    pieces = [" " * int(rng.integers(0, 3))]
    for w in words:
        pieces.append(w)
        r = rng.random()
        pieces.append(" " if r < 0.6 else ("  " if r < 0.8 else ("\t" if r < 0.9 else "\n")))
    pieces.append(" " * int(rng.integers(0, 3)))
    return "".join(pieces)


MAX_SHIFTED_CHARS = 1000


def shift_text(text, shift, rng):
    """`text` under `shift` (one of SHIFTS): never empty (for a non-empty `text`), at most
    MAX_SHIFTED_CHARS characters."""
    return _shift(text, shift, rng)[:MAX_SHIFTED_CHARS]


def _shift(text, shift, rng):
    if shift == "typos":
        return _typos(text, rng)
    if shift == "upper":
        return text.upper()
    if shift == "lower":
        return text.lower()
    if shift == "truncate":
        keep = max(MIN_CHARS // 2, int(len(text) * rng.uniform(0.2, 0.5)))
        return text[:keep]
    if shift == "whitespace":
        return _whitespace(text, rng)
    raise ValueError(f"unknown text shift {shift!r}")
