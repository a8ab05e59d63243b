"""modeldock-py (and `python3 -m modeldock`): the Python client from the command line.

The commands of the C++ `modeldock` CLI, each calling one Client method and printing its answer
as one JSON document on stdout (watch: one JSON line per state change). recommend and report
read NumPy datasets: an .npz with x (or samples) and y (or labels), or an .npy with --labels.
Exit status: 0 success, 1 an error from the server (its gRPC status code on stderr; also a
health other than SERVING, a FAILED model after register, a failed training or a scrub that
found bad files), 2 a usage error.
"""
import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from modeldock._version import __version__
from modeldock.client import Client
from modeldock.types import ModelDockError

_MODEL_REF = "Model id, NAME@VERSION, or NAME (its latest READY version)"
_TASKS = ["image", "tabular", "text", "audio"]


class _Failed(Exception):
    """An answer that the command reports as a failure (exit 1) after printing it."""

    def __init__(self, result: Any):
        super().__init__()
        self.result = result


def _jsonable(value: Any) -> Any:
    """Dataclasses (Model, ...) as dicts, tuples as lists: what json.dumps takes."""
    if dataclasses.is_dataclass(value):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _shape(text: Optional[str]) -> Sequence[int]:
    return [int(d) for d in text.replace("x", ",").split(",")] if text else []


def _labels(text: Optional[str]) -> Sequence[str]:
    """a,b,c or @FILE (one label per line), as `modeldock register --labels` takes them."""
    if not text:
        return []
    if text.startswith("@"):
        with open(text[1:], encoding="utf-8") as f:
            return [line.strip() for line in f if line.strip()]
    return text.split(",")


def _dataset(a: argparse.Namespace) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """samples and labels of an .npz (x/y or samples/labels) or an .npy (+ --labels .npy)."""
    if a.dataset.endswith(".npz"):
        with np.load(a.dataset) as z:
            x = z["x"] if "x" in z else z["samples"]
            y = z["y"] if "y" in z else z["labels"] if "labels" in z else None
    else:
        x, y = np.load(a.dataset), None
    if a.labels:
        y = np.load(a.labels)
    if a.task == "audio" and x.dtype == np.int16:
        x = x.astype(np.float32) / 32768
    return x, None if y is None else y.astype(np.int64)


def _register(dock: Client, a: argparse.Namespace) -> Any:
    common = dict(name=a.name, input_shape=_shape(a.input_shape), labels=_labels(a.labels),
                  description=a.description, license=a.license, tags=a.tag or (),
                  version=a.version, wait=False, task=a.task, metadata=a.metadata,
                  feature_extractor=a.feature_extractor)
    if a.remote:
        if a.file or not a.remote_model:
            raise ValueError("--remote needs --remote-model NAME and no FILE")
        model = dock.register_remote(a.remote, a.remote_model, remote_version=a.remote_version,
                                     **common)
    elif a.file:
        model = dock.register(a.file, **common)
    else:
        raise ValueError("register needs a FILE (or --remote HOST:PORT)")
    if not a.no_wait:
        model = dock.wait(model.id)
    if model.state == "FAILED":
        raise _Failed(model)
    return model


