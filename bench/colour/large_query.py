#!/usr/bin/python3
"""A recommend on 5,000 colour 64x64 images through the real server (issue 23 item 5): memory
and time.

    /usr/bin/python3 bench/colour/large_query.py --build-dir build [--samples 5000]

The query is built from the demo's colour image folder (build/assets/demo/query_emoji: 4 emoji
categories, 30 PNG each, 32x32): each image upscaled to 64x64 and varied (flips, shifts,
brightness; seeded), 5,000 images in all with their real labels, saved as NumPy users keep
colour data: uint8 [N, 64, 64, 3], channel-last. A modeldock-server on a fresh data dir
registers every demo model (grey and colour), then the CLI sends the query twice, with the
default latency budget and with --brute-force. Recorded: wall time, the server's timings and
mode, and peak resident memory (VmHWM) of the server, of each model worker and of the CLI.
Writes bench/colour/large_query.{json,md}.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "quality"))
from run_quality import Server, cli  # noqa: E402


def build_query(folder, n, seed):
    classes = sorted(d for d in os.listdir(folder) if os.path.isdir(os.path.join(folder, d)))
    images, labels = [], []
    for c, name in enumerate(classes):
        for f in sorted(os.listdir(os.path.join(folder, name))):
            img = Image.open(os.path.join(folder, name, f)).convert("RGB").resize((64, 64),
                                                                                Image.BILINEAR)
            images.append(np.asarray(img))
            labels.append(c)
    rng = np.random.default_rng(seed)
    x = np.empty((n, 64, 64, 3), np.uint8)
    y = np.empty(n, np.int64)
    for i in range(n):
        j = rng.integers(len(images))
        a = images[j].astype(np.float32)
        if rng.random() < 0.5:
            a = a[:, ::-1]
        a = np.roll(a, tuple(rng.integers(-4, 5, size=2)), axis=(0, 1))
        a = np.clip(a * rng.uniform(0.8, 1.2), 0, 255)
        x[i] = a.astype(np.uint8)
        y[i] = labels[j]
    return x, y, classes


def peak_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def workers_of(pid):
    out = []
    for p in os.listdir("/proc"):
        if not p.isdigit():
            continue
        try:
            with open(f"/proc/{p}/status") as f:
                status = f.read()
        except OSError:
            continue
        if f"\nPPid:\t{pid}\n" in status and "modeldock-work" in status.split("\n", 1)[0]:
            out.append(int(p))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--samples", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=os.path.join(HERE, "large_query"))
    args = ap.parse_args()
    build = os.path.abspath(args.build_dir)
    assets = os.path.join(build, "assets")
    client = os.path.join(build, "client", "modeldock")
    tmp = tempfile.mkdtemp(prefix="modeldock-large-query-")
    x, y, classes = build_query(os.path.join(assets, "demo", "query_emoji"), args.samples,
                                args.seed)
    np.save(os.path.join(tmp, "x.npy"), x)
    np.save(os.path.join(tmp, "y.npy"), y)
    result = {"samples": args.samples, "shape": list(x.shape), "dtype": "uint8",
              "file_mb": round(os.path.getsize(os.path.join(tmp, "x.npy")) / 2**20, 1),
              "classes": classes, "calls": {}}
    server = Server(os.path.join(build, "server", "modeldock-server"), assets,
                    os.path.join(tmp, "data"), os.path.join(tmp, "server.log"))
    try:
        demo = os.path.join(assets, "demo")
        models = sorted([os.path.join(demo, f) for f in os.listdir(demo) if f.endswith(".pt")] +
                        [os.path.join(demo, "colour", f)
                         for f in os.listdir(os.path.join(demo, "colour")) if f.endswith(".pt")])
        for m in models:
            cli(client, server.address, ["register", m, "--metadata", m[:-3] + ".json"])
        result["models"] = [os.path.basename(m)[:-3] for m in models]
        result["server_peak_kib_after_registration"] = peak_kib(server.proc.pid)
        for name, extra in (("default", []), ("brute_force", ["--brute-force"])):
            before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            t0 = time.time()
            answer, wall = cli(client, server.address,
                               ["recommend", os.path.join(tmp, "x.npy"), "--labels",
                                os.path.join(tmp, "y.npy"), "--top", "3"])
            after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
            result["calls"][name] = {
                "wall_ms": round(wall), "timings": answer.get("timings"),
                "mode": answer.get("mode"), "mode_reason": answer.get("mode_reason"),
                "scored": answer.get("num_scored"),
                "top": [r["model"]["name"] if "model" in r else r.get("name")
                        for r in answer["results"]],
                "server_peak_kib": peak_kib(server.proc.pid),
                "worker_peak_kib": {w: peak_kib(w) for w in workers_of(server.proc.pid)},
                "cli_peak_kib_max_so_far": max(before, after),
                "seconds": round(time.time() - t0, 1)}
            print(name, json.dumps(result["calls"][name]), flush=True)
    finally:
        server.stop()
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    lines = [f"# A recommend on {args.samples} colour 64x64 images (bench/colour/large_query.py)", "",
             f"Query: uint8 {result['shape']} channel-last NPY ({result['file_mb']} MB), labels of "
             f"{len(classes)} classes; {len(result['models'])} demo models registered.", "",
             "| call | mode | scored | wall ms | server peak RSS MiB | worker peak RSS MiB | CLI peak RSS MiB |",
             "|---|---|---|---|---|---|---|"]
    for name, c in result["calls"].items():
        workers = [v for v in c["worker_peak_kib"].values() if v]
        lines.append(f"| {name} | {c['mode']} | {c['scored']} | {c['wall_ms']} | "
                     f"{c['server_peak_kib'] / 1024:.0f} | "
                     f"{max(workers) / 1024 if workers else float('nan'):.0f} | "
                     f"{c['cli_peak_kib_max_so_far'] / 1024:.0f} |")
    with open(args.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
