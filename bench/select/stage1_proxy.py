#!/usr/bin/python3
"""Stage-1 probe proxies as the server computes them, on the colour zoo and grey zoo A (issue 23).

    /usr/bin/python3 bench/select/stage1_proxy.py --assets build/assets \
        --colour-zoo ART/zoo_colour --colour-cache ART/colour_cache \
        --grey-zoo ART/zooA --grey-cache ART/cacheA [--out bench/select/stage1_proxy]

Stage 1 runs no model: each query sample's k nearest probe samples (cosine, in the space's
reference encoder E) stand in for it, and each model's stored outputs on those probes (features
compressed to their top 32 principal components over the probe set; class probabilities) are
averaged into proxy outputs, on which the metrics are computed with the query's labels and then
rank-fused over the models. Here, as in the server (dock/recommend.cc, scoring/proxy.cc):
- a model joins the space of its input (every colour zoo model is <= 64 px, so colour-small:
  the 32 px probes, resized to the model's input; the 64 px models' probe outputs are computed
  here and cached in --work-cache),
- the query is resized to the space's reference input for E.
Variants: k in {1, 5, 10, 20}; keys from E, E centred on the probe mean, or 8x8 pixel thumbnails;
members LogME, shrinkage H-score, NCE, LEEP, and their rank fusions. Ground truth: each zoo's
fine-tune accuracies. Writes OUT.txt (every row) and OUT.json.
"""
import argparse
import itertools
import json
import os
import sys

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import study  # noqa: E402

mo = study.mo
torch.set_num_threads(1)
FUSIONS = {"logme": ["logme"], "shrinkage_hscore": ["sh"], "nce": ["nce"], "leep": ["leep"],
           "rank(logme, shrinkage_hscore)": ["logme", "sh"],
           "rank(logme, shrinkage_hscore, nce)": ["logme", "sh", "nce"],
           "rank(logme, shrinkage_hscore, leep)": ["logme", "sh", "leep"]}


def as_float(x_u8, size=None):
    x = torch.from_numpy(x_u8.astype(np.float32) / 255.0)
    if size is not None and x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0, 1)
    return x


def encode(encoder, x):
    with torch.inference_mode():
        return torch.cat([encoder(x[i:i + 256]) for i in range(0, len(x), 256)]).double().numpy()


def colour_zoo(args, spaces):
    """(probe outputs per model, probe u8, E, query u8 / labels / accuracies per task)."""
    gt = json.load(open(args.colour_gt))
    models = json.load(open(os.path.join(args.colour_zoo, "zoo.json")))["models"]
    tasks = [t for t in json.load(open(os.path.join(args.colour_zoo, "tasks.json")))["tasks"]
             if len(gt["tasks"].get(t["name"], {})) == len(models)]
    space = spaces["colour-small"]
    probe = np.load(os.path.join(args.assets, space["probe_set"]))
    encoder = torch.jit.load(os.path.join(args.assets, space["reference_encoder"])).eval()
    os.makedirs(args.work_cache, exist_ok=True)
    outputs = {}
    for m in models:
        path = os.path.join(args.work_cache, f"{m['name']}.npz")
        if not os.path.exists(path):
            if m["input_size"] == 32:  # evaluate.py's cache holds the 32 px probe outputs
                z = np.load(os.path.join(args.colour_cache, f"{m['name']}.npz"))
                np.savez(path, f=z["probe_f"], l=z["probe_l"])
            else:
                module = torch.jit.load(os.path.join(args.colour_zoo, m["file"])).eval()
                x = as_float(probe, m["input_size"])
                with torch.inference_mode():
                    f = torch.cat([module.embed(x[i:i + 256]) for i in range(0, len(x), 256)])
                    lg = torch.cat([module(x[i:i + 256]) for i in range(0, len(x), 256)])
                np.savez(path, f=f.numpy(), l=lg.numpy())
        z = np.load(path)
        outputs[m["name"]] = (z["f"].astype(np.float64), z["l"].astype(np.float64))
    queries = {}
    for t in tasks:
        z = np.load(os.path.join(args.colour_zoo, t["train_file"]))
        acc = np.array([gt["tasks"][t["name"]][m["name"]]["best"] for m in models])
        queries[t["name"]] = (as_float(z["x"], 32), z["y"].astype(np.int64), acc)
    return outputs, as_float(probe), encoder, queries


def grey_zoo(args):
    gt = json.load(open(args.grey_gt))
    names = [m for m in gt["models"]
             if os.path.exists(os.path.join(args.grey_zoo, "models", f"{m}.pt"))]
    tasks = [t for t in json.load(open(os.path.join(args.grey_zoo, "tasks.json")))["tasks"]
             if all(m in gt["tasks"].get(t["name"], {}) for m in names)]
    outputs = {}
    for n in names:
        z = np.load(os.path.join(args.grey_cache, f"{n}.npz"))
        outputs[n] = (z["probe_f"].astype(np.float64), z["probe_l"].astype(np.float64))
    probe = np.load(os.path.join(args.assets, "probe_set_28.npy"))
    encoder = torch.jit.load(os.path.join(args.assets, "reference_encoder.pt")).eval()
    queries = {}
    for t in tasks:
        x = study.read_idx(os.path.join(args.grey_zoo, t["train_images"]))[:, None]
        y = study.read_idx(os.path.join(args.grey_zoo, t["train_labels"])).astype(np.int64)
        acc = np.array([gt["tasks"][t["name"]][n]["best"] for n in names])
        queries[t["name"]] = (as_float(x), y, acc)
    return outputs, as_float(probe), encoder, queries


