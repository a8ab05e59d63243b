#!/usr/bin/python3
"""End-to-end speed and memory of modeldock, through the real server and CLI.

    /usr/bin/python3 bench/speed/run_speed.py [--build-dir /work/main/build]
    /usr/bin/python3 bench/speed/run_speed.py --quick          # 5/10 models, 100/200 samples
    /usr/bin/python3 bench/speed/run_speed.py --report-only    # rebuild results.md/.json

Starts `modeldock-server --listen 127.0.0.1:0` on a fresh data dir and drives it with the
`modeldock` CLI (--json), as a user would:

  registration   models are registered in steps up to each zoo size (default 5, 10, 25, 50);
                 per model: wall time of `register` (upload + admission + probing, it waits until
                 READY) and probe_millis from `show`.
  recommend      at every zoo size, for every query size (default 100, 200, 500, 1000 samples):
                 --reps cold calls, each on a different dataset (a different seeded draw, so the
                 dock's output cache cannot serve it), then --reps warm calls repeating the first
                 dataset (every stage-2 model output comes from the cache). Default pipeline:
                 metric `fusion` (each model's features reduced to their top 32 principal
                 components, LogME + shrinkage H-score, rank-fused), stage 1 ranks every model by
                 its probe proxies, and the server's latency budget (--latency-budget-ms, default
                 5000) decides per call whether stage 2 scores every compatible model
                 ("scored_all") or the stage-1 candidates that fit ("two_stage"). Recorded per
                 call: wall time of the CLI process (start-up, reading the file, upload, answer),
                 the server's own timings (total, stage 1, stage 2), the response's mode,
                 num_scored and num_cached.
  brute force    at every zoo size, on --bf-samples samples (default 200): the same cold/warm
                 calls with --brute-force (every compatible model scored), for the time ratio
                 brute force / default.
  memory         server VmHWM (peak RSS) and VmRSS from /proc/<pid>/status after each phase.

Models: the benchmark zoo (bench/zoo/artifacts/zoo/models/*.pt with sidecar JSON) in a seeded
shuffled order, so every prefix mixes architectures; if it holds fewer models than the largest
zoo size (or is absent) the remainder are copies under new names (of the zoo models, else of the
demo models in <build>/assets/demo) - the dock stores identical bytes once but probes and
indexes every name as its own model. Its output cache is keyed by the model file's SHA-256, so
once one copy of a file has run on a dataset, the other copies of it are served from the cache
(`num_cached`): with copies, cold calls run fewer models than they score. --distinct-copies
re-saves each copy with an extra file naming it (torch.jit.save _extra_files; needs torch in the
Python running this script), so that every copy is a different file to the dock.

Query data: Fashion-MNIST t10k (Debian's dataset-fashion-mnist) images with index >= 2000 (never
in the probe set), all 10 classes, written as uncompressed IDX files with labels.

Writes bench/speed/e2e.json, then results.json and results.md, which also summarise the
stage-1 index benchmark outputs bench/speed/index_bench*.json and the plain-script baseline
bench/speed/script_baseline.json (script_baseline.py) when present, and end with the
hand-written reading in bench/speed/notes.md.
"""
import argparse
import datetime
import glob
import json
import os
import platform
import queue
import shutil
import signal
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
ZOO_MODELS = os.path.join(REPO, "bench", "zoo", "artifacts", "zoo", "models")
FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
QUERY_MIN_INDEX = 2000  # t10k 0..999 is the probe set, 1000..1999 validation of zoo models
SEED = 20240601


