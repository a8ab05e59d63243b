#!/usr/bin/python3
"""Builds modeldock's assets from Debian packages only, deterministically (fixed seeds).

    /usr/bin/python3 scripts/make_assets.py --out DIR [--force]

DIR/probe_set_28.npy         uint8 [4250, 1, 28, 28]: Fashion-MNIST t10k 0..999 + 1000 glyphs, then
                             shifted copies (inv, rot90, rot270, blur, noise) of 450 of them
DIR/reference_encoder.pt     TorchScript E: float32 [N, 1, 28, 28] in [0, 1] -> [N, 64]
DIR/demo/<name>.pt|.json     sample models following the model contract, with sidecars
DIR/demo/query_tops/         IDX query dataset (T-shirt/top, Pullover, Coat, Shirt; 50 each)
DIR/fixtures/                models that admission must accept or reject, with sidecars
DIR/colour_small/            colour space <= 64 px: probe_set.npy uint8 [2490, 3, 32, 32] (emoji in
                             4 styles, wallpaper crops, shifted copies; balanced order),
                             probe_index.json, reference_encoder.pt [N, 3, 32, 32] -> [N, 64]
DIR/colour_large/            the same at 64 px ([1360, 3, 64, 64])
DIR/demo/colour/             colour demo models ([3, 32, 32]) with sidecars
DIR/demo/query_emoji/        colour query folder: 4 emoji categories x 30 PNG (32 x 32)
DIR/text/                    text space: probe_texts.jsonl ({text, label} per line, balanced order;
                             fortune databases in 4 languages, licence paragraphs, shifted copies),
                             reference_encoder.pt forward(texts: List[str]) -> [N, 64]
DIR/demo/text/               text demo models (forward(texts) -> logits, embed) with sidecars
DIR/demo/query_text.csv      text query CSV (text,label): 4 English fortune databases x 30
DIR/audio/                   audio space: probe_set.npy float32 [2040, 16000] (1 s at 16 kHz:
                             espeak-ng words and digits in 13 languages, noise/speed/pitch/reverb/
                             gain/offset copies; balanced order), probe_index.json,
                             reference_encoder.pt [N, 16000] -> [N, 64]
DIR/demo/audio/              audio demo models (forward(x [N, 16000]) -> logits, embed) + sidecars
DIR/demo/query_audio/        audio query folder: 4 command words x 20 WAV (some 22,050 Hz/stereo)
DIR/spaces.json              manifest of the knowledge spaces (grey, colour-small, colour-large,
                             text, audio)
DIR/MANIFEST.json            written last: what each file is, seeds, accuracies, sha256

Data split (so that no asset is evaluated on what another was trained on):
  Fashion-MNIST train 0..29999   -> reference encoder
  Fashion-MNIST train 30000..    -> demo models and fixtures
  Fashion-MNIST t10k 0..999      -> probe set (bench query tasks avoid these)
  Fashion-MNIST t10k 1000..      -> test accuracies; query_tops draws from 2000.. only
  colour: emoji (by code points) and wallpapers (by name) hashed into probe / encoder / source /
  query splits (assets/colour_data.py SPLITS; sources and licences in assets/README.md)
  text: every text hashed into the same four splits (assets/text_data.py SPLITS)
  audio: every espeak-ng speaker (voice + variant) hashed into the same four splits
  (assets/audio_data.py SPLITS)
Idempotent: when DIR/MANIFEST.json has this SCRIPT_VERSION, the same sha256 of the generator's
Python sources (this file and assets/*.py but the tests) and its files exist, nothing is done.
"""
import argparse
import hashlib
import json
import os
import sys
import time

# TorchScript writes a module's constants in Python set order, which depends on string hashing:
# fix the hash seed (re-executing once) so that the same weights give byte-identical files.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

# OpenMP's default busy-waiting makes 2 torch threads ~5x slower than 1 when the cores are
# shared (measured here: 137 vs 714 images/s); it must be set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from assets import colour_assets, colour_data, fmnist, glyphs, nets, probe_shifts  # noqa: E402
from assets import audio_assets, audio_data, text_assets, text_data  # noqa: E402

# Bump whenever any output would change.
SCRIPT_VERSION = 5

