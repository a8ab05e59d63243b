#!/usr/bin/python3
"""Fine-tune ground truth for zoo2h (bench/headless): zoo2's classifiers + the feature extractors.

    nice -n 15 /usr/bin/python3 bench/headless/finetune_headless.py            # full zoo2h
    nice -n 15 /usr/bin/python3 bench/headless/finetune_headless.py --smoke

The protocol is bench/zoo/finetune.py's, run by its own code (imported): a new nn.Linear(D, C)
head, all layers fine-tuned, Adam, backbone lr 1e-3 and 1e-4 with the head at 10x, 12 epochs,
batch 32, best = max over the two rates; plus a linear probe. finetune.py puts the head on
embed(x); an extractor has only forward(x), so each extractor is wrapped in a TorchScript
"fine-tuning view" (nets_h.AsEmbed: embed = forward = the extractor's forward, same parameters)
written to ZOO/ftview/models/, and finetune.run_pair runs on that. The head therefore sits on
forward(x), as the brief asks, and the protocol text and id stay finetune.py's.

Where each ground-truth value comes from:
- zoo2 classifiers: copied from bench/zoo2/results/ground_truth.json (same protocol id);
- autoencoder and contrastive extractors: fine-tuned here (cache ZOO/finetune.jsonl, resumable);
- headless copies: by definition of the protocol (head on the classifier's embed = on the
  copy's forward, same weights) their ground truth is their classifier's: copied. As a check,
  --verify fine-tunes each copy's view on one task under the classifier's own seed and reports
  the difference from the classifier's recorded accuracy (expected 0 up to CPU float
  nondeterminism).
One process, torch.set_num_threads(1); run it with nice.
"""
import argparse
import json
import os
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "bench", "zoo"))
sys.path.insert(0, HERE)
import finetune  # noqa: E402  (bench/zoo/finetune.py)
import nets_h  # noqa: E402

ZOO2_GT = os.path.join(REPO, "bench", "zoo2", "results", "ground_truth.json")