def _model_commands(sub: Any) -> None:
    c = sub.add_parser("register", help="Upload a TorchScript model (or register a remote one) "
                                        "and wait until it is READY (or FAILED)")
    c.add_argument("file", nargs="?", default="", help="TorchScript file; none with --remote")
    c.add_argument("--remote", default="", help="KServe v2 inference server: HOST:PORT (gRPC) or "
                   "http[s]://HOST:PORT[/PATH] (HTTP/REST)")
    c.add_argument("--remote-model", default="", help="The model's name on --remote")
    c.add_argument("--remote-version", default="", help="The model's version on --remote")
    c.add_argument("--name", help="Unique model name")
    c.add_argument("--input-shape", help="Per-sample input shape, e.g. 1,28,28")
    c.add_argument("--labels", help="Class labels in output order: a,b,c or @FILE")
    c.add_argument("--version", default="", help="Version label")
    c.add_argument("--description", default="")
    c.add_argument("--license", default="")
    c.add_argument("--tag", action="append", help="Tag (repeatable)")
    c.add_argument("--task", "--input-kind", choices=_TASKS)
    c.add_argument("--metadata", help="JSON sidecar (flags override it)")
    c.add_argument("--no-wait", action="store_true", help="Return after admission")
    c.add_argument("--feature-extractor", action="store_true", help="A headless model")
    c.set_defaults(run=_register)

    c = sub.add_parser("list", help="List registered models (all pages)")
    c.add_argument("--name-contains", default="", help="Name substring")
    c.add_argument("--task", "--input-kind", choices=_TASKS)
    c.add_argument("--input-shape", help="Exact input shape, e.g. 1,28,28")
    c.add_argument("--tag", default="", help="Models carrying this tag")
    c.add_argument("--state", choices=["ready", "probing", "pending", "failed"])
    c.add_argument("--page-size", type=int, help="One page of at most N models")
    c.set_defaults(run=lambda dock, a: _list(dock, a))

    c = sub.add_parser("show", help="Show one model, all fields")
    c.add_argument("model", help=_MODEL_REF)
    c.set_defaults(run=lambda dock, a: dock.get(a.model))

    c = sub.add_parser("rm", help="Delete a model version (its file too if unshared)")
    c.add_argument("model", help="Model id, NAME@VERSION, or NAME (when it has one version)")
    c.add_argument("--all-versions", action="store_true", help="Delete every version of NAME")
    c.set_defaults(run=lambda dock, a: {"deleted": dock.delete_versions(a.model,
                                                                        a.all_versions)})

    c = sub.add_parser("watch", help="Print a model's state changes until READY or FAILED "
                                     "(one JSON line each)")
    c.add_argument("model", help=_MODEL_REF)
    c.set_defaults(run=_watch)

    c = sub.add_parser("update", help="Edit a model's description, license or tags")
    c.add_argument("model", help=_MODEL_REF)
    c.add_argument("--description")
    c.add_argument("--license")
    c.add_argument("--tag", action="append", help="Tag (repeatable); the given tags replace all")
    c.add_argument("--clear-tags", action="store_true", help="Remove every tag")
    c.set_defaults(run=lambda dock, a: dock.update(
        a.model, description=a.description, license=a.license,
        tags=[] if a.clear_tags else a.tag))


def _list(dock: Client, a: argparse.Namespace) -> Any:
    filters = dict(name_contains=a.name_contains, tag=a.tag, task=a.task,
                   input_shape=_shape(a.input_shape), state=a.state)
    if a.page_size:
        page = dock.list_page(a.page_size, **filters)
        return {"models": page.models, "total_size": page.total_size,
                "next_page_token": page.next_page_token}
    return {"models": dock.list(**filters)}


def _watch(dock: Client, a: argparse.Namespace) -> None:
    for model in dock.watch(a.model):
        print(json.dumps(_jsonable(model)), flush=True)


def _health(dock: Client, a: argparse.Namespace) -> Any:
    status = {"status": dock.health()}
    if status["status"] != "SERVING":
        raise _Failed(status)
    return status


def _scrub(dock: Client, a: argparse.Namespace) -> Any:
    report = dock.scrub(wait=a.wait)
    if a.wait and not report.ok:
        raise _Failed(report)
    return report


def _train(dock: Client, a: argparse.Namespace) -> Any:
    job = dock.train(wait=a.wait)
    if job["state"] == "failed":
        raise _Failed(job)
    return job


def _tune(dock: Client, a: argparse.Namespace) -> Any:
    """The CLI's tune: progress per epoch on stderr, the winner's file to --out, the table as
    JSON on stdout (the file's bytes left out); exit 1 when no candidate could be tuned."""
    samples, labels = _dataset(a)
    if labels is None:
        raise ValueError("tune needs labels (y in the .npz, or --labels)")

    def progress(e: Any) -> None:
        print(f"candidate {e['candidate']} {e['model']}: epoch {e['epoch']} val_accuracy "
              f"{e['val_accuracy']:.4f}", file=sys.stderr, flush=True)

    result = dock.tune(samples, labels, top=a.top, budget_s=a.budget_s, seed=a.seed,
                       max_epochs=a.max_epochs, patience=a.patience,
                       learning_rate=a.learning_rate, out=a.out,
                       on_progress=None if a.quiet else progress, max_samples=a.max_samples)
    result.pop("model")
    if result["winner"] < 0:
        raise _Failed(result)
    return result