SEEDS = {
    "probe_glyphs": 101,
    "probe_shuffle": 102,
    "probe_shifts": 103,
    "encoder_glyphs": 201,
    "encoder_init": 202,
    "encoder_train": 203,
    "digits_train_glyphs": 301,
    "digits_test_glyphs": 302,
    "demo_init": 401,
    "demo_train": 402,
    "shuffled_labels": 403,
    "query_tops": 501,
    "fixtures": 601,
    "colour_probe": 701,
    "colour_encoder_data": 801,
    "colour_encoder_init": 802,
    "colour_encoder_train": 803,
    "colour_demo_data": 901,
    "colour_demo_init": 902,
    "colour_demo_train": 903,
    "colour_query": 1001,
    "text_probe": 1101,
    "text_encoder_data": 1201,
    "text_encoder_init": 1202,
    "text_encoder_train": 1203,
    "text_demo_data": 1301,
    "text_demo_init": 1302,
    "text_demo_train": 1303,
    "text_query": 1401,
    "audio_probe": 1501,
    "audio_encoder_data": 1601,
    "audio_encoder_init": 1602,
    "audio_encoder_train": 1603,
    "audio_demo_data": 1701,
    "audio_demo_init": 1702,
    "audio_demo_train": 1703,
    "audio_query": 1801,
}

NUM_FMNIST_PROBES = 1000
NUM_GLYPH_PROBES = 1000
# Shifted copies per shift (probe_shifts.SHIFTS): the first 300 Fashion-MNIST and 150 glyph probes.
SHIFTED_FMNIST_PROBES = 300
SHIFTED_GLYPH_PROBES = 150
ENCODER_FMNIST = slice(0, 30000)
DEMO_FMNIST = slice(30000, 60000)
TEST_FMNIST = slice(1000, 10000)
QUERY_MIN_INDEX = 2000
QUERY_PER_CLASS = 50
ENCODER_GLYPHS_PER_CHAR = 160   # 62 chars -> 9920 images
ENCODER_EPOCHS = 3
TOPS = [0, 2, 4, 6]      # T-shirt/top, Pullover, Coat, Shirt
FOOTWEAR = [5, 7, 9, 8]  # Sandal, Sneaker, Ankle boot, Bag


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def subset(images, labels, classes):
    """Keeps samples whose label is in `classes`, relabelled to positions in `classes`."""
    classes = np.asarray(classes)
    keep = np.isin(labels, classes)
    remap = {int(c): i for i, c in enumerate(classes)}
    return images[keep], np.array([remap[int(y)] for y in labels[keep]], dtype=np.int64)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def save_model(module, path):
    scripted = torch.jit.script(module)
    scripted.save(path)
    return scripted


def sidecar(name, description, labels, tags, input_shape=(1, 28, 28),
            task="image_classification"):
    return {"name": name, "version": "1.0.0", "description": description, "task": task,
            "input_shape": list(input_shape), "class_labels": list(labels), "license": "CC0-1.0",
            "tags": list(tags)}


class Timer:
    def __init__(self):
        self.start = time.perf_counter()
        self.last = self.start
        self.steps = {}

    def step(self, name):
        now = time.perf_counter()
        self.steps[name] = round(now - self.last, 2)
        print(f"  {name}: {now - self.last:.1f} s", flush=True)
        self.last = now

    def total(self):
        return round(time.perf_counter() - self.start, 2)


def sources_sha256():
    """One sha256 over the generator's Python sources (this file, assets/*.py but *_test.py), so
    that any change to them rebuilds the assets."""
    here = os.path.dirname(os.path.abspath(__file__))
    adir = os.path.join(here, "assets")
    paths = [os.path.abspath(__file__)] + [
        os.path.join(adir, n) for n in sorted(os.listdir(adir))
        if n.endswith(".py") and not n.endswith("_test.py")]
    h = hashlib.sha256()
    for path in paths:
        h.update(os.path.relpath(path, here).encode() + b"\0")
        with open(path, "rb") as f:
            h.update(f.read())
        h.update(b"\0")
    return h.hexdigest()


# Taken when the generator starts, so that sources edited during a build do not pass as built.
SOURCES_SHA256 = sources_sha256()


def up_to_date(out):
    path = os.path.join(out, "MANIFEST.json")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, ValueError):
        return False
    if manifest.get("script_version") != SCRIPT_VERSION:
        return False
    if manifest.get("sources_sha256") != SOURCES_SHA256:
        return False
    return all(os.path.exists(os.path.join(out, rel)) for rel in manifest.get("files", {}))


