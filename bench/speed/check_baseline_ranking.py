#!/usr/bin/python3
"""Checks that script_baseline.py computes what the server's brute force computes.

    /usr/bin/python3 bench/speed/check_baseline_ranking.py [--build-dir bench/speed/artifacts/bin]

Registers the baseline's models (run_speed.py's seeded order) on a fresh server, asks for
`recommend --brute-force --top N` on the first three query datasets of script_baseline.json (same
seeds), and compares the two full rankings (Kendall tau, top-1, top-5 overlap). Not a timing:
writes the result into script_baseline.json ("server_check").
"""
import argparse
import json
import os
import shutil
import sys
import tempfile

from scipy import stats

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run_speed  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--build-dir", default=os.path.join(HERE, "artifacts", "bin"))
    p.add_argument("--baseline", default=os.path.join(HERE, "script_baseline.json"))
    args = p.parse_args()
    build = os.path.abspath(args.build_dir)
    with open(args.baseline) as f:
        base = json.load(f)
    n = base["num_models"]
    models = run_speed.zoo_models(os.path.join(build, "assets"), n)
    work = tempfile.mkdtemp(prefix="modeldock-check-")
    data = run_speed.QueryData(work)
    server = run_speed.Server(build, os.path.join(work, "data"), os.path.join(build, "assets"),
                              os.path.join(work, "server.log"), 10)
    cli = run_speed.Cli(build, server.address, 10)
    rows = []
    try:
        for name, pt, sidecar, _origin in models:
            cli.run("register", pt, "--metadata", sidecar, "--name", name)
        for q in base["queries"][:3]:
            images, labels = data.make(base["samples"], q["seed"])
            out, _ = cli.run("recommend", images, "--labels", labels, "--brute-force",
                             "--top", str(n))
            server_rank = [r["name"] for r in out["results"]]
            script_rank = [r["name"] for r in q["ranking"]]
            pos = {name: i for i, name in enumerate(server_rank)}
            tau = stats.kendalltau([pos[name] for name in script_rank],
                                   list(range(len(script_rank)))).statistic
            rows.append({"seed": q["seed"], "kendall_tau": float(tau),
                         "same_top1": server_rank[0] == script_rank[0],
                         "top5_overlap": len(set(server_rank[:5]) & set(script_rank[:5])),
                         "server_top5": server_rank[:5], "script_top5": script_rank[:5]})
            print(f"seed {q['seed']}: Kendall tau {tau:.3f}, same top-1 "
                  f"{rows[-1]['same_top1']}, top-5 overlap {rows[-1]['top5_overlap']}/5")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)
    base["server_check"] = rows
    with open(args.baseline, "w") as f:
        json.dump(base, f, indent=1)


if __name__ == "__main__":
    main()
