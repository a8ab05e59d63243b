"""modeldock-py (and `python3 -m modeldock`): the Python client from the command line.

Each command calls one Client method and prints its answer as one JSON document on stdout.
Exit status: 0 success, 1 an error from the server (its gRPC status code on stderr), 2 a usage
error. The C++ `modeldock` command is the full CLI with dataset readers; this one is for
scripts and hosts that have the wheel only.
"""
import argparse
import dataclasses
import json
import os
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from modeldock._version import __version__
from modeldock.client import Client
from modeldock.types import ModelDockError


def _jsonable(value: Any) -> Any:
    """Dataclasses (Model, ...) as dicts, tuples as lists: what json.dumps takes."""
    if dataclasses.is_dataclass(value):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(value).items()}
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def _commands(sub: "argparse._SubParsersAction") -> None:
    """One sub-parser per command; each sets `run`, a function of (Client, args)."""
    c = sub.add_parser("list", help="List registered models (all pages)")
    c.add_argument("--name-contains", default="", help="Name substring")
    c.add_argument("--tag", default="", help="Models carrying this tag")
    c.set_defaults(run=lambda dock, a: {"models": dock.list(name_contains=a.name_contains,
                                                            tag=a.tag)})

    c = sub.add_parser("show", help="Show one model, all fields")
    c.add_argument("model", help="Model id, NAME@VERSION, or NAME (its latest READY version)")
    c.set_defaults(run=lambda dock, a: dock.get(a.model))


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
    _commands(sub)
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Runs one command; returns the exit status."""
    args = parser().parse_args(argv)
    api_key = os.environ.get("MODELDOCK_API_KEY") or None
    if args.api_key_file:
        try:
            with open(args.api_key_file) as f:
                api_key = f.readline().strip()
        except OSError as e:
            print(f"modeldock-py: cannot read --api-key-file: {e}", file=sys.stderr)
            return 2
    try:
        with Client(args.server, api_key=api_key, tls_ca=args.tls_ca, timeout=args.timeout,
                    tls_cert=args.tls_cert, tls_key=args.tls_key) as dock:
            result = args.run(dock, args)
    except ModelDockError as e:
        print(f"modeldock-py {args.command}: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"modeldock-py {args.command}: {e}", file=sys.stderr)
        return 2
    json.dump(_jsonable(result), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
