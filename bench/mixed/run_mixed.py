#!/usr/bin/python3
"""A dock that mixes images, text and speech (issue 25, item 5), against single-kind docks.

    nice -n 10 /usr/bin/python3 bench/mixed/run_mixed.py [--build-dir build] \
        [--text-zoo bench/zoo_text/artifacts/zoo] [--audio-zoo bench/zoo_audio/artifacts/zoo] \
        [--grey-zoo DIR] [--reps 7] [--out-dir bench/mixed/results]

Starts three real modeldock-servers (build/server/modeldock-server, each on 127.0.0.1:0 with a
fresh data dir, as bench/quality/run_quality.py does):
  mixed  every image model (the demo models of BUILD/assets/demo and demo/colour, and the grey
         zoo of bench/zoo if --grey-zoo is given), every text-zoo model and every audio-zoo model
  text   the text zoo only
  audio  the audio zoo only
Models are registered with the `modeldock` CLI (--metadata sidecars, --no-wait) into all three at
once, and the script waits until every model is READY or FAILED. Then, with the servers otherwise
idle, for every text and audio task (train split) and the demo image queries it asks for a full
ranking (--top = models in the dock):
  stage1   --metric none, --reps times (the first answer is the ranking; the timings are medians)
  default  no options, once, with a cold output cache (stage 1 runs no model)
  brute    --brute-force (fusion, the default's metric), once: every model scored, so the
           ranking does not depend on which candidates the latency budget let in
The mixed and the single-kind dock are asked alternately, call by call. Text CSVs, the WAV
folder task and the image queries go through the CLI (--json); audio NPZ tasks through the
generated gRPC stubs of BUILD/python (the Python client's recommend() gives the total time only;
the raw response has every stage timing).

Checks (results.json, results.md):
  (a) every result list holds only models of the query's kind (by the sidecars' task), and
      num_compatible equals the number of READY models of that kind in the dock;
  (b) the mixed dock's ranking equals the single-kind dock's: same order of names, and the largest
      absolute difference of score, similarity, stage1_score and stage2_score per model;
  (c) stage-1 latency, mixed vs single (medians over --reps calls of the server's
      encode_query_millis, stage1_millis and total_millis, and the client's wall time), and stage
      1's work read from the server's /metrics (--metrics-listen): the proxy-cache lookups one
      stage-1 call makes (one per proxied model and stored tensor) and the index vectors held.
"""
import argparse
import datetime
import glob
import json
import os
import re
import shutil
import sys
import tempfile
import time
import urllib.request

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "bench", "quality"))
from run_quality import Server, cli  # noqa: E402

KIND_OF_TASK = {"image_classification": "image", "text_classification": "text",
                "audio_classification": "audio"}
METHODS = {"stage1": ["--metric", "none"], "default": [], "brute": ["--brute-force"]}


# --------------------------------------------------------------------------- models and queries

def sidecar_models(pt_paths):
    """[(name, kind, pt, sidecar)] for TorchScript files with a .json sidecar beside them."""
    out = []
    for pt in sorted(pt_paths):
        side = pt[:-3] + ".json"
        with open(side) as f:
            meta = json.load(f)
        out.append((meta["name"], KIND_OF_TASK[meta["task"]], pt, side))
    return out


def zoo_models(zoo):
    """The zoo's models (zoo.json, which the zoo scripts rewrite after every model: a zoo still
    being built gives the models finished so far). Without zoo.json: the sidecars present."""
    manifest = os.path.join(zoo, "zoo.json")
    if os.path.exists(manifest):
        with open(manifest) as f:
            names = [m["name"] for m in json.load(f)["models"]]
        return sidecar_models([os.path.join(zoo, "models", f"{n}.pt") for n in names])
    done = sorted(glob.glob(os.path.join(zoo, "models", "*.json")))
    print(f"warning: {manifest} missing (zoo not finished): the {len(done)} models built so far",
          flush=True)
    return sidecar_models([p[:-5] + ".pt" for p in done])


def zoo_queries(zoo, kind):
    with open(os.path.join(zoo, "tasks.json")) as f:
        tasks = json.load(f)["tasks"]
    out = []
    for t in tasks:
        if kind == "audio" and "train_dir" not in t:
            out.append({"name": t["name"], "kind": kind, "npz": os.path.join(zoo, t["train_file"])})
        else:
            path = t.get("train_dir") or t["train_file"]
            out.append({"name": t["name"], "kind": kind, "args": [os.path.join(zoo, path)]})
    return out


