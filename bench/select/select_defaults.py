#!/usr/bin/python3
"""Chooses ranking defaults on one zoo and reports them on the other, both directions.

Input: two study.py outputs. For each family of choices (stage-2 score: single metrics and rank /
z-score fusions of 2-3 metrics; stage-1 proxy: neighbour space, k, stored dimension, metric and
fusions of proxy metrics) the best member by mean weighted tau on zoo A is chosen and its figure on
zoo B is reported next to the best possible on B (which a tuner on B would have picked).

Usage: select_defaults.py A.json B.json [--md OUT.md] [--json OUT.json]
"""
import argparse
import itertools
import json

import numpy as np
from scipy import stats


def load(path):
    d = json.load(open(path))
    d["accuracy"] = {t: np.array(v) for t, v in d["accuracy"].items()}
    d["scores"] = {m: {t: np.array(v, dtype=np.float64) for t, v in tv.items()}
                   for m, tv in d["scores"].items()}
    return d


def rank_score(v):
    v = np.nan_to_num(np.asarray(v, dtype=np.float64), nan=-1e300)
    return stats.rankdata(v)


def zscore(v):
    v = np.nan_to_num(np.clip(np.asarray(v, dtype=np.float64), -1e30, None), nan=-1e30)
    s = v.std()
    return (v - v.mean()) / s if s > 0 else np.zeros_like(v)


def fused(d, methods, kind, task, subset=None):
    vs = [d["scores"][m][task] for m in methods]
    if subset is not None:
        vs = [v[subset] for v in vs]
    if len(vs) == 1:
        return rank_score(vs[0])
    f = rank_score if kind == "rank" else zscore
    return np.mean([f(v) for v in vs], axis=0)


def measures(score, acc):
    tw = float(stats.weightedtau(score, acc).correlation)
    top = int(np.argmax(score))
    return tw, float(acc[top] / acc.max())


def evaluate(d, method_fn):
    tws, rels = [], []
    for t in d["tasks"]:
        s = method_fn(d, t)
        tw, r1 = measures(s, d["accuracy"][t])
        tws.append(tw)
        rels.append(r1)
    return float(np.mean(tws)), float(np.mean(rels))


def two_stage_fn(stage1, stage2, fraction):
    """stage1: (methods, kind); stage2: (methods, kind) fused over the candidates only."""
    def fn(d, t):
        s1 = fused(d, *stage1, t)
        n = len(s1)
        c = max(1, int(np.ceil(fraction * n)))
        order1 = np.argsort(-s1, kind="stable")
        cand = order1[:c]
        s2 = fused(d, *stage2, t, subset=cand)
        order = list(cand[np.argsort(-s2, kind="stable")]) + list(order1[c:])
        rs = np.empty(n)
        rs[np.asarray(order)] = np.arange(n, 0, -1)
        return rs
    return fn


def families(a):
    brute = sorted(m[len("brute_"):] for m in a["scores"] if m.startswith("brute_"))
    stage2 = []
    for r in (1, 2, 3):
        for combo in itertools.combinations(brute, r):
            for kind in (("rank", "z") if r > 1 else ("rank",)):
                stage2.append(([f"brute_{m}" for m in combo], kind))
    proxies = sorted(m for m in a["scores"] if m.startswith("proxy_"))
    stage1 = [([p], "rank") for p in proxies]
    # Fusions of two proxy metrics under the same neighbour setting.
    groups = {}
    for p in proxies:
        head, metric = p.rsplit("_d", 1)[0], p.split("_", 4)[-1]
        groups.setdefault(p[: p.rfind("_d")] + p[p.rfind("_d"):].split("_")[0], []).append(p)
    for key, members in groups.items():
        for pair in itertools.combinations(sorted(members), 2):
            for kind in ("rank", "z"):
                stage1.append((list(pair), kind))
    return stage2, stage1


def label(spec):
    methods, kind = spec
    names = [m.replace("brute_", "") for m in methods]
    return (" + ".join(names) + (f" ({kind})" if len(names) > 1 else ""))


def choose(a, b, specs, fn_of_spec):
    ev_a = [(evaluate(a, fn_of_spec(s)), s) for s in specs]
    ev_a.sort(key=lambda x: -x[0][0])
    best_spec = ev_a[0][1]
    on_b = evaluate(b, fn_of_spec(best_spec))
    ev_b = sorted(((evaluate(b, fn_of_spec(s)), s) for s in specs), key=lambda x: -x[0][0])
    return {"chosen": label(best_spec), "spec": best_spec, "on_a": ev_a[0][0], "on_b": on_b,
            "best_on_b": ev_b[0][0], "best_on_b_label": label(ev_b[0][1]),
            "top5_a": [(label(s), v) for v, s in ev_a[:5]]}


def direct(spec):
    return lambda d, t: fused(d, *spec, t)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    zoos = {"A": load(args.a), "B": load(args.b)}
    report = {}
    for src, dst in (("A", "B"), ("B", "A")):
        a, b = zoos[src], zoos[dst]
        stage2, stage1 = families(a)
        r = {}
        r["stage2"] = choose(a, b, stage2, direct)
        r["stage1"] = choose(a, b, stage1, direct)
        best1, best2 = r["stage1"]["spec"], r["stage2"]["spec"]
        r["two_stage_25"] = {"on_a": evaluate(a, two_stage_fn(best1, best2, 0.25)),
                             "on_b": evaluate(b, two_stage_fn(best1, best2, 0.25))}
        report[f"{src}->{dst}"] = r
        print(f"== chosen on {src} ({a['zoo']}), reported on {dst} ({b['zoo']})")
        for fam in ("stage2", "stage1"):
            x = r[fam]
            print(f"  {fam}: {x['chosen']}: tau_w/rel@1 on {src} {x['on_a'][0]:.3f}/{x['on_a'][1]:.3f}"
                  f", on {dst} {x['on_b'][0]:.3f}/{x['on_b'][1]:.3f} (best on {dst}: "
                  f"{x['best_on_b_label']} {x['best_on_b'][0]:.3f})")
            for lab, v in x["top5_a"]:
                print(f"      {lab:60s} {v[0]:.3f} {v[1]:.3f}")
        ts = r["two_stage_25"]
        print(f"  two-stage 25%: on {src} {ts['on_a'][0]:.3f}, on {dst} {ts['on_b'][0]:.3f}")
    # Every single brute metric on both zoos, for the table.
    singles = sorted(m for m in zoos["A"]["scores"] if m.startswith("brute_"))
    print("== single metrics (brute force): tau_w A / B")
    for m in singles:
        print(f"  {m:28s} {evaluate(zoos['A'], direct(([m], 'rank')))[0]:.3f} / "
              f"{evaluate(zoos['B'], direct(([m], 'rank')))[0]:.3f}")
    if args.json:
        for r in report.values():
            for x in r.values():
                x.pop("spec", None)
        json.dump(report, open(args.json, "w"), indent=1)


if __name__ == "__main__":
    main()
