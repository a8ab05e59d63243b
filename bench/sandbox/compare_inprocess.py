#!/usr/bin/python3
"""Recommend latency: models run in the server process (modeldock before issue 8) vs in
sandboxed modeldock-worker processes (now), through the real servers and CLI.

    /usr/bin/python3 bench/sandbox/compare_inprocess.py \
        --inproc-build /work/inproc/build --workers-build build [--models 50] \
        [--query-sizes 200,1000] [--reps 7]

--inproc-build is a build of commit e873ddd (the last in-process server), e.g.
    git worktree add /work/inproc e873ddd && cmake -S /work/inproc -B /work/inproc/build \
        -DMODELDOCK_BUILD_TESTS=OFF -DMODELDOCK_BUILD_BENCH=OFF && \
    cmake --build /work/inproc/build --target modeldock-server modeldock

Both servers run at once on fresh data directories, each with its default flags, and get the
same models (the first --models of the benchmark zoo, bench/speed's seeded order). Every
measured call is made on both, alternating which goes first, so that background load falls on
both alike. Per query size: --reps cold calls (each on a new seeded draw of Fashion-MNIST t10k,
so no output cache can serve it) and --reps warm calls (the first draw again: every model's
outputs come from the server's cache, so this measures the pipeline around the models).
Registration (upload + admission + probing, sequential) is timed per model on each server.

Writes bench/sandbox/results.json and results.md.
"""
import argparse
import datetime
import json
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "speed"))
import run_speed  # noqa: E402  (Server, Cli, QueryData, zoo_models, summary, machine_info)


def children_rss_mib(pid):
    """Summed VmRSS of the direct children of `pid` (the model workers), in MiB."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            if ppid != pid:
                continue
            with open(f"/proc/{entry}/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) / 1024.0
        except (OSError, ValueError, IndexError):
            continue
    return total


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--inproc-build", required=True)
    p.add_argument("--workers-build", default=os.path.join(run_speed.REPO, "build"))
    p.add_argument("--asset-dir", default=None, help="default: <workers-build>/assets")
    p.add_argument("--models", type=int, default=50)
    p.add_argument("--query-sizes", default="200,1000")
    p.add_argument("--reps", type=int, default=7)
    args = p.parse_args()
    builds = {"in-process": os.path.abspath(args.inproc_build),
              "workers": os.path.abspath(args.workers_build)}
    assets = os.path.abspath(args.asset_dir or os.path.join(builds["workers"], "assets"))
    sizes = [int(s) for s in args.query_sizes.split(",")]
    tmp = tempfile.mkdtemp(prefix="modeldock-sandbox-bench-")
    env = {"OMP_WAIT_POLICY": "PASSIVE"}
    servers, clis = {}, {}
    try:
        for name, build in builds.items():
            servers[name] = run_speed.Server(build, os.path.join(tmp, name + "-data"), assets,
                                             os.path.join(tmp, name + ".log"), nice=0, env=env)
            clis[name] = run_speed.Cli(build, servers[name].address, nice=0)
        order = list(builds)
        result = {"date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z",
                  "machine": run_speed.machine_info(), "models": args.models, "reps": args.reps,
                  "registration_s": {n: [] for n in order}, "recommend": {}}
        models = run_speed.zoo_models(assets, args.models)
        for i, (model, pt, sidecar, _) in enumerate(models):
            for name in (order if i % 2 == 0 else order[::-1]):
                out, wall = clis[name].run("register", pt, "--metadata", sidecar, "--name", model)
                if out["model"]["state"] != "READY":
                    raise RuntimeError(f"{name}: {model} ended {out['model']['state']}")
                result["registration_s"][name].append(wall)
        run_speed.log(f"registered {len(models)} models on both servers")
        data = run_speed.QueryData(tmp)
        for size in sizes:
            calls = {n: {"cold": [], "warm": []} for n in order}
            draws = [data.make(size, 1000 * size + r) for r in range(args.reps)]
            for kind in ("cold", "warm"):
                for r in range(args.reps):
                    images, labels = draws[r] if kind == "cold" else draws[0]
                    for name in (order if r % 2 == 0 else order[::-1]):
                        out, wall = clis[name].run("recommend", images, "--labels", labels)
                        calls[name][kind].append({
                            "wall_ms": wall * 1000, "server_ms": out["timings"]["total_millis"],
                            "stage2_ms": out["timings"]["stage2_millis"],
                            "mode": out.get("mode"), "num_scored": out["num_scored"],
                            "num_cached": out.get("num_cached"),
                            "top": out["results"][0]["name"]
                                   if out.get("results") else None})
            result["recommend"][size] = calls
            run_speed.log(f"{size} samples: done")
        result["memory_mib"] = {
            n: {"server_rss": servers[n].memory().get("VmRSS"),
                "server_peak": servers[n].memory().get("VmHWM"),
                "workers_rss": children_rss_mib(servers[n].pid)} for n in order}
    finally:
        for s in servers.values():
            s.stop()
    with open(os.path.join(HERE, "results.json"), "w") as f:
        json.dump(result, f, indent=1)
    write_report(result)


def med(values):
    return statistics.median(values) if values else float("nan")


def write_report(r):
    names = list(r["registration_s"])
    lines = [
        "# In-process vs sandboxed workers: recommend latency",
        "",
        f"Run {r['date']} by `bench/sandbox/compare_inprocess.py` on {r['machine'].get('Model name', '?')},"
        f" {r['machine'].get('nproc')} cores, {r['machine'].get('ram_gib')} GiB. {r['models']} models"
        " of the benchmark zoo registered in both servers (each with its default flags: in-process"
        " = 2 stage-2 threads x 2 torch threads in the server; workers = one worker per core x 1"
        " torch thread, 2 candidates at once). Calls alternate between the servers. Default"
        f" pipeline (fusion metric, 5 s latency budget). {r['reps']} calls per cell.",
        "",
        "| query | calls | in-process median (server / CLI wall) ms | workers median (server / CLI wall) ms | workers / in-process (server) |",
        "|---|---|---|---|---|",
    ]
    for size, calls in r["recommend"].items():
        for kind in ("cold", "warm"):
            a = calls[names[0]][kind]
            b = calls[names[1]][kind]
            sa, sb = med([c["server_ms"] for c in a]), med([c["server_ms"] for c in b])
            wa, wb = med([c["wall_ms"] for c in a]), med([c["wall_ms"] for c in b])
            lines.append(f"| {size} samples | {kind} | {sa:.0f} / {wa:.0f} | {sb:.0f} / {wb:.0f} |"
                         f" {sb / sa:.2f} |")
    lines += ["", "Registration (upload + admission + probing on 4,250 probe images), median per model:"
              + "".join(f" {n} {med(r['registration_s'][n]):.2f} s;" for n in names), "",
              "Memory after the run (MiB): " + "; ".join(
                  f"{n}: server RSS {m['server_rss']:.0f} (peak {m['server_peak']:.0f}), workers RSS"
                  f" {m['workers_rss']:.0f}" for n, m in r["memory_mib"].items()), ""]
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
