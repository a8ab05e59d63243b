"""The colour knowledge spaces' assets (called by scripts/make_assets.py):

    colour_small/probe_set.npy          uint8 [P, 3, 32, 32], balanced probe order (see below)
    colour_small/probe_index.json       source, class and shift of every probe row
    colour_small/reference_encoder.pt   E: float32 [N, 3, 32, 32] in [0, 1] -> [N, 64]
    colour_large/...                    the same at 64 x 64
    demo/colour/<name>.pt|.json         colour demo models (input_shape [3, 32, 32])
    demo/query_emoji/<class>/NNN.png    colour query folder (32 x 32 PNG, one folder per class)
    spaces.json                         the manifest of knowledge spaces

Probe sets: clean emoji (4 styles, the 9 categories in turn, over white, solid-colour or photo
backgrounds), crops of wallpaper photographs at four scales, and shifted copies (SHIFTS) of
fresh draws of both. Rows are ordered by colour_data.balanced_order over buckets (source, class,
shift) so that any prefix of the file, as the dock's probing budget runs it, holds every bucket
in proportion.
Data split (colour_data.SPLITS, fixed hashes of the emoji code points and wallpaper names):
probe sets <- "probe"; reference encoders <- "encoder"; demo models <- "source"; the query
folder <- "query" (bench/zoo_colour uses "source" for its models and "query" for its tasks).
"""
import json
import os
import time

import numpy as np
import torch
from PIL import Image

from . import colour_data as cd
from . import colour_nets
from . import nets

DEMO_CATEGORIES = ("Animals & Nature", "Food & Drink", "Smileys & Emotion", "Travel & Places")


def space_specs():
    """(name, dir, size, clean emoji per style, clean photo crops, emoji / photo per shift)."""
    return [("colour-small", "colour_small", 32, 240, 480, 100, 50),
            ("colour-large", "colour_large", 64, 120, 320, 48, 32)]


class Data:
    """The emoji and photographs, split."""

    def __init__(self, emoji_root):
        self.root = emoji_root
        self.emoji = cd.load_emoji(emoji_root)
        self.photos = cd.list_photos()
        if not self.photos:
            raise RuntimeError("no wallpaper photographs found: install the packages of "
                               "scripts/setup.sh (plasma-workspace-wallpapers, ...)")

    def emoji_of(self, split):
        return cd.interleave_by([e for e in self.emoji if cd.emoji_split(e) == split],
                                key=lambda e: e["category"])

    def photos_of(self, split):
        return [(g, cd.load_photo(p)) for g, _, p in self.photos if cd.photo_split(g) == split]


def _emoji_draws(data, records, per_style, size, rng, backdrops, offset_styles=True):
    """per_style renders in each style, walking `records` (category-interleaved) from a different
    offset per style. Returns images [N, H, W, 3], buckets, labels (category)."""
    images, buckets, cats = [], [], []
    for s, style in enumerate(cd.EMOJI_STYLES):
        start = s * len(records) // len(cd.EMOJI_STYLES) if offset_styles else 0
        for j in range(per_style):
            rec = records[(start + j) % len(records)]
            images.append(cd.render_emoji(data.root, rec, style, size, rng, backdrops))
            buckets.append(f"emoji/{style}/{rec['category']}")
            cats.append(rec["category"])
    return images, buckets, cats


