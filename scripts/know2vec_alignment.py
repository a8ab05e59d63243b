#!/usr/bin/python3
"""Know2Vec set encoders as a trainable alignment, exported as TorchScript for the dock.

    /usr/bin/python3 scripts/know2vec_alignment.py export --embedding-dim 64 --out FILE [--seed S]
    /usr/bin/python3 scripts/know2vec_alignment.py train --records FILE.jsonl --out FILE
    /usr/bin/python3 scripts/know2vec_alignment.py encode --module FILE --records FILE.jsonl
    /usr/bin/python3 scripts/know2vec_alignment.py selftest

The dock loads the file with `modeldock-server --knowledge-encoder FILE`
(encoder::LoadTorchScriptKnowledgeEncoder); the module contract - method signatures, the grid
tensor layout, the `dim` / `embedding_dim` attributes - is specified in encoder/alignment.h and
`pad_grid` below builds exactly the tensors the C++ loader builds.

Architecture (Shang et al., "Know2Vec", AAAI 2025; shared/METHODS.md, stage 1):
  model: each grid row i (the samples of cells (i, 0) .. (i, K-1), the class-i nodes in cell
         (i, i)) through a BiLSTM; the K row vectors through an LSTM; Linear -> dim; L2-normalised.
  query: the class prototypes through a BiLSTM; Linear -> dim; L2-normalised.
Inputs are L2-normalised per sample first, so the module does not depend on E's output scale.

Training (`train`): records are JSON lines
  {"task": str, "model": str, "accuracy": float,
   "query_prototypes": [[De floats] per class],
   "model_grid": {"nodes": [K][n_k][De], "boundary": [K][K][b_ij][De]}}
i.e. the model's KnowledgeGrid with each probe index replaced by its E-embedding row (boundary may
be [] when there are none; its diagonal is ignored). For each task the best-accuracy model is the
positive and the highest-scoring other model evaluated on the task the negative; loss =
mean over tasks of max(0, margin - s(q, pos) + s(q, neg)), margin 0.2, Adam.

Honest status: NO real training records exist yet (a later issue measures fine-tune outcomes and
writes them). `train` is exercised only by `selftest`, on synthetic records generated in this
script; an exported untrained module gives arbitrary (if deterministic) vectors and is meant
for tests and as a starting point - the dock's default remains the untrained kernel-mean encoder.
"""
import argparse
import json
import math
import os
import random
import sys
import tempfile

# TorchScript writes constants in Python set order (string hashing): a fixed hash seed makes the
# same weights give byte-identical files, so re-exporting does not change the knowledge space.
if os.environ.get("PYTHONHASHSEED") != "0":
    os.environ["PYTHONHASHSEED"] = "0"
    os.execv(sys.executable, [sys.executable] + sys.argv)

# OpenMP busy-waiting slows torch down badly on shared cores; set before torch loads libgomp.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import Tensor, nn  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

MARGIN = 0.2


