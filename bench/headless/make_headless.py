#!/usr/bin/python3
"""Builds zoo2h: zoo2 (40 classifiers, 8 query tasks) plus feature extractors (headless models)
trained on the Fashion-MNIST data that zoo2's source models may use.

    nice -n 15 /usr/bin/python3 bench/headless/make_headless.py            # full zoo2h
    nice -n 15 /usr/bin/python3 bench/headless/make_headless.py --smoke    # 6 classifiers, 2
                                                                            # extractors + 1 copy, 2 tasks

Writes OUT (default bench/headless/artifacts/zoo2h, or zoo2h-smoke) in zoo2's layout:
  models/<name>.pt + .json   zoo2's files as symlinks, the extractors as new files; an extractor's
                             sidecar has "kind": "feature_extractor" and no class_labels
  tasks -> zoo2's tasks (symlink), tasks.json (copy; --smoke: 2 tasks)
  zoo.json                   zoo2's manifest entries ("model_kind": "classifier") + one entry per
                             extractor ("model_kind": "feature_extractor", "family", ...)
The extractors:
  (a) autoencoder encoders: conv and MLP, bottlenecks 32..256 (one denoising, one trained on a mix
      of clean / inverted / rotated images);
  (b) SimCLR backbones: small CNNs trained with NT-Xent on two augmented views (random crop +
      shift + horizontal flip via one affine warp, brightness/contrast jitter, Gaussian noise; one
      also with random inversion);
  (c) headless copies of 4 zoo2 classifiers: forward = the classifier's embed
      (scripts/headless_model.py's Headless module, imported).
Data partition (bench/zoo/data.py, as zoo2): extractors train on Fashion-MNIST *train* images only
(labels unused); their diagnostic val_probe_acc (a logistic-regression probe on 1000 labelled
train images, evaluated on t10k 1000..1999, the source-model validation range) uses no image of
the query tasks (t10k 2000..9999) or of the dock's probe set (t10k 0..999).
Seeded like zoo2 (CRC32 of "zoo2h/seed/name/..."), one process, torch.set_num_threads(1).
"""
import argparse
import json
import os
import shutil
import sys
import time
import zlib

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "bench", "zoo"))
sys.path.insert(0, os.path.join(REPO, "scripts"))
sys.path.insert(0, HERE)
import data  # noqa: E402  (bench/zoo/data.py)
import nets_h  # noqa: E402
from headless_model import Headless  # noqa: E402  (scripts/headless_model.py)

ZOO2 = os.path.join(REPO, "bench", "zoo2", "artifacts", "zoo2")
TRAIN_IMAGES = 10000          # unlabelled FMNIST train images per extractor (1000 per class)
PROBE_TRAIN_PER_CLASS = 100   # diagnostic probe: labelled FMNIST train images per class
PROBE_VAL_PER_CLASS = 80      # diagnostic probe: t10k 1000..1999 (some classes have <100 there)

# (name, family, architecture / recipe). Epoch counts keep the whole build under ~10 CPU-minutes.
EXTRACTORS = [
    ("ae-conv-b32", "autoencoder", dict(arch="conv", dim=32, epochs=8)),
    ("ae-conv-b128-denoise", "autoencoder", dict(arch="conv", dim=128, epochs=8, denoise=0.25)),
    ("ae-mlp-b64", "autoencoder", dict(arch="mlp", dim=64, hidden=256, epochs=8)),
    ("ae-mlp-b256-mixed", "autoencoder", dict(arch="mlp", dim=256, hidden=512, epochs=8,
                                              shifts=[None, "inv", "rot90"])),
    ("simclr-cnn-d64", "contrastive", dict(dim=64, channels=(16, 32, 64), epochs=15)),
    ("simclr-cnn-d128", "contrastive", dict(dim=128, channels=(24, 48, 96), epochs=15)),
    ("simclr-cnn-d256-inv", "contrastive", dict(dim=256, channels=(16, 32, 64), epochs=15,
                                                invert=0.3)),
]
HEADLESS = ["vgg-all10-clean-l", "wmlp-all10-noise-l", "mobile-all10-rot90-l", "allconv-tbds-clean-l"]

