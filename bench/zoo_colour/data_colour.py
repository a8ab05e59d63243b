"""Data of the colour benchmark zoo, from scripts/assets/colour_data.py's packaged images.

Partition (colour_data.SPLITS, fixed hashes; nothing here touches the dock's probe sets or its
reference encoders' training data):
- source models train and validate on the "source" split: emoji whose code points hash there
  (different renders for validation) and the "source" wallpapers;
- query tasks use the "query" split only: emoji of a task are split again by code points into
  task-train and task-test emoji, so a task's test images show emoji its train split never had;
  wallpaper tasks train on the left 60% of each query wallpaper and test on the right 40%.
Images come out as uint8 [N, 3, S, S].
"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..",
                                                "scripts")))
from assets import colour_data as cd  # noqa: E402

CAT9 = cd.EMOJI_CATEGORIES
CAT4A = ("Animals & Nature", "Food & Drink", "Objects", "Travel & Places")
CAT5B = ("Activities", "Flags", "People & Body", "Smileys & Emotion", "Symbols")
CAT6R = ("Activities", "Animals & Nature", "Food & Drink", "Objects", "Smileys & Emotion",
         "Travel & Places")

# Fine-grained: the sub-categories with at least 10 emoji in the query split.
SUB6 = ("animal-mammal", "av-symbol", "family", "person-role", "person-sport", "transport-ground")


class Pool:
    """The emoji records and wallpapers of the source and query splits (loaded once)."""

    def __init__(self, emoji_root=None):
        self.root = emoji_root or cd.default_emoji_root()
        self.emoji = cd.load_emoji(self.root)
        self.photos = cd.list_photos()

    def records(self, split):
        return [e for e in self.emoji if cd.emoji_split(e) == split]

    def photos_of(self, split):
        return [(g, cd.load_photo(p)) for g, _, p in self.photos if cd.photo_split(g) == split]

    def food_subcategories(self, split):
        subs = sorted({e["subcategory"] for e in self.records(split)
                       if e["category"] == "Food & Drink"})
        # Keep sub-categories with at least 4 emoji in this split.
        return tuple(s for s in subs
                     if sum(e["subcategory"] == s for e in self.records(split)) >= 4)


def emoji_set(pool, split, label_of, classes, styles, per_class, size, seed, keep=None,
              backgrounds=True):
    """per_class renders per class: the class's emoji in turn, styles in turn, fresh backgrounds
    (the split's wallpapers) each time. label_of(record, style) -> class name or None."""
    rng = np.random.default_rng(seed)
    backdrops = [p for _, p in pool.photos_of(split)] if backgrounds else None
    members = {c: [] for c in classes}
    for rec in pool.records(split):
        if keep is not None and not keep(rec):
            continue
        for style in styles:
            c = label_of(rec, style)
            if c in members:
                members[c].append((rec, style))
    images, labels = [], []
    for ci, c in enumerate(classes):
        pairs = members[c]
        if not pairs:
            raise ValueError(f"class {c!r} has no emoji in split {split}")
        order = rng.permutation(len(pairs))
        for j in range(per_class):
            rec, style = pairs[order[j % len(pairs)]]
            images.append(cd.render_emoji(pool.root, rec, style, size, rng, backdrops))
            labels.append(ci)
    x = np.stack(images).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), np.array(labels, np.int64)


def photo_set(photos, per_class, size, seed, region=None):
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for ci, (_, photo) in enumerate(photos):
        for _ in range(per_class):
            images.append(cd.random_crop(photo, size, rng, region=region))
            labels.append(ci)
    return np.ascontiguousarray(np.stack(images).transpose(0, 3, 1, 2)), np.array(labels, np.int64)


def apply_shift(x, shift, seed):
    """uint8 [N, 3, S, S] under one of colour_data.SHIFTS (None: unchanged)."""
    if shift is None:
        return x
    return np.ascontiguousarray(cd.shift_images(x.transpose(0, 2, 3, 1), shift, seed)
                                .transpose(0, 3, 1, 2))


def by_category(rec, style):
    return rec["category"]


def by_style(rec, style):
    return style


def by_subcategory(rec, style):
    return rec["subcategory"]


def task_half(task_name, part):
    """keep(record) for a task's train (part 0) or test (part 1) emoji."""
    return lambda rec: cd.crc("task", task_name, rec["unified"]) % 2 == part