def demo_image_queries(asset_dir):
    q = os.path.join(asset_dir, "demo", "query_tops")
    return [{"name": "demo_tops_idx", "kind": "image",
             "args": [os.path.join(q, "query-images-idx3-ubyte"), "--labels",
                      os.path.join(q, "query-labels-idx1-ubyte")]},
            {"name": "demo_emoji_png", "kind": "image",
             "args": [os.path.join(asset_dir, "demo", "query_emoji")]}]


# --------------------------------------------------------------------------- a dock

class Dock:
    """One modeldock-server, the models registered into it and its /metrics endpoint."""

    def __init__(self, label, args, models, tmp):
        self.label, self.models = label, models
        self.kind_of = {name: kind for name, kind, _, _ in models}
        self.client_bin = os.path.join(args.build_dir, "client", "modeldock")
        log = os.path.join(tmp, f"{label}-server.log")
        self.log_path = log
        self.server = Server(os.path.join(args.build_dir, "server", "modeldock-server"),
                             args.asset_dir, os.path.join(tmp, f"{label}-data"), log,
                             ["--metrics-listen", "127.0.0.1:0",
                              "--probe-budget-s", str(args.probe_budget_s)])
        self.address = self.server.address
        self.metrics_url = None
        deadline = time.time() + 30
        while self.metrics_url is None and time.time() < deadline:
            with open(log) as f:
                m = re.search(r"metrics listening on (\S+)", f.read())
            if m:
                self.metrics_url = f"http://{m.group(1)}/metrics"
            else:
                time.sleep(0.2)
        self.stub = None
        self.state = {}

    def register_all(self):
        for name, _, pt, side in self.models:
            cli(self.client_bin, self.address, ["register", pt, "--metadata", side, "--no-wait"])

    def poll(self):
        """True when every model is READY or FAILED."""
        listing, _ = cli(self.client_bin, self.address, ["list"])
        self.state = {m["name"]: m for m in listing["models"]}
        return all(self.state.get(n, {}).get("state") in ("READY", "FAILED")
                   for n, _, _, _ in self.models)

    def ready_of_kind(self, kind):
        return sum(1 for n, k, _, _ in self.models
                   if k == kind and self.state.get(n, {}).get("state") == "READY")

    def metrics(self):
        """{name{labels}: value} of the server's Prometheus text."""
        with urllib.request.urlopen(self.metrics_url, timeout=30) as r:
            text = r.read().decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def recommend(self, query, method, build_dir):
        top = str(len(self.models))
        if "npz" in query:
            return self._recommend_npz(query["npz"], len(self.models), method, build_dir)
        return cli(self.client_bin, self.address,
                   ["recommend", *query["args"], "--top", top, *METHODS[method]])

    def _recommend_npz(self, path, top, method, build_dir):
        """An audio NPZ through the generated gRPC stubs; the response in the CLI's JSON layout."""
        sys.path.insert(0, os.path.join(build_dir, "python"))
        import grpc
        from modeldock.v1 import modeldock_pb2 as pb
        from modeldock.v1 import modeldock_pb2_grpc as pb_grpc
        if self.stub is None:
            self.stub = pb_grpc.ModelDockServiceStub(grpc.insecure_channel(self.address))
        z = np.load(path)
        clips = np.ascontiguousarray(z["samples"], dtype="<f4")
        header = pb.RecommendHeader(
            sample_shape=list(clips.shape[1:]), num_samples=clips.shape[0],
            encoding=pb.SAMPLE_ENCODING_FLOAT32, task=pb.TASK_KIND_AUDIO_CLASSIFICATION,
            class_names=[str(c) for c in z["class_labels"]], top_k=top,
            brute_force=method == "brute")
        header.labels.extend(int(v) for v in z["labels"])
        if method == "stage1":
            header.metric = pb.METRIC_NONE
        data = clips.tobytes()

        def messages():
            yield pb.RecommendRequest(header=header)
            for start in range(0, len(data), 1 << 20):
                yield pb.RecommendRequest(chunk=data[start:start + (1 << 20)])

        t0 = time.perf_counter()
        r = self.stub.Recommend(messages(), timeout=1800)
        wall = (time.perf_counter() - t0) * 1000.0
        t = r.timings
        return {"results": [{"rank": x.rank, "name": x.model.spec.name, "score": x.score,
                             "similarity": x.similarity, "stage1_rank": x.stage1_rank,
                             "stage1_score": x.stage1_score if x.HasField("stage1_score") else None,
                             "stage2_score": x.stage2_score, "scored": x.scored}
                            for x in r.results],
                "timings": {"receive_millis": t.receive_millis,
                            "encode_query_millis": t.encode_query_millis,
                            "stage1_millis": t.stage1_millis, "stage2_millis": t.stage2_millis,
                            "total_millis": t.total_millis},
                "num_scored": r.num_scored, "num_compatible": r.num_compatible,
                "num_cached": r.num_cached,
                "mode": pb.RecommendMode.Name(r.mode)[len("RECOMMEND_MODE_"):].lower(),
                "mode_reason": r.mode_reason, "warnings": list(r.warnings)}, wall

    def stop(self):
        self.server.stop()