SMOKE_CLASSIFIERS = ["vgg-all10-clean-l", "wmlp-all10-clean-l", "mobile-all10-clean-l",
                     "allconv-all10-clean-m", "vgg-all10-clean-shuffled", "wmlp-foot-clean-m"]
SMOKE_EXTRACTORS = [("ae-conv-b32", "autoencoder", dict(arch="conv", dim=32, epochs=1)),
                    ("simclr-cnn-d64", "contrastive", dict(dim=64, channels=(16, 32, 64), epochs=1))]
SMOKE_HEADLESS = ["vgg-all10-clean-l"]
SMOKE_TASKS = ["q_fm10_n20", "q_footbag_inv_n50"]


def headless_name(classifier):
    return f"hl-{classifier}"


def _key(*parts):
    return zlib.crc32("/".join(map(str, ("zoo2h",) + parts)).encode())


def to_tensor(images):
    return torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)


def unlabelled_train(seed, name, shifts=None):
    """TRAIN_IMAGES FMNIST train images (labels dropped); with `shifts`, each image gets one of the
    listed shifts (None = clean) at random."""
    x, _ = data.sample_fmnist("train", range(0, 60000), list(range(10)), TRAIN_IMAGES // 10,
                              _key(seed, name, "train"))
    if shifts:
        rng = np.random.default_rng(_key(seed, name, "shift-pick"))
        pick = rng.integers(0, len(shifts), len(x))
        for i, s in enumerate(shifts):
            if s is not None:
                sel = pick == i
                x[sel] = data.apply_shift(x[sel], s, _key(seed, name, "shift", s))
    perm = np.random.default_rng(_key(seed, name, "order")).permutation(len(x))
    return to_tensor(x[perm])


def features(model, x, batch=1000):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])


_probe_data = {}


