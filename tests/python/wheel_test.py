#!/usr/bin/python3
"""The Python client's wheel installed as a user would (issue 26 item 4).

    wheel_test.py WHEEL VERSION SERVER_BINARY ASSET_DIR

Checks the wheel's contents (the package and its generated gRPC stubs, nothing else; the CMake
project version; the declared dependencies and the modeldock-py entry point), installs it with
pip into a fresh `python3 -m venv --system-site-packages` (grpcio, protobuf and numpy are
Debian's), then, from a directory outside the repository with PYTHONPATH unset: imports it,
runs `python3 -m modeldock --help`, and runs the installed `modeldock-py` command's commands
against a real modeldock-server. Exits non-zero on failure.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest
import zipfile

import numpy as np

from live_server import read_idx, start_server, stop_server

WHEEL, VERSION, SERVER, ASSETS = sys.argv[1:5]
DEMO = os.path.join(ASSETS, "demo")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class WheelTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.home = cls.tmp.name  # the working directory: outside the repository
        cls.env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        cls.env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
        cls.env["PIP_NO_CACHE_DIR"] = "1"
        venv = os.path.join(cls.home, "venv")
        cls.run_ok(["/usr/bin/python3", "-m", "venv", "--system-site-packages", venv])
        cls.python = os.path.join(venv, "bin", "python3")
        # --no-index: nothing from the network; the dependencies must already be satisfied
        # (by Debian's packages, seen through the system site packages) or pip refuses.
        cls.run_ok([cls.python, "-m", "pip", "install", "--no-index", WHEEL])
        cls.server, cls.address = start_server(SERVER, ASSETS, os.path.join(cls.home, "data"),
                                               ["--workers", "1"])

    @classmethod
    def tearDownClass(cls):
        stop_server(cls.server)
        cls.tmp.cleanup()

    @classmethod
    def run_ok(cls, argv):
        done = subprocess.run(argv, cwd=cls.home, env=cls.env, capture_output=True, text=True,
                              timeout=300)
        if done.returncode != 0:
            raise AssertionError(f"{argv} exited {done.returncode}:\n{done.stdout}{done.stderr}")
        return done.stdout

    def cli(self, *args):
        """The installed modeldock-py command: (exit status, stdout, stderr)."""
        done = subprocess.run([os.path.join(os.path.dirname(self.python), "modeldock-py"),
                               "--server", self.address, *args], cwd=self.home, env=self.env,
                              capture_output=True, text=True, timeout=300)
        return done.returncode, done.stdout, done.stderr

    def test_wheel_holds_the_package_and_its_stubs(self):
        self.assertEqual(os.path.basename(WHEEL), f"modeldock-{VERSION}-py3-none-any.whl")
        with zipfile.ZipFile(WHEEL) as wheel:
            names = wheel.namelist()
            info = f"modeldock-{VERSION}.dist-info/"
            metadata = wheel.read(info + "METADATA").decode()
            entry_points = wheel.read(info + "entry_points.txt").decode()
        for name in ("modeldock/__init__.py", "modeldock/__main__.py", "modeldock/cli.py",
                     "modeldock/client.py", "modeldock/py.typed", "modeldock/_version.py",
                     "modeldock/v1/__init__.py", "modeldock/v1/modeldock_pb2.py",
                     "modeldock/v1/modeldock_pb2_grpc.py"):
            self.assertIn(name, names)
        # Only the package and its metadata: no KServe stubs, tests or caches.
        self.assertEqual([n for n in names
                          if not n.startswith(("modeldock/", info)) or "__pycache__" in n], [])
        self.assertIn(f"\nVersion: {VERSION}\n", metadata)
        # "protobuf (>=3.20)" in Debian 12's setuptools' metadata 2.1, "protobuf>=3.20" later.
        requires = sorted(line.split(": ", 1)[1].replace(" ", "").replace("(", "").replace(")", "")
                          for line in metadata.splitlines() if line.startswith("Requires-Dist: "))
        self.assertEqual(requires, ["grpcio", "numpy", "protobuf>=3.20"])
        self.assertIn("modeldock-py = modeldock.cli:main", entry_points)

    def test_import_from_the_venv(self):
        out = self.run_ok([self.python, "-c", "import modeldock, sys; "
                           "print(modeldock.__file__); print(modeldock.__version__); "
                           "print(modeldock.Client.__name__); print(sys.path)"])
        path, version, client, sys_path = out.splitlines()
        self.assertTrue(path.startswith(os.path.join(self.home, "venv")), path)
        self.assertFalse(path.startswith(REPO), path)
        self.assertEqual(version, VERSION)
        self.assertEqual(client, "Client")
        self.assertNotIn("/python'", sys_path)  # no <build>/python on the path

    def test_module_help_and_version(self):
        out = self.run_ok([self.python, "-m", "modeldock", "--help"])
        self.assertIn("usage: modeldock-py", out)
        for command in ("list", "show"):
            self.assertIn(command, out)
        code, out, _ = self.cli("--version")
        self.assertEqual((code, out.strip()), (0, f"modeldock-py {VERSION}"))

    def test_console_script_lists_models_of_a_real_server(self):
        code, out, err = self.cli("list", "--name-contains", "wheel-")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out), {"models": []})
        with open(os.path.join(DEMO, "fmnist-tops-cnn.json")) as f:
            meta = json.load(f)
        registered = self.run_ok([self.python, "-c", (
            "import json, sys, modeldock\n"
            "m = modeldock.Client(sys.argv[1]).register(sys.argv[2], name='wheel-tops', "
            "input_shape=json.loads(sys.argv[3]), labels=json.loads(sys.argv[4]))\n"
            "print(m.id, m.state)"), self.address, os.path.join(DEMO, "fmnist-tops-cnn.pt"),
            json.dumps(meta["input_shape"]), json.dumps(meta["class_labels"])])
        model_id, state = registered.split()
        self.assertEqual(state, "READY")
        code, out, err = self.cli("list", "--name-contains", "wheel-")
        self.assertEqual(code, 0, err)
        models = json.loads(out)["models"]
        self.assertEqual([(m["name"], m["id"], m["state"]) for m in models],
                         [("wheel-tops", model_id, "READY")])
        self.assertEqual(models[0]["input_shape"], meta["input_shape"])
        self.assertEqual(models[0]["class_labels"], meta["class_labels"])
        code, out, err = self.cli("show", "wheel-tops")
        self.assertEqual(code, 0, err)
        self.assertEqual(json.loads(out)["id"], model_id)
        code, out, err = self.cli("show", "no-such-model")
        self.assertEqual((code, out), (1, ""))
        self.assertIn("NOT_FOUND", err)

    def test_console_script_covers_the_cli_commands(self):
        """The installed command end to end: register from a sidecar, watch, health, update,
        audit, recommend from an .npz, records, alignments, scrub, rm."""
        sidecar = os.path.join(DEMO, "fmnist-tops-cnn.json")
        with open(sidecar) as f:
            meta = json.load(f)
        code, out, err = self.cli("register", os.path.join(DEMO, "fmnist-tops-cnn.pt"),
                                  "--metadata", sidecar, "--name", "cli-tops", "--tag", "cli")
        self.assertEqual(code, 0, err)
        model = json.loads(out)
        self.assertEqual((model["name"], model["state"], model["tags"], model["version"]),
                         ("cli-tops", "READY", ["cli"], meta["version"]))
        code, out, err = self.cli("watch", "cli-tops")
        self.assertEqual(code, 0, err)
        self.assertEqual([json.loads(line)["state"] for line in out.splitlines()], ["READY"])
        self.assertEqual(self.cli("health")[:2], (0, '{\n  "status": "SERVING"\n}\n'))
        code, out, err = self.cli("update", "cli-tops", "--clear-tags", "--license", "MIT")
        self.assertEqual((code, json.loads(out)["tags"], json.loads(out)["license"]),
                         (0, [], "MIT"), err)
        code, out, err = self.cli("audit", "--action", "update")
        self.assertEqual(code, 0, err)
        self.assertEqual({e["action"] for e in json.loads(out)["entries"]}, {"update"})

        query = os.path.join(DEMO, "query_tops")
        npz = os.path.join(self.home, "query.npz")
        np.savez(npz, x=read_idx(os.path.join(query, "query-images-idx3-ubyte"))[:, None],
                 y=read_idx(os.path.join(query, "query-labels-idx1-ubyte")))
        code, out, err = self.cli("recommend", npz, "--top", "3", "--metric", "leep")
        self.assertEqual(code, 0, err)
        result = json.loads(out)
        self.assertEqual((result["metric"], result["label_source"]), ("leep", "given"))
        self.assertIn("cli-tops", [r["name"] for r in result["results"]])
        code, out, err = self.cli("records")
        self.assertEqual((code, json.loads(out)), (0, {"records": [], "total_records": 0,
                                                       "total_queries": 0}), err)
        # Rank, then tune: the top candidate tuned, its file written and checked, one record.
        tuned = os.path.join(self.home, "tuned.pt")
        code, out, err = self.cli("tune", npz, "--top", "1", "--budget-s", "60", "--seed", "3",
                                  "--max-epochs", "2", "--out", tuned)
        self.assertEqual(code, 0, err)
        tune = json.loads(out)
        self.assertEqual((tune["winner"], tune["seed"], len(tune["candidates"])), (0, 3, 1))
        self.assertNotIn("model", tune)
        with open(tuned, "rb") as f:
            data = f.read()
        self.assertEqual((len(data), hashlib.sha256(data).hexdigest()),
                         (tune["model_size_bytes"], tune["model_sha256"]))
        epochs = tune["candidates"][0]["epochs"]
        self.assertEqual(len(err.strip().splitlines()), len(epochs))  # one progress line each
        code, out, err = self.cli("records", "--model", tune["candidates"][0]["name"])
        self.assertEqual((code, [r["source"] for r in json.loads(out)["records"]]),
                         (0, ["tune"]), err)
        unlabelled = os.path.join(self.home, "unlabelled.npy")
        np.save(unlabelled, read_idx(os.path.join(query, "query-images-idx3-ubyte"))[:, None])
        code, out, err = self.cli("tune", unlabelled)
        self.assertEqual((code, out), (2, ""))
        self.assertIn("tune needs labels", err)
        code, out, err = self.cli("alignments")
        self.assertEqual((code, json.loads(out)["serving_version"]), (0, 0), err)
        code, out, err = self.cli("admin", "scrub", "--wait")
        self.assertEqual(code, 0, err)
        self.assertEqual((json.loads(out)["state"], json.loads(out)["blobs_bad"]), ("done", 0))
        code, out, err = self.cli("rm", "cli-tops")
        self.assertEqual((code, json.loads(out)), (0, {"deleted": [model["id"]]}), err)
        # Usage errors (exit 2): a metric the client refuses, a state argparse refuses.
        self.assertEqual(self.cli("recommend", npz, "--metric", "best")[0], 2)
        self.assertEqual(self.cli("list", "--state", "asleep")[0], 2)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