def proxy_lookups(metrics):
    return sum(v for k, v in metrics.items()
               if k.startswith("modeldock_cache_requests_total") and 'cache="proxy"' in k)


def index_vectors(metrics):
    return metrics.get("modeldock_index_vectors")


# --------------------------------------------------------------------------- comparisons

FIELDS = ["score", "similarity", "stage1_score", "stage2_score"]


def compare(a, b):
    """Mixed response a against single-kind response b: same order, largest field differences."""
    ra = sorted(a["results"], key=lambda r: r["rank"])
    rb = sorted(b["results"], key=lambda r: r["rank"])
    names_a, names_b = [r["name"] for r in ra], [r["name"] for r in rb]
    by_b = {r["name"]: r for r in rb}
    diff = {}
    for f in FIELDS:
        d = [abs(r[f] - by_b[r["name"]][f]) for r in ra
             if r["name"] in by_b and r.get(f) is not None and by_b[r["name"]].get(f) is not None]
        diff[f] = max(d) if d else 0.0
    first = next((i + 1 for i, (x, y) in enumerate(zip(names_a, names_b)) if x != y), None)
    moved = [(n, i + 1, names_b.index(n) + 1) for i, n in enumerate(names_a)
             if n in names_b and names_b.index(n) != i]
    return {"same_order": names_a == names_b, "same_names": set(names_a) == set(names_b),
            "first_difference_rank": first, "moved": moved[:10], "max_abs_diff": diff,
            "mode": [a.get("mode"), b.get("mode")], "num_scored": [a.get("num_scored"),
                                                                  b.get("num_scored")],
            "mode_reason": [a.get("mode_reason"), b.get("mode_reason")]}


def kind_check(dock, query, resp):
    names = [r["name"] for r in resp["results"]]
    wrong = [n for n in names if dock.kind_of.get(n) != query["kind"]]
    expected = dock.ready_of_kind(query["kind"])
    return {"num_results": len(names), "other_kind": wrong,
            "num_compatible": resp.get("num_compatible"), "ready_of_kind": expected,
            "ok": not wrong and resp.get("num_compatible") == expected == len(names)}


def median_timings(calls):
    keys = ["encode_query_millis", "stage1_millis", "total_millis"]
    out = {k: float(np.median([c[0]["timings"][k] for c in calls])) for k in keys}
    out["wall_millis"] = float(np.median([c[1] for c in calls]))
    return out


# --------------------------------------------------------------------------- results

def _f(x, d=2):
    return "n/a" if x is None else f"{x:.{d}f}"