def key_sets(probe, encoder, queries):
    """{name: (probe keys, {task: query keys})}."""
    pe = encode(encoder, probe)
    qe = {tn: encode(encoder, q[0]) for tn, q in queries.items()}
    mu = pe.mean(0)

    def thumbs(x):
        return F.interpolate(x, size=(8, 8), mode="bilinear", antialias=True).reshape(len(x), -1)

    pt = thumbs(probe).double().numpy()
    mt = pt.mean(0)
    return {"E": (pe, qe), "E centred": (pe - mu, {tn: v - mu for tn, v in qe.items()}),
            "8x8 pixels centred": (pt - mt, {tn: thumbs(q[0]).double().numpy() - mt
                                             for tn, q in queries.items()})}


def evaluate(outputs, queries, keys, k):
    """Per task: {member: score per model}, members computed on the k-mean proxies."""
    compressed = {n: study.pca_project(f, min(32, f.shape[1]))(f) for n, (f, _) in outputs.items()}
    probs = {n: study.softmax(lg) for n, (_, lg) in outputs.items()}
    probe_keys, query_keys = keys
    out = {}
    for tn, (_, y, _) in queries.items():
        nb = study.neighbours(query_keys[tn], probe_keys, k).reshape(-1)
        members = {}
        for n in outputs:
            f = compressed[n][nb].reshape(len(y), k, -1).mean(1)
            p = probs[n][nb].reshape(len(y), k, -1).mean(1)
            for name, value in (("logme", study.safe(mo.logme, f, y)),
                                ("sh", study.safe(mo.shrinkage_hscore, f, y)),
                                ("nce", study.safe(mo.nce, np.log(p + 1e-12), y)),
                                ("leep", study.safe(mo.leep, np.log(p + 1e-12), y))):
                members.setdefault(name, []).append(value)
        out[tn] = {m: np.array(v) for m, v in members.items()}
    return out


def summarise(members, queries):
    rows = {}
    for fusion, parts in FUSIONS.items():
        taus, rels = {}, {}
        for tn, (_, _, acc) in queries.items():
            s = np.mean([study.rank_within(members[tn][p]) for p in parts], axis=0)
            taus[tn], rels[tn] = study.tau_w(s, acc), study.rel1(s, acc)
        rows[fusion] = {"mean_tau_w": float(np.mean(list(taus.values()))),
                        "mean_rel1": float(np.mean(list(rels.values()))), "tau_w": taus}
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--assets", required=True)
    ap.add_argument("--colour-zoo", required=True)
    ap.add_argument("--colour-cache", required=True, help="evaluate.py's feature cache")
    ap.add_argument("--colour-gt", default=os.path.join(HERE, "..", "zoo_colour", "results",
                                                        "ground_truth.json"))
    ap.add_argument("--grey-zoo", required=True)
    ap.add_argument("--grey-cache", required=True, help="study.py's feature cache")
    ap.add_argument("--grey-gt", default=os.path.join(HERE, "..", "zoo", "results",
                                                      "ground_truth.json"))
    ap.add_argument("--work-cache", default="/tmp/modeldock-stage1-proxy-cache")
    ap.add_argument("--out", default=os.path.join(HERE, "stage1_proxy"))
    args = ap.parse_args()
    spaces = {s["name"]: s for s in
              json.load(open(os.path.join(args.assets, "spaces.json")))["spaces"]}
    result, lines = {}, []
    for zoo, load in (("colour zoo", lambda: colour_zoo(args, spaces)),
                      ("grey zoo A", lambda: grey_zoo(args))):
        outputs, probe, encoder, queries = load()
        lines.append(f"## {zoo}: {len(outputs)} models, {len(queries)} tasks")
        for (kname, keys), k in itertools.product(key_sets(probe, encoder, queries).items(),
                                                  (1, 5, 10, 20)):
            rows = summarise(evaluate(outputs, queries, keys, k), queries)
            result.setdefault(zoo, {})[f"{kname}, k={k}"] = rows
            for fusion, r in rows.items():
                lines.append(f"{kname:18s} k={k:2d}  {fusion:36s} tau_w {r['mean_tau_w']:+.3f}"
                             f"  rel@1 {r['mean_rel1']:.3f}  " +
                             " ".join(f"{v:+.2f}" for v in r["tau_w"].values()))
            print(lines[-1], flush=True)
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(args.out + ".txt", "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {args.out}.txt and .json")


if __name__ == "__main__":
    main()
