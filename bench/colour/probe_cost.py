#!/usr/bin/python3
"""Probing cost of real-size colour architectures through the real server (issue 23, item 3).

    /usr/bin/python3 bench/colour/probe_cost.py --build-dir build [--budget-s 60] [--only NAME]

Builds torchvision architectures (Debian's python3-torchvision; random, seeded weights: probing
cost does not depend on the weights) at their usual resolutions, wraps each in the model
contract (forward -> logits, embed -> penultimate features, normalisation inside), registers
them with a modeldock-server started on a fresh data dir (--probe-budget-s as given), and
records how long each probed, on how many probe samples (a prefix when the budget cut it), and
the time per sample. Then one recommendation of a colour query across all of them (cold, then
warm), whose timings show what the probing cost feeds into: the latency budget's estimates.
Writes bench/colour/probe_cost.{json,md}.
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402
from torch import nn  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "quality"))
from run_quality import Server, cli  # noqa: E402


class Contract(nn.Module):
    """forward(x in [0,1]) -> logits; embed(x) -> penultimate features; ImageNet normalisation."""

    def __init__(self, body, head):
        super().__init__()
        self.body = body
        self.head = head
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def forward(self, x):
        return self.head(self.embed(x))

    @torch.jit.export
    def embed(self, x):
        return torch.flatten(self.body((x - self.mean) / self.std), 1)


def headless(model, head_attr):
    """Splits a torchvision classifier into (body up to pooled features, its last Linear)."""
    head = getattr(model, head_attr)
    if isinstance(head, nn.Sequential):  # mobilenet: Dropout + Linear
        linear = [m for m in head if isinstance(m, nn.Linear)][-1]
    else:
        linear = head
    setattr(model, head_attr, nn.Identity())
    return model, linear


def architectures(num_classes):
    tv = torchvision.models
    return {
        # name: (constructor, head attribute, input side)
        "resnet18-224": (lambda: tv.resnet18(num_classes=num_classes), "fc", 224),
        "resnet50-224": (lambda: tv.resnet50(num_classes=num_classes), "fc", 224),
        "mobilenet_v2-224": (lambda: tv.mobilenet_v2(num_classes=num_classes), "classifier", 224),
        "vit_b_16-224": (lambda: tv.vit_b_16(num_classes=num_classes), "heads", 224),
        "resnet18-96": (lambda: tv.resnet18(num_classes=num_classes), "fc", 96),
        "resnet18-64": (lambda: tv.resnet18(num_classes=num_classes), "fc", 64),
        "resnet18-32": (lambda: tv.resnet18(num_classes=num_classes), "fc", 32),
        "mobilenet_v2-32": (lambda: tv.mobilenet_v2(num_classes=num_classes), "classifier", 32),
    }


def build_models(out_dir, only, num_classes=10):
    torch.manual_seed(0)
    made = []
    for name, (make, head_attr, side) in architectures(num_classes).items():
        if only and name not in only:
            continue
        model = make().eval()
        body, head = headless(model, head_attr)
        scripted = torch.jit.script(Contract(body, head).eval())
        path = os.path.join(out_dir, f"{name}.pt")
        scripted.save(path)
        sidecar = {"name": name, "input_shape": [3, side, side],
                   "class_labels": [f"class{i}" for i in range(num_classes)],
                   "description": f"torchvision {name.split('-')[0]}, random weights (cost only)",
                   "license": "BSD-3-Clause", "tags": ["bench", "probe-cost"]}
        with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
            json.dump(sidecar, f)
        made.append((name, side, os.path.getsize(path)))
    return made


def colour_query(out_dir, n_per_class=20, classes=4, side=32):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(n_per_class * classes, side, side, 3), dtype=np.uint8)
    y = np.repeat(np.arange(classes), n_per_class).astype(np.int64)
    for c in range(classes):  # a class colour, so the labels mean something
        x[y == c, :, :, c % 3] = np.clip(x[y == c, :, :, c % 3].astype(int) + 80, 0, 255)
    path = os.path.join(out_dir, "query.npz")
    np.savez(path, x=x, y=y)
    return path


def probed_rows(reason):
    m = re.search(r"probed on the first (\d+) of (\d+)", reason)
    if m:
        return int(m.group(1)), int(m.group(2))
    m = re.search(r"probed on (\d+) ", reason)
    return (int(m.group(1)), int(m.group(1))) if m else (None, None)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build-dir", default="build")
    ap.add_argument("--budget-s", type=float, default=60)
    ap.add_argument("--only", nargs="*", default=None)
    ap.add_argument("--out", default=os.path.join(HERE, "probe_cost"))
    args = ap.parse_args()
    torch.set_num_threads(2)
    server_bin = os.path.join(args.build_dir, "server", "modeldock-server")
    client_bin = os.path.join(args.build_dir, "client", "modeldock")
    work = tempfile.mkdtemp(prefix="modeldock-probe-cost-")
    models = build_models(work, args.only)
    server = Server(server_bin, os.path.join(args.build_dir, "assets"),
                    os.path.join(work, "data"), os.path.join(work, "server.log"),
                    ["--probe-budget-s", str(args.budget_s), "--probe-workers", "1",
                     # ViT-B/16's file is 343 MB, past the default 256 MB upload limit
                     "--max-model-mb", "1024"])
    rows = []
    try:
        for name, side, size in models:
            t0 = time.time()
            try:
                resp, _ = cli(client_bin, server.address,
                              ["register", os.path.join(work, f"{name}.pt"), "--metadata",
                               os.path.join(work, f"{name}.json")], timeout=1800)
            except RuntimeError as e:  # recorded as a row, the other models still run
                rows.append({"model": name, "input": f"3x{side}x{side}", "file_mb": size / 2**20,
                             "state": "FAILED", "probe_rows": None, "reason": str(e)[-300:]})
                print(json.dumps(rows[-1]), flush=True)
                continue
            wall = time.time() - t0
            model = resp.get("model", resp)
            done, total = probed_rows(model.get("state_reason", ""))
            rows.append({"model": name, "input": f"3x{side}x{side}", "file_mb": size / 2**20,
                         "state": model.get("state"), "probe_ms": model.get("probe_millis"),
                         "probe_rows": done, "probe_set_rows": total,
                         "ms_per_sample": (model.get("probe_millis") or 0) / done if done else None,
                         "register_wall_s": wall, "reason": model.get("state_reason")})
            print(json.dumps(rows[-1]), flush=True)
        query = colour_query(work)
        recs = []
        for label in ("cold", "warm"):
            resp, wall = cli(client_bin, server.address, ["recommend", query, "--top", "10"])
            recs.append({"call": label, "wall_ms": wall, "timings": resp.get("timings"),
                         "mode": resp.get("mode"), "mode_reason": resp.get("mode_reason"),
                         "num_scored": resp.get("num_scored")})
            print(json.dumps(recs[-1]), flush=True)
    finally:
        server.stop()
    result = {"budget_s": args.budget_s, "probing": rows, "recommend": recs,
              "cpu": open("/proc/cpuinfo").read().count("processor"),
              "torch_threads_per_worker": 1}
    with open(args.out + ".json", "w") as f:
        json.dump(result, f, indent=1)
    with open(args.out + ".md", "w") as f:
        f.write(f"Probing budget {args.budget_s:g} s, 2-core box, one worker thread per model "
                f"(the server's default); random weights; load average at the end "
                f"{os.getloadavg()[0]:.1f}.\n\n")
        f.write("| model | input | file MB | probe s | probe samples | ms/sample | state |\n")
        f.write("|---|---|---|---|---|---|---|\n")
        for r in rows:
            f.write(f"| {r['model']} | {r['input']} | {r['file_mb']:.1f} | "
                    f"{(r['probe_ms'] or 0) / 1000:.1f} | {r['probe_rows']} of "
                    f"{r['probe_set_rows']} | "
                    f"{r['ms_per_sample']:.1f} | {r['state']} |\n" if r["probe_rows"] else
                    f"| {r['model']} | {r['input']} | {r['file_mb']:.1f} | - | - | - | "
                    f"{r['state']}: {r['reason']} |\n")
        f.write("\n| recommend (80 colour 32x32 samples, all models) | wall ms | mode |\n"
                "|---|---|---|\n")
        for r in recs:
            f.write(f"| {r['call']} | {r['wall_ms']:.0f} | {r['mode']}: {r['mode_reason']} |\n")
    print(f"wrote {args.out}.json and .md")


if __name__ == "__main__":
    main()
