#!/usr/bin/python3
"""The /v1 routes of learning and administration on a real modeldock-server with --auth, called
with urllib: the audit log, outcome records, training, alignments (list and use), the storage
scrub and the JSON registration of a remote model (a second dock serves it over KServe v2).
Each answers what the CLI's --json prints, maps an engine error to its HTTP status, and refuses
a consumer key where the call is an admin's (or a provider's).

    PYTHONPATH=<build>/python http_learning_test.py SERVER_BINARY ASSET_DIR CLI_BINARY
"""
import base64
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import unittest

from http_test import DEMO, QUERY, Http, http_port, multipart, read_file
from live_server import kserve_address, start_server, stop_server

SERVER, ASSETS, CLI = sys.argv[1], sys.argv[2], sys.argv[3]
MODELS = ["fmnist-tops-cnn", "fmnist-footwear-cnn", "fmnist-all-mlp"]


class HttpLearningTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.err = open(os.path.join(cls.tmp.name, "server.err"), "w+")
        data = os.path.join(cls.tmp.name, "d")
        cls.server, cls.address = start_server(
            SERVER, ASSETS, data, ["--workers", "1", "--auth", "--http-listen", "127.0.0.1:0",
                                   # records are only the reports' (no background standings):
                                   # the counts below are exact at any moment
                                   "--no-report-standings"],
            stderr=cls.err)
        port = http_port(cls.err)
        with open(os.path.join(data, "admin.key")) as f:
            cls.admin_key = f.read().strip()
        cls.admin = Http(port, cls.admin_key)
        status, _, created = cls.admin.call("POST", "/v1/keys", json.dumps(
            {"role": "consumer", "name": "reader"}).encode(), "application/json")
        assert status == 200, created
        cls.consumer = Http(port, created["secret"])
        for name in MODELS:
            status, _, body = cls.admin.register(name)
            assert status == 200, body
        for name in MODELS:
            assert cls.admin.events(name)[-1][1]["model"]["state"] == "READY", name
        # Three queries (the demo query's first 60, 120 and all samples), three outcomes each:
        # enough for a trained ranker version, as the CLI's end-to-end test reports them.
        outcomes = [{"model": "fmnist-tops-cnn", "accuracy": 0.9},
                    {"model": "fmnist-all-mlp", "accuracy": 0.8},
                    {"model": "fmnist-footwear-cnn", "accuracy": 0.3}]
        for n in (60, 120, 0):
            status, _, body = cls.consumer.call("POST", "/v1/report", *reversed(multipart({
                "dataset": ("q", read_file(os.path.join(QUERY, "query-images-idx3-ubyte"))),
                "labels": ("l", read_file(os.path.join(QUERY, "query-labels-idx1-ubyte"))),
                "outcomes": json.dumps({"outcomes": outcomes, "source": "import",
                                        "max_samples": n}).encode()})))
            assert status == 200 and body["num_stored"] == 3, body

    @classmethod
    def tearDownClass(cls):
        stop_server(cls.server)
        cls.err.close()
        cls.tmp.cleanup()

    def cli(self, *args):
        """The CLI's --json document of `args`, run with the admin key."""
        done = subprocess.run([CLI, "--server", self.address, "--json", *args],
                              capture_output=True, text=True, timeout=300,
                              env={**os.environ, "MODELDOCK_API_KEY": self.admin_key})
        self.assertEqual(done.returncode, 0, done.stderr)
        return json.loads(done.stdout)

    def assert_error(self, answer, status, code):
        self.assertEqual((answer[0], answer[2]["code"]), (status, code), answer[2])
        self.assertTrue(answer[2]["message"])
        self.assertEqual(answer[1]["X-Request-Id"], answer[2]["request_id"])

    def test_audit_log(self):
        status, _, body = self.admin.call("GET", "/v1/audit?limit=4")
        self.assertEqual(status, 200, body)
        self.assertEqual(body, self.cli("audit", "--limit", "4"))
        self.assertEqual(len(body["entries"]), 4)
        status, _, everything = self.admin.call("GET", "/v1/audit")
        actions = [e["action"] for e in everything["entries"]]
        self.assertEqual(actions.count("register"), len(MODELS), everything)
        self.assertEqual(actions.count("create_key"), 1, everything)
        self.assert_error(self.admin.call("GET", "/v1/audit?limit=many"), 400, "INVALID_ARGUMENT")
        self.assert_error(self.admin.call("GET", "/v1/audit?colour=red"), 400, "INVALID_ARGUMENT")
        answer = self.consumer.call("GET", "/v1/audit")
        self.assert_error(answer, 403, "PERMISSION_DENIED")
        self.assertIn("admin", answer[2]["message"])

    def test_records(self):
        # Consumers may read the records (they may report too).
        status, _, body = self.consumer.call("GET", "/v1/records?model=fmnist-tops-cnn")
        self.assertEqual(status, 200, body)
        self.assertEqual(body, self.cli("records", "--model", "fmnist-tops-cnn"))
        self.assertEqual(len(body["records"]), 3)
        self.assertEqual({r["model"] for r in body["records"]}, {"fmnist-tops-cnn"})
        self.assertEqual({r["source"] for r in body["records"]}, {"import"})
        self.assertEqual({r["accuracy"] for r in body["records"]}, {0.9})
        self.assertEqual((body["total_records"], body["total_queries"]), (3, 3))  # the model's
        status, _, two = self.consumer.call("GET", "/v1/records?limit=2")
        self.assertEqual((status, len(two["records"]), two["total_records"]), (200, 2, 9))
        self.assert_error(self.consumer.call("GET", "/v1/records?model=nobody"), 404, "NOT_FOUND")
        self.assert_error(self.consumer.call("GET", "/v1/records?limit=1.5"), 400,
                          "INVALID_ARGUMENT")

    def test_train_list_and_use_alignments(self):
        answer = self.consumer.call("POST", "/v1/train", b'{"wait": true}', "application/json")
        self.assert_error(answer, 403, "PERMISSION_DENIED")
        self.assert_error(self.admin.call("POST", "/v1/train", b'{"wait": "yes"}',
                                          "application/json"), 400, "INVALID_ARGUMENT")
        status, _, job = self.admin.call("POST", "/v1/train", b'{"wait": true}',
                                         "application/json")
        self.assertEqual(status, 200, job)
        self.assertEqual(job["state"], "done", job)
        self.assertEqual(job["result"]["num_queries"], 3)
        version = job["version"]
        self.assertGreaterEqual(version, 1)
        # The list as the CLI prints it; the job just trained is its last training.
        status, _, listed = self.consumer.call("GET", "/v1/alignments")
        self.assertEqual(status, 200, listed)
        self.assertEqual(listed, self.cli("alignments"))
        self.assertEqual(listed["last_training"], job)
        self.assertIn(version, [v["version"] for v in listed["versions"]])
        # Serve the version, then roll back to the untrained ranker.
        self.assert_error(self.consumer.call("POST", f"/v1/alignments/{version}:use"), 403,
                          "PERMISSION_DENIED")
        status, _, body = self.admin.call("POST", f"/v1/alignments/{version}:use")
        self.assertEqual((status, body), (200, {"serving_version": version}))
        self.assertEqual(self.admin.call("GET", "/v1/alignments")[2]["serving_version"], version)
        status, _, body = self.admin.call("POST", "/v1/alignments/0:use")
        self.assertEqual((status, body), (200, {"serving_version": 0}))
        self.assertEqual(self.admin.call("GET", "/v1/alignments")[2]["serving_version"], 0)
        self.assert_error(self.admin.call("POST", "/v1/alignments/99:use"), 404, "NOT_FOUND")
        # The audit log names both changes.
        actions = [e["action"] for e in self.admin.call("GET", "/v1/audit")[2]["entries"]]
        self.assertIn("train", actions)
        self.assertEqual(actions.count("use_alignment"), 2)

    def test_scrub(self):
        self.assert_error(self.consumer.call("POST", "/v1/scrub", b'{"wait": true}',
                                             "application/json"), 403, "PERMISSION_DENIED")
        self.assert_error(self.admin.call("POST", "/v1/scrub", b'{"wait": true, "now": 1}',
                                          "application/json"), 400, "INVALID_ARGUMENT")
        status, _, report = self.admin.call("POST", "/v1/scrub", b'{"wait": true}',
                                            "application/json")
        self.assertEqual(status, 200, report)
        self.assertEqual(report["state"], "done", report)
        # The three demo models are three files, all good.
        self.assertEqual((report["blobs_checked"], report["blobs_ok"], report["blobs_bad"]),
                         (3, 3, 0))
        self.assertEqual(report["bytes_hashed"],
                         sum(os.path.getsize(os.path.join(DEMO, m + ".pt")) for m in MODELS))
        cli = self.cli("admin", "scrub", "--wait")
        for key in ("started_unix_ms", "finished_unix_ms", "message"):
            del report[key], cli[key]
        self.assertEqual(report, cli)

    def test_register_a_remote_model_from_json(self):
        with open(os.path.join(DEMO, "fmnist-tops-cnn.json")) as f:
            meta = json.load(f)
        with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "err"), "w+") as err:
            other, _ = start_server(SERVER, ASSETS, os.path.join(tmp, "d"),
                                    ["--workers", "1", "--kserve-listen", "127.0.0.1:0",
                                     "--http-listen", "127.0.0.1:0"], stderr=err)
            try:
                kserve = kserve_address(err)
                served = Http(http_port(err))
                status, _, body = served.register("fmnist-tops-cnn")
                self.assertEqual(status, 200, body)
                events = served.events("fmnist-tops-cnn")
                self.assertEqual(events[-1][1]["model"]["state"], "READY", events)
                request = {**meta, "name": "tops-remote",
                           "remote": {"endpoint": kserve, "model": "fmnist-tops-cnn"}}

                def post(http, document):
                    return http.call("POST", "/v1/models:remote", json.dumps(document).encode(),
                                     "application/json")
                self.assert_error(post(self.consumer, request), 403, "PERMISSION_DENIED")
                self.assert_error(post(self.admin, {**request, "remote": "somewhere"}), 400,
                                  "INVALID_ARGUMENT")
                self.assert_error(post(self.admin, {**request, "remote": {
                    "endpoint": kserve, "model": "no-such-model"}}), 404, "NOT_FOUND")
                answer = post(self.admin, {**request, "remote": {
                    "endpoint": "127.0.0.1:1", "model": "fmnist-tops-cnn"}})
                self.assert_error(answer, 503, "UNAVAILABLE")
                self.assertIn("127.0.0.1:1", answer[2]["message"])
                status, _, body = post(self.admin, request)
                self.assertEqual(status, 200, body)
                model = body["model"]
                self.assertEqual((model["name"], model["size_bytes"]), ("tops-remote", 0))
                self.assertEqual(model["class_labels"], meta["class_labels"])
                events = self.admin.events("tops-remote")
                self.assertEqual(events[-1][1]["model"]["state"], "READY", events)
                status, _, shown = self.consumer.call("GET", "/v1/models/tops-remote")
                self.assertEqual(shown["model"], self.cli("show", "tops-remote")["model"])
                self.assertEqual(self.admin.call("DELETE", "/v1/models/tops-remote")[0], 200)
            finally:
                stop_server(other)

    def test_zz_tune_answers_what_the_cli_prints(self):
        """POST /v1/tune (last: its tune records would change the counts above) gives the CLI's
        tune --json for the same seed, plus the winner's file, whose SHA-256 is the one named."""
        options = {"top": 1, "seed": 3, "max_epochs": 2, "budget_s": 300}
        status, _, body = self.consumer.call("POST", "/v1/tune", *reversed(multipart({
            "dataset": ("q", read_file(os.path.join(QUERY, "query-images-idx3-ubyte"))),
            "labels": ("l", read_file(os.path.join(QUERY, "query-labels-idx1-ubyte"))),
            "options": json.dumps(options).encode()})))
        self.assertEqual(status, 200, body)
        model = base64.b64decode(body.pop("model_base64"))
        self.assertEqual(len(model), body["model_size_bytes"])
        self.assertEqual(hashlib.sha256(model).hexdigest(), body["model_sha256"])
        self.assertEqual(model[:2], b"PK")  # a TorchScript archive is a zip
        cli = self.cli("tune", os.path.join(QUERY, "query-images-idx3-ubyte"), "--labels",
                       os.path.join(QUERY, "query-labels-idx1-ubyte"), "--top", "1", "--seed", "3",
                       "--max-epochs", "2", "--budget-s", "300")
        self.assertEqual(cli.pop("out"), "")
        strip = lambda doc: [(c["name"], c["predicted_rank"], c["ok"], c["best_epoch"],
                              c["best_accuracy"], [e["val_accuracy"] for e in c["epochs"]])
                             for c in doc["candidates"]]
        self.assertEqual(strip(body), strip(cli))
        self.assertEqual((body["winner"], body["train_samples"], body["val_samples"], body["seed"]),
                         (cli["winner"], cli["train_samples"], cli["val_samples"], cli["seed"]))
        # Bad input: no labels (tuning needs them) is a 400 naming the problem.
        answer = self.consumer.call("POST", "/v1/tune", *reversed(multipart({
            "dataset": ("q", read_file(os.path.join(QUERY, "query-images-idx3-ubyte"))),
            "options": json.dumps({"top": 1}).encode()})))
        self.assert_error(answer, 400, "INVALID_ARGUMENT")
        answer = self.consumer.call("POST", "/v1/tune", *reversed(multipart({
            "dataset": ("q", read_file(os.path.join(QUERY, "query-images-idx3-ubyte"))),
            "labels": ("l", read_file(os.path.join(QUERY, "query-labels-idx1-ubyte"))),
            "options": json.dumps({"top": 1, "colour": "blue"}).encode()})))
        self.assert_error(answer, 400, "INVALID_ARGUMENT")


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
