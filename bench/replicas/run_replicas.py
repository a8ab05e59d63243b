#!/usr/bin/python3
"""Recommend throughput with 1 vs 2 modeldock-server replicas on one PostgreSQL (issue 11).

    /usr/bin/python3 bench/replicas/run_replicas.py --build-dir build [--calls 48] [--clients 6]

Starts a throw-away PostgreSQL (scripts/postgres_test_server.sh), then for each setup a fresh
database: one replica with --workers 2, or two replicas with --workers 1 each (the same number of
model worker processes), sharing one --blob-dir. Registers the five demo models on the first
replica, waits until every replica lists them READY, then sends --calls recommend calls from
--clients threads (round-robin over the replicas), each on a different random 64-sample subset
of the demo query (so no call is served from the output cache), after two untimed warm-up
calls per replica (models loaded into its workers). Reports calls/s and latency
percentiles in results.md / results.json next to this script.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "python"))
from live_server import read_idx, start_server, stop_server  # noqa: E402


def psql_create(url, db):
    base = url.rsplit("/", 1)[0]
    subprocess.run(["runuser", "-u", "postgres", "--", "psql", f"{base}/postgres", "-qc",
                    f"CREATE DATABASE {db}"], check=True)
    return f"{base}/{db}"


def run_setup(args, pg_url, replicas, tmp, images, labels, meta):
    import modeldock
    db = psql_create(pg_url, f"bench_{replicas}r_{int(time.time())}")
    blobs = os.path.join(tmp, f"blobs{replicas}")
    servers = []
    for r in range(replicas):
        servers.append(start_server(
            args.server, args.assets, os.path.join(tmp, f"d{replicas}_{r}"),
            ["--metadata-url", db, "--blob-dir", blobs, "--workers", str(2 // replicas)]))
    clients = [modeldock.Client(addr) for _, addr in servers]
    try:
        for stem, m in meta.items():
            clients[0].register(os.path.join(args.assets, "demo", stem + ".pt"), name=m["name"],
                                input_shape=m["input_shape"], labels=m["class_labels"])
        deadline = time.time() + 120
        while time.time() < deadline:
            if all(sum(x.state == "READY" for x in c.list()) == len(meta) for c in clients):
                break
            time.sleep(0.5)
        rng = np.random.default_rng(0)
        subsets = [rng.choice(len(images), 64, replace=False) for _ in range(args.calls)]
        # Warm-up (not timed): every replica loads the models into its workers once.
        for c in clients:
            for _ in range(2):
                w = rng.choice(len(images), 64, replace=False)
                c.recommend(images[w], labels[w], top=5)
        latencies, errors, lock = [], [], threading.Lock()
        next_call = [0]

        def worker():
            while True:
                with lock:
                    i = next_call[0]
                    next_call[0] += 1
                if i >= args.calls:
                    return
                idx = subsets[i]
                start = time.perf_counter()
                try:
                    res = clients[i % replicas].recommend(images[idx], labels[idx], top=5)
                    assert len(res) == len(meta)
                except Exception as e:  # noqa: BLE001  (reported, not hidden)
                    with lock:
                        errors.append(repr(e))
                    continue
                with lock:
                    latencies.append(time.perf_counter() - start)

        t0 = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        lat = np.array(latencies) * 1000
        return {"replicas": replicas, "workers_each": 2 // replicas, "calls": len(latencies),
                "errors": errors[:3], "num_errors": len(errors), "wall_s": wall,
                "calls_per_s": len(latencies) / wall,
                "latency_ms_p50": float(np.percentile(lat, 50)) if len(lat) else None,
                "latency_ms_p90": float(np.percentile(lat, 90)) if len(lat) else None}
    finally:
        for c in clients:
            c.close()
        for proc, _ in servers:
            stop_server(proc)


def args_omp_threads():
    return next((int(a.split("=", 1)[1]) for a in sys.argv if a.startswith("--omp-threads=")), 1)


def main():
    # As scripts/*.sh and the Docker image run the server: spinning OpenMP threads make LibTorch
    # and FAISS several times slower when calls share the cores.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # One OpenMP thread per call (docker/Dockerfile does the same): with OpenMP teams per call,
    # concurrent calls in one server collapsed (--omp-threads 2 shows it).
    os.environ.setdefault("OMP_NUM_THREADS", str(args_omp_threads()))
    os.environ.setdefault("OPENBLAS_NUM_THREADS", os.environ["OMP_NUM_THREADS"])
    ap = argparse.ArgumentParser()
    ap.add_argument("--build-dir", default=os.path.join(ROOT, "build"))
    ap.add_argument("--calls", type=int, default=48)
    ap.add_argument("--clients", type=int, default=6)
    ap.add_argument("--order", default="1,2", help="setups to run, in order (replica counts)")
    ap.add_argument("--omp-threads", type=int, default=1,
                    help="OMP_NUM_THREADS of the servers (pass as --omp-threads=N)")
    args = ap.parse_args()
    args.server = os.path.join(args.build_dir, "server", "modeldock-server")
    args.assets = os.path.join(args.build_dir, "assets")
    sys.path.insert(0, os.path.join(args.build_dir, "python"))
    query = os.path.join(args.assets, "demo", "query_tops")
    images = read_idx(os.path.join(query, "query-images-idx3-ubyte"))[:, None]
    labels = read_idx(os.path.join(query, "query-labels-idx1-ubyte")).astype(np.int64)
    meta = {}
    for f in sorted(os.listdir(os.path.join(args.assets, "demo"))):
        if f.endswith(".json"):
            with open(os.path.join(args.assets, "demo", f)) as fh:
                meta[f[:-5]] = json.load(fh)
    tmp = tempfile.mkdtemp(prefix="modeldock-replicas-bench-")
    pg_dir = tempfile.mkdtemp(prefix="modeldock-pg-")  # its own: the server user must reach it
    out = subprocess.run([os.path.join(ROOT, "scripts", "postgres_test_server.sh"), "start",
                          pg_dir], check=True, capture_output=True, text=True).stdout
    pg_url = out.strip().split("=", 1)[1].strip("'\"")
    try:
        results = [run_setup(args, pg_url, int(r), tmp, images, labels, meta)
                   for r in args.order.split(",")]
    finally:
        subprocess.run([os.path.join(ROOT, "scripts", "postgres_test_server.sh"), "stop", pg_dir])
    here = os.path.dirname(os.path.abspath(__file__))
    with open(os.path.join(here, "results.json"), "w") as f:
        json.dump({"nproc": os.cpu_count(), "calls": args.calls, "clients": args.clients,
                   "results": results}, f, indent=1)
    lines = [f"# Recommend throughput, 1 vs 2 replicas on one PostgreSQL "
             f"(OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']})\n",
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {os.cpu_count()} cores, "
             f"{args.calls} calls from {args.clients} client threads, 5 demo models, 64-sample "
             f"queries (each a different subset: no output-cache hits), default pipeline.\n",
             "| replicas | model workers each | calls/s | p50 ms | p90 ms | errors |",
             "|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['replicas']} | {r['workers_each']} | {r['calls_per_s']:.2f} | "
                     f"{r['latency_ms_p50']:.0f} | {r['latency_ms_p90']:.0f} | {r['num_errors']} |")
    with open(os.path.join(here, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