def val_probe_acc(model, seed):
    """Diagnostic only (not used for training): logistic-regression probe on the extractor's
    features, fitted on 1000 labelled FMNIST train images, scored on t10k 1000..1999."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    if not _probe_data:
        xtr, ytr = data.sample_fmnist("train", range(0, 60000), list(range(10)),
                                      PROBE_TRAIN_PER_CLASS, _key(seed, "probe-train"))
        xva, yva = data.sample_fmnist("t10k", data.FMNIST_SOURCE_VAL, list(range(10)),
                                      PROBE_VAL_PER_CLASS, _key(seed, "probe-val"))
        _probe_data.update(xtr=to_tensor(xtr), ytr=ytr, xva=to_tensor(xva), yva=yva)
    d = _probe_data
    ftr = features(model, d["xtr"]).double().numpy()
    fva = features(model, d["xva"]).double().numpy()
    sc = StandardScaler().fit(ftr)
    clf = LogisticRegression(C=1.0, max_iter=2000).fit(sc.transform(ftr), d["ytr"])
    return float((clf.predict(sc.transform(fva)) == d["yva"]).mean())


# --------------------------------------------------------------------------- autoencoders

def train_autoencoder(seed, name, r):
    torch.manual_seed(_key(seed, name, "init"))
    x = unlabelled_train(seed, name, r.get("shifts"))
    if r["arch"] == "conv":
        enc, dec = nets_h.ConvEncoder(r["dim"]), nets_h.ConvDecoder(r["dim"])
    else:
        enc, dec = nets_h.MLPEncoder(r["dim"], r["hidden"]), nets_h.MLPDecoder(r["dim"], r["hidden"])
    params = list(enc.parameters()) + list(dec.parameters())
    opt = torch.optim.Adam(params, lr=1e-3)
    gen = torch.Generator().manual_seed(_key(seed, name, "noise"))
    rng = np.random.default_rng(_key(seed, name, "batches"))
    batch, steps, loss_v = 128, 0, float("nan")
    enc.train(), dec.train()
    for _ in range(r["epochs"]):
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x), batch):
            xb = x[order[i:i + batch]]
            if len(xb) < 2:
                continue
            inp = xb
            if r.get("denoise"):
                inp = (xb + r["denoise"] * torch.randn(xb.shape, generator=gen)).clamp(0, 1)
            loss = F.binary_cross_entropy_with_logits(dec(enc(inp)), xb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            loss_v = loss.item()
    recipe = {"objective": "reconstruction, pixel-wise BCE" +
              (f", denoising (input + N(0, {r['denoise']}^2), clipped)" if r.get("denoise") else ""),
              "optimizer": "Adam 1e-3", "batch": batch, "epochs": r["epochs"],
              "train_shifts": [s or "clean" for s in r.get("shifts") or [None]]}
    return enc, {"steps": steps, "final_loss": round(loss_v, 4), "recipe": recipe}


# --------------------------------------------------------------------------- SimCLR

def augment(x, gen, invert=0.0):
    """One random view per image, all batched: an affine warp (zoom-in crop, scale 0.7..1, shift
    up to 15% of the width, horizontal flip with p 0.5, rotation up to 10 degrees), brightness and
    contrast jitter, Gaussian noise (sigma up to 0.15, p 0.5), and optionally inversion."""
    n = x.shape[0]

    def u(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*(shape or (n,)), generator=gen)

    s = u(0.7, 1.0)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    a = u(-10, 10) * np.pi / 180
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = s * torch.cos(a) * flip
    theta[:, 0, 1] = -s * torch.sin(a)
    theta[:, 1, 0] = s * torch.sin(a) * flip
    theta[:, 1, 1] = s * torch.cos(a)
    theta[:, :, 2] = u(-0.15, 0.15, n, 2)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    v = F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)
    v = v * u(0.6, 1.2).view(n, 1, 1, 1) + u(-0.1, 0.15).view(n, 1, 1, 1)
    noisy = (torch.rand(n, generator=gen) < 0.5).float().view(n, 1, 1, 1)
    v = v + noisy * u(0.0, 0.15).view(n, 1, 1, 1) * torch.randn(v.shape, generator=gen)
    v = v.clamp(0, 1)
    if invert > 0:
        inv = (torch.rand(n, generator=gen) < invert).view(n, 1, 1, 1)
        v = torch.where(inv, 1 - v, v)
    return v


def nt_xent(z1, z2, temperature):
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    sim = z @ z.t() / temperature
    sim.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


def train_simclr(seed, name, r):
    torch.manual_seed(_key(seed, name, "init"))
    x = unlabelled_train(seed, name)
    enc = nets_h.ContrastiveCNN(r["dim"], r["channels"])
    proj = nets_h.Projector(r["dim"])
    params = list(enc.parameters()) + list(proj.parameters())
    batch, temperature, lr = 256, 0.2, 2e-3
    steps_total = r["epochs"] * (len(x) // batch)
    opt = torch.optim.Adam(params, lr=lr, weight_decay=1e-6)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_total)
    gen = torch.Generator().manual_seed(_key(seed, name, "aug"))
    rng = np.random.default_rng(_key(seed, name, "batches"))
    steps, loss_v = 0, float("nan")
    enc.train(), proj.train()
    for _ in range(r["epochs"]):
        order = torch.from_numpy(rng.permutation(len(x)))
        for i in range(0, len(x) - batch + 1, batch):   # full batches only
            xb = x[order[i:i + batch]]
            v1, v2 = augment(xb, gen, r.get("invert", 0.0)), augment(xb, gen, r.get("invert", 0.0))
            h = enc(torch.cat([v1, v2]))   # one BatchNorm pass over both views
            z = proj(h)
            loss = nt_xent(z[:batch], z[batch:], temperature)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            steps += 1
            loss_v = loss.item()
    recipe = {"objective": f"SimCLR NT-Xent, temperature {temperature}, projector D-128-64 "
              "(dropped after training)",
              "augmentations": "affine crop (scale 0.7-1, shift <=15%, rotation <=10 deg, "
              "h-flip p 0.5), brightness/contrast jitter, Gaussian noise sigma<=0.15 (p 0.5)" +
              (f", inversion p {r['invert']}" if r.get("invert") else ""),
              "optimizer": f"Adam {lr}, wd 1e-6, cosine", "batch": f"{batch} pairs",
              "epochs": r["epochs"], "channels": list(r["channels"])}
    return enc, {"steps": steps, "final_loss": round(loss_v, 4), "recipe": recipe}


# --------------------------------------------------------------------------- output

def save_extractor(out, name, module, description, tags):
    module.eval()
    scripted = torch.jit.script(module)
    path = os.path.join(out, "models", f"{name}.pt")
    scripted.save(path)
    sidecar = {"name": name, "version": "1", "description": description, "task": "image",
               "kind": "feature_extractor", "input_shape": [1, 28, 28], "license": "CC0-1.0",
               "tags": ["bench-zoo2h", "feature-extractor", *tags]}
    with open(os.path.join(out, "models", f"{name}.json"), "w") as f:
        json.dump(sidecar, f, indent=1)
    # The saved file must load and keep the contract: [N, D], finite.
    loaded = torch.jit.load(path)
    with torch.no_grad():
        y = loaded(torch.rand(3, 1, 28, 28))
    assert y.dim() == 2 and y.shape[0] == 3 and torch.isfinite(y).all(), (name, y.shape)
    return int(y.shape[1])


def link_zoo2(out, classifiers, task_names):
    """Symlinks zoo2's classifier files and tasks into OUT; returns (zoo2 model entries, tasks)."""
    with open(os.path.join(ZOO2, "zoo.json")) as f:
        zoo2 = json.load(f)
    with open(os.path.join(ZOO2, "tasks.json")) as f:
        tasks2 = json.load(f)
    entries = {m["name"]: m for m in zoo2["models"]}
    models_dir = os.path.join(out, "models")
    for name in classifiers:
        for ext in (".pt", ".json"):
            link = os.path.join(models_dir, name + ext)
            if os.path.lexists(link):
                os.remove(link)
            os.symlink(os.path.relpath(os.path.join(ZOO2, "models", name + ext), models_dir), link)
    tlink = os.path.join(out, "tasks")
    if os.path.lexists(tlink):
        os.remove(tlink)
    os.symlink(os.path.relpath(os.path.join(ZOO2, "tasks"), out), tlink)
    tasks = [t for t in tasks2["tasks"] if task_names is None or t["name"] in task_names]
    with open(os.path.join(out, "tasks.json"), "w") as f:
        json.dump({**tasks2, "tasks": tasks, "copied_from": "bench/zoo2/artifacts/zoo2/tasks.json"},
                  f, indent=1)
    return [{**entries[n], "model_kind": "classifier"} for n in classifiers], tasks, zoo2