def write_results(out_dir, meta, info, records):
    os.makedirs(out_dir, exist_ok=True)
    slim = []
    for r in records:  # results.json: the summaries and each first answer's order, not raw calls
        orders = {l: {m: [x["name"] for x in sorted(c[m][0][0]["results"], key=lambda x: x["rank"])]
                      for m in METHODS} for l, c in r["calls"].items()}
        modes = {l: {m: [c[m][0][0].get("mode"), c[m][0][0].get("num_scored"),
                         c[m][0][0].get("mode_reason")] for m in ("default", "brute")}
                 for l, c in r["calls"].items()}
        slim.append({"query": r["query"], "kind": r["kind"], "docks": r["docks"],
                     "summary": r["summary"], "orders": orders, "modes": modes})
    pairs = [r for r in slim if "compare" in r["summary"]]
    ratios = [r["summary"]["timings"]["mixed"]["stage1_millis"] /
              r["summary"]["timings"][r["kind"]]["stage1_millis"] for r in pairs
              if r["summary"]["timings"][r["kind"]]["stage1_millis"] > 0]
    overall = {
        "kind_check_all_ok": all(k["ok"] for r in slim for d in r["summary"]["kind_check"].values()
                                 for k in d.values()),
        "same_order": {m: sum(r["summary"]["compare"][m]["same_order"] for r in pairs)
                       for m in METHODS},
        "num_compared": len(pairs),
        "max_abs_diff": {m: {f: max(r["summary"]["compare"][m]["max_abs_diff"][f] for r in pairs)
                             for f in FIELDS} for m in METHODS} if pairs else {},
        "median_stage1_ratio_mixed_over_single": float(np.median(ratios)) if ratios else None,
    }
    with open(os.path.join(out_dir, "results.json"), "w") as f:
        json.dump({"meta": meta, "docks": info, "overall": overall, "queries": slim}, f, indent=1)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(markdown(meta, info, overall, slim))
    print(markdown(meta, info, overall, slim))


def markdown(meta, info, overall, slim):
    L = [f"# A mixed dock (images, text, speech) against single-kind docks", "",
         f"bench/mixed/run_mixed.py on {meta['date_utc']} UTC (HEAD {meta['git_commit']}), "
         f"{meta['reps']} stage-1 calls per query and dock, servers' --probe-budget-s "
         f"{meta.get('probe_budget_s')}; load average at the end "
         f"{', '.join(f'{x:.1f}' for x in meta['loadavg'])}.", "",
         "| dock | models | registration + probing wall s (all three at once) | failed "
         "| index vectors | peak RSS MiB |", "|---|---|---|---|---|---|"]
    for label, d in info.items():
        L.append(f"| {label} | {d['models']} | {d['registration_wall_s']} | "
                 f"{len(d['failed']) or 'none'} | {_f(d['index_vectors'], 0)} | "
                 f"{_f((d['peak_rss_kib'] or 0) / 1024, 0)} |")
    L += ["", f"**(a) Kind.** Every result list holds only models of the query's kind, and "
          f"num_compatible = READY models of that kind = results: "
          f"**{'yes' if overall['kind_check_all_ok'] else 'NO'}** (every query, dock and method).",
          "", f"**(b) Mixed vs single-kind ranking** ({overall['num_compared']} text and audio "
          "queries): same order of all models, and the largest absolute difference of a field "
          "over every model and query:", "",
          "| method | same order | score | similarity | stage1_score | stage2_score |",
          "|---|---|---|---|---|---|"]
    for m in METHODS:
        d = overall["max_abs_diff"].get(m, {})
        L.append(f"| {m} | {overall['same_order'][m]} of {overall['num_compared']} | " +
                 " | ".join(f"{d.get(f, 0):.2g}" for f in FIELDS) + " |")
    L += ["", "Per query (order equal? mode and models scored, mixed / single):", "",
          "| query | stage1 | default | default mode (mixed / single) | brute |",
          "|---|---|---|---|---|"]
    for r in slim:
        if "compare" not in r["summary"]:
            continue
        c = r["summary"]["compare"]

        def same(m):
            x = c[m]
            return "same" if x["same_order"] else f"differs from rank {x['first_difference_rank']}"
        L.append(f"| {r['query']} | {same('stage1')} | {same('default')} | "
                 f"{c['default']['mode'][0]} {c['default']['num_scored'][0]} / "
                 f"{c['default']['mode'][1]} {c['default']['num_scored'][1]} | {same('brute')} |")
    L += ["", "**(c) Stage-1 latency** (medians over the stage-1 calls; server-side "
          "`encode_query_millis` = decoding done, compatible models listed, query embedded by its "
          "space's E and encoded; `stage1_millis` = FAISS search of the spaces holding compatible "
          "models + probe proxies of those models; wall = the client's call; proxy lookups = "
          "proxy-cache lookups of one stage-1 call, from /metrics):", "",
          "| query | kind | stage1 ms mixed / single | encode ms mixed / single | total ms mixed / "
          "single | wall ms mixed / single | proxy lookups mixed / single |",
          "|---|---|---|---|---|---|---|"]
    for r in slim:
        t = r["summary"]["timings"]
        single = r["kind"] if r["kind"] in t else None
        pl = r["summary"]["proxy_lookups"]

        def pair(key, d=2):
            return _f(t["mixed"][key], d) + (f" / {_f(t[single][key], d)}" if single else "")
        look = f"{pl['mixed'][-1]:.0f}" + (f" / {pl[single][-1]:.0f}" if single else "")
        L.append(f"| {r['query']} | {r['kind']} | {pair('stage1_millis')} | "
                 f"{pair('encode_query_millis', 1)} | {pair('total_millis', 1)} | "
                 f"{pair('wall_millis', 0)} | {look} |")
    L += ["", f"Median over the text and audio queries of stage1_millis(mixed) / "
          f"stage1_millis(single): {_f(overall['median_stage1_ratio_mixed_over_single'])}."]
    return "\n".join(L) + "\n"