class Know2VecAlignment(nn.Module):
    """Model and query set encoders into one dim-d space (see the module docstring)."""

    dim: int
    embedding_dim: int

    def __init__(self, embedding_dim: int, dim: int = 256, hidden: int = 128):
        super().__init__()
        self.dim = dim
        self.embedding_dim = embedding_dim
        self.row_lstm = nn.LSTM(embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.grid_lstm = nn.LSTM(2 * hidden, hidden, batch_first=True)
        self.model_out = nn.Linear(hidden, dim)
        self.query_lstm = nn.LSTM(embedding_dim, hidden, batch_first=True, bidirectional=True)
        self.query_out = nn.Linear(2 * hidden, dim)

    @torch.jit.export
    def encode_model(self, nodes: Tensor, node_mask: Tensor, boundary: Tensor,
                     boundary_mask: Tensor) -> Tensor:
        k = nodes.size(0)
        dn = nodes.size(1)
        db = boundary.size(2)
        de = nodes.size(2)
        s = max(dn, db)
        # The K x K grid of cells with s slots each; the diagonal cells hold the class nodes.
        cells = torch.zeros([k, k, s, de], dtype=nodes.dtype)
        mask = torch.zeros([k, k, s], dtype=nodes.dtype)
        cells[:, :, :db] = boundary
        mask[:, :, :db] = boundary_mask
        diag = torch.arange(k)
        cells[diag, diag] = torch.zeros([k, s, de], dtype=nodes.dtype)
        mask[diag, diag] = torch.zeros([k, s], dtype=nodes.dtype)
        cells[diag, diag, :dn] = nodes
        mask[diag, diag, :dn] = node_mask
        # Row i's samples in cell order, the valid ones moved to the front (stable).
        rows = F.normalize(cells.reshape(k, k * s, de), dim=-1)
        valid = mask.reshape(k, k * s) > 0
        slots = torch.arange(k * s).unsqueeze(0).expand(k, k * s)
        order = torch.argsort(torch.where(valid, slots, slots + k * s), dim=1)
        rows = torch.gather(rows, 1, order.unsqueeze(2).expand(k, k * s, de))
        lengths = valid.sum(1).clamp(min=1).to(torch.int64)
        packed = pack_padded_sequence(rows, lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.row_lstm(packed)
        row_vectors = torch.cat([h[-2], h[-1]], dim=1)  # [K, 2 hidden]
        _, (g, _) = self.grid_lstm(row_vectors.unsqueeze(0))
        return F.normalize(self.model_out(g[-1, 0]), dim=0)

    @torch.jit.export
    def encode_query(self, prototypes: Tensor) -> Tensor:
        x = F.normalize(prototypes, dim=-1).unsqueeze(0)
        _, (h, _) = self.query_lstm(x)
        return F.normalize(self.query_out(torch.cat([h[-2, 0], h[-1, 0]], dim=0)), dim=0)

    def forward(self, prototypes: Tensor) -> Tensor:
        return self.encode_query(prototypes)


def pad_grid(grid):
    """Ragged JSON grid -> (nodes, node_mask, boundary, boundary_mask), as the C++ loader pads."""
    nodes = grid["nodes"]
    boundary = grid.get("boundary") or []
    k = len(nodes)
    if k == 0:
        raise ValueError("the grid has no classes")
    if any(len(n) == 0 for n in nodes):
        raise ValueError("every class needs at least one node sample")
    if boundary and (len(boundary) != k or any(len(r) != k for r in boundary)):
        raise ValueError("boundary must be [] or K x K lists")
    de = len(nodes[0][0])
    dn = max(len(n) for n in nodes)
    db = max([1] + [len(boundary[i][j]) for i in range(len(boundary)) for j in range(k) if i != j])
    t_nodes = torch.zeros(k, dn, de)
    t_node_mask = torch.zeros(k, dn)
    t_boundary = torch.zeros(k, k, db, de)
    t_boundary_mask = torch.zeros(k, k, db)
    for i, samples in enumerate(nodes):
        t_nodes[i, :len(samples)] = torch.tensor(samples, dtype=torch.float32)
        t_node_mask[i, :len(samples)] = 1
    for i in range(len(boundary)):
        for j in range(k):
            if i != j and boundary[i][j]:
                n = len(boundary[i][j])
                t_boundary[i, j, :n] = torch.tensor(boundary[i][j], dtype=torch.float32)
                t_boundary_mask[i, j, :n] = 1
    return t_nodes, t_node_mask, t_boundary, t_boundary_mask


def read_records(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def save_scripted(module, out):
    module.eval()
    scripted = torch.jit.script(module)
    tmp = out + ".tmp"
    scripted.save(tmp)
    os.replace(tmp, out)


def train(records, out, epochs=200, lr=1e-3, seed=0, dim=256, hidden=128, log=print):
    """Hardest-negative triplet training; returns (module, per-epoch losses)."""
    torch.manual_seed(seed)
    models, tasks, accuracy = {}, {}, {}
    for r in records:
        models.setdefault(r["model"], pad_grid(r["model_grid"]))
        tasks.setdefault(r["task"], torch.tensor(r["query_prototypes"], dtype=torch.float32))
        accuracy.setdefault(r["task"], {})[r["model"]] = float(r["accuracy"])
    model_names = sorted(models)
    task_names = sorted(t for t in tasks if len(accuracy[t]) >= 2)
    if not task_names:
        raise ValueError("no task has records for two or more models")
    embedding_dim = next(iter(tasks.values())).shape[1]
    column = {m: i for i, m in enumerate(model_names)}
    positive, candidates = [], []
    for t in task_names:
        best = max(accuracy[t].values())
        positive.append(column[max(sorted(accuracy[t]), key=lambda m: accuracy[t][m])])
        # Negatives: models evaluated on t that did strictly worse than the best.
        mask = torch.zeros(len(model_names), dtype=torch.bool)
        for m, a in accuracy[t].items():
            mask[column[m]] = a < best
        candidates.append(mask)
    positive = torch.tensor(positive)
    candidates = torch.stack(candidates)  # [T, M]

    module = Know2VecAlignment(embedding_dim, dim=dim, hidden=hidden)
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    losses = []
    for epoch in range(epochs):
        module.train()
        m = torch.stack([module.encode_model(*models[name]) for name in model_names])
        q = torch.stack([module.encode_query(tasks[t]) for t in task_names])
        scores = q @ m.t()  # [T, M]
        pos = scores.gather(1, positive.unsqueeze(1)).squeeze(1)
        neg = scores.masked_fill(~candidates, -math.inf).max(dim=1).values
        loss = F.relu(MARGIN - pos + neg).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if epoch % 20 == 0 or epoch == epochs - 1:
            log(f"epoch {epoch}: loss {loss.item():.4f}")
    save_scripted(module, out)
    return module, losses


def make_synthetic_records(seed=1, embedding_dim=16, num_concepts=10, num_models=8, num_tasks=16):
    """Models know random subsets of concepts; accuracy on a task grows with the overlap."""
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    concepts = F.normalize(torch.randn(num_concepts, embedding_dim, generator=gen), dim=1)

    def noisy(c, scale=0.15):
        return (c + scale * torch.randn(embedding_dim, generator=gen)).tolist()

    grids, known = {}, {}
    for m in range(num_models):
        classes = rng.sample(range(num_concepts), rng.randint(2, 5))
        k = len(classes)
        nodes = [[noisy(concepts[c]) for _ in range(3)] for c in classes]
        boundary = [[[] if i == j else [noisy((concepts[a] + concepts[b]) / 2) for _ in range(2)]
                     for j, b in enumerate(classes)] for i, a in enumerate(classes)]
        for i in range(k):  # mirrored, as SelectGrid does
            for j in range(i):
                boundary[i][j] = boundary[j][i]
        grids[f"model{m}"] = {"nodes": nodes, "boundary": boundary}
        known[f"model{m}"] = set(classes)
    records = []
    for t in range(num_tasks):
        classes = rng.sample(range(num_concepts), rng.randint(2, 4))
        prototypes = [noisy(concepts[c], 0.05) for c in classes]
        for name, grid in grids.items():
            overlap = len(known[name] & set(classes)) / len(classes)
            records.append({"task": f"task{t}", "model": name, "query_prototypes": prototypes,
                            "model_grid": grid,
                            "accuracy": 0.5 + 0.4 * overlap + 0.01 * rng.random()})
    return records


def encode_records(module, records):
    out = []
    with torch.no_grad():
        for r in records:
            line = {}
            if "model_grid" in r:
                line["model_vector"] = module.encode_model(*pad_grid(r["model_grid"])).tolist()
            if "query_prototypes" in r:
                prototypes = torch.tensor(r["query_prototypes"], dtype=torch.float32)
                line["query_vector"] = module.encode_query(prototypes).tolist()
            out.append(line)
    return out


def selftest():
    """Trains on synthetic records; checks the loss falls and every positive ranks first."""
    records = make_synthetic_records()
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "records.jsonl")
        with open(path, "w") as f:
            for r in records:
                f.write(json.dumps(r) + "\n")
        out = os.path.join(tmp, "alignment.pt")
        _, losses = train(read_records(path), out, epochs=150, lr=3e-3, dim=32, hidden=32)
        scripted = torch.jit.load(out)  # check the saved TorchScript, not the Python module
        models = sorted({r["model"] for r in records})
        vectors = {r["model"]: v["model_vector"]
                   for r, v in zip(records, encode_records(scripted, records))}
        m = torch.tensor([vectors[name] for name in models])
        ranked_first, tasks = 0, sorted({r["task"] for r in records})
        for t in tasks:
            rows = [r for r in records if r["task"] == t]
            best = max(rows, key=lambda r: r["accuracy"])["model"]
            q = torch.tensor(encode_records(scripted, rows[:1])[0]["query_vector"])
            top = models[int(torch.argmax(m @ q))]
            ranked_first += top == best
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"selftest: loss {first:.4f} -> {last:.4f}; positive ranked first on "
          f"{ranked_first}/{len(tasks)} training tasks")
    ok = last < 0.5 * first and ranked_first == len(tasks)
    print("selftest:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


def main():
    torch.set_num_threads(1)
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("export", help="write an untrained module")
    p.add_argument("--embedding-dim", type=int, required=True, help="width of E's embeddings")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--hidden", type=int, default=128)
    p = sub.add_parser("train", help="train from fine-tune records (JSON lines)")
    p.add_argument("--records", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dim", type=int, default=256)
    p.add_argument("--hidden", type=int, default=128)
    p = sub.add_parser("encode", help="print each record's model/query vector (JSON lines)")
    p.add_argument("--module", required=True)
    p.add_argument("--records", required=True)
    sub.add_parser("selftest", help="train on synthetic records and check the ranking")
    args = parser.parse_args()

    if args.command == "export":
        if args.embedding_dim <= 0 or args.dim <= 0:
            parser.error("--embedding-dim and --dim must be positive")
        torch.manual_seed(args.seed)
        save_scripted(Know2VecAlignment(args.embedding_dim, args.dim, args.hidden), args.out)
        return 0
    if args.command == "train":
        train(read_records(args.records), args.out, epochs=args.epochs, lr=args.lr,
              seed=args.seed, dim=args.dim, hidden=args.hidden)
        return 0
    if args.command == "encode":
        module = torch.jit.load(args.module)
        for line in encode_records(module, read_records(args.records)):
            print(json.dumps(line))
        return 0
    return selftest()


if __name__ == "__main__":
    sys.exit(main())
