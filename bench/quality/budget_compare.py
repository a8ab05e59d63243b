#!/usr/bin/python3
"""Two budget_check.py runs side by side, per budget over their queries (BENCHMARKS 2r).

    /usr/bin/python3 bench/quality/budget_compare.py \
        bench/quality/budget/2r_single_rate/budget_check.json \
        bench/quality/budget/2r_fixed_rate/budget_check.json [--names A B]

Per budget B and run: the samples and models stage 2 scored on each query (cold call), the whole
call's time over B, stage 2's time over B and over its own estimate, the estimate of every model
on every sample over brute force's measured stage 2, the ranking against brute force (weighted
Kendall tau, mean and min) and against the ground truth (tau_w), the samples of the warm repeat;
then encoding + stage 1 and stage 2 milliseconds per query. Prints markdown.
"""
import argparse
import json
import statistics


def rows(run):
    out = {}
    for query, v in run["queries"].items():
        brute_ms = v["brute_force"]["cold"]["timings"]["stage2_millis"]
        for e in v["budgets"]:
            cold, t = e["cold"], e["cold"]["timings"]
            out[(query, e["budget_ms"])] = {
                "total": t["total_millis"], "stage2": t["stage2_millis"],
                "before": t["encode_query_millis"] + t["stage1_millis"],
                "est": cold.get("est_ms"), "est_all": cold.get("est_all_ms"),
                "samples": cold.get("num_samples_scored"), "models": cold.get("num_scored"),
                "bf": cold.get("bf_tau_w"), "gt": cold.get("gt_tau_w"), "brute_ms": brute_ms,
                "warm_samples": e["warm"].get("num_samples_scored")}
    return out


def span(values):
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs=2)
    ap.add_argument("--names", nargs=2, default=["single rate, stage 2 only",
                                                  "fixed + rate, whole call"])
    args = ap.parse_args()
    runs = []
    for path in args.runs:
        with open(path) as f:
            runs.append(rows(json.load(f)))
    budgets = sorted({b for _, b in runs[0]})
    print("| budget B | run | samples | models | total / B | stage 2 / B | stage 2 / estimate | "
          "estimate of all / brute force | vs brute force tau_w (min) | vs ground truth tau_w | "
          "warm samples |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for b in budgets:
        for name, run in zip(args.names, runs):
            r = [run[k] for k in sorted(run) if k[1] == b]
            print(f"| {b:.0f} | {name} | {' / '.join(str(x['samples']) for x in r)} | "
                  f"{' / '.join(str(x['models']) for x in r)} | {span([x['total'] / b for x in r])} | "
                  f"{span([x['stage2'] / b for x in r])} | "
                  f"{span([x['stage2'] / x['est'] for x in r if x['est']])} | "
                  f"{span([x['est_all'] / x['brute_ms'] for x in r if x['est_all']])} | "
                  f"{statistics.mean(x['bf'] for x in r):.3f} ({min(x['bf'] for x in r):.3f}) | "
                  f"{statistics.mean(x['gt'] for x in r):.3f} | "
                  f"{' / '.join(str(x['warm_samples']) for x in r)} |")
    print()
    print("| budget B | run | encoding + stage 1 ms | stage 2 ms |")
    print("|---|---|---|---|")
    for b in budgets:
        for name, run in zip(args.names, runs):
            r = [run[k] for k in sorted(run) if k[1] == b]
            print(f"| {b:.0f} | {name} | {' / '.join(str(round(x['before'])) for x in r)} | "
                  f"{' / '.join(str(round(x['stage2'])) for x in r)} |")


if __name__ == "__main__":
    main()