# --------------------------------------------------------------------------- the run

def start_docks(args, tmp):
    image = sidecar_models(glob.glob(os.path.join(args.asset_dir, "demo", "*.pt")) +
                           glob.glob(os.path.join(args.asset_dir, "demo", "colour", "*.pt")))
    if args.grey_zoo:
        image += zoo_models(args.grey_zoo)
    text, audio = zoo_models(args.text_zoo), zoo_models(args.audio_zoo)
    plan = {"mixed": image + text + audio, "text": text, "audio": audio}
    docks = {}
    try:
        for label, models in plan.items():
            docks[label] = Dock(label, args, models, tmp)
            print(f"{label}: server {docks[label].address}, {len(models)} models", flush=True)
        t0 = time.time()
        for d in docks.values():  # registered into all three at once: probing overlaps
            d.register_all()
        wall = {}
        while len(wall) < len(docks):
            for label, d in docks.items():
                if label not in wall and d.poll():
                    wall[label] = round(time.time() - t0, 1)
                    print(f"{label}: all probed after {wall[label]} s", flush=True)
            if time.time() - t0 > args.register_timeout:
                raise RuntimeError("models still not probed")
            time.sleep(3)
    except BaseException:
        for d in docks.values():
            d.stop()
        raise
    return docks, wall


def ask(dock, query, method, args):
    before = dock.metrics()
    resp, wall = dock.recommend(query, method, args.build_dir)
    after = dock.metrics()
    return resp, wall, proxy_lookups(after) - proxy_lookups(before)


