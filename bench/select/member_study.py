#!/usr/bin/python3
"""Which metrics the default fusion should hold, and with what weights, chosen over zoos of every
input kind (issue 21: the default must not lose to its own members).

Until session 17 the default ranked by an equal-weight rank fusion (scoring::WeightedRankFusion)
of LogME and shrinkage H-score on the model's top 32 principal components of the query features
and NCE on its class outputs. Section 2j of docs/BENCHMARKS.md found it 0.11 below shrinkage H
alone on the speech zoo (LogME failed there) and 2o found NCE costing it 0.02-0.04 on the grey
zoos. This study scores five candidate members per (model, task) -- LogME, shrinkage H-score and
GBC on the top 32 components, NCE and LEEP on the class outputs -- and every rank fusion with
weights in {0, 0.5, 1} whose largest weight is 1 (211), on six zoos: zoo1, zoo2 and zoo2's
rotation suite (grey), the colour zoo, the text zoo and the speech zoo. tau_w = weighted Kendall
tau against the fine-tune accuracy, mean over tasks (what run_quality reports). The choice: the
smallest worst-case regret (a zoo's best single member minus the fusion), and leave one zoo out.

  extract  every model's embed features and class outputs on every task's train split (the
           query the dock would see), cached per model in CACHE/<model>.npz, and the tasks'
           labels in CACHE/labels.npz. KIND: image (IDX tasks), text (CSV), audio (NPZ).
  study    the members and fusions per zoo; prints the tables and the selections, writes OUT.

  nice -n 10 /usr/bin/python3 bench/select/member_study.py extract --kind text --zoo Z --cache C
  /usr/bin/python3 bench/select/member_study.py study [--pad-null] \
      --zoo NAME=CACHE:ZOO:GROUND_TRUTH [...] --colour NAME=EVALUATION.json --out OUT.json

The feature members see at most 32 components and only those the features vary in, as the dock
does since session 17 (scoring::DropNullComponents); --pad-null keeps the null directions as
zero columns up to min(32, D), as the dock did before (a query of fewer samples than components
or a model with collapsed features got near-zero columns, which skew LogME and the H-scores).

Times (shared 2-core box): extraction 0.5-4 min per zoo (one torch thread); study ~2 min.
The colour zoo is extracted like the others (--kind colour: each model's task images resized
to its input size, as evaluate.py does); --colour NAME=evaluation.json reads that file's
values instead (computed with the null directions kept, as --pad-null).
"""
import argparse
import csv
import itertools
import json
import os
import sys

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import width_study as ws  # noqa: E402

mo = ws.mo
MEMBERS = ["logme", "shrinkage_hscore", "gbc", "nce", "leep"]
PREVIOUS = {"logme": 1.0, "shrinkage_hscore": 1.0, "nce": 1.0}  # the default until session 17
WEIGHTS = [0.0, 0.5, 1.0]
FUSION_DIMS = 32  # kFusionDims
COLOUR_KEYS = {"logme": "logme/pc32", "shrinkage_hscore": "shrinkage_hscore/pc32",
               "gbc": "gbc/pc32", "nce": "nce", "leep": "leep"}


# --------------------------------------------------------------------------- extract

def load_inputs(kind, zoo, task):
    """(inputs the model takes, integer labels) of a task's train split (colour: uint8 images,
    resized per model by model_inputs)."""
    if kind == "colour":
        data = np.load(os.path.join(zoo, task["train_file"]))
        return data["x"], data["y"].astype(np.int64)
    if kind == "image":
        x = ws.read_idx(os.path.join(zoo, task["train_images"]))[:, None].astype(np.float32) / 255.0
        y = ws.read_idx(os.path.join(zoo, task["train_labels"])).astype(np.int64)
        return x, y
    if kind == "text":
        with open(os.path.join(zoo, task["train_file"]), encoding="utf-8", newline="") as f:
            rows = list(csv.DictReader(f))
        names = sorted({r["label"] for r in rows})
        return [r["text"] for r in rows], np.asarray([names.index(r["label"]) for r in rows])
    data = np.load(os.path.join(zoo, task["train_file"]))
    return data["samples"], data["labels"].astype(np.int64)


def run_batched(fn, x, batch=256):
    import torch
    parts = []
    for i in range(0, len(x), batch):
        chunk = x[i:i + batch]
        parts.append(fn(chunk if isinstance(chunk, list) else torch.from_numpy(chunk)).numpy())
    return np.concatenate(parts).astype(np.float32)


