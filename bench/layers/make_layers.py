#!/usr/bin/python3
"""Builds the two multi-layer zoos of the layer-selection benchmark (issue 12, part 3).

    nice -n 15 /usr/bin/python3 bench/layers/make_layers.py            # both zoos
    nice -n 15 /usr/bin/python3 bench/layers/make_layers.py --zoo A    # one

zoo-A: 12 models of bench/zoo (bench/zoo/artifacts/zoo); zoo-B: 13 models of zoo2
(bench/zoo2/artifacts/zoo2). Each selected TorchScript file is loaded, its state_dict copied into
the matching layered.py class (same parameters and buffers, strict load), and the result scripted:
forward (logits) and embed are the original's, plus embed_layers and layer_names. Checks, per
model: forward and embed of the new file equal the original file's on 256 task images (max abs
difference printed, must be <= 1e-5); torch.jit.load + embed_layers gives finite [N, D_l]
tensors, as many as layer_names, the last equal to embed.

Writes bench/layers/artifacts/zoo{A,B}/:
  models/<name>.pt + .json   the multi-layer models (sidecar = the original's, tags + "layers:K")
  plain/<name>.pt + .json    symlinks to the original single-layer files (for the baseline run)
  views/L<k>/models/<name>.pt  fine-tuning views: embed = the network truncated at layer k
  views/L<k>/tasks, tasks    symlinks to the source zoo's tasks
  zoo.json, tasks.json       manifest (source zoo entries + layer_names, layer_dims) and tasks
"""
import argparse
import json
import os
import shutil
import sys
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import layered  # noqa: E402

ZOOS = {
    "A": {"source": os.path.join(REPO, "bench", "zoo", "artifacts", "zoo"),
          "ground_truth": os.path.join(REPO, "bench", "zoo", "results", "ground_truth.json"),
          "models": ["mlp-fm10-l", "mlp-upper-l", "mlp-fm10rot-l",
                     "lenet-fm10-l", "lenet-digits-l", "lenet-fm10inv-l",
                     "cnn-fmrest-l", "cnn-lower-l", "cnn-digits-shuffled",
                     "resnet-fm10-l", "resnet-upper-l", "resnet-fm10noise-l"]},
    "B": {"source": os.path.join(REPO, "bench", "zoo2", "artifacts", "zoo2"),
          "ground_truth": os.path.join(REPO, "bench", "zoo2", "results", "ground_truth.json"),
          "models": ["vgg-all10-clean-l", "vgg-foot-noise-l", "vgg-mix6-rot90-l",
                     "vgg-all10-clean-shuffled",
                     "wmlp-all10-clean-l", "wmlp-tops-inv-l", "wmlp-pcs-inv-m",
                     "mobile-all10-rot90-l", "mobile-tbds-inv-l", "mobile-tops-clean-s",
                     "allconv-all10-blur-l", "allconv-foot-rot90-l", "allconv-tbds-clean-l"]},
}


def _link(src, dst):
    if os.path.lexists(dst):
        os.remove(dst)
    os.symlink(os.path.relpath(src, os.path.dirname(dst)), dst)


def sample_images(source, tasks, n=256):
    sys.path.insert(0, os.path.join(REPO, "bench", "zoo"))
    import finetune  # noqa: E402  (read_idx)
    xs = []
    for t in tasks:
        x = finetune.read_idx(os.path.join(source, t["train_images"]))[:32]
        xs.append(torch.from_numpy(x.astype(np.float32) / 255.0).unsqueeze(1))
    return torch.cat(xs)[:n]