def _photo_draws(photos, count, size, rng, start=0):
    """count crops, photo by photo in turn, scale by scale (cd.PHOTO_SCALES) in turn."""
    images, buckets = [], []
    for j in range(start, start + count):
        group, photo = photos[j % len(photos)]
        scale = cd.PHOTO_SCALES[(j // len(photos)) % len(cd.PHOTO_SCALES)]
        images.append(cd.random_crop(photo, size, rng, scales=(scale,)))
        buckets.append(f"photo/{group}")
    return images, buckets


def build_probe_set(data, spec, seed):
    name, _, size, n_emoji, n_photo, shift_emoji, shift_photo = spec
    rng = np.random.default_rng(seed)
    records = data.emoji_of("probe")
    photos = data.photos_of("probe")
    backdrops = [p for _, p in photos]
    img, bkt, _ = _emoji_draws(data, records, n_emoji, size, rng, backdrops)
    p_img, p_bkt = _photo_draws(photos, n_photo, size, rng)
    images, buckets = img + p_img, [f"{b}/clean" for b in bkt + p_bkt]
    for i, shift in enumerate(cd.SHIFTS):
        e_img, e_bkt, _ = _emoji_draws(data, records[7 * i:] + records[:7 * i],
                                       shift_emoji // len(cd.EMOJI_STYLES), size, rng, backdrops)
        s_img, s_bkt = _photo_draws(photos, shift_photo, size, rng, start=3 * i)
        shifted = cd.shift_images(np.stack(e_img + s_img), shift, seed + 1 + i)
        images += list(shifted)
        buckets += [f"{b}/{shift}" for b in e_bkt + s_bkt]
    # (source, class, shift) per row: emoji/STYLE/CATEGORY/SHIFT or photo/WALLPAPER/SHIFT.
    rows = [[f"emoji/{p[1]}", p[2], p[3]] if p[0] == "emoji" else ["photo", p[1], p[2]]
            for p in (b.split("/") for b in buckets)]
    # Balanced over shifts first (clean is about half), then sources, then classes.
    order = cd.balanced_order([(shift, source, cls) for source, cls, shift in rows], seed)
    probe = np.stack(images)[order].transpose(0, 3, 1, 2)
    index = {"columns": ["source", "class", "shift"], "rows": [rows[i] for i in order]}
    return np.ascontiguousarray(probe), index


def encoder_data(data, size, renders, photo_crops, seed):
    """Encoder split: emoji labelled by subcategory (every style, `renders` draws each) and photo
    crops labelled by wallpaper. Returns uint8 [N, 3, size, size], labels, class names."""
    rng = np.random.default_rng(seed)
    records = data.emoji_of("encoder")
    photos = data.photos_of("encoder")
    backdrops = [p for _, p in photos]
    subs = sorted({e["subcategory"] for e in records})
    images, labels = [], []
    for style in cd.EMOJI_STYLES:
        for rec in records:
            for _ in range(renders):
                images.append(cd.render_emoji(data.root, rec, style, size, rng, backdrops))
                labels.append(subs.index(rec["subcategory"]))
    p_img, p_bkt = _photo_draws(photos, photo_crops * len(photos), size, rng)
    groups = [g for g, _ in photos]
    images += p_img
    labels += [len(subs) + groups.index(b.split("/", 1)[1]) for b in p_bkt]
    x = np.stack(images).transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), np.array(labels, np.int64), subs + groups


def train_encoder(x, y, num_classes, size, seeds, epochs):
    torch.manual_seed(seeds["colour_encoder_init"])
    mean, std = colour_nets.channel_stats(x)
    net = colour_nets.ColourCNN(num_classes, mean, std, input_size=size, feature_dim=64,
                                width=24)
    acc = colour_nets.train(net, x, y, epochs=epochs, seed=seeds["colour_encoder_train"],
                            batch_size=128, lr=1e-2, flip=True)
    return net, acc


def demo_emoji_data(data, split, size, renders, seed, categories=cd.EMOJI_CATEGORIES):
    rng = np.random.default_rng(seed)
    records = [e for e in data.emoji_of(split) if e["category"] in categories]
    backdrops = [p for _, p in data.photos_of(split)]
    images, labels = [], []
    for style in cd.EMOJI_STYLES:
        for rec in records:
            for _ in range(renders):
                images.append(cd.render_emoji(data.root, rec, style, size, rng, backdrops))
                labels.append(categories.index(rec["category"]))
    return np.stack(images).transpose(0, 3, 1, 2), np.array(labels, np.int64)


def write_query_folder(data, qdir, per_class, seed):
    """demo/query_emoji/<category>/NNN.png: query-split emoji of DEMO_CATEGORIES, styles in turn,
    over white, solid or photo (query-split wallpaper) backgrounds, 32 x 32."""
    rng = np.random.default_rng(seed)
    backdrops = [p for _, p in data.photos_of("query")]
    listing = {}
    for cat in DEMO_CATEGORIES:
        records = [e for e in data.emoji_of("query") if e["category"] == cat]
        folder = os.path.join(qdir, cat.replace(" & ", "-and-").replace(" ", "-").lower())
        os.makedirs(folder, exist_ok=True)
        listing[os.path.basename(folder)] = []
        for j in range(per_class):
            rec = records[j % len(records)]
            style = cd.EMOJI_STYLES[j % len(cd.EMOJI_STYLES)]
            img = cd.render_emoji(data.root, rec, style, 32, rng, backdrops)
            fname = f"{j:03d}.png"
            Image.fromarray(img).save(os.path.join(folder, fname), optimize=False)
            listing[os.path.basename(folder)].append(f"{fname}: {style} {rec['name'].lower()}")
    return listing


def spaces_manifest(dims):
    grey = {"name": "grey", "channels": 1, "min_side": 1, "max_side": 4096,
            "probe_set": "probe_set_28.npy", "reference_encoder": "reference_encoder.pt",
            "reference_input_shape": [1, 28, 28],
            "description": "grey images: Fashion-MNIST and font glyphs with shifted copies; "
                           f"E -> {dims['grey']}-d"}
    out = [grey]
    for name, sub, size, *_ in space_specs():
        out.append({
            "name": name, "channels": 3, "min_side": 1 if size == 32 else 65,
            "max_side": 64 if size == 32 else 4096,
            "probe_set": f"{sub}/probe_set.npy", "reference_encoder": f"{sub}/reference_encoder.pt",
            "reference_input_shape": [3, size, size],
            "description": f"colour images at {size} px: emoji (4 styles, 9 categories) and "
                           "wallpaper photo crops, with grey/inverted/rotated/blurred/noisy/"
                           f"low-contrast copies, in balanced order; E -> {dims[name]}-d"})
    return {"version": 1, "spaces": out}


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def build(out, seeds, timer, files, emoji_root, save_model, sidecar):
    """Writes the colour assets into `out`, adds their descriptions to `files`; returns the
    manifest section."""
    cpu0 = time.process_time()
    data = Data(emoji_root)
    timer.step("colour data")
    info = {"emoji_styles": list(cd.EMOJI_STYLES), "emoji_count": len(data.emoji),
            "photos": [{"group": g, "package": p, "file": f, "split": cd.photo_split(g)}
                       for g, p, f in data.photos],
            "emoji_per_split": {s: len(data.emoji_of(s)) for s, _ in cd.SPLITS},
            "spaces": {}}
    dims = {"grey": 64}
    for spec in space_specs():
        name, sub, size = spec[:3]
        os.makedirs(os.path.join(out, sub), exist_ok=True)
        probe, index = build_probe_set(data, spec, seeds["colour_probe"] + size)
        np.save(os.path.join(out, sub, "probe_set.npy"), probe)
        write_json(os.path.join(out, sub, "probe_index.json"), index)
        files[f"{sub}/probe_set.npy"] = (
            f"uint8 {list(probe.shape)} NPY probe set of space {name} (colour_assets.py)")
        files[f"{sub}/probe_index.json"] = f"source, class and shift of each row of {sub}/probe_set.npy"
        timer.step(f"{name} probe set")
        renders = 2 if size == 32 else 1
        x, y, classes = encoder_data(data, size, renders, 100 if size == 32 else 60,
                                     seeds["colour_encoder_data"] + size)
        net, acc = train_encoder(x, y, len(classes), size, seeds, epochs=4 if size == 32 else 3)
        enc = save_model(nets.Embedder(net), os.path.join(out, sub, "reference_encoder.pt"))
        with torch.no_grad():
            dims[name] = int(enc(torch.zeros(2, 3, size, size)).shape[1])
        files[f"{sub}/reference_encoder.pt"] = (
            f"TorchScript reference encoder of {name}: float32 [N, 3, {size}, {size}] in [0, 1] "
            f"-> [N, {dims[name]}]; CNN trained on the encoder split ({len(classes)} classes)")
        info["spaces"][name] = {"probe_shape": list(probe.shape), "encoder_classes": len(classes),
                                "encoder_train_samples": len(x),
                                "encoder_train_accuracy": round(acc, 4),
                                "embedding_dim": dims[name]}
        timer.step(f"{name} reference encoder")
    write_json(os.path.join(out, "spaces.json"), spaces_manifest(dims))
    files["spaces.json"] = "manifest of knowledge spaces (grey, colour-small, colour-large)"
    info["demo"] = build_demos(data, out, seeds, files, save_model, sidecar)
    timer.step("colour demo models")
    qdir = os.path.join(out, "demo", "query_emoji")
    listing = write_query_folder(data, qdir, 30, seeds["colour_query"])
    for cls, names in listing.items():
        for entry in names:
            files[f"demo/query_emoji/{cls}/{entry.split(':')[0]}"] = f"query image: {entry}"
    info["query_emoji"] = {"dir": "demo/query_emoji", "classes": sorted(listing),
                           "per_class": 30, "size": [32, 32]}
    timer.step("colour query folder")
    # Wall-clock steps are in MANIFEST timings_s; CPU time (all threads) says what the colour part
    # costs on an idle machine.
    info["cpu_seconds"] = round(time.process_time() - cpu0, 1)
    return info


def build_demos(data, out, seeds, files, save_model, sidecar):
    demo_dir = os.path.join(out, "demo", "colour")
    os.makedirs(demo_dir, exist_ok=True)
    x, y = demo_emoji_data(data, "source", 32, 2, seeds["colour_demo_data"])
    tx, ty = demo_emoji_data(data, "query", 32, 1, seeds["colour_demo_data"] + 1)
    photos = data.photos_of("source")
    rng = np.random.default_rng(seeds["colour_demo_data"] + 2)
    p_img, p_bkt = _photo_draws(photos, 120 * len(photos), 32, rng)
    groups = [g for g, _ in photos]
    px = np.stack(p_img).transpose(0, 3, 1, 2)
    py = np.array([groups.index(b.split("/", 1)[1]) for b in p_bkt], np.int64)
    demos = [("emoji-categories-cnn", x, y, tx, ty, list(cd.EMOJI_CATEGORIES), 4,
              "Small colour CNN for the 9 emoji categories (4 emoji styles)",
              ["emoji", "colour", "cnn", "demo"]),
             ("wallpaper-photos-cnn", px[::2], py[::2], px[1::2], py[1::2], groups, 3,
              "Small colour CNN telling wallpaper photographs apart from crops",
              ["photo", "colour", "cnn", "demo"])]
    info = {}
    for i, (name, tr_x, tr_y, te_x, te_y, labels, epochs, desc, tags) in enumerate(demos):
        torch.manual_seed(seeds["colour_demo_init"] + i)
        mean, std = colour_nets.channel_stats(tr_x)
        net = colour_nets.ColourCNN(len(labels), mean, std, input_size=32)
        train_acc = colour_nets.train(net, tr_x, tr_y, epochs, seeds["colour_demo_train"] + i,
                                      batch_size=128, lr=1e-2, flip=True)
        test_acc = colour_nets.accuracy(net, te_x, te_y)
        save_model(net, os.path.join(demo_dir, name + ".pt"))
        write_json(os.path.join(demo_dir, name + ".json"),
                   sidecar(name, desc, labels, tags, input_shape=(3, 32, 32)))
        files[f"demo/colour/{name}.pt"] = f"colour demo model {name}: {desc}"
        files[f"demo/colour/{name}.json"] = f"sidecar of demo/colour/{name}.pt"
        info[name] = {"classes": len(labels), "train_samples": len(tr_x),
                      "test_samples": len(te_x), "epochs": epochs,
                      "train_accuracy": round(train_acc, 4), "test_accuracy": round(test_acc, 4)}
        print(f"    {name}: test accuracy {test_acc:.3f}", flush=True)
    return info
