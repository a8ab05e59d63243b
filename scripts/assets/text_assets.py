"""The text knowledge space's assets (called by scripts/make_assets.py):

    text/probe_texts.jsonl          {"text", "label": "<source>/<class>/<shift>"} per line, in a
                                    balanced order (any prefix holds every bucket in proportion)
    text/reference_encoder.pt       E: forward(texts: List[str]) -> float32 [N, 64]
    demo/text/<name>.pt|.json       text demo models: forward(texts) -> logits, embed(texts)
    demo/query_text.csv             text,label: 4 English fortune databases x 30, query split
    spaces.json                     the text space appended as the last entry

Probe set: clean texts of every source (fortune databases in four languages, licence paragraphs),
the classes of a source in turn, then shifted copies (text_data.SHIFTS) of fresh draws. Rows are
ordered by colour_data.balanced_order over (shift, source, class).
Data split (text_data.SPLITS, a fixed hash of each text): probe set <- "probe"; reference encoder
<- "encoder"; demo models <- "source" (their held-out accuracy on "query"); the query CSV <-
"query".
"""
import csv
import json
import os
import time

import numpy as np
import torch

from . import colour_data
from . import text_data as td


# Clean rows per source, and rows per source in each shift (fresh draws after the clean ones).
PROBE_CLEAN = {"fortunes": 640, "fortunes-de": 420, "fortunes-it": 300, "fortunes-es": 300,
               "common-licenses": 80}
PROBE_PER_SHIFT = {"fortunes": 80, "fortunes-de": 52, "fortunes-it": 36, "fortunes-es": 36,
                   "common-licenses": 12}


def build_probe_set(records, seed):
    """Returns (rows [{"text", "label"}] in balanced order, their (source, class, shift) keys)."""
    rng = np.random.default_rng(seed)
    rows = []  # (source, class, shift, text)
    for source in td.SOURCES:
        pool = td.of_split(records, "probe", source)
        n_clean, n_shift = PROBE_CLEAN[source], PROBE_PER_SHIFT[source]
        for j in range(n_clean):
            r = pool[j % len(pool)]
            rows.append((source, r["cls"], "clean", r["text"]))
        for i, shift in enumerate(td.SHIFTS):
            for j in range(n_shift):
                r = pool[(n_clean + i * n_shift + j) % len(pool)]
                rows.append((source, r["cls"], shift, td.shift_text(r["text"], shift, rng)))
    order = colour_data.balanced_order([(sh, so, c) for so, c, sh, _ in rows], seed)
    ordered = [rows[i] for i in order]
    out = [{"text": t, "label": f"{so}/{c}/{sh}"} for so, c, sh, t in ordered]
    for row in out:
        if not 0 < len(row["text"]) <= td.MAX_SHIFTED_CHARS:
            raise AssertionError(f"probe text of {len(row['text'])} chars: {row['label']}")
    return out


def write_jsonl(path, rows):
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def build(out, seeds, timer, files, save_model, sidecar):
    """Writes the text assets into `out`, adds their descriptions to `files`; returns the
    manifest section."""
    cpu0 = time.process_time()
    records = td.load_texts()
    timer.step("text data")
    os.makedirs(os.path.join(out, "text"), exist_ok=True)
    probe = build_probe_set(records, seeds["text_probe"])
    write_jsonl(os.path.join(out, "text", "probe_texts.jsonl"), probe)
    files["text/probe_texts.jsonl"] = (
        f"text probe set: {len(probe)} JSON lines {{text, label: source/class/shift}}, balanced "
        "order (text_assets.py)")
    info = {"texts": len(records), "probe_rows": len(probe),
            "per_split": {s: sum(td.split_of(r["text"]) == s for r in records)
                          for s, _ in td.SPLITS},
            "sources": {s: td.SOURCE_LICENSES[s] for s in td.SOURCES},
            "shifts": list(td.SHIFTS)}
    timer.step("text probe set")
    info["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    return info
