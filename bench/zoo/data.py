"""Data for the benchmark zoo: Fashion-MNIST partitions, glyph renders from split font sets, and
the domain shifts. Everything is a pure function of its arguments and a seed.

Partition rules (so that query tasks are unseen by every source model and by the dock itself):
- the dock's probe set is Fashion-MNIST t10k 0..999, its reference encoder trained on train 0..29999;
- source models train on Fashion-MNIST *train* (any index) and validate on t10k 1000..1999;
- query tasks draw train splits from t10k 2000..5999 and test splits from t10k 6000..9999;
- glyph fonts are grouped by typeface design (metric clones such as Liberation Sans / Nimbus Sans /
  TeX Gyre Heros are one design), the designs are split by a seeded shuffle into source and query
  designs, and the query fonts are split again into task-train and task-test fonts.
"""
import os
import sys

import numpy as np
from scipy import ndimage

_SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts")
sys.path.insert(0, os.path.abspath(_SCRIPTS))
from assets import fmnist  # noqa: E402
from assets.glyphs import DIGITS, LETTERS, list_fonts, render_glyphs  # noqa: E402

UPPER = LETTERS[:26]
LOWER = LETTERS[26:]

FMNIST_SOURCE_VAL = range(1000, 2000)
FMNIST_QUERY_TRAIN = range(2000, 6000)
FMNIST_QUERY_TEST = range(6000, 10000)

# Typeface designs: families that are clones of one another share a design, so a held-out design
# is really unseen. Script faces are excluded (their digits and letters are not the usual shapes).
_DESIGNS = {
    "LiberationSans": "helvetica", "NimbusSans": "helvetica", "texgyreheros": "helvetica",
    "NimbusSansNarrow": "helvetica-narrow", "texgyreheroscn": "helvetica-narrow",
    "LiberationSerif": "times", "NimbusRoman": "times", "texgyretermes": "times",
    "LiberationMono": "courier", "NimbusMonoPS": "courier", "texgyrecursor": "courier",
    "P052": "palatino", "texgyrepagella": "palatino",
    "C059": "schoolbook", "texgyreschola": "schoolbook",
    "URWBookman": "bookman", "texgyrebonum": "bookman",
    "URWGothic": "avantgarde", "texgyreadventor": "avantgarde",
    "DejaVuSans": "dejavu-sans", "DejaVuSansCondensed": "dejavu-sans",
    "DejaVuSansMono": "dejavu-mono",
    "DejaVuSerif": "dejavu-serif", "DejaVuSerifCondensed": "dejavu-serif",
}
_EXCLUDED_FAMILIES = {"Z003", "texgyrechorus"}


def _family(path):
    return os.path.splitext(os.path.basename(path))[0].split("-")[0]


def split_fonts(seed, query_fraction=0.34):
    """Returns {"source": [...], "query_train": [...], "query_test": [...], "designs": {...}}."""
    by_design = {}
    for path in list_fonts():
        fam = _family(path)
        if fam in _EXCLUDED_FAMILIES:
            continue
        by_design.setdefault(_DESIGNS.get(fam, fam.lower()), []).append(path)
    designs = sorted(by_design)
    rng = np.random.default_rng([seed, 101])
    order = [designs[i] for i in rng.permutation(len(designs))]
    n_query = max(2, int(round(query_fraction * len(designs))))
    query_designs, source_designs = sorted(order[:n_query]), sorted(order[n_query:])
    source = sorted(p for d in source_designs for p in by_design[d])
    query = sorted(p for d in query_designs for p in by_design[d])
    perm = rng.permutation(len(query))
    query_train = sorted(query[i] for i in perm[: len(query) // 2])
    query_test = sorted(query[i] for i in perm[len(query) // 2:])
    return {"source": source, "query_train": query_train, "query_test": query_test,
            "designs": {"source": source_designs, "query": query_designs}}


_fmnist_cache = {}


def load_fmnist(split):
    if split not in _fmnist_cache:
        _fmnist_cache[split] = fmnist.load(split)
    return _fmnist_cache[split]


def sample_fmnist(split, index_range, classes, n_per_class, seed):
    """n_per_class images of each class in `classes` (original FMNIST ids) from index_range.
    Labels are remapped to 0..len(classes)-1 in the given order. Returns (uint8 [N,28,28], int64)."""
    images, labels = load_fmnist(split)
    idx = np.arange(index_range.start, index_range.stop)
    rng = np.random.default_rng(seed)
    xs, ys = [], []
    for new_label, c in enumerate(classes):
        pool = idx[labels[idx] == c]
        if len(pool) < n_per_class:
            raise ValueError(f"fmnist {split}: class {c} has {len(pool)} < {n_per_class} images")
        pick = np.sort(rng.choice(pool, n_per_class, replace=False))
        xs.append(images[pick])
        ys.append(np.full(n_per_class, new_label, dtype=np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def sample_glyphs(chars, fonts, n_per_char, seed):
    return render_glyphs(chars, fonts, n_per_char=n_per_char, seed=seed)


def apply_shift(images, shift, seed):
    """Domain shift on uint8 [N,28,28] images; returns uint8. shift in
    {None, "inv", "rot90", "blur", "noise"}."""
    if not shift:
        return images
    x = images.astype(np.float32) / 255.0
    if shift == "inv":
        x = 1.0 - x
    elif shift == "rot90":
        x = np.ascontiguousarray(np.rot90(x, k=1, axes=(1, 2)))
    elif shift == "blur":
        x = ndimage.gaussian_filter(x, sigma=(0, 1.2, 1.2))
    elif shift == "noise":
        rng = np.random.default_rng([seed, 7])
        x = np.clip(x + rng.normal(0.0, 0.25, size=x.shape).astype(np.float32), 0.0, 1.0)
    else:
        raise ValueError(f"unknown shift {shift!r}")
    return np.round(x * 255.0).astype(np.uint8)


def write_task_files(out, name, train, test):
    """Writes a query task's (images, labels) splits as uncompressed MNIST IDX files under
    OUT/tasks/NAME/ and returns their paths relative to OUT as the manifest fields
    train_images, train_labels, test_images, test_labels."""
    tdir = os.path.join(out, "tasks", name)
    os.makedirs(tdir, exist_ok=True)
    files = {}
    for split, (x, y) in (("train", train), ("test", test)):
        for what, arr in (("images-idx3", x), ("labels-idx1", y.astype(np.uint8))):
            fname = f"{split}-{what}-ubyte"
            fmnist.write_idx(os.path.join(tdir, fname), arr)
            files[f"{split}_{what.split('-')[0]}"] = f"tasks/{name}/{fname}"
    return files