def log(*args):
    print("[run_speed]", *args, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- data

def read_idx_gz(path):
    import gzip
    with gzip.open(path, "rb") as f:
        data = f.read()
    _, _, ndim = struct.unpack(">HBB", data[:4])
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def write_idx(path, array):
    array = np.ascontiguousarray(array, dtype=np.uint8)
    with open(path, "wb") as f:
        f.write(struct.pack(">HBB", 0, 0x08, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.tobytes())


class QueryData:
    """Seeded draws of Fashion-MNIST t10k images (index >= 2000) written as IDX pairs."""

    def __init__(self, out_dir):
        self.images = read_idx_gz(os.path.join(FMNIST_DIR, "t10k-images-idx3-ubyte.gz"))
        self.labels = read_idx_gz(os.path.join(FMNIST_DIR, "t10k-labels-idx1-ubyte.gz"))
        self.out_dir = out_dir
        self.count = 0

    def make(self, size, seed):
        rng = np.random.default_rng(seed)
        idx = rng.choice(np.arange(QUERY_MIN_INDEX, len(self.images)), size=size, replace=False)
        stem = os.path.join(self.out_dir, f"q{self.count:04d}-{size}")
        self.count += 1
        write_idx(stem + "-images-idx3-ubyte", self.images[idx])
        write_idx(stem + "-labels-idx1-ubyte", self.labels[idx])
        return stem + "-images-idx3-ubyte", stem + "-labels-idx1-ubyte"


# --------------------------------------------------------------------------- server and CLI

class Server:
    def __init__(self, build_dir, data_dir, asset_dir, log_path, nice, env=None, extra_args=()):
        binary = os.path.join(build_dir, "server", "modeldock-server")
        cmd = [binary, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
               "--asset-dir", asset_dir] + list(extra_args)
        if nice:
            cmd = ["nice", "-n", str(nice)] + cmd
        self.log_file = open(log_path, "w")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log_file, text=True,
                                     env=dict(os.environ, **(env or {})))
        lines = queue.Queue()
        threading.Thread(target=lambda: [lines.put(l) for l in self.proc.stdout],
                         daemon=True).start()
        deadline = time.time() + 120
        self.address = None
        while time.time() < deadline:
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if line.startswith("modeldock-server listening on "):
                self.address = line.strip().rsplit(" ", 1)[1]
                break
        if self.address is None:
            self.stop()
            raise RuntimeError(f"server did not start; see {log_path}")
        # `nice` execs the server, so the pid is the server's.
        self.pid = self.proc.pid

    def memory(self):
        """VmHWM and VmRSS in MiB."""
        out = {}
        with open(f"/proc/{self.pid}/status") as f:
            for line in f:
                key = line.split(":")[0]
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(line.split()[1]) / 1024.0
        return out

    def cpu_seconds(self):
        """User + system CPU time of the server so far (all threads)."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log_file.close()


class Cli:
    def __init__(self, build_dir, address, nice):
        self.base = [os.path.join(build_dir, "client", "modeldock"), "--server", address,
                     "--json", "--timeout", "600"]
        if nice:
            self.base = ["nice", "-n", str(nice)] + self.base

    def run(self, *args):
        """Returns (parsed JSON, wall seconds); raises on a non-zero exit."""
        start = time.perf_counter()
        proc = subprocess.run(self.base + list(args), capture_output=True, text=True)
        wall = time.perf_counter() - start
        if proc.returncode != 0:
            raise RuntimeError(f"modeldock {' '.join(args)} failed ({proc.returncode}): "
                               f"{proc.stderr.strip()}")
        return json.loads(proc.stdout), wall


# --------------------------------------------------------------------------- models

def zoo_models(asset_dir, count, use_zoo=True):
    """[(name, pt path, sidecar path, origin)] of `count` models, seeded order."""
    base = []
    origin = "bench zoo"
    if use_zoo and os.path.isdir(ZOO_MODELS):
        for pt in sorted(glob.glob(os.path.join(ZOO_MODELS, "*.pt"))):
            sidecar = pt[:-3] + ".json"
            if os.path.exists(sidecar):
                base.append((os.path.basename(pt)[:-3], pt, sidecar))
    if not base:
        origin = "demo models"
        demo = os.path.join(asset_dir, "demo")
        for pt in sorted(glob.glob(os.path.join(demo, "*.pt"))):
            sidecar = pt[:-3] + ".json"
            if os.path.exists(sidecar):
                base.append((os.path.basename(pt)[:-3], pt, sidecar))
    if not base:
        raise RuntimeError("no models: neither the bench zoo nor <build>/assets/demo exists")
    order = np.random.default_rng(SEED).permutation(len(base))
    base = [base[i] for i in order]
    models = []
    for i in range(count):
        name, pt, sidecar = base[i % len(base)]
        copy = i // len(base)
        models.append((name if copy == 0 else f"{name}-copy{copy}", pt, sidecar,
                       origin if copy == 0 else f"{origin} (copy)"))
    return models


def distinct_copies(models, out_dir):
    """Copies re-saved with an extra file naming them (torch.jit.save _extra_files): the same
    model, but different bytes, so the dock neither stores them once nor serves one copy's
    outputs from the output cache for another (which it does for identical files)."""
    import torch
    os.makedirs(out_dir, exist_ok=True)
    out = []
    for name, pt, sidecar, origin in models:
        if origin.endswith("(copy)"):
            path = os.path.join(out_dir, name + ".pt")
            torch.jit.save(torch.jit.load(pt, map_location="cpu"), path,
                           _extra_files={"modeldock_bench_copy": name})
            pt, origin = path, origin[:-len("(copy)")] + "(distinct copy)"
        out.append((name, pt, sidecar, origin))
    return out


def arch_of(sidecar):
    with open(sidecar) as f:
        tags = json.load(f).get("tags", [])
    for t in tags:
        if t.startswith("arch:"):
            return t[5:]
    return os.path.basename(sidecar).split("-")[0]


# --------------------------------------------------------------------------- statistics

def summary(values):
    v = sorted(values)
    if not v:
        return {}
    p95 = float(np.percentile(v, 95, method="linear")) if len(v) > 1 else v[0]
    return {"n": len(v), "median": statistics.median(v), "p95": p95, "min": v[0], "max": v[-1],
            "mean": statistics.fmean(v)}


def machine_info():
    info = {"platform": platform.platform()}
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in lscpu.splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("Model name", "CPU(s)", "Thread(s) per core"):
                info[key.strip()] = value.strip()
    except OSError:
        pass
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                info["ram_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    info["nproc"] = os.cpu_count()
    return info


# --------------------------------------------------------------------------- the run

def recommend_series(cli, server, data, size, reps, seed_base, extra):
    """reps cold calls on fresh datasets, then reps warm calls on the first one."""
    rows = []
    first = None
    for r in range(reps):
        images, labels = data.make(size, seed_base + r)
        first = first or (images, labels)
        cpu = server.cpu_seconds()
        out, wall = cli.run("recommend", images, "--labels", labels, *extra)
        out["server_cpu_ms"] = (server.cpu_seconds() - cpu) * 1000
        rows.append(("cold", wall, out))
    for r in range(reps):
        cpu = server.cpu_seconds()
        out, wall = cli.run("recommend", first[0], "--labels", first[1], *extra)
        out["server_cpu_ms"] = (server.cpu_seconds() - cpu) * 1000
        rows.append(("warm", wall, out))
    result = {}
    for kind in ("cold", "warm"):
        sel = [(w, o) for k, w, o in rows if k == kind]
        result[kind] = {
            "wall_ms": summary([w * 1000 for w, _ in sel]),
            "server_total_ms": summary([o["timings"]["total_millis"] for _, o in sel]),
            "server_cpu_ms": summary([o["server_cpu_ms"] for _, o in sel]),
            "stage1_ms": summary([o["timings"]["stage1_millis"] for _, o in sel]),
            "stage2_ms": summary([o["timings"]["stage2_millis"] for _, o in sel]),
            "encode_query_ms": summary([o["timings"]["encode_query_millis"] for _, o in sel]),
            "calls_wall_ms": [round(w * 1000, 1) for w, _ in sel],
            "calls_server_ms": [round(o["timings"]["total_millis"], 1) for _, o in sel],
            # Per call: the mode the server chose, how many models stage 2 scored and how many
            # of those came from the output cache.
            "calls_mode": [o.get("mode") for _, o in sel],
            "calls_num_scored": [o["num_scored"] for _, o in sel],
            "calls_num_cached": [o.get("num_cached") for _, o in sel],
            "calls_mode_reason": [o.get("mode_reason") for _, o in sel],
            "latency_budget_ms": sel[0][1].get("latency_budget_ms"),
            "metric": sel[0][1].get("metric"),
            "num_scored": sel[0][1]["num_scored"],
            "num_compatible": sel[0][1]["num_compatible"],
        }
    return result


def run(args):
    build = os.path.abspath(args.build_dir)
    assets = os.path.abspath(args.asset_dir or os.path.join(build, "assets"))
    for path in (os.path.join(build, "server", "modeldock-server"),
                 os.path.join(build, "client", "modeldock"), assets):
        if not os.path.exists(path):
            raise SystemExit(f"{path} is missing: build the tree and run "
                             "scripts/make_assets.py --out <build>/assets first")
    zoo_sizes = sorted(args.zoo_sizes)
    models = zoo_models(assets, zoo_sizes[-1], not args.no_zoo)
    work = tempfile.mkdtemp(prefix="modeldock-speed-")
    if args.distinct_copies:
        models = distinct_copies(models, os.path.join(work, "copies"))
    data = QueryData(os.path.join(work, "queries"))
    os.makedirs(data.out_dir)
    load_before = os.getloadavg()
    server = Server(build, os.path.join(work, "data"), assets,
                    os.path.join(work, "server.log"), args.nice, args.server_env, args.server_arg)
    log("server at", server.address, "pid", server.pid, "work dir", work)
    cli = Cli(build, server.address, args.nice)
    result = {"started": datetime.datetime.now().isoformat(timespec="seconds"),
              "machine": machine_info(), "build_dir": build, "reps": args.reps,
              "asset_dir": assets, "query_sizes": args.query_sizes, "zoo_sizes": zoo_sizes,
              "bf_samples": args.bf_samples, "nice": args.nice, "server_env": args.server_env,
              "server_args": args.server_arg, "distinct_copies": args.distinct_copies,
              "bf_first": args.bf_first,
              "load_average_before": load_before, "memory": [], "registrations": [],
              "recommend": [], "brute_force": []}
    result["memory"].append({"phase": "started (empty dock)", **server.memory()})
    try:
        registered = 0
        seed = SEED
        for zoo in zoo_sizes:
            for name, pt, sidecar, origin in models[registered:zoo]:
                cpu = server.cpu_seconds()
                out, wall = cli.run("register", pt, "--metadata", sidecar, "--name", name)
                cpu = server.cpu_seconds() - cpu
                model = out["model"]
                if model["state"] != "READY":
                    raise RuntimeError(f"{name} ended {model['state']}: {model['state_reason']}")
                shown, _ = cli.run("show", name)
                result["registrations"].append({
                    "name": name, "origin": origin, "arch": arch_of(sidecar),
                    "size_bytes": model["size_bytes"], "deduplicated": out["deduplicated"],
                    "register_wall_ms": wall * 1000, "register_server_cpu_ms": cpu * 1000,
                    "probe_millis": shown["model"]["probe_millis"]})
                log(f"registered {name}: {wall * 1000:.0f} ms wall, "
                    f"probe {shown['model']['probe_millis']} ms")
            registered = zoo
            result["memory"].append({"phase": f"{zoo} models registered", **server.memory()})
            # Seeds as in the default order (query sizes, then brute force), whatever the order.
            seeds = [seed + 1000 * (i + 1) for i in range(len(args.query_sizes) + 1)]
            seed = seeds[-1]

            def default_series(i, size):
                r = recommend_series(cli, server, data, size, args.reps, seeds[i], [])
                r.update({"zoo": zoo, "samples": size, "mode": "default"})
                result["recommend"].append(r)
                log(f"zoo {zoo}, {size} samples: cold median "
                    f"{r['cold']['wall_ms']['median']:.0f} ms, warm "
                    f"{r['warm']['wall_ms']['median']:.0f} ms (cold modes "
                    f"{r['cold']['calls_mode']}, scored {r['cold']['calls_num_scored']}/"
                    f"{r['cold']['num_compatible']}, cached {r['cold']['calls_num_cached']})")

            def brute_series():
                r = recommend_series(cli, server, data, args.bf_samples, args.reps, seeds[-1],
                                     ["--brute-force"])
                r.update({"zoo": zoo, "samples": args.bf_samples, "mode": "brute-force"})
                result["brute_force"].append(r)
                log(f"zoo {zoo}, brute force {args.bf_samples} samples: cold median "
                    f"{r['cold']['wall_ms']['median']:.0f} ms, warm "
                    f"{r['warm']['wall_ms']['median']:.0f} ms (scored "
                    f"{r['cold']['calls_num_scored']}, cached {r['cold']['calls_num_cached']})")

            if args.bf_first:
                brute_series()
            for i, size in enumerate(args.query_sizes):
                default_series(i, size)
            if not args.bf_first:
                brute_series()
            result["memory"].append({"phase": f"{zoo} models, after recommend", **server.memory()})
    finally:
        try:
            result["memory"].append({"phase": "end", **server.memory()})
        except OSError:
            pass
        server.stop()
        result["load_average_after"] = os.getloadavg()
        if args.keep:
            log("kept", work)
        else:
            shutil.rmtree(work, ignore_errors=True)
    result["finished"] = datetime.datetime.now().isoformat(timespec="seconds")
    return result


# --------------------------------------------------------------------------- report

def index_results(out_dir):
    """Rows from the Google Benchmark JSON files <out_dir>/index_bench*.json."""
    rows = []
    contexts = {}
    for path in sorted(glob.glob(os.path.join(out_dir, "index_bench*.json"))):
        try:
            with open(path) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            log(f"skipping {path}: {e}")
            continue
        contexts[os.path.basename(path)] = doc.get("context", {})
        for b in doc.get("benchmarks", []):
            parts = b["name"].split("/")
            if parts[0] not in ("Build", "BuildBatch", "Search", "SearchFiltered"):
                continue
            row = {"file": os.path.basename(path), "benchmark": parts[0], "index": parts[1],
                   "n": int(parts[2]), "real_time": b.get("real_time"),
                   "cpu_time": b.get("cpu_time"), "time_unit": b.get("time_unit"),
                   "iterations": b.get("iterations")}
            if "error_message" in b:
                row["error"] = b["error_message"]
            for key in ("recall_at_10", "ef_search", "ef_construction", "vectors_per_s",
                        "rss_mib_after", "allowed"):
                if key in b:
                    row[key] = b[key]
            rows.append(row)
    return rows, contexts


def fmt(x, digits=0):
    return "-" if x is None else f"{x:.{digits}f}"


def _span(values):
    """'50' when all calls agree, '13-50' when they differ, '-' when not recorded."""
    values = [v for v in (values or []) if v is not None]
    if not values:
        return "-"
    lo, hi = min(values), max(values)
    return f"{lo}" if lo == hi else f"{lo}-{hi}"


def _scored(series):
    return _span(series.get("calls_num_scored") or [series.get("num_scored")])


def _modes(series):
    """Modes of a series of calls: 'scored_all' or 'two_stage 2, scored_all 1'."""
    modes = [m for m in series.get("calls_mode") or [] if m]
    if not modes:
        return "-"
    counts = {}
    for m in modes:
        counts[m] = counts.get(m, 0) + 1
    if len(counts) == 1:
        return f"{modes[0]} ({len(modes)}/{len(modes)})"
    return ", ".join(f"{m} {n}" for m, n in counts.items())


def _first_call_value(e2e, key):
    for r in e2e.get("recommend", []):
        v = r.get("cold", {}).get(key)
        if v is not None:
            return v
    return None


def _metric_of(e2e):
    return _first_call_value(e2e, "metric") or "(not recorded)"


def _budget_of(e2e):
    b = _first_call_value(e2e, "latency_budget_ms")
    return fmt(b) if b is not None else "?"


def _baseline_section(b, e2e):
    """Markdown for script_baseline.json next to the server's brute force at the same size."""
    md = ["### Plain-script baseline (no modeldock)", "",
          f"`script_baseline.py`: {b.get('description', '')}", "",
          f"Run {b.get('started')} .. {b.get('finished')}; {b['num_models']} models, "
          f"{b['samples']} samples, {b['reps']} queries, torch threads {b.get('torch_threads')}, "
          f"`nice -n {b.get('nice')}`; load average before {b.get('load_average_before')}, after "
          f"{b.get('load_average_after')}.", "",
          "| per query | median s | p95 s | min s | max s |", "|---|---|---|---|---|"]
    for key, label in (("total_s", "total (load + embed + PCA + metrics + fusion)"),
                       ("load_s", "loading the models (torch.jit.load)"),
                       ("embed_s", "running embed"), ("metrics_s", "PCA + LogME + shrinkage H"),
                       ("cpu_s", "CPU time of the process (user + system, all threads)")):
        v = b["summary"].get(key)
        if v:
            md.append(f"| {label} | {v['median']:.2f} | {v['p95']:.2f} | {v['min']:.2f} | "
                      f"{v['max']:.2f} |")
    no_load = [q["total_s"] - q["load_s"] for q in b.get("queries", [])]
    if no_load:
        v = summary(no_load)
        md.append(f"| total without loading (models kept in memory, e.g. a notebook) | "
                  f"{v['median']:.2f} | {v['p95']:.2f} | {v['min']:.2f} | {v['max']:.2f} |")
    md.append("")
    check = b.get("server_check")
    if check:
        md += ["Same answer as the server's brute force (`check_baseline_ranking.py`, full "
               "rankings of all models on the first three query datasets): Kendall tau "
               + ", ".join(f"{c['kendall_tau']:.3f}" for c in check) + "; same top-1 in "
               f"{sum(c['same_top1'] for c in check)} of {len(check)}; top-5 overlap "
               + ", ".join(f"{c['top5_overlap']}/5" for c in check) + ".", ""]
    bf = next((r for r in (e2e or {}).get("brute_force", [])
               if r["zoo"] == b["num_models"] and r["samples"] == b["samples"]), None)
    if bf:
        med = b["summary"]["total_s"]["median"] * 1000
        rows = [("server brute force, cold (server total)", bf["cold"]["server_total_ms"]["median"]),
                ("server brute force, cold (CLI wall)", bf["cold"]["wall_ms"]["median"]),
                ("server brute force, warm (server total)", bf["warm"]["server_total_ms"]["median"]),
                ("server brute force, warm (CLI wall)", bf["warm"]["wall_ms"]["median"])]
        md += [f"Against the server's brute force at {bf['zoo']} models, {bf['samples']} samples "
               "(medians; ratio = script / server):", "",
               "| | median s | script / server |", "|---|---|---|",
               f"| plain script (cold, models loaded from disk) | {med / 1000:.2f} | 1 |"]
        if no_load:
            md.append(f"| plain script, models kept in memory | "
                      f"{statistics.median(no_load):.2f} | - |")
        for label, ms in rows:
            md.append(f"| {label} | {ms / 1000:.2f} | {med / ms:.1f}× |")
        md.append("")
    return md


def write_report(e2e, out_dir):
    idx_rows, idx_contexts = index_results(out_dir)
    results = {"index": {"rows": idx_rows, "contexts": idx_contexts}, "e2e": e2e}
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

    md = ["# Speed and memory results", "",
          "Produced by `bench/speed/index_bench` (Google Benchmark) and "
          "`bench/speed/run_speed.py`; see README.md to re-run. Raw data: results.json, "
          "index_bench*.json, e2e.json.", ""]
    m = (e2e or {}).get("machine") or machine_info()
    md += ["## Machine", "",
           f"- CPU: {m.get('Model name', '?')}, {m.get('CPU(s)', m.get('nproc'))} logical CPUs "
           f"({m.get('Thread(s) per core', '?')} thread(s) per core)",
           f"- RAM: {m.get('ram_gib', '?')} GiB", f"- OS: {m.get('platform', '?')}",
           "- Shared with other jobs while measured (see the load averages below); wall times "
           "include that contention, CPU times of the index benchmark do not.", ""]

    if idx_rows:
        md += ["## Stage-1 index (VectorIndex over Debian's FAISS 1.7.3)", ""]
        ctx = next(iter(idx_contexts.values()))
        md += [f"256-d L2-normalised vectors from a seeded mixture of 300 Gaussian clusters; "
               f"queries are fresh draws from the mixture; k = 10; one query per call; "
               f"HNSW efSearch = {ctx.get('hnsw_ef_search', '?')}, efConstruction = "
               f"{ctx.get('hnsw_ef_construction', '?')}. Recall@10 against the Flat index's exact "
               f"answer over 200 queries (filtered: against the exact answer within the allowed "
               f"set, 25% of the ids). OMP_NUM_THREADS={ctx.get('omp_num_threads', '?')}. Load "
               f"average (1, 5, 15 min) at the start of each run: "
               + "; ".join(f"{k}: {c.get('load_avg', '?')}" for k, c in idx_contexts.items())
               + ". CPU time is the process's (one thread), wall time includes waiting for the "
               "shared cores.", "",
               "| index | n | search µs CPU | search µs wall | recall@10 | filtered µs CPU "
               "| filtered µs wall | filtered recall@10 | build s CPU | build s wall | "
               "RSS after build MiB |", "|---|---|---|---|---|---|---|---|---|---|---|"]
        keyed = {(r["benchmark"], r["index"], r["n"]): r for r in idx_rows}
        pairs = sorted({(r["index"], r["n"]) for r in idx_rows},
                       key=lambda t: (t[1], t[0] != "Flat", t[0]))
        for index, n in pairs:
            s = keyed.get(("Search", index, n), {})
            sf = keyed.get(("SearchFiltered", index, n), {})
            b = keyed.get(("Build", index, n), {})
            batch_only = not b and ("BuildBatch", index, n) in keyed
            if batch_only:
                b = keyed[("BuildBatch", index, n)]
            md.append(
                f"| {index} | {n:,} | {fmt(s.get('cpu_time'), 0)} | {fmt(s.get('real_time'), 0)} "
                f"| {fmt(s.get('recall_at_10'), 4)} | {fmt(sf.get('cpu_time'), 0)} | "
                f"{fmt(sf.get('real_time'), 0)} | {fmt(sf.get('recall_at_10'), 4)} | "
                f"{fmt(b.get('cpu_time'), 1)}{' †' if batch_only else ''} | "
                f"{fmt(b.get('real_time'), 1)}{' †' if batch_only else ''} | "
                f"{fmt(b.get('rss_mib_after'), 0)} |")
        if any(("Build", i, n) not in keyed and ("BuildBatch", i, n) in keyed for i, n in pairs):
            md += ["", "† one `UpsertBatch` of all n vectors (`BuildBatch`; the one-`Upsert`-per-"
                   "vector build was not run at this size); Search/SearchFiltered then measure "
                   "the batch-built index. Its CPU time is the whole process's."]
        errors = [r for r in idx_rows if "error" in r]
        for r in errors:
            md.append(f"\n- {r['benchmark']}/{r['index']}/{r['n']}: not measured: {r['error']}")
        md.append("")

    if e2e:
        md += ["## End to end (server + CLI)", "",
               f"Run {e2e['started']} .. {e2e.get('finished', '?')}; server and CLI under "
               f"`nice -n {e2e['nice']}`, server environment "
               f"{e2e.get('server_env') or '(default)'}, server flags "
               f"{' '.join(e2e.get('server_args') or []) or '(defaults)'}; load average before "
               f"{e2e['load_average_before']}, after {e2e.get('load_average_after')}. Each "
               f"recommend figure: {e2e['reps']} calls; at each zoo size the "
               f"{'brute-force calls ran before the default ones' if e2e.get('bf_first') else 'default calls ran first, then brute force'}. "
               f"*Cold*: every call on a different dataset (no cached model outputs); *warm*: the "
               f"same dataset again (all stage-2 model outputs from the output cache). *Wall*: "
               f"the CLI process from start to exit (reads the IDX file, uploads, waits); "
               f"*server*: the server's total_millis. *Default*: no --candidates, no "
               f"--brute-force: metric {_metric_of(e2e)}, and the latency budget "
               f"({_budget_of(e2e)} ms) decides per call between scoring every compatible model "
               f"(`scored_all`) and the stage-1 candidates that fit (`two_stage`); the *mode* "
               f"column counts the calls in each mode.", ""]
        regs = e2e["registrations"]
        origins = {}
        for r in regs:
            origins[r["origin"]] = origins.get(r["origin"], 0) + 1
        origin_text = ", ".join(f"{n} {o}" for o, n in origins.items()) or "-"
        md += ["### Registration", "",
               f"{len(regs)} models ({origin_text}). `register` waits "
               "until READY (upload, admission checks, probing on the probe set, "
               "index update). " + (
                   "Distinct copies are the zoo's files re-saved with an extra file naming them: "
                   "the same models, different bytes, so no output is shared between them."
                   if e2e.get("distinct_copies") else
                   "Copies are the same files under new names: the dock stores their bytes once "
                   "but probes every name, and once one copy has run on a dataset the others' "
                   "outputs come from the output cache (keyed by file SHA-256): the *cached* "
                   "counts below."), "",
               "| architecture | models | probe ms median | probe ms max | register wall ms "
               "median | register wall ms max | server CPU ms median |",
               "|---|---|---|---|---|---|---|"]
        archs = sorted({r["arch"] for r in regs})
        for a in archs + ["all"]:
            sel = [r for r in regs if a == "all" or r["arch"] == a]
            p = summary([r["probe_millis"] for r in sel])
            w = summary([r["register_wall_ms"] for r in sel])
            c = summary([r.get("register_server_cpu_ms", 0) for r in sel])
            md.append(f"| {a} | {len(sel)} | {fmt(p['median'])} | {fmt(p['max'])} | "
                      f"{fmt(w['median'])} | {fmt(w['max'])} | {fmt(c['median'])} |")
        md.append("")

        md += ["### Recommend latency (default: budget-decided mode, fusion)", "",
               "| models | samples | cold mode | cold scored / compatible (cached) | cold wall "
               "median | cold wall p95 | cold server median | cold server p95 | cold server CPU "
               "median | warm mode | warm scored (cached) | warm wall median | warm wall p95 | "
               "warm server median | warm server CPU median |",
               "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in e2e["recommend"]:
            c, w = r["cold"], r["warm"]
            md.append(f"| {r['zoo']} | {r['samples']} | {_modes(c)} | "
                      f"{_scored(c)} / {c['num_compatible']} ({_span(c.get('calls_num_cached'))}) "
                      f"| {fmt(c['wall_ms']['median'])} | {fmt(c['wall_ms']['p95'])} | "
                      f"{fmt(c['server_total_ms']['median'])} | {fmt(c['server_total_ms']['p95'])} "
                      f"| {fmt(c.get('server_cpu_ms', {}).get('median'))} | {_modes(w)} | "
                      f"{_scored(w)} ({_span(w.get('calls_num_cached'))}) | "
                      f"{fmt(w['wall_ms']['median'])} | {fmt(w['wall_ms']['p95'])} | "
                      f"{fmt(w['server_total_ms']['median'])} | "
                      f"{fmt(w.get('server_cpu_ms', {}).get('median'))} |")
        md += ["", "(all in ms; server CPU = user + system time of the server process during "
               "the call, all threads, 10 ms resolution; scored = models stage 2 scored, "
               "cached = of those, served from the output cache; a range when calls differed)"]
        reasons = [(r["zoo"], r["samples"], kind, r[kind].get("calls_mode_reason") or [])
                   for r in e2e["recommend"] for kind in ("cold", "warm")]
        reasons = [(z, n, k, rs[0]) for z, n, k, rs in reasons if rs and rs[0]]
        if reasons:
            md += ["", "Mode reasons (first call of each series, as the server gave them):", ""]
            md += [f"- {z} models, {n} samples, {k}: {reason}" for z, n, k, reason in reasons]
        md.append("")
        md += ["Server-side stage split, cold calls (medians, ms):", "",
               "| models | samples | encode query | stage 1 | stage 2 | total |",
               "|---|---|---|---|---|---|"]
        for r in e2e["recommend"] + e2e["brute_force"]:
            c = r["cold"]
            label = " (brute force)" if r in e2e["brute_force"] else ""
            md.append(f"| {r['zoo']} | {r['samples']}{label} | "
                      f"{fmt(c['encode_query_ms']['median'], 1)} "
                      f"| {fmt(c['stage1_ms']['median'], 2)} | {fmt(c['stage2_ms']['median'])} | "
                      f"{fmt(c['server_total_ms']['median'])} |")
        md.append("")

        md += [f"### Brute force ({e2e['bf_samples']} samples)", "",
               "| models | cold scored (cached) | cold wall median | cold wall p95 | cold server "
               "median | cold server p95 | cold server CPU median | warm wall median | warm wall "
               "p95 | warm server median |", "|---|---|---|---|---|---|---|---|---|---|"]
        for bf in e2e["brute_force"]:
            c, w = bf["cold"], bf["warm"]
            md.append(f"| {bf['zoo']} | {_scored(c)} ({_span(c.get('calls_num_cached'))}) | "
                      f"{fmt(c['wall_ms']['median'])} | {fmt(c['wall_ms']['p95'])} | "
                      f"{fmt(c['server_total_ms']['median'])} | {fmt(c['server_total_ms']['p95'])} "
                      f"| {fmt(c.get('server_cpu_ms', {}).get('median'))} | "
                      f"{fmt(w['wall_ms']['median'])} | {fmt(w['wall_ms']['p95'])} | "
                      f"{fmt(w['server_total_ms']['median'])} |")
        md.append("")
        md += [f"Brute force vs default ({e2e['bf_samples']} samples, server total_millis "
               "medians in ms; ratio = brute force / default):", "",
               "| models | default cold mode | scored (default / brute) | default cold ms | "
               "brute cold ms | ratio cold | ratio cold, server CPU | default warm ms | brute "
               "warm ms | ratio warm |", "|---|---|---|---|---|---|---|---|---|---|"]
        for bf in e2e["brute_force"]:
            ts = next((r for r in e2e["recommend"]
                       if r["zoo"] == bf["zoo"] and r["samples"] == bf["samples"]), None)
            if ts is None:
                continue
            tc, bc = ts["cold"]["server_total_ms"]["median"], bf["cold"]["server_total_ms"]["median"]
            tw, bw = ts["warm"]["server_total_ms"]["median"], bf["warm"]["server_total_ms"]["median"]
            tcpu = ts["cold"].get("server_cpu_ms", {}).get("median")
            bcpu = bf["cold"].get("server_cpu_ms", {}).get("median")
            md.append(f"| {bf['zoo']} | {_modes(ts['cold'])} | {_scored(ts['cold'])} / "
                      f"{_scored(bf['cold'])} | {fmt(tc)} | {fmt(bc)} | {fmt(bc / tc, 2)} | "
                      f"{fmt(bcpu / tcpu if tcpu else None, 2)} | {fmt(tw)} | {fmt(bw)} | "
                      f"{fmt(bw / tw if tw else None, 2)} |")
        md.append("")

        md += ["### Server memory", "", "| after | VmHWM (peak RSS) MiB | VmRSS MiB |",
               "|---|---|---|"]
        for m_ in e2e["memory"]:
            md.append(f"| {m_['phase']} | {fmt(m_.get('VmHWM'))} | {fmt(m_.get('VmRSS'))} |")
        md.append("")

    baseline = os.path.join(out_dir, "script_baseline.json")
    if os.path.exists(baseline):
        with open(baseline) as f:
            md += _baseline_section(json.load(f), e2e)

    # Hand-written reading of the figures (kept across re-runs).
    notes = os.path.join(HERE, "notes.md")
    if os.path.exists(notes):
        with open(notes) as f:
            md += ["", f.read().rstrip(), ""]

    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write("\n".join(md))
    log("wrote", os.path.join(out_dir, "results.md"))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    p.add_argument("--asset-dir", default=None, help="default: <build-dir>/assets")
    p.add_argument("--no-zoo", action="store_true", help="use the demo models even if the zoo exists")
    p.add_argument("--zoo-sizes", type=lambda s: [int(x) for x in s.split(",")],
                   default=[5, 10, 25, 50])
    p.add_argument("--query-sizes", type=lambda s: [int(x) for x in s.split(",")],
                   default=[100, 200, 500, 1000])
    p.add_argument("--bf-samples", type=int, default=200)
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--nice", type=int, default=10, help="niceness of server and CLI (0: none)")
    p.add_argument("--out-dir", default=HERE)
    p.add_argument("--server-env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for the server, e.g. OMP_WAIT_POLICY=PASSIVE")
    p.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                   help="extra server flag, e.g. --server-arg=--latency-budget-ms=2000 (default: "
                        "none, the server's defaults)")
    p.add_argument("--bf-first", action="store_true",
                   help="at every zoo size, run the brute-force calls before the default ones "
                        "(same datasets), to see what the order costs (first calls warm up)")
    p.add_argument("--distinct-copies", action="store_true",
                   help="make the copies beyond the zoo distinct files (re-saved with an extra "
                        "file), so the output cache cannot share outputs between copies")
    p.add_argument("--quick", action="store_true", help="5 and 10 models, 100 and 200 samples")
    p.add_argument("--keep", action="store_true", help="keep the temp data dir and server log")
    p.add_argument("--report-only", action="store_true",
                   help="rewrite results.md/results.json from e2e.json and index_bench*.json")
    args = p.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)
    e2e_path = os.path.join(args.out_dir, "e2e.json")
    if args.report_only:
        e2e = None
        if os.path.exists(e2e_path):
            with open(e2e_path) as f:
                e2e = json.load(f)
        write_report(e2e, args.out_dir)
        return
    if args.quick:
        args.zoo_sizes, args.query_sizes = [5, 10], [100, 200]
    if args.reps < 1 or args.bf_samples not in args.query_sizes:
        raise SystemExit("--reps must be >= 1 and --bf-samples one of --query-sizes")
    args.server_env = dict(kv.split("=", 1) for kv in args.server_env)
    e2e = run(args)
    with open(e2e_path, "w") as f:
        json.dump(e2e, f, indent=1)
    write_report(e2e, args.out_dir)


if __name__ == "__main__":
    main()