def run_query(docks, query, args):
    """Every call for one query; returns its record."""
    labels = ["mixed"] + ([query["kind"]] if query["kind"] in docks else [])
    rec = {"query": query["name"], "kind": query["kind"], "docks": labels, "calls": {}}
    for label in labels:
        rec["calls"][label] = {"stage1": [], "default": [], "brute": []}
    for rep in range(args.reps):  # alternate which dock goes first
        for label in (labels if rep % 2 == 0 else labels[::-1]):
            rec["calls"][label]["stage1"].append(ask(docks[label], query, "stage1", args))
    for method in ("default", "brute"):
        for label in labels:
            rec["calls"][label][method].append(ask(docks[label], query, method, args))
    summary = {"kind_check": {}, "stage1_stable": {}, "timings": {}, "proxy_lookups": {}}
    for label in labels:
        calls = rec["calls"][label]
        summary["kind_check"][label] = {m: kind_check(docks[label], query, calls[m][0][0])
                                        for m in METHODS}
        orders = [[r["name"] for r in sorted(c[0]["results"], key=lambda r: r["rank"])]
                  for c in calls["stage1"]]
        summary["stage1_stable"][label] = all(o == orders[0] for o in orders)
        summary["timings"][label] = median_timings(calls["stage1"])
        summary["proxy_lookups"][label] = [c[2] for c in calls["stage1"]]
        summary["timings"][label]["default_total_millis"] = \
            calls["default"][0][0]["timings"]["total_millis"]
    if len(labels) == 2:
        summary["compare"] = {m: compare(rec["calls"]["mixed"][m][0][0],
                                         rec["calls"][labels[1]][m][0][0]) for m in METHODS}
    rec["summary"] = summary
    s1 = summary["timings"]
    print(f"  {query['name']:22s} " + "  ".join(
        f"{l}: stage1 {s1[l]['stage1_millis']:.2f} ms, encode {s1[l]['encode_query_millis']:.1f} ms"
        for l in labels) + ("  same order " + str({m: c["same_order"] for m, c in
                                                    summary["compare"].items()})
                            if "compare" in summary else ""), flush=True)
    return rec


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default=os.path.join(REPO, "build"))
    ap.add_argument("--asset-dir", default=None, help="default BUILD_DIR/assets")
    ap.add_argument("--text-zoo", default=os.path.join(REPO, "bench/zoo_text/artifacts/zoo"))
    ap.add_argument("--audio-zoo", default=os.path.join(REPO, "bench/zoo_audio/artifacts/zoo"))
    ap.add_argument("--grey-zoo", default=None, help="a bench/zoo build (image models, 1x28x28)")
    ap.add_argument("--probe-budget-s", type=float, default=600,
                    help="the servers' probing budget per model (theirs is 60 s: under load it "
                         "cuts slow models' probe sets at a load-dependent prefix)")
    ap.add_argument("--reps", type=int, default=7, help="stage-1 calls per query and dock")
    ap.add_argument("--only", default=None, help="comma-separated query names (a quick check)")
    ap.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    ap.add_argument("--raw", default=os.path.join(HERE, "artifacts", "responses.json"))
    ap.add_argument("--register-timeout", type=float, default=3600)
    ap.add_argument("--from-raw", default=None,
                    help="rewrite results.json and results.md from a saved --raw file")
    args = ap.parse_args()
    if args.from_raw:
        with open(args.from_raw) as f:
            raw = json.load(f)
        for r in raw["records"]:  # raws written before the CLI's mode names were used
            for calls in r["calls"].values():
                for c in calls["default"] + calls["brute"]:
                    m = c[0].get("mode") or ""
                    if m.startswith("RECOMMEND_MODE_"):
                        c[0]["mode"] = m[len("RECOMMEND_MODE_"):].lower()
            for cmp in r["summary"].get("compare", {}).values():
                cmp["mode"] = [m[len("RECOMMEND_MODE_"):].lower()
                               if m and m.startswith("RECOMMEND_MODE_") else m for m in cmp["mode"]]
        write_results(args.out_dir, raw["meta"], raw["docks"], raw["records"])
        return
    args.build_dir = os.path.abspath(args.build_dir)
    args.asset_dir = os.path.abspath(args.asset_dir or os.path.join(args.build_dir, "assets"))
    queries = (zoo_queries(args.text_zoo, "text") + zoo_queries(args.audio_zoo, "audio") +
               demo_image_queries(args.asset_dir))
    if args.only:
        queries = [q for q in queries if q["name"] in args.only.split(",")]
    tmp = tempfile.mkdtemp(prefix="modeldock-mixed-")
    docks, reg_wall = start_docks(args, tmp)
    records = []
    try:
        for label, d in docks.items():
            failed = {n: m.get("state_reason") for n, m in d.state.items() if m["state"] == "FAILED"}
            print(f"{label}: failed {failed or 'none'}", flush=True)
        for q in queries:
            records.append(run_query(docks, q, args))
        info = {}
        for label, d in docks.items():
            kinds = {}
            for n, k, _, _ in d.models:
                kinds[k] = kinds.get(k, 0) + 1
            m = d.metrics()
            info[label] = {"models": kinds, "registration_wall_s": reg_wall[label],
                           "failed": {n: s.get("state_reason") for n, s in d.state.items()
                                      if s["state"] == "FAILED"},
                           "index_vectors": index_vectors(m), "peak_rss_kib": d.server.rss_kib(),
                           "probe_millis": {n: s.get("probe_millis") for n, s in d.state.items()},
                           "state_reason": {n: s.get("state_reason") for n, s in d.state.items()}}
    finally:
        for d in docks.values():
            d.stop()
        raw_dir = os.path.dirname(os.path.abspath(args.raw))
        os.makedirs(raw_dir, exist_ok=True)
        for label, d in docks.items():  # the server logs beside the raw responses
            shutil.copy(d.log_path, os.path.join(raw_dir, f"{label}-server.log"))
        shutil.rmtree(tmp, ignore_errors=True)
    meta = {"date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "git_commit": os.popen(f"git -C {REPO} rev-parse --short HEAD").read().strip(),
            "build_dir": args.build_dir, "reps": args.reps,
            "probe_budget_s": args.probe_budget_s, "grey_zoo": args.grey_zoo,
            "loadavg": os.getloadavg()}
    with open(args.raw, "w") as f:
        json.dump({"meta": meta, "docks": info, "records": records}, f)
    write_results(args.out_dir, meta, info, records)


if __name__ == "__main__":
    main()