def write_view(zoo, view_dir, name, as_name=None):
    """ZOO/models/NAME.pt wrapped so that embed = forward; saved as VIEW_DIR/models/AS_NAME.pt."""
    os.makedirs(os.path.join(view_dir, "models"), exist_ok=True)
    tlink = os.path.join(view_dir, "tasks")
    if not os.path.lexists(tlink):
        os.symlink(os.path.realpath(os.path.join(zoo, "tasks")), tlink)
    path = os.path.join(view_dir, "models", f"{as_name or name}.pt")
    extractor = torch.jit.load(os.path.join(zoo, "models", f"{name}.pt"))
    torch.jit.script(nets_h.AsEmbed(extractor)).save(path)
    # Sanity: the view's embed is the extractor's forward.
    x = torch.rand(4, 1, 28, 28)
    view = torch.jit.load(path)
    extractor.eval(), view.eval()
    with torch.no_grad():
        assert torch.equal(view.embed(x), extractor(x)), name
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zoo", default=None, help="default bench/headless/artifacts/zoo2h[-smoke]")
    ap.add_argument("--out", default=None,
                    help="default bench/headless/results/ground_truth.json (smoke: ZOO/ground_truth.json)")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--verify", default="q_fm10_n20",
                    help="task on which each headless copy is re-fine-tuned as a check ('' = none)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    zoo = os.path.abspath(args.zoo or os.path.join(HERE, "artifacts", "zoo2h-smoke" if args.smoke else "zoo2h"))
    out = args.out or (os.path.join(zoo, "ground_truth.json") if args.smoke
                       else os.path.join(HERE, "results", "ground_truth.json"))
    with open(os.path.join(zoo, "zoo.json")) as f:
        zoo_meta = json.load(f)
    with open(os.path.join(zoo, "tasks.json")) as f:
        tasks = json.load(f)["tasks"]
    with open(ZOO2_GT) as f:
        gt2 = json.load(f)
    protocol = json.loads(json.dumps(finetune.PROTOCOL))
    pid = finetune.protocol_id(protocol)
    if gt2["protocol_id"] != pid:
        sys.exit(f"zoo2's ground truth has protocol {gt2['protocol_id']}, finetune.py {pid}")

    entries = zoo_meta["models"]
    names = [m["name"] for m in entries]
    classifiers = [m["name"] for m in entries if m["model_kind"] == "classifier"]
    headless = {m["name"]: m["headless_of"] for m in entries if m.get("family") == "headless"}
    trained = [m["name"] for m in entries
               if m["model_kind"] == "feature_extractor" and m["name"] not in headless]

    view_dir = os.path.join(zoo, "ftview")
    for name in trained:
        write_view(zoo, view_dir, name)
    jsonl = os.path.join(zoo, "finetune.jsonl")
    done = finetune.read_done(jsonl, pid)
    todo = [(view_dir, m, t, protocol) for t in tasks for m in trained if (m, t["name"]) not in done]
    print(f"{len(done)} pairs cached, {len(todo)} to run (1 process)", flush=True)
    t0 = time.time()
    with open(jsonl, "a") as f:
        for i, job in enumerate(todo, 1):
            r = finetune.run_pair(job)
            f.write(json.dumps(r) + "\n")
            f.flush()
            done[(r["model"], r["task"])] = r
            el = time.time() - t0
            print(f"[{i}/{len(todo)}] {r['model']} x {r['task']}: ft {r['finetune']} "
                  f"lp {r['linear_probe']:.3f} ({r['seconds']:.1f} s; elapsed {el / 60:.1f} min, "
                  f"eta {el / i * (len(todo) - i) / 60:.1f} min)", flush=True)
    wall = time.time() - t0

    # Classifiers and headless copies: zoo2's values.
    rows2 = {(m, t): r for t, rows in gt2["tasks"].items() for m, r in rows.items()}
    source = {}
    for t in tasks:
        for m in classifiers:
            done[(m, t["name"])] = rows2[(m, t["name"])]
            source[m] = "bench/zoo2/results/ground_truth.json"
        for h, cls in headless.items():
            done[(h, t["name"])] = rows2[(cls, t["name"])]
            source[h] = f"copied from its classifier {cls} (bench/zoo2/results/ground_truth.json)"
    for m in trained:
        source[m] = "fine-tuned by bench/headless/finetune_headless.py (bench/zoo/finetune.run_pair)"

    # Check: a headless copy's view, fine-tuned under its classifier's seeds, on one task.
    verify = {}
    vtask = next((t for t in tasks if t["name"] == args.verify), None)
    if vtask is not None:
        vdir = os.path.join(zoo, "ftview-verify")
        for h, cls in headless.items():
            write_view(zoo, vdir, h, as_name=cls)
            r = finetune.run_pair((vdir, cls, vtask, protocol))
            ref = rows2[(cls, vtask["name"])]
            verify[h] = {"classifier": cls, "task": vtask["name"], "copy_finetune": r["finetune"],
                         "classifier_finetune": ref["finetune"],
                         "copy_linear_probe": r["linear_probe"],
                         "classifier_linear_probe": ref["linear_probe"],
                         "max_abs_difference": max(
                             [abs(r["finetune"][k] - ref["finetune"][k]) for k in ref["finetune"]] +
                             [abs(r["linear_probe"] - ref["linear_probe"])])}
            print(f"verify {h} vs {cls} on {vtask['name']}: copy {r['finetune']} lp "
                  f"{r['linear_probe']} / classifier {ref['finetune']} lp {ref['linear_probe']}",
                  flush=True)

    cpu = sum(done[(m, t["name"])].get("seconds", 0) for m in trained for t in tasks
              if "seconds" in done[(m, t["name"])])
    meta = {"zoo": "zoo2h", "zoo_seed": zoo_meta["seed"], "smoke": zoo_meta.get("smoke", False),
            "num_pairs": len(names) * len(tasks),
            "num_pairs_finetuned_here": len(trained) * len(tasks),
            "pair_cpu_seconds_total_here": round(cpu, 1), "last_run_wall_seconds": round(wall, 1),
            "processes": 1,
            "extractors_note": ("feature extractors: the new head sits on forward(x) (fine-tuned "
                                "through a view whose embed is the extractor's forward); "
                                "otherwise the protocol above, unchanged"),
            "model_kind": {m["name"]: m["model_kind"] for m in entries},
            "headless_copies": headless, "value_source": source,
            "headless_verification": verify}
    finetune.write_ground_truth(out, zoo, names, tasks, done, protocol, meta)
    print(f"wrote {out}: {len(names)} models x {len(tasks)} tasks")


if __name__ == "__main__":
    main()