def _tune_command(sub: Any) -> None:
    c = sub.add_parser("tune", help="Recommend, then fine-tune the top candidates on the "
                                    "labelled dataset and keep the best (the winner's file to "
                                    "--out)")
    c.add_argument("dataset", help=".npz (x/y or samples/labels) or .npy with --labels")
    c.add_argument("--labels", help=".npy of N integer labels")
    c.add_argument("--top", type=int, default=2, help="Candidates tuned, 1..10")
    c.add_argument("--budget-s", type=float, default=120.0,
                   help="Training budget of the whole tune, shared by the candidates")
    c.add_argument("--seed", type=int, default=0, help="The same seed gives the same tune")
    c.add_argument("--max-epochs", type=int, default=0, help="0 = the server's default (10)")
    c.add_argument("--patience", type=int, default=0, help="0 = the server's default (3)")
    c.add_argument("--learning-rate", type=float, default=0.0,
                   help="0 = the server's default (0.001)")
    c.add_argument("--out", help="Where to write the winner's tuned TorchScript file")
    c.add_argument("--max-samples", type=int, default=0, help="Only the first N samples")
    c.add_argument("--quiet", action="store_true", help="No progress lines on stderr")
    c.set_defaults(run=_tune, task="image")


def _learning_commands(sub: Any) -> None:
    for name, help_text in (("recommend", "Rank registered models for a NumPy dataset"),
                            ("report", "Tell the dock how models fine-tuned on a dataset did")):
        c = sub.add_parser(name, help=help_text)
        c.add_argument("dataset", help=".npz (x/y or samples/labels) or .npy")
        c.add_argument("--labels", help=".npy of N integer labels")
        c.add_argument("--task", "--input-kind", choices=["image", "tabular", "audio"],
                       help="audio: [N, T] 16 kHz clips (float32 in [-1, 1] or int16)")
        c.add_argument("--max-samples", type=int, default=0, help="Only the first N samples")
    rec, rep = sub.choices["recommend"], sub.choices["report"]
    rec.add_argument("--top", type=int, default=5)
    rec.add_argument("--candidates", type=int, default=0)
    rec.add_argument("--budget-ms", type=float, default=0)
    rec.add_argument("--metric")
    rec.add_argument("--brute-force", action="store_true")
    rec.add_argument("--all-versions", action="store_true")
    rec.set_defaults(run=lambda dock, a: dock.recommend(
        *_dataset(a), top=a.top, metric=a.metric, candidates=a.candidates,
        brute_force=a.brute_force, budget_ms=a.budget_ms, all_versions=a.all_versions,
        audio=a.task == "audio", max_samples=a.max_samples))
    rep.add_argument("--outcomes", required=True,
                     help="MODEL=ACCURACY,... (accuracies in [0, 1])")
    rep.add_argument("--source", choices=["finetune", "import"], default="finetune")
    rep.set_defaults(run=lambda dock, a: dock.report(
        *_dataset(a), {m: float(v) for m, v in (p.split("=") for p in a.outcomes.split(","))},
        source=a.source, audio=a.task == "audio", max_samples=a.max_samples))

    c = sub.add_parser("records", help="List reported outcomes (newest first)")
    c.add_argument("--model", default="", help="Only this model (name or id)")
    c.add_argument("--limit", type=int, default=100)
    c.set_defaults(run=lambda dock, a: (lambda r: {
        "records": list(r), "total_records": r.total_records,
        "total_queries": r.total_queries})(dock.records(a.model, a.limit)))

    c = sub.add_parser("train", help="Train a new ranker version from the records (admin)")
    c.add_argument("--wait", action="store_true", help="Wait for the validation figures")
    c.set_defaults(run=_train)

    c = sub.add_parser("alignments", help="List trained ranker versions and which one serves")
    use = c.add_subparsers(dest="alignments_command", metavar="use").add_parser(
        "use", help="Serve VERSION from the next recommendation on (0 = untrained; admin)")
    use.add_argument("version", type=int)
    c.set_defaults(run=lambda dock, a: {"serving_version": dock.use_alignment(a.version)}
                   if a.alignments_command == "use" else dock.alignments())