# ----------------------------------------------------------------------------------------------
# Fixture modules for the admission tests: each breaks (or keeps) one rule of the contract.

class WrongWidth(nn.Module):
    """Returns [N, 3] although its sidecar declares 4 labels."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 3)

    def forward(self, x):
        return self.linear(x.flatten(1))


class NanOutput(nn.Module):
    """Right shape [N, 4], every value NaN."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(784, 4)

    def forward(self, x):
        return self.linear(x.flatten(1)) * float("nan")


class NoEmbed(nn.Module):
    """A valid 4-class linear model with its own normalisation and no embed()."""

    def __init__(self):
        super().__init__()
        self.normalise = nets._Normalise(nets.PIXEL_MEAN, nets.PIXEL_STD)
        self.linear = nn.Linear(784, 4)

    def forward(self, x):
        return self.linear(self.normalise(x).flatten(1))


class BadEmbed(nn.Module):
    """forward is valid [N, 4]; embed returns a 3-D tensor [N, 2, 8]."""

    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(784, 16)
        self.head = nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.hidden(x.flatten(1))))

    @torch.jit.export
    def embed(self, x):
        return torch.relu(self.hidden(x.flatten(1))).view(-1, 2, 8)


class TabularMLP(nn.Module):
    """Tabular contract: forward [N, 8] -> logits [N, 3]; embed [N, 16]."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU())
        self.head = nn.Linear(16, 3)

    def forward(self, x):
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x):
        return self.features(x)


def tabular_blobs(rng, n_per_class, centres):
    x = np.concatenate([rng.normal(c, 1.0, size=(n_per_class, 8)) for c in centres])
    y = np.repeat(np.arange(len(centres)), n_per_class)
    return x.astype(np.float32), y.astype(np.int64)


# ----------------------------------------------------------------------------------------------

def build(out, emoji_root):
    timer = Timer()
    files = {}  # relative path -> description

    # Data and fonts.
    train_x, train_y = fmnist.load("train")
    test_x, test_y = fmnist.load("t10k")
    fonts = glyphs.list_fonts()
    chars = glyphs.DIGITS + glyphs.LETTERS
    test_fonts = fonts[::5]  # held out for the digit model's test accuracy
    train_fonts = [f for i, f in enumerate(fonts) if i % 5 != 0]
    timer.step("load data")

    # a. Probe set: Fashion-MNIST t10k 0..999, then 1000 glyphs (digits + letters, all fonts).
    per_char = -(-NUM_GLYPH_PROBES // len(chars))
    g_img, g_lab = glyphs.render_glyphs(chars, fonts, per_char, seed=SEEDS["probe_glyphs"])
    pick = np.sort(np.random.default_rng(SEEDS["probe_shuffle"]).permutation(len(g_img))
                   [:NUM_GLYPH_PROBES])
    clean = np.concatenate([test_x[:NUM_FMNIST_PROBES], g_img[pick]])
    shifted = probe_shifts.shifted_copies(clean[:NUM_FMNIST_PROBES], clean[NUM_FMNIST_PROBES:],
                                          SHIFTED_FMNIST_PROBES, SHIFTED_GLYPH_PROBES,
                                          seed=SEEDS["probe_shifts"])
    probe = np.concatenate([clean, shifted])[:, None, :, :]
    per_shift = SHIFTED_FMNIST_PROBES + SHIFTED_GLYPH_PROBES
    assert probe.shape == (NUM_FMNIST_PROBES + NUM_GLYPH_PROBES +
                           len(probe_shifts.SHIFTS) * per_shift, 1, 28, 28)
    np.save(os.path.join(out, "probe_set_28.npy"), probe)
    n_clean = NUM_FMNIST_PROBES + NUM_GLYPH_PROBES
    files["probe_set_28.npy"] = (
        f"uint8 [{len(probe)}, 1, 28, 28] NPY; rows 0..{NUM_FMNIST_PROBES - 1} = Fashion-MNIST "
        f"t10k indices 0..{NUM_FMNIST_PROBES - 1}, rows {NUM_FMNIST_PROBES}..{n_clean - 1} = "
        "glyphs (digits, A-Z, a-z) from all fonts, jittered; then per shift "
        f"({', '.join(probe_shifts.SHIFTS)}) {per_shift} rows: the first "
        f"{SHIFTED_FMNIST_PROBES} Fashion-MNIST and {SHIFTED_GLYPH_PROBES} glyph probes shifted")
    timer.step("probe set")

    # b. Reference encoder: one 10 + 62 class task on Fashion-MNIST train 0..29999 + glyphs.
    e_img, e_lab = glyphs.render_glyphs(chars, train_fonts, ENCODER_GLYPHS_PER_CHAR,
                                        seed=SEEDS["encoder_glyphs"])
    timer.step("encoder glyphs")
    enc_x = np.concatenate([train_x[ENCODER_FMNIST], e_img])
    enc_y = np.concatenate([train_y[ENCODER_FMNIST].astype(np.int64), 10 + e_lab])
    torch.manual_seed(SEEDS["encoder_init"])
    encoder_net = nets.SmallCNN(10 + len(chars), feature_dim=64, width=16)
    nets.train(encoder_net, enc_x, enc_y, epochs=ENCODER_EPOCHS, seed=SEEDS["encoder_train"],
               batch_size=128, lr=1e-2)
    encoder_train_acc = nets.accuracy(encoder_net, enc_x, enc_y)
    fm_test = test_x[TEST_FMNIST], test_y[TEST_FMNIST].astype(np.int64)
    encoder_fmnist_acc = nets.accuracy(encoder_net, *fm_test)
    encoder_glyph_acc = nets.accuracy(encoder_net, g_img, 10 + g_lab)
    encoder = save_model(nets.Embedder(encoder_net), os.path.join(out, "reference_encoder.pt"))
    with torch.no_grad():
        dim = encoder(torch.zeros(2, 1, 28, 28)).shape[1]
    files["reference_encoder.pt"] = (
        f"TorchScript reference encoder E: float32 [N, 1, 28, 28] in [0, 1] -> [N, {dim}] "
        "penultimate features of a CNN trained on Fashion-MNIST train 0..29999 + glyphs "
        "(10 + 62 classes)")
    timer.step("reference encoder")

    # c. Demo models, trained on Fashion-MNIST train 30000..59999.
    demo_dir = os.path.join(out, "demo")
    os.makedirs(demo_dir, exist_ok=True)
    demo_x, demo_y = train_x[DEMO_FMNIST], train_y[DEMO_FMNIST]
    d_train = glyphs.render_glyphs(glyphs.DIGITS, train_fonts, 300,
                                   seed=SEEDS["digits_train_glyphs"])
    d_test = glyphs.render_glyphs(glyphs.DIGITS, test_fonts, 100, seed=SEEDS["digits_test_glyphs"])
    timer.step("digit glyphs")
    names = fmnist.CLASS_NAMES
    demos = [
        # name, net, (train), (test), labels, epochs, description, tags
        ("fmnist-tops-cnn", nets.SmallCNN(4), subset(demo_x, demo_y, TOPS),
         subset(*fm_test, TOPS), [names[c] for c in TOPS], 3,
         "Small CNN for upper-body garments (Fashion-MNIST subset)", ["fashion", "cnn", "demo"]),
        ("fmnist-footwear-cnn", nets.SmallCNN(4), subset(demo_x, demo_y, FOOTWEAR),
         subset(*fm_test, FOOTWEAR), [names[c] for c in FOOTWEAR], 1,
         "Small CNN for footwear and bags (Fashion-MNIST subset)", ["fashion", "cnn", "demo"]),
        ("fmnist-all-mlp", nets.MLP(10), (demo_x, demo_y.astype(np.int64)), fm_test, names, 3,
         "MLP for all 10 Fashion-MNIST classes", ["fashion", "mlp", "demo"]),
        ("glyph-digits-cnn", nets.SmallCNN(10), d_train, d_test, list(glyphs.DIGITS), 3,
         "Small CNN for printed digits 0-9 rendered from fonts", ["digits", "glyphs", "cnn",
                                                                  "demo"]),
        ("fmnist-shuffled-cnn", nets.SmallCNN(10),
         (demo_x[:10000], np.random.default_rng(SEEDS["shuffled_labels"])
          .permutation(demo_y[:10000]).astype(np.int64)), fm_test, names, 1,
         "Deliberately poor: trained on Fashion-MNIST with shuffled labels",
         ["fashion", "cnn", "demo", "poor"]),
    ]
    demo_info = {}
    for i, (name, net, (tr_x, tr_y), (te_x, te_y), labels, epochs, desc, tags) in \
            enumerate(demos):
        torch.manual_seed(SEEDS["demo_init"] + i)
        train_acc = nets.train(net, tr_x, tr_y, epochs=epochs, seed=SEEDS["demo_train"] + i,
                               batch_size=128, lr=1e-2)
        test_acc = nets.accuracy(net, te_x, te_y)
        with torch.no_grad():
            feature_dim = net.embed(torch.zeros(1, 1, 28, 28)).shape[1]
        save_model(net, os.path.join(demo_dir, name + ".pt"))
        write_json(os.path.join(demo_dir, name + ".json"), sidecar(name, desc, labels, tags))
        files[f"demo/{name}.pt"] = f"demo model {name}: {desc}"
        files[f"demo/{name}.json"] = f"sidecar of demo/{name}.pt"
        demo_info[name] = {"classes": len(labels), "train_samples": len(tr_x),
                           "test_samples": len(te_x), "epochs": epochs,
                           "train_accuracy": round(train_acc, 4),
                           "test_accuracy": round(test_acc, 4),
                           "feature_dim": feature_dim}
        print(f"    {name}: test accuracy {test_acc:.3f}", flush=True)
        timer.step(f"demo {name}")

    # d. Query dataset for the demo: T-shirt/top, Pullover, Coat, Shirt from t10k 2000.., 50 each.
    query_dir = os.path.join(demo_dir, "query_tops")
    os.makedirs(query_dir, exist_ok=True)
    rng = np.random.default_rng(SEEDS["query_tops"])
    q_idx = np.sort(np.concatenate([
        rng.choice(np.flatnonzero(test_y[QUERY_MIN_INDEX:] == c), QUERY_PER_CLASS, replace=False)
        for c in TOPS])) + QUERY_MIN_INDEX
    q_x, q_y = subset(test_x[q_idx], test_y[q_idx], TOPS)
    fmnist.write_idx(os.path.join(query_dir, "query-images-idx3-ubyte"), q_x)
    fmnist.write_idx(os.path.join(query_dir, "query-labels-idx1-ubyte"), q_y)
    write_json(os.path.join(query_dir, "classes.json"),
               {"class_labels": [names[c] for c in TOPS],
                "source": "Fashion-MNIST t10k", "indices": q_idx.tolist()})
    files["demo/query_tops/query-images-idx3-ubyte"] = (
        f"IDX uint8 [{len(q_x)}, 28, 28]: Fashion-MNIST t10k T-shirt/top, Pullover, Coat, Shirt "
        f"(indices >= {QUERY_MIN_INDEX}, {QUERY_PER_CLASS} per class)")
    files["demo/query_tops/query-labels-idx1-ubyte"] = (
        "IDX uint8 labels 0..3 = T-shirt/top, Pullover, Coat, Shirt")
    files["demo/query_tops/classes.json"] = "label names and source t10k indices of the query"
    timer.step("query_tops")

    # Fixtures for the admission tests.
    fix_dir = os.path.join(out, "fixtures")
    os.makedirs(fix_dir, exist_ok=True)
    frng = np.random.default_rng(SEEDS["fixtures"])
    torch.manual_seed(SEEDS["fixtures"])
    tops4 = [names[c] for c in TOPS]
    fixtures = {}

    def fixture(name, expect, labels, input_shape=(1, 28, 28), task="image_classification",
                module=None):
        path = os.path.join(fix_dir, name + ".pt")
        if module is not None:
            save_model(module, path)
        write_json(os.path.join(fix_dir, name + ".json"),
                   sidecar(name, expect, labels, ["fixture"], input_shape, task))
        files[f"fixtures/{name}.pt"] = expect
        files[f"fixtures/{name}.json"] = f"sidecar of fixtures/{name}.pt ({len(labels)} labels)"
        fixtures[name] = {"expect": expect, "declared_labels": len(labels),
                          "input_shape": list(input_shape)}

    with open(os.path.join(fix_dir, "not_torchscript.pt"), "wb") as f:
        f.write(frng.bytes(4096))
    fixture("not_torchscript", "reject INVALID_ARGUMENT: 4096 random bytes, not TorchScript", tops4)
    fixture("wrong_width", "reject FAILED_PRECONDITION: forward returns [N, 3], sidecar declares "
            "4 labels", tops4, module=WrongWidth())
    fixture("nan_output", "reject FAILED_PRECONDITION: forward returns [N, 4] of NaN", tops4,
            module=NanOutput())
    tr_x, tr_y = subset(demo_x, demo_y, TOPS)
    no_embed = NoEmbed()
    nets.train(no_embed, tr_x, tr_y, epochs=1, seed=SEEDS["fixtures"], batch_size=128, lr=1e-2)
    no_embed_acc = nets.accuracy(no_embed, *subset(*fm_test, TOPS))
    fixture("good_no_embed", "accept: valid 4-class tops model (linear), no embed(), "
            f"test accuracy {no_embed_acc:.3f}", tops4, module=no_embed)
    fixture("bad_embed", "reject FAILED_PRECONDITION: forward [N, 4] is valid, embed returns "
            "3-D [N, 2, 8]", tops4, module=BadEmbed())

    centres = frng.normal(0, 2.0, size=(3, 8))
    tab_x, tab_y = tabular_blobs(frng, 200, centres)
    q_tab_x, q_tab_y = tabular_blobs(frng, 50, centres)
    tab = TabularMLP()
    opt = torch.optim.Adam(tab.parameters(), lr=1e-2)
    for _ in range(200):
        loss = nn.functional.cross_entropy(tab(torch.from_numpy(tab_x)), torch.from_numpy(tab_y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    tab.eval()
    with torch.no_grad():
        tab_acc = float((tab(torch.from_numpy(q_tab_x)).argmax(1).numpy() == q_tab_y).mean())
    fixture("tabular_mlp", "accept: tabular forward [N, 8] -> [N, 3] logits, embed [N, 16]; "
            f"accuracy {tab_acc:.3f} on fixtures/tabular_query.csv", ["a", "b", "c"],
            input_shape=(8,), task="tabular_classification", module=tab)
    with open(os.path.join(fix_dir, "tabular_query.csv"), "w") as f:
        f.write(",".join([f"f{i}" for i in range(8)] + ["label"]) + "\n")
        for row, label in zip(q_tab_x, q_tab_y):
            f.write(",".join(f"{v:.6f}" for v in row) + f",{label}\n")
    files["fixtures/tabular_query.csv"] = (
        "CSV query for tabular_mlp: header f0..f7,label; 150 rows, labels 0..2 (50 each)")
    timer.step("fixtures")

    # Colour knowledge spaces (probe sets, reference encoders), colour demo models and query folder.
    colour = colour_assets.build(out, SEEDS, timer, files, emoji_root, save_model, sidecar)
    # Text knowledge space (appended to spaces.json), text demo models and query CSV.
    text = text_assets.build(out, SEEDS, timer, files, save_model, sidecar)
    # Audio knowledge space (appended to spaces.json after text), audio demo models, query folder.
    audio = audio_assets.build(out, SEEDS, timer, files, save_model, sidecar)

    manifest = {
        "script_version": SCRIPT_VERSION,
        "sources_sha256": SOURCES_SHA256,
        "generator": "scripts/make_assets.py",
        "torch_version": torch.__version__,
        "seeds": SEEDS,
        "fonts": [os.path.basename(f) for f in fonts],
        "probe_set": {"file": "probe_set_28.npy", "shape": list(probe.shape), "dtype": "uint8",
                      "fmnist_t10k_indices": [0, NUM_FMNIST_PROBES - 1],
                      "fmnist_count": NUM_FMNIST_PROBES, "glyph_count": NUM_GLYPH_PROBES,
                      "shifts": list(probe_shifts.SHIFTS),
                      "shifted_per_shift": [SHIFTED_FMNIST_PROBES, SHIFTED_GLYPH_PROBES],
                      "glyph_labels": "".join(chars[i] for i in g_lab[pick])},
        "reference_encoder": {
            "file": "reference_encoder.pt", "input_shape": [1, 28, 28], "embedding_dim": dim,
            "classes": 10 + len(chars), "train_samples": len(enc_x), "epochs": ENCODER_EPOCHS,
            "train_accuracy": round(encoder_train_acc, 4),
            "fmnist_t10k_accuracy": round(encoder_fmnist_acc, 4),
            "probe_glyph_accuracy": round(encoder_glyph_acc, 4)},
        "demo": demo_info,
        "query_tops": {"dir": "demo/query_tops", "samples": len(q_x),
                       "class_labels": [names[c] for c in TOPS], "per_class": QUERY_PER_CLASS,
                       "min_t10k_index": QUERY_MIN_INDEX},
        "fixtures": fixtures,
        "colour": colour,
        "text": text,
        "audio": audio,
        "data_split": {
            "colour": "emoji (by code points) and wallpapers (by name) hashed into "
                      + ", ".join(f"{n} {f:.0%}" for n, f in colour_data.SPLITS)
                      + ": probe -> colour probe sets, encoder -> colour reference encoders, "
                      "source -> colour demo models (and bench/zoo_colour's models), "
                      "query -> demo/query_emoji (and bench/zoo_colour's tasks)",
            "text": "texts (by a hash of the text) into "
                    + ", ".join(f"{n} {f:.0%}" for n, f in text_data.SPLITS)
                    + ": probe -> text/probe_texts.jsonl, encoder -> text/reference_encoder.pt, "
                    "source -> demo/text models, query -> demo/query_text.csv and the demo "
                    "models' held-out accuracies",
            "audio": "espeak-ng speakers (voice + variant, by a hash of the name) into "
                     + ", ".join(f"{n} {f:.0%}" for n, f in audio_data.SPLITS)
                     + ": probe -> audio/probe_set.npy, encoder -> audio/reference_encoder.pt, "
                     "source -> demo/audio models, query -> demo/query_audio and the held-out "
                     "accuracies",
            "fmnist_train_0_29999": "reference encoder",
            "fmnist_train_30000_59999": "demo models, fixtures",
            "fmnist_t10k_0_999": "probe set",
            "fmnist_t10k_1000_9999": "test accuracies (query_tops: 2000..)",
            "glyph_fonts": "every 5th font (sorted) held out for glyph-digits-cnn's test set"},
        "files": {},
        "timings_s": {},
    }
    for rel in sorted(files):
        path = os.path.join(out, rel)
        manifest["files"][rel] = {"description": files[rel], "bytes": os.path.getsize(path),
                                  "sha256": sha256_file(path)}
    timer.step("checksums")
    manifest["timings_s"] = dict(timer.steps, total=timer.total())
    write_json(os.path.join(out, "MANIFEST.json"), manifest)
    return manifest


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="asset directory to build")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--emoji-dir", default=colour_data.default_emoji_root(),
                        help="node_modules holding emoji-datasource-{apple,google,twitter,"
                        "facebook} (default: tools/node_modules, installed by scripts/build.sh)")
    args = parser.parse_args()

    out = os.path.abspath(args.out)
    if not args.force and up_to_date(out):
        print(f"make_assets: {out} is up to date (script version {SCRIPT_VERSION}); "
              "nothing to do (--force rebuilds)")
        return 0
    os.makedirs(out, exist_ok=True)
    # A stale manifest must not survive a partial rebuild: it is written again last.
    if os.path.exists(os.path.join(out, "MANIFEST.json")):
        os.remove(os.path.join(out, "MANIFEST.json"))
    torch.set_num_threads(args.threads)
    np.random.seed(0)
    print(f"make_assets: building {out} (script version {SCRIPT_VERSION}, "
          f"{args.threads} torch threads)", flush=True)
    manifest = build(out, os.path.abspath(args.emoji_dir))
    enc = manifest["reference_encoder"]
    print(f"make_assets: done in {manifest['timings_s']['total']:.1f} s; reference encoder train "
          f"accuracy {enc['train_accuracy']:.3f}; demo test accuracies "
          + ", ".join(f"{k} {v['test_accuracy']:.3f}" for k, v in manifest["demo"].items())
          + "; colour demos " + ", ".join(f"{k} {v['test_accuracy']:.3f}"
                                          for k, v in manifest["colour"]["demo"].items())
          + "; text demos " + ", ".join(f"{k} {v['test_accuracy']:.3f}"
                                        for k, v in manifest["text"]["demo"].items())
          + f"; text E {manifest['text']['reference_encoder']['texts_per_second_1_thread']} "
          "texts/s on one thread; audio demos "
          + ", ".join(f"{k} {v['test_accuracy']:.3f}"
                      for k, v in manifest["audio"]["demo"].items())
          + f"; audio E {manifest['audio']['reference_encoder']['clips_per_second_1_thread']} "
          "clips/s on one thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