def main():
    if os.environ.get("PYTHONHASHSEED") != "0":
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "PYTHONHASHSEED": "0"})
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--only", default=None, help="comma-separated extractor names (timing runs)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    if not os.path.exists(os.path.join(ZOO2, "zoo.json")):
        sys.exit(f"make_headless: no zoo2 at {ZOO2} (bench/zoo2/make_zoo2.py)")
    out = os.path.abspath(args.out or os.path.join(HERE, "artifacts", "zoo2h-smoke" if args.smoke else "zoo2h"))
    os.makedirs(os.path.join(out, "models"), exist_ok=True)
    t0 = time.time()

    with open(os.path.join(ZOO2, "zoo.json")) as f:
        all_classifiers = [m["name"] for m in json.load(f)["models"]]
    classifiers = SMOKE_CLASSIFIERS if args.smoke else all_classifiers
    extractors = SMOKE_EXTRACTORS if args.smoke else EXTRACTORS
    headless = SMOKE_HEADLESS if args.smoke else HEADLESS
    if args.only:
        keep = set(args.only.split(","))
        extractors = [e for e in extractors if e[0] in keep]
        headless = [h for h in headless if headless_name(h) in keep]
    entries, tasks, zoo2 = link_zoo2(out, classifiers, SMOKE_TASKS if args.smoke else None)
    print(f"linked {len(entries)} zoo2 classifiers and {len(tasks)} tasks", flush=True)

    for name, family, r in extractors:
        t1 = time.time()
        if family == "autoencoder":
            enc, info = train_autoencoder(args.seed, name, r)
            what = (f"{'convolutional' if r['arch'] == 'conv' else 'MLP'} autoencoder's encoder, "
                    f"{r['dim']}-d bottleneck")
            if r.get("denoise"):
                what += ", denoising"
            data_text = ("clean, inverted and rotated" if r.get("shifts") else "clean")
        else:
            enc, info = train_simclr(args.seed, name, r)
            what = f"SimCLR-trained small CNN, {r['dim']}-d features"
            data_text = "clean"
        acc = val_probe_acc(enc, args.seed)
        desc = (f"Feature extractor: {what}, trained without labels on {TRAIN_IMAGES} {data_text} "
                f"Fashion-MNIST images.")
        dim = save_extractor(out, name, enc, desc, [f"family:{family}", f"dim:{r['dim']}"])
        entries.append({"name": name, "model_kind": "feature_extractor", "kind": "feature_extractor",
                        "family": family, "arch": f"{family}-{r.get('arch', 'cnn')}", "data": "fmnist",
                        "num_train": TRAIN_IMAGES, "feature_dim": dim, "val_probe_acc": round(acc, 4),
                        **info, "seconds": round(time.time() - t1, 1),
                        "file": f"models/{name}.pt", "sidecar": f"models/{name}.json"})
        print(f"[{name}] {family}: loss {info['final_loss']}, val probe acc {acc:.3f} "
              f"({info['steps']} steps, {time.time() - t1:.0f} s; elapsed {time.time() - t0:.0f} s)",
              flush=True)

    for cls in headless:
        t1 = time.time()
        name = headless_name(cls)
        classifier = torch.jit.load(os.path.join(ZOO2, "models", f"{cls}.pt"))
        with open(os.path.join(ZOO2, "models", f"{cls}.json")) as f:
            cmeta = json.load(f)
        acc = val_probe_acc(Headless(classifier), args.seed)
        desc = (f"Feature extractor: the headless copy of {cls} (its penultimate features). "
                f"{cmeta['description']}")
        arch = next(m["arch"] for m in zoo2["models"] if m["name"] == cls)
        dim = save_extractor(out, name, Headless(classifier), desc,
                             ["family:headless", f"copy-of:{cls}", f"arch:{arch}"])
        entries.append({"name": name, "model_kind": "feature_extractor", "kind": "feature_extractor",
                        "family": "headless", "arch": arch, "headless_of": cls, "data": "fmnist",
                        "feature_dim": dim, "val_probe_acc": round(acc, 4),
                        "seconds": round(time.time() - t1, 1),
                        "file": f"models/{name}.pt", "sidecar": f"models/{name}.json"})
        print(f"[{name}] headless copy of {cls}: {dim}-d, val probe acc {acc:.3f}", flush=True)

    with open(os.path.join(out, "zoo.json"), "w") as f:
        json.dump({"seed": args.seed, "smoke": args.smoke, "zoo": "zoo2h", "base_zoo": "zoo2",
                   "wall_seconds": round(time.time() - t0, 1), "models": entries}, f, indent=1)
    n_ext = sum(e["model_kind"] == "feature_extractor" for e in entries)
    print(f"zoo2h: {len(entries) - n_ext} classifiers + {n_ext} extractors, {len(tasks)} tasks in "
          f"{out} ({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
