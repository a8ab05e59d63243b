#!/usr/bin/python3
"""Plain-script baseline: what `recommend --brute-force` does for one query, without modeldock.

    nice -n 10 /usr/bin/python3 bench/speed/script_baseline.py [--num-models 50 --samples 200]

What a user with a folder of TorchScript models and a labelled dataset, but no modeldock, would
write: for every query, load each of the N models from disk (torch.jit.load), run embed(x) on the
query samples (forward(x) if a model has no embed), reduce each model's features to their top 32
principal components on the query (sklearn PCA), score them with LogME and shrinkage H-score (the
NumPy/SciPy/sklearn implementations in scoring/testdata/metrics_oracle.py, the tests' oracle for
the server's C++ metrics), and rank-fuse the two (mean of scipy rankdata; a non-finite score
ranks last), which is the server's default `fusion`. One process, models run one after the other,
torch.set_num_threads(2) (the server's --torch-threads default).

Same inputs as bench/speed/run_speed.py's brute-force calls: the first --num-models models of its
seeded shuffle of the benchmark zoo (copies beyond the zoo's 56 models), and the query datasets
of its cold brute-force calls at the first zoo size (Fashion-MNIST t10k index >= 2000, seeds
SEED + 1000 * (number of query sizes + 1) + r for the default --zoo-sizes 50,200
--query-sizes 200,1000 run: --seed-base). Every query is "cold" for the models (loaded from disk
again), but the files are in the OS page cache after the first query, as they are for the server.

Differences from the server, all in the script's favour: it runs embed only (the server also
runs forward for the logits), it does not adapt inputs (all zoo models take [1, 28, 28]) and
encodes no query for stage 1, and it has no gRPC upload. Against it: it runs the models on one
thread of control (the server runs 2 stage-2 workers) and the metrics in NumPy float64.

Writes bench/speed/script_baseline.json (per query: load, embed, metrics and total wall seconds,
the process's CPU seconds, and the fused ranking); run_speed.py --report-only puts it into results.md next to the server's
brute force.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "scoring", "testdata"))
import run_speed  # noqa: E402  (zoo_models, QueryData, read/write IDX, machine_info)
import metrics_oracle  # noqa: E402

FUSION_DIMS = 32


def read_idx(path):
    import struct
    with open(path, "rb") as f:
        data = f.read()
    _, _, ndim = struct.unpack(">HBB", data[:4])
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def rank_fuse(lists):
    from scipy import stats
    ranks = []
    for values in lists:
        v = np.asarray(values, dtype=np.float64)
        v = np.where(np.isfinite(v), v, -np.inf)  # non-finite ranks lowest
        ranks.append(stats.rankdata(v))
    return np.mean(ranks, axis=0) / len(lists[0])


def one_query(torch, models, images_path, labels_path):
    """The whole brute-force recommendation for one query; returns timings and the ranking."""
    from sklearn.decomposition import PCA
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    x = read_idx(images_path).astype(np.float32)[:, None, :, :] / 255.0
    y = read_idx(labels_path).astype(np.int64)
    x = torch.from_numpy(x)
    load_s = embed_s = metrics_s = 0.0
    logme, shrink = [], []
    for name, pt, _sidecar, _origin in models:
        t = time.perf_counter()
        module = torch.jit.load(pt, map_location="cpu")
        module.eval()
        t1 = time.perf_counter()
        with torch.inference_mode():
            if hasattr(module, "embed"):
                f = module.embed(x)
            else:
                f = module(x)
        f = f.reshape(len(f), -1).double().numpy()
        t2 = time.perf_counter()
        k = min(FUSION_DIMS, f.shape[1], f.shape[0])
        z = PCA(n_components=k, svd_solver="full").fit_transform(f)
        try:
            logme.append(metrics_oracle.logme(z, y))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            logme.append(float("-inf"))
        try:
            shrink.append(metrics_oracle.shrinkage_hscore(z, y))
        except (np.linalg.LinAlgError, ValueError, FloatingPointError):
            shrink.append(float("-inf"))
        t3 = time.perf_counter()
        load_s += t1 - t
        embed_s += t2 - t1
        metrics_s += t3 - t2
        del module
    fused = rank_fuse([logme, shrink])
    order = np.argsort(-fused, kind="stable")
    total_s = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    ranking = [{"name": models[i][0], "score": float(fused[i]), "logme": logme[i],
                "shrinkage_hscore": shrink[i]} for i in order]
    return {"total_s": total_s, "cpu_s": cpu_s, "load_s": load_s, "embed_s": embed_s, "metrics_s": metrics_s,
            "ranking": ranking}


def summary(values):
    v = sorted(values)
    return {"n": len(v), "median": statistics.median(v),
            "p95": float(np.percentile(v, 95)) if len(v) > 1 else v[0],
            "min": v[0], "max": v[-1], "mean": statistics.fmean(v)}


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--num-models", type=int, default=50)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--reps", type=int, default=3, help="queries (each on a different dataset)")
    p.add_argument("--seed-base", type=int, default=run_speed.SEED + 3000,
                   help="seed of the first query dataset (default: run_speed.py's first cold "
                        "brute-force call with two query sizes)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--asset-dir", default=os.path.join(HERE, "artifacts", "bin", "assets"),
                   help="only used if the benchmark zoo is absent (demo models)")
    p.add_argument("--out", default=os.path.join(HERE, "script_baseline.json"))
    args = p.parse_args()

    import torch
    torch.set_num_threads(args.threads)
    models = run_speed.zoo_models(args.asset_dir, args.num_models)
    work = tempfile.mkdtemp(prefix="modeldock-baseline-")
    data = run_speed.QueryData(work)
    load_before = os.getloadavg()
    started = datetime.datetime.now().isoformat(timespec="seconds")
    queries = []
    for r in range(args.reps):
        images, labels = data.make(args.samples, args.seed_base + r)
        q = one_query(torch, models, images, labels)
        q["seed"] = args.seed_base + r
        queries.append(q)
        print(f"[script_baseline] query {r}: total {q['total_s']:.2f} s, CPU {q['cpu_s']:.2f} s "
              f"(load {q['load_s']:.2f}, "
              f"embed {q['embed_s']:.2f}, metrics {q['metrics_s']:.2f}); top 3 "
              f"{[e['name'] for e in q['ranking'][:3]]}", file=sys.stderr, flush=True)
    for f in os.listdir(work):
        os.remove(os.path.join(work, f))
    os.rmdir(work)
    copies = sum(1 for m in models if m[3].endswith("(copy)"))
    out = {
        "description": (f"load each model from disk (torch.jit.load), embed(x), PCA to "
                        f"{FUSION_DIMS} dims, LogME + shrinkage H-score (metrics_oracle.py), "
                        "rank fusion; one process, models one after the other"),
        "started": started, "finished": datetime.datetime.now().isoformat(timespec="seconds"),
        "machine": run_speed.machine_info(), "python": sys.version.split()[0],
        "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
        "nice": os.nice(0), "num_models": len(models), "copies": copies,
        "samples": args.samples, "reps": args.reps, "seed_base": args.seed_base,
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "summary": {k: summary([q[k] for q in queries])
                    for k in ("total_s", "cpu_s", "load_s", "embed_s", "metrics_s")},
        "queries": queries,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(f"[script_baseline] median {out['summary']['total_s']['median']:.2f} s/query; wrote "
          f"{args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
