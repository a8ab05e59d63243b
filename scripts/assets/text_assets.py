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
from . import text_nets as tn


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


# Reference encoder: (source, class) classes with at least ENCODER_MIN_PER_CLASS encoder-split
# texts, at most ENCODER_PER_CLASS each; a share ENCODER_SHIFTED of them shifted.
ENCODER_MIN_PER_CLASS = 30
ENCODER_PER_CLASS = 120
ENCODER_SHIFTED = 0.3
ENCODER_EPOCHS = 12
ENCODER_SPEED_TEXTS = 1000


def _is(source, classes=None):
    return lambda r: r["source"] == source and (classes is None or r["cls"] in classes)


# Demo text models: name, architecture, [(label, predicate on a record)], train texts per class,
# epochs, description, tags. All are trained on the "source" split and tested on "query".
EN_TOPICS = ("computers", "definitions", "people", "politics", "science", "songs-poems", "work",
             "zippy")
QUERY_TOPICS = ("computers", "politics", "science", "songs-poems")
ES_TOPICS = ("humanos", "leydemurphy", "refranes", "sabiduria", "sentimientos", "vida")
DEMOS = (
    ("fortune-language-ngram-mlp", "ngram",
     [("English", _is("fortunes")), ("German", _is("fortunes-de")),
      ("Italian", _is("fortunes-it")), ("Spanish", _is("fortunes-es"))], 600, 5,
     "Language of a fortune cookie (English, German, Italian, Spanish): hashed byte n-gram MLP",
     ["text", "language", "fortunes", "mlp", "demo"]),
    ("english-fortune-topics-cnn", "cnn", [(c, _is("fortunes", {c})) for c in EN_TOPICS], 300, 8,
     "Which English fortune database a text comes from (8 topics): 1-D CNN over bytes",
     ["text", "english", "topics", "fortunes", "cnn", "demo"]),
    ("spanish-fortune-topics-gru", "gru", [(c, _is("fortunes-es", {c})) for c in ES_TOPICS], 250,
     8, "Which Spanish fortune database a text comes from (6 topics): GRU over bytes",
     ["text", "spanish", "topics", "fortunes", "gru", "demo"]),
)


def task_texts(records, split, classes, per_class):
    """Up to per_class texts of `split` per (label, predicate) class, in a fixed order."""
    texts, labels = [], []
    pool = [r for r in records if td.split_of(r["text"]) == split]
    for k, (_, pred) in enumerate(classes):
        chosen = td.interleave_by([r for r in pool if pred(r)],
                                  key=lambda r: (r["source"], r["cls"]))[:per_class]
        texts += [r["text"] for r in chosen]
        labels += [k] * len(chosen)
    return texts, np.array(labels, np.int64)


def encoder_texts(records, seed):
    """Encoder split: texts labelled by (source, class), some shifted."""
    rng = np.random.default_rng(seed)
    by_class = {}
    for r in td.of_split(records, "encoder"):
        by_class.setdefault((r["source"], r["cls"]), []).append(r["text"])
    classes = sorted(k for k, v in by_class.items() if len(v) >= ENCODER_MIN_PER_CLASS)
    texts, labels = [], []
    for k, key in enumerate(classes):
        for t in by_class[key][:ENCODER_PER_CLASS]:
            if rng.random() < ENCODER_SHIFTED:
                t = td.shift_text(t, td.SHIFTS[int(rng.integers(len(td.SHIFTS)))], rng)
            texts.append(t)
            labels.append(k)
    return texts, np.array(labels, np.int64), classes


def held_out_texts(records, classes, per_class=60):
    """Query-split texts of the encoder's classes (for its held-out accuracy)."""
    index = {key: k for k, key in enumerate(classes)}
    count = {}
    texts, labels = [], []
    for r in td.of_split(records, "query"):
        k = index.get((r["source"], r["cls"]))
        if k is not None and count.get(k, 0) < per_class:
            count[k] = count.get(k, 0) + 1
            texts.append(r["text"])
            labels.append(k)
    return texts, np.array(labels, np.int64)