def model_inputs(kind, x, input_size):
    """Colour task images [N, 3, H, W] uint8 as the model takes them: / 255, resized with
    antialiasing to its input size (bench/zoo_colour/evaluate.py's `resized`)."""
    if kind != "colour":
        return x
    import torch
    import torch.nn.functional as F
    t = torch.from_numpy(x.astype(np.float32) / 255.0)
    if t.shape[-1] != input_size:
        t = F.interpolate(t, size=(input_size, input_size), mode="bilinear", align_corners=False,
                          antialias=True).clamp_(0.0, 1.0)
    return t.numpy()


def extract(args):
    models, tasks = ws.load_zoo(args.zoo)
    os.makedirs(args.cache, exist_ok=True)
    inputs = {t["name"]: load_inputs(args.kind, args.zoo, t) for t in tasks}
    np.savez(os.path.join(args.cache, "labels.npz"), **{n: y for n, (_, y) in inputs.items()})
    sizes = {m["name"]: m.get("input_size") for m in
             json.load(open(os.path.join(args.zoo, "zoo.json")))["models"]}

    def outputs_of(module, m):
        out = {}
        for tn, (x, _) in inputs.items():
            x = model_inputs(args.kind, x, sizes[m])
            out[tn] = run_batched(module.embed, x)
            out["logits:" + tn] = run_batched(module.forward, x)
        return out

    ws.cache_model_outputs(args.zoo, args.cache, models, outputs_of)


# --------------------------------------------------------------------------- members

def cached(npz, task, logits):
    """A cached array under the current key or the older f_/l_ one (earlier caches)."""
    key = ("logits:" if logits else "") + task
    if key in npz:
        return npz[key]
    return npz[("l_" if logits else "f_") + task]


PAD_NULL = False  # --pad-null: the dock before session 17 (null directions kept as zeros)


def member_values(f, logits, y):
    """The five members of one (model, task): feature metrics on the top 32 centred components."""
    f = f.astype(np.float64)
    xc = f - f.mean(axis=0, keepdims=True)
    u, sv, _ = np.linalg.svd(xc, full_matrices=False)
    out = {"nce": mo.nce(logits, y), "leep": mo.leep(logits, y)}
    if not sv.size or sv.max() <= 0:
        out.update(logme=-np.inf, shrinkage_hscore=-np.inf, gbc=-np.inf)
        return out
    # As the dock: at most 32 components, without those that do not vary
    # (scoring::DropNullComponents: a task of fewer samples than components).
    k = max(1, min(FUSION_DIMS, int(np.sum(sv ** 2 > 1e-10 * sv[0] ** 2))))
    z = u[:, :k] * sv[:k]
    if PAD_NULL:  # CompressFeatures alone: min(32, D) columns, those beyond the rank ~0
        z = np.hstack([z, np.zeros((len(z), min(FUSION_DIMS, f.shape[1]) - k))])
    out.update(logme=mo.logme(z, y), shrinkage_hscore=ws.shrinkage_hscore_raw(z, y),
               gbc=mo.gbc(z, y))
    return out


def zoo_members(spec):
    """{task: (accuracy[models], {member: values[models]})} of a cache-backed zoo."""
    name, rest = spec.split("=", 1)
    cache, zoo, gt_path = rest.split(":")
    models, tasks = ws.load_zoo(zoo)
    gt = json.load(open(gt_path))["tasks"]
    labels = np.load(os.path.join(cache, "labels.npz"))
    feats = {m: np.load(os.path.join(cache, f"{m}.npz")) for m in models}
    out = {}
    for t in tasks:
        tn = t["name"]
        if tn not in gt or any(m not in gt[tn] for m in models):
            continue  # a task whose ground truth is incomplete (the colour zoo's q_photos)
        y = labels[tn]
        rows = [member_values(cached(feats[m], tn, False), cached(feats[m], tn, True), y)
                for m in models]
        acc = np.asarray([gt[tn][m]["best"] for m in models])
        out[tn] = (acc, {k: np.asarray([r[k] for r in rows]) for k in MEMBERS})
    return name, out


def colour_members(spec):
    name, path = spec.split("=", 1)
    ev = json.load(open(path))
    out = {}
    for tn in ev["tasks"]:
        acc = np.asarray(ev["accuracy"][tn])
        out[tn] = (acc, {k: np.asarray(ev["scores"][key][tn], dtype=np.float64)
                         for k, key in COLOUR_KEYS.items()})
    return name, out


# --------------------------------------------------------------------------- fusions

def fused(members, weights):
    """scoring::WeightedRankFusion: weighted mean of each member's rank / number of models."""
    n = len(next(iter(members.values())))
    total = sum(weights.values())
    return sum(w * ws.ranks(members[k]) / n for k, w in weights.items() if w) / total


def tau_w(score, acc):
    return float(stats.weightedtau(score, acc).correlation)


def rel1(score, acc):
    return float(acc[int(np.argmax(score))] / acc.max())


