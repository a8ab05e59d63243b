#!/usr/bin/python3
"""The Python client (client/python/modeldock) against a real modeldock-server.

    PYTHONPATH=<build>/python client_test.py SERVER_BINARY ASSET_DIR

Starts the server on 127.0.0.1:0 with a temporary data directory, then registers, lists, gets,
recommends (numpy arrays: float32 and uint8, labelled and not) and deletes through the package,
and checks that errors arrive as ModelDockError with the gRPC code. Exits non-zero on failure.
"""
import csv
import json
import os
import sys
import tempfile
import unittest

import grpc
import numpy as np

import modeldock
from live_server import read_idx, start_server, stop_server

SERVER, ASSETS = sys.argv[1], sys.argv[2]
DEMO = os.path.join(ASSETS, "demo")



class ClientTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.server, cls.address = start_server(SERVER, ASSETS, os.path.join(cls.tmp.name, "data"),
                                               ["--workers", "2"])
        cls.dock = modeldock.Client(cls.address)

    @classmethod
    def tearDownClass(cls):
        cls.dock.close()
        stop_server(cls.server)
        cls.tmp.cleanup()

    def register_demo(self, stem, name=None):
        with open(os.path.join(DEMO, stem + ".json")) as f:
            meta = json.load(f)
        return self.dock.register(os.path.join(DEMO, stem + ".pt"), name=name or meta["name"],
                                  input_shape=meta["input_shape"], labels=meta["class_labels"],
                                  description=meta.get("description", ""),
                                  tags=meta.get("tags", []))

    def test_register_list_get_recommend_delete(self):
        tops = self.register_demo("fmnist-tops-cnn")
        self.assertEqual(tops.state, "READY", tops.state_reason)
        self.assertEqual(tops.input_shape, [1, 28, 28])
        self.register_demo("fmnist-footwear-cnn")
        names = {m.name for m in self.dock.list()}
        self.assertTrue({"fmnist-tops-cnn", "fmnist-footwear-cnn"} <= names)
        self.assertEqual(self.dock.get("fmnist-tops-cnn").id, tops.id)

        query = os.path.join(DEMO, "query_tops")
        images = read_idx(os.path.join(query, "query-images-idx3-ubyte"))[:, None]  # [N,1,28,28]
        labels = read_idx(os.path.join(query, "query-labels-idx1-ubyte")).astype(np.int64)
        as_float = self.dock.recommend(images.astype(np.float32) / 255, labels=labels, top=2)
        self.assertEqual(len(as_float), 2)
        self.assertEqual(as_float[0].name, "fmnist-tops-cnn")
        self.assertTrue(as_float[0].reason)
        self.assertEqual(as_float.label_source, "given")
        self.assertIn(as_float.mode, ("scored_all", "two_stage"))
        # uint8 samples go as bytes; the server scales them: the same ranking and scores.
        as_bytes = self.dock.recommend(images, labels=labels, top=2)
        self.assertEqual([r.name for r in as_bytes], [r.name for r in as_float])
        self.assertAlmostEqual(as_bytes[0].score, as_float[0].score, places=5)
        unlabelled = self.dock.recommend(images, metric="none")
        self.assertEqual(unlabelled.mode, "stage1_only")
        self.assertNotEqual(unlabelled.label_source, "given")

        edited = self.dock.update("fmnist-tops-cnn", license="MIT", tags=["x"])
        self.assertEqual((edited.license, edited.tags), ("MIT", ["x"]))
        self.assertEqual(self.dock.audit(limit=1)[0]["action"], "update")

        footwear = self.dock.get("fmnist-footwear-cnn")
        self.assertEqual(self.dock.delete("fmnist-footwear-cnn"), footwear.id)
        with self.assertRaises(modeldock.ModelDockError) as e:
            self.dock.get("fmnist-footwear-cnn")
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_text_models(self):
        """Text models (issue 25): registered with text=True, recommended for a list of str."""
        stem = os.path.join(DEMO, "text", "english-fortune-topics-cnn")
        with open(stem + ".json") as f:
            meta = json.load(f)
        model = self.dock.register(stem + ".pt", name=meta["name"], labels=meta["class_labels"],
                                   text=True)
        self.assertEqual(model.state, "READY", model.state_reason)
        self.assertEqual(model.input_shape, [])
        self.assertIn("text samples", model.state_reason)
        with open(os.path.join(DEMO, "query_text.csv"), newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        names = sorted({r["label"] for r in rows})
        texts = [r["text"] for r in rows]
        labels = [names.index(r["label"]) for r in rows]
        result = self.dock.recommend(texts, labels=labels, top=3, class_names=names)
        self.assertEqual([r.name for r in result], ["english-fortune-topics-cnn"])
        self.assertEqual(result.num_compatible, 1)  # the image models are not compatible
        self.assertIn("over 4 query classes", result[0].reason)
        with self.assertRaises(ValueError):
            self.dock.recommend(texts, labels=labels[:-1])
        # A text model with an input shape is refused by the server.
        with self.assertRaises(modeldock.ModelDockError) as e:
            self.dock.register(stem + ".pt", name="shaped", labels=meta["class_labels"],
                               input_shape=[4], text=True)
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        self.dock.delete("english-fortune-topics-cnn")

    def test_versions(self):
        with open(os.path.join(DEMO, "fmnist-tops-cnn.json")) as f:
            meta = json.load(f)
        path = os.path.join(DEMO, "fmnist-tops-cnn.pt")
        first = self.dock.register(path, name="versioned", input_shape=[1, 28, 28],
                                   labels=meta["class_labels"], version="1")
        second = self.dock.register(path, name="versioned", input_shape=[1, 28, 28],
                                    labels=meta["class_labels"], version="2")
        self.assertEqual(self.dock.get("versioned").id, second.id)
        self.assertEqual(self.dock.get("versioned@1").id, first.id)
        self.assertEqual(self.dock.get("versioned@1").version, "1")
        with self.assertRaises(modeldock.ModelDockError) as e:
            self.dock.delete("versioned")
        self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
        self.assertEqual(self.dock.delete("versioned", all_versions=True), first.id)
        with self.assertRaises(modeldock.ModelDockError) as e:
            self.dock.get("versioned@2")
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_report_train_and_serve_a_version(self):
        for stem in ("fmnist-tops-cnn", "fmnist-shuffled-cnn", "fmnist-all-mlp"):
            self.register_demo(stem, name="learn-" + stem)
        query = os.path.join(DEMO, "query_tops")
        images = read_idx(os.path.join(query, "query-images-idx3-ubyte"))[:, None]
        labels = read_idx(os.path.join(query, "query-labels-idx1-ubyte")).astype(np.int64)
        with self.assertRaises(modeldock.ModelDockError) as e:
            self.dock.report(images, labels, {"learn-fmnist-tops-cnn": 2.0})
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        outcomes = {"learn-fmnist-tops-cnn": 0.9, "learn-fmnist-all-mlp": 0.8,
                    "learn-fmnist-shuffled-cnn": 0.3}
        for n in (60, 120, 200):  # three queries: different samples
            stored = self.dock.report(images[:n], labels[:n], outcomes, source="import")
            self.assertEqual(stored["num_stored"], 3)
        self.assertGreaterEqual(len(self.dock.records(model="learn-fmnist-tops-cnn")), 3)
        # Each report of several models leaves their stage-2 standings on its samples, scored in
        # the background (the server's default); training waits for those still being scored.
        job = self.dock.train(wait=True)
        self.assertEqual(job["state"], "done", job["message"])
        self.assertEqual(job["weak_queries"], 3)  # the reports' standings, one task per query
        # The stage-2 weight is chosen on the reported queries' standings, not borrowed.
        self.assertNotIn("needs 3 to choose its own", job["reason"])
        self.assertRegex(job["reason"], r"stage-2 weight (0: held-out|[0-9.]+ chosen on 3 queries)")
        self.assertIn(job["prior_target"], ("facts", "stage1-calibration"))
        standings = [r for r in self.dock.records(limit=1000)
                     if r["source"] == "stage2" and r["model"].startswith("learn-")]
        self.assertEqual(len(standings), 9)  # 3 queries x 3 models
        self.dock.use_alignment(job["version"])
        self.assertEqual(self.dock.alignments()["serving_version"], job["version"])
        served = self.dock.recommend(images, labels=labels, metric="none", top=3)
        self.assertEqual(served.alignment_version, job["version"])
        self.assertIsNotNone(served[0].prior)
        self.dock.use_alignment(0)
        self.assertIsNone(self.dock.recommend(images, labels=labels, metric="none")[0].prior)

    def test_errors_carry_the_grpc_code(self):
        with self.assertRaises(modeldock.ModelDockError) as e:
            self.dock.get("no-such-model")
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertIn("no-such-model", e.exception.details)
        with self.assertRaises(modeldock.ModelDockError) as e:
            self.dock.recommend(np.zeros((2, 1, 28, 28), np.float32))  # fewer than 4 samples
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
        with self.assertRaises(ValueError):
            self.dock.recommend(np.zeros((8, 28, 28), np.float32))
        with self.assertRaises(ValueError):
            self.dock.recommend(np.zeros((8, 1, 28, 28), np.float32), metric="best")


class ApiKeyTest(unittest.TestCase):
    """Against a server started with --auth: the key goes in the authorization header."""

    def test_api_key_is_sent_and_required(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "data")
            server, address = start_server(SERVER, ASSETS, data, ["--workers", "1", "--auth"])
            try:
                with open(os.path.join(data, "admin.key")) as f:
                    admin_key = f.read().strip()
                with modeldock.Client(address, api_key=admin_key) as admin:
                    self.assertEqual(admin.list(), [])
                    key = admin.create_key("consumer", name="reader")
                    self.assertIn(key["id"], {k["id"] for k in admin.list_keys()})
                    with modeldock.Client(address, api_key=key["secret"]) as reader:
                        self.assertEqual(reader.list(), [])
                        with self.assertRaises(modeldock.ModelDockError) as e:
                            reader.list_keys()
                        self.assertEqual(e.exception.code, grpc.StatusCode.PERMISSION_DENIED)
                        admin.revoke_key(key["id"])
                        with self.assertRaises(modeldock.ModelDockError) as e:
                            reader.list()
                        self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)
                with modeldock.Client(address) as anonymous:
                    with self.assertRaises(modeldock.ModelDockError) as e:
                        anonymous.list()
                    self.assertEqual(e.exception.code, grpc.StatusCode.UNAUTHENTICATED)
            finally:
                stop_server(server)


