"""The data partition of the text zoo, on scripts/assets/text_data.py (the dock's text space).

text_data.split_of (a fixed hash of each text) gives four disjoint parts: "probe" (the dock's text
probe set), "encoder" (the text reference encoder), "source" and "query". Here:
- source models train on the "source" split only; VAL_SHARE of it (by a second hash) is kept
  for their validation accuracy;
- query tasks use the "query" split only; within a task, a third hash (TASK_SALT) splits the
  texts into task-train (TASK_TRAIN_SHARE) and task-test, so a task's test texts are never in its
  train split.

Label sets are lists of (label, predicate on a record); texts of a class are drawn interleaved by
(source, database), so a class spanning several databases or languages stays balanced.
"""
import os
import sys
import zlib

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "scripts"))
from assets import text_data as td  # noqa: E402

VAL_SALT = "zoo_text-val-v1"
VAL_SHARE = 0.12
TASK_SALT = "zoo_text-task-v1"
TASK_TRAIN_SHARE = 0.35


def crc(*parts):
    return zlib.crc32("/".join(map(str, parts)).encode("utf-8"))


def _share(salt, text):
    return (crc(salt, text) % 100000) / 100000.0


def is_val(text):
    """Source-split texts kept for validation (never trained on)."""
    return _share(VAL_SALT, text) < VAL_SHARE


def task_part(text):
    """'train' or 'test' within a query task."""
    return "train" if _share(TASK_SALT, text) < TASK_TRAIN_SHARE else "test"


def db(source, *classes):
    """Records of `source` whose database is one of `classes` (any database if none given)."""
    keep = set(classes)
    return lambda r: r["source"] == source and (not keep or r["cls"] in keep)


def any_of(*preds):
    return lambda r: any(p(r) for p in preds)


TECH = any_of(db("fortunes", "computers", "linux", "perl", "linuxcookie", "debian"),
              db("fortunes-de", "computer", "linuxtag", "ms", "channel-debian", "debian"),
              db("fortunes-it", "computer"), db("fortunes-es", "informatica"))
FORTUNE = any_of(*(db(s) for s in ("fortunes", "fortunes-de", "fortunes-it", "fortunes-es")))


def topics(source, names):
    return [(n, db(source, n)) for n in names]


LANG4 = [("English", db("fortunes")), ("German", db("fortunes-de")),
         ("Italian", db("fortunes-it")), ("Spanish", db("fortunes-es"))]
EN8 = ("computers", "definitions", "people", "politics", "science", "songs-poems", "work",
       "zippy")
ENB6 = ("art", "cookie", "knghtbrd", "men-women", "platitudes", "wisdom")
# 16 English databases; none of the q_ennew5 task's databases.
EN16 = EN8 + ("art", "cookie", "fortunes", "knghtbrd", "linux", "men-women", "miscellaneous",
              "platitudes")
ES6 = ("humanos", "leydemurphy", "refranes", "sabiduria", "sentimientos", "vida")
DE6 = ("infodrom", "linuxtag", "namen", "unfug", "witze", "zitate")
IT6 = ("computer", "italia", "leggi", "luke", "norm", "paolotedeschi")

# Source label sets: name -> [(label, predicate)].
LABEL_SETS = {
    "lang4": LANG4,
    "src5": LANG4 + [("licence", db("common-licenses"))],
    "en8": topics("fortunes", EN8),
    "enb6": topics("fortunes", ENB6),
    "en16": topics("fortunes", EN16),
    "es6": topics("fortunes-es", ES6),
    "de6": topics("fortunes-de", DE6),
    "it6": topics("fortunes-it", IT6),
    "tech2": [("technology", TECH), ("other", lambda r: FORTUNE(r) and not TECH(r))],
}


def draw(records, split, classes, per_class, keep=None):
    """Up to per_class texts per class of `split` (filtered by keep(text)), in a fixed order.
    Returns (texts, labels as class indices)."""
    pool = [r for r in records if td.split_of(r["text"]) == split
            and (keep is None or keep(r["text"]))]
    texts, labels = [], []
    for k, (_, pred) in enumerate(classes):
        chosen = td.interleave_by([r for r in pool if pred(r)],
                                  key=lambda r: (r["source"], r["cls"]))[:per_class]
        texts += [r["text"] for r in chosen]
        labels += [k] * len(chosen)
    return texts, labels


def source_data(records, label_set, per_class, val_per_class):
    classes = LABEL_SETS[label_set]
    train = draw(records, "source", classes, per_class, keep=lambda t: not is_val(t))
    val = draw(records, "source", classes, val_per_class, keep=is_val)
    return train, val, [label for label, _ in classes]


def query_data(records, classes, n_train, n_test):
    train = draw(records, "query", classes, n_train, keep=lambda t: task_part(t) == "train")
    test = draw(records, "query", classes, n_test, keep=lambda t: task_part(t) == "test")
    return train, test