def label(weights):
    parts = [(k if w == 1 else f"{w:g}*{k}") for k, w in weights.items() if w]
    return " + ".join(parts)


def candidates():
    for combo in itertools.product(WEIGHTS, repeat=len(MEMBERS)):
        if any(combo) and max(combo) == 1.0:  # weights are relative: scale so the top is 1
            yield dict(zip(MEMBERS, combo))


def evaluate(zoos, weights):
    """{zoo: (mean tau_w, mean rel@1)} of one fusion."""
    res = {}
    for name, tasks in zoos.items():
        taus, rels = [], []
        for acc, members in tasks.values():
            s = fused(members, weights)
            taus.append(tau_w(s, acc))
            rels.append(rel1(s, acc))
        res[name] = (float(np.mean(taus)), float(np.mean(rels)))
    return res


def groups_of(names):
    """Zoos sharing models leave together (zoo2 and its rotation suite: NAME and NAMEr)."""
    groups = []
    for n in names:
        for g in groups:
            if n.startswith(g[0]) or g[0].startswith(n):
                g.append(n)
                break
        else:
            groups.append([n])
    return groups


def regrets(res, best):
    return {z: best[z] - res[z][0] for z in res}


def study(args):
    global PAD_NULL
    PAD_NULL = args.pad_null
    zoos = dict(zoo_members(s) for s in args.zoo)
    zoos.update(colour_members(s) for s in args.colour)
    names = list(zoos)
    singles = {m: evaluate(zoos, {m: 1.0}) for m in MEMBERS}
    best = {z: max(singles[m][z][0] for m in MEMBERS) for z in names}
    table = {label(w): (w, evaluate(zoos, w)) for w in candidates()}
    previous = label(PREVIOUS)
    worst = {lab: max(regrets(r, best).values()) for lab, (_, r) in table.items()}
    lines = ["tau_w (rel@1) per zoo; regret = best single member's tau_w - the fusion's", ""]
    head = "| | " + " | ".join(names) + " | worst regret |"
    lines += [head, "|" + "---|" * (len(names) + 2)]

    def row(lab, res):
        cells = " | ".join(f"{res[z][0]:.3f} ({res[z][1]:.3f})" for z in names)
        return f"| {lab} | {cells} | {max(regrets(res, best).values()):.3f} |"
    for m in MEMBERS:
        lines.append(row(m + " alone", singles[m]))
    lines.append(row("previous default: " + previous, table[previous][1]))
    ranked = sorted(table, key=lambda lab: worst[lab])
    lines.append("")
    lines.append("Smallest worst-case regret over every zoo (of %d fusions):" % len(table))
    lines += [head, "|" + "---|" * (len(names) + 2)]
    lines += [row(lab, table[lab][1]) for lab in ranked[:12]]
    lines.append("")
    lines.append("Leave one zoo (group) out: chosen by the smallest worst-case regret on the others")
    lines.append("| left out | chosen | its regret there | previous default's regret there |")
    lines.append("|---|---|---|---|")
    lozo = {}
    for group in groups_of(names):
        rest = [z for z in names if z not in group]
        if not rest:
            continue
        pick = min(table, key=lambda lab: (max(best[z] - table[lab][1][z][0] for z in rest),
                                           -np.mean([table[lab][1][z][0] for z in rest])))
        for z in group:
            lines.append(f"| {z} | {pick} | {best[z] - table[pick][1][z][0]:.3f} | "
                         f"{best[z] - table[previous][1][z][0]:.3f} |")
        lozo["+".join(group)] = pick
    text = "\n".join(lines)
    print(text)
    out = {"zoos": names, "best_single": best, "previous": previous, "lozo": lozo,
           "fusions": {lab: {"weights": w, "per_zoo": r, "worst_regret": worst[lab]}
                       for lab, (w, r) in table.items()},
           "singles": singles}
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    with open(os.path.splitext(args.out)[0] + ".txt", "w") as f:
        f.write(text + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("extract")
    e.add_argument("--kind", choices=["image", "colour", "text", "audio"], required=True)
    e.add_argument("--zoo", required=True)
    e.add_argument("--cache", required=True)
    s = sub.add_parser("study")
    s.add_argument("--zoo", action="append", default=[], help="NAME=CACHE:ZOO:GROUND_TRUTH")
    s.add_argument("--colour", action="append", default=[], help="NAME=EVALUATION.json")
    s.add_argument("--out", required=True)
    s.add_argument("--pad-null", action="store_true",
                   help="keep the null directions as zero columns (the dock before session 17)")
    args = ap.parse_args()
    {"extract": extract, "study": study}[args.cmd](args)


if __name__ == "__main__":
    main()