def _admin_commands(sub: Any) -> None:
    c = sub.add_parser("health", help="grpc.health.v1 check; exit 0 only when SERVING")
    c.set_defaults(run=_health)

    c = sub.add_parser("audit", help="Who registered, updated, deleted what and when (admin)")
    c.add_argument("--limit", type=int, default=100, help="At most N entries, newest first")
    c.add_argument("--action", help="Only entries of this action (among the newest --limit)")
    c.add_argument("--actor", help="Only entries of this key id (among the newest --limit)")
    c.add_argument("--target", help="Only entries on this target (among the newest --limit)")
    c.set_defaults(run=lambda dock, a: {"entries": dock.audit(a.limit, action=a.action,
                                                              actor=a.actor, target=a.target)})

    keys = sub.add_parser("keys", help="Manage API keys (admin key needed)").add_subparsers(
        dest="keys_command", metavar="{create,list,revoke}", required=True)
    c = keys.add_parser("create", help="Create a key; prints it once")
    c.add_argument("--role", choices=["consumer", "provider", "admin"], default="consumer")
    c.add_argument("--name", default="", help="Who holds it (a label)")
    c.set_defaults(run=lambda dock, a: dock.create_key(a.role, a.name))
    keys.add_parser("list", help="List keys (never their secrets)").set_defaults(
        run=lambda dock, a: {"keys": dock.list_keys()})
    c = keys.add_parser("revoke", help="Revoke a key at once")
    c.add_argument("id", help="Key id (from keys list)")
    c.set_defaults(run=lambda dock, a: dock.revoke_key(a.id) or {"revoked": a.id})

    admin = sub.add_parser("admin", help="Operator commands (admin key needed)").add_subparsers(
        dest="admin_command", metavar="{scrub}", required=True)
    c = admin.add_parser("scrub", help="Re-hash every stored model file, check probe features")
    c.add_argument("--wait", action="store_true",
                   help="Wait for the report (exit 1 if anything is bad)")
    c.set_defaults(run=_scrub)


def parser() -> argparse.ArgumentParser:
    """The command line: global connection flags, then a command."""
    p = argparse.ArgumentParser(
        prog="modeldock-py",
        description="The modeldock Python client from the command line: one JSON document per "
                    "command on stdout.")
    p.add_argument("--version", action="version", version=f"modeldock-py {__version__}")
    p.add_argument("--server", default=os.environ.get("MODELDOCK_SERVER") or "127.0.0.1:50051",
                   help="Server address HOST:PORT (default: $MODELDOCK_SERVER, else "
                        "127.0.0.1:50051)")
    p.add_argument("--api-key-file", default="",
                   help="File holding the API key (default: $MODELDOCK_API_KEY)")
    p.add_argument("--tls-ca", default=os.environ.get("MODELDOCK_TLS_CA") or None,
                   help="PEM of the CA of the server's certificate: TLS (default: "
                        "$MODELDOCK_TLS_CA; unset = plaintext)")
    p.add_argument("--tls-cert", default=os.environ.get("MODELDOCK_TLS_CERT") or None,
                   help="Client certificate chain PEM for mutual TLS")
    p.add_argument("--tls-key", default=os.environ.get("MODELDOCK_TLS_KEY") or None,
                   help="Client private key PEM for mutual TLS")
    p.add_argument("--timeout", type=float, default=120.0, help="Deadline of each call, seconds")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _model_commands(sub)
    _learning_commands(sub)
    _tune_command(sub)
    _admin_commands(sub)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one command; returns the exit status."""
    args = parser().parse_args(argv)
    api_key = os.environ.get("MODELDOCK_API_KEY") or None
    try:
        if args.api_key_file:
            with open(args.api_key_file, encoding="utf-8") as f:
                api_key = f.readline().strip()
        with Client(args.server, api_key=api_key, tls_ca=args.tls_ca, timeout=args.timeout,
                    tls_cert=args.tls_cert, tls_key=args.tls_key) as dock:
            result, status = args.run(dock, args), 0
    except _Failed as failed:
        result, status = failed.result, 1
    except ModelDockError as e:
        print(f"modeldock-py {args.command}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError) as e:
        print(f"modeldock-py {args.command}: {e}", file=sys.stderr)
        return 2
    if result is not None:
        json.dump(_jsonable(result), sys.stdout, indent=2)
        sys.stdout.write("\n")
    return status