def texts_per_second(model, texts):
    """Single-thread embedding throughput of `model` over `texts` (batches of 64)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            model(texts[:64])
            start = time.perf_counter()
            for i in range(0, len(texts), 64):
                model(texts[i:i + 64])
            return len(texts) / (time.perf_counter() - start)
    finally:
        torch.set_num_threads(threads)


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
    info["reference_encoder"] = build_encoder(out, records, [r["text"] for r in probe], seeds,
                                              files, save_model)
    timer.step("text reference encoder")
    append_space(out, info["reference_encoder"]["embedding_dim"], len(probe))
    files["spaces.json"] = "manifest of knowledge spaces (grey, colour-small, colour-large, text)"
    info["demo"] = build_demos(out, records, seeds, files, save_model, sidecar, timer)
    info["query_text"] = write_query(out, records, seeds["text_query"])
    files["demo/query_text.csv"] = (
        f"text query CSV (text,label; RFC 4180): {', '.join(QUERY_TOPICS)} x "
        f"{QUERY_PER_CLASS}, English fortunes of the query split")
    timer.step("text query")
    # CPU time (all threads) says what the text part costs on an idle machine.
    info["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    return info


def build_encoder(out, records, probe_texts, seeds, files, save_model):
    x, y, classes = encoder_texts(records, seeds["text_encoder_data"])
    torch.manual_seed(seeds["text_encoder_init"])
    net = tn.NgramMLP(len(classes), buckets=16384, dim=64, hidden=256, feature_dim=64)
    train_acc = tn.train(net, x, y, ENCODER_EPOCHS, seeds["text_encoder_train"], batch_size=128,
                         lr=2e-2)
    hx, hy = held_out_texts(records, classes)
    test_acc = tn.accuracy(net, hx, hy)
    path = os.path.join(out, "text", "reference_encoder.pt")
    enc = save_model(tn.TextEmbedder(net), path)
    with torch.no_grad():
        dim = int(enc(["", "x"]).shape[1])
    speed = texts_per_second(torch.jit.load(path), probe_texts[:ENCODER_SPEED_TEXTS])
    print(f"    text reference encoder: {len(classes)} classes, train accuracy {train_acc:.3f}, "
          f"held-out (query split) accuracy {test_acc:.3f}, {speed:.0f} texts/s on one thread",
          flush=True)
    files["text/reference_encoder.pt"] = (
        f"TorchScript text reference encoder E: forward(texts: List[str]) -> float32 [N, {dim}]; "
        "hashed byte 1-3-gram bag + MLP trained on the encoder split "
        f"({len(classes)} (source, class) classes)")
    return {"file": "text/reference_encoder.pt", "embedding_dim": dim, "classes": len(classes),
            "train_samples": len(x), "epochs": ENCODER_EPOCHS,
            "train_accuracy": round(train_acc, 4), "query_split_accuracy": round(test_acc, 4),
            "query_split_samples": len(hx), "texts_per_second_1_thread": round(speed)}


def append_space(out, dim, rows):
    """Adds the text space to spaces.json as its last entry (colour_assets wrote the others)."""
    path = os.path.join(out, "spaces.json")
    with open(path) as f:
        spaces = json.load(f)
    if any(s["name"] == "text" for s in spaces["spaces"]):
        raise AssertionError("spaces.json already has a text space")
    spaces["spaces"].append({
        "name": "text", "input_kind": "text", "probe_set": "text/probe_texts.jsonl",
        "reference_encoder": "text/reference_encoder.pt",
        "description": f"text: {rows} fortune cookies (English, German, Italian, Spanish) and "
                       "licence paragraphs, with typo/upper/lower/truncated/whitespace copies, in "
                       f"balanced order; E (hashed byte n-grams) -> {dim}-d"})
    write_json(path, spaces)


DEMO_LR = {"ngram": 5e-3, "cnn": 3e-3, "gru": 1e-2}


def make_net(kind, num_classes):
    if kind == "ngram":
        return tn.NgramMLP(num_classes, buckets=8192, dim=48, hidden=96, feature_dim=48, salt=7)
    if kind == "cnn":
        return tn.CharCNN(num_classes, emb=24, width=64, feature_dim=64, max_bytes=256)
    if kind == "gru":
        return tn.CharGRU(num_classes, emb=24, hidden=64, feature_dim=48, max_bytes=160)
    raise ValueError(kind)


def build_demos(out, records, seeds, files, save_model, sidecar, timer):
    demo_dir = os.path.join(out, "demo", "text")
    os.makedirs(demo_dir, exist_ok=True)
    info = {}
    for i, (name, kind, classes, per_class, epochs, desc, tags) in enumerate(DEMOS):
        x, y = task_texts(records, "source", classes, per_class)
        tx, ty = task_texts(records, "query", classes, 100)
        torch.manual_seed(seeds["text_demo_init"] + i)
        net = make_net(kind, len(classes))
        train_acc = tn.train(net, x, y, epochs, seeds["text_demo_train"] + i, lr=DEMO_LR[kind])
        test_acc = tn.accuracy(net, tx, ty)
        save_model(net, os.path.join(demo_dir, name + ".pt"))
        labels = [label for label, _ in classes]
        licences = sorted({td.SOURCE_LICENSES[r["source"]] for r in records
                           if any(pred(r) for _, pred in classes)})
        side = sidecar(name, desc, labels, tags, task="text_classification")
        side.pop("input_shape", None)
        side["license"] = " AND ".join(licences)
        write_json(os.path.join(demo_dir, name + ".json"), side)
        files[f"demo/text/{name}.pt"] = f"text demo model {name}: {desc}"
        files[f"demo/text/{name}.json"] = f"sidecar of demo/text/{name}.pt"
        with torch.no_grad():
            feature_dim = int(net.embed(["x"]).shape[1])
        info[name] = {"architecture": kind, "classes": len(labels), "train_samples": len(x),
                      "test_samples": len(tx), "epochs": epochs, "feature_dim": feature_dim,
                      "train_accuracy": round(train_acc, 4), "test_accuracy": round(test_acc, 4)}
        print(f"    {name}: held-out (query split) accuracy {test_acc:.3f}", flush=True)
        timer.step(f"text demo {name}")
    return info


QUERY_PER_CLASS = 30


def write_query(out, records, seed):
    """demo/query_text.csv: QUERY_TOPICS x QUERY_PER_CLASS English fortunes of the query split,
    the classes in turn, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    pool = td.of_split(records, "query", "fortunes")
    rows = []
    for cls in QUERY_TOPICS:
        texts = [r["text"] for r in pool if r["cls"] == cls]
        pick = np.sort(rng.choice(len(texts), QUERY_PER_CLASS, replace=False))
        rows.append([(texts[j], cls) for j in pick])
    path = os.path.join(out, "demo", "query_text.csv")
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, quoting=csv.QUOTE_MINIMAL, lineterminator="\r\n")
        writer.writerow(["text", "label"])
        for j in range(QUERY_PER_CLASS):
            for group in rows:
                writer.writerow(group[j])
    return {"file": "demo/query_text.csv", "class_labels": list(QUERY_TOPICS),
            "per_class": QUERY_PER_CLASS, "best_demo_model": "english-fortune-topics-cnn"}