class LearnFromRecommendationsTest(unittest.TestCase):
    """Against a server started with --learn-from-recommendations: labelled recommendations leave
    weak (stage2) records; nobody can report that source."""

    def test_recommendations_leave_stage2_records(self):
        with tempfile.TemporaryDirectory() as tmp:
            server, address = start_server(SERVER, ASSETS, os.path.join(tmp, "data"),
                                           ["--workers", "1", "--learn-from-recommendations"])
            try:
                with modeldock.Client(address) as dock:
                    for stem in ("fmnist-tops-cnn", "fmnist-shuffled-cnn"):
                        with open(os.path.join(DEMO, stem + ".json")) as f:
                            meta = json.load(f)
                        dock.register(os.path.join(DEMO, stem + ".pt"), name=meta["name"],
                                      input_shape=meta["input_shape"],
                                      labels=meta["class_labels"])
                    query = os.path.join(DEMO, "query_tops")
                    images = read_idx(os.path.join(query, "query-images-idx3-ubyte"))[:, None]
                    labels = read_idx(os.path.join(query, "query-labels-idx1-ubyte"))
                    result = dock.recommend(images, labels=labels.astype(np.int64))
                    self.assertEqual(result.num_scored, 2)
                    self.assertEqual(result.recorded_outcomes, 2)
                    records = dock.records()
                    self.assertEqual(sorted(r["source"] for r in records), ["stage2", "stage2"])
                    # Oracle: the rank percentile of the stage-2 score (ties share).
                    stage2 = {r.name: r.stage2_score for r in result}
                    for r in records:
                        mine = stage2[r["model"]]
                        below = sum(v < mine for v in stage2.values())
                        ties = sum(v == mine for v in stage2.values()) - 1
                        self.assertEqual(r["accuracy"], (below + ties / 2) / (len(stage2) - 1))
                    best = max(result, key=lambda r: r.stage2_score).name
                    self.assertEqual(dock.recommend(images).recorded_outcomes, 0)  # no labels
                    # The source is the dock's own: a report claiming it is refused.
                    dataset, data = modeldock._dataset_header(images, labels.astype(np.int64), ())
                    dataset.inline_data = data
                    header = modeldock.pb.ReportOutcomeHeader(
                        dataset=dataset, source=modeldock.pb.OUTCOME_SOURCE_STAGE2,
                        outcomes=[modeldock.pb.Outcome(model=best, accuracy=0.5)])
                    with self.assertRaises(grpc.RpcError) as e:
                        dock._stub.ReportOutcome(iter([modeldock.pb.ReportOutcomeRequest(
                            header=header)]))
                    self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
                    self.assertIn("--learn-from-recommendations", e.exception.details())
                    self.assertEqual(len(dock.records()), 2)
            finally:
                stop_server(server)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