def build_zoo(key, out_root):
    cfg = ZOOS[key]
    src = cfg["source"]
    out = os.path.join(out_root, f"zoo{key}")
    with open(os.path.join(src, "zoo.json")) as f:
        entries = {m["name"]: m for m in json.load(f)["models"]}
    with open(os.path.join(src, "tasks.json")) as f:
        tasks_doc = json.load(f)
    tasks = tasks_doc["tasks"]
    x = sample_images(src, tasks)
    for d in ("models", "plain", "views"):
        shutil.rmtree(os.path.join(out, d), ignore_errors=True)
        os.makedirs(os.path.join(out, d))
    _link(os.path.join(src, "tasks"), os.path.join(out, "tasks"))
    manifest = []
    for name in cfg["models"]:
        t0 = time.time()
        e = entries[name]
        orig_path = os.path.join(src, "models", f"{name}.pt")
        with open(os.path.join(src, "models", f"{name}.json")) as f:
            sidecar = json.load(f)
        orig = torch.jit.load(orig_path).eval()
        model = layered.build_layered(e["arch"], len(sidecar["class_labels"]))
        model.load_state_dict(orig.state_dict(), strict=True)
        model.eval()
        scripted = torch.jit.script(model)
        path = os.path.join(out, "models", f"{name}.pt")
        scripted.save(path)
        # Verify the saved file.
        m = torch.jit.load(path).eval()
        with torch.no_grad():
            d_fwd = (m(x) - orig(x)).abs().max().item()
            d_emb = (m.embed(x) - orig.embed(x)).abs().max().item()
            layers = m.embed_layers(x)
            names = list(m.layer_names)
            assert len(layers) == len(names) and 2 <= len(names) <= 8, (name, names)
            for t in layers:
                assert t.dim() == 2 and t.shape[0] == len(x) and t.dtype == torch.float32, t.shape
                assert torch.isfinite(t).all(), name
            d_last = (layers[-1] - orig.embed(x)).abs().max().item()
            dims = [int(t.shape[1]) for t in layers]
        assert d_fwd <= 1e-5 and d_emb <= 1e-5 and d_last <= 1e-5, (name, d_fwd, d_emb, d_last)
        side = dict(sidecar)
        side["tags"] = list(sidecar.get("tags", [])) + [f"layers:{len(names)}"]
        side["description"] = (sidecar.get("description", "") +
                               f" Exports embed_layers: {', '.join(names)}.")
        with open(os.path.join(out, "models", f"{name}.json"), "w") as f:
            json.dump(side, f, indent=1)
        _link(orig_path, os.path.join(out, "plain", f"{name}.pt"))
        _link(os.path.join(src, "models", f"{name}.json"), os.path.join(out, "plain", f"{name}.json"))
        # Fine-tuning views, one per layer (the last one reproduces the source ground truth).
        for k in range(len(names)):
            vdir = os.path.join(out, "views", f"L{k}")
            os.makedirs(os.path.join(vdir, "models"), exist_ok=True)
            _link(os.path.join(src, "tasks"), os.path.join(vdir, "tasks"))
            fresh = layered.build_layered(e["arch"], len(sidecar["class_labels"]))
            fresh.load_state_dict(orig.state_dict(), strict=True)
            view = torch.jit.script(layered.LayerView(fresh.eval(), k).eval())
            vpath = os.path.join(vdir, "models", f"{name}.pt")
            view.save(vpath)
            with torch.no_grad():
                dv = (torch.jit.load(vpath).embed(x) - layers[k]).abs().max().item()
            assert dv <= 1e-5, (name, k, dv)
        manifest.append({**e, "file": f"models/{name}.pt", "sidecar": f"models/{name}.json",
                         "layer_names": names, "layer_dims": dims,
                         "embed_layer": names[-1], "source_zoo": os.path.relpath(src, REPO)})
        print(f"zoo{key} {name:26s} {e['arch']:7s} layers {list(zip(names, dims))}  "
              f"|d fwd| {d_fwd:.1e} |d embed| {d_emb:.1e} ({time.time() - t0:.1f} s)", flush=True)
    with open(os.path.join(out, "zoo.json"), "w") as f:
        json.dump({"source": os.path.relpath(src, REPO),
                   "ground_truth_source": os.path.relpath(cfg["ground_truth"], REPO),
                   "models": manifest}, f, indent=1)
    with open(os.path.join(out, "tasks.json"), "w") as f:
        json.dump(tasks_doc, f, indent=1)
    for k in range(max(len(m["layer_names"]) for m in manifest)):
        shutil.copy(os.path.join(out, "tasks.json"), os.path.join(out, "views", f"L{k}", "tasks.json"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", choices=["A", "B", "both"], default="both")
    ap.add_argument("--out", default=os.path.join(HERE, "artifacts"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    t0 = time.time()
    for key in (["A", "B"] if args.zoo == "both" else [args.zoo]):
        print(f"wrote {build_zoo(key, args.out)}", flush=True)
    print(f"done in {time.time() - t0:.1f} s")


if __name__ == "__main__":
    main()
