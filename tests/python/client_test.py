#!/usr/bin/python3
"""The Python client (client/python/modeldock) against a real modeldock-server.

    PYTHONPATH=<build>/python client_test.py SERVER_BINARY ASSET_DIR

Starts the server on 127.0.0.1:0 with a temporary data directory, then registers, lists, gets,
recommends (numpy arrays: float32 and uint8, labelled and not) and deletes through the package,
and checks that errors arrive as ModelDockError with the gRPC code. Exits non-zero on failure.
"""
import csv
import hashlib
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
        # Its nearest models: the other READY model of its space (at least the footwear one).
        nearest = self.dock.nearest("fmnist-tops-cnn", k=100)
        self.assertIn("fmnist-footwear-cnn", [m.name for m, _ in nearest])
        self.assertNotIn(tops.id, [m.id for m, _ in nearest])
        similarities = [s for _, s in nearest]
        self.assertEqual(similarities, sorted(similarities, reverse=True))
        self.assertEqual(self.dock.nearest("fmnist-tops-cnn", k=1), nearest[:1])

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
        # How the answer was computed: the metric, stage-1 ranks, the timings.
        self.assertEqual((as_float.metric, unlabelled.metric), ("fusion", "none"))
        self.assertEqual(as_float.timings["total_millis"], as_float.total_millis)
        self.assertEqual(set(as_float.timings), {"receive_millis", "encode_query_millis",
                                                 "stage1_millis", "stage2_millis",
                                                 "total_millis"})
        ranks = [r.stage1_rank for r in self.dock.recommend(images, labels=labels, top=10)]
        self.assertEqual(sorted(ranks), list(range(1, len(ranks) + 1)))
        self.assertEqual(as_float[0].version, tops.version)
        # max_samples: the first N samples, as if sliced by the caller.
        first = self.dock.recommend(images[:60], labels=labels[:60], top=2, brute_force=True)
        limited = self.dock.recommend(images, labels=labels, top=2, brute_force=True,
                                      max_samples=60)
        self.assertEqual([(r.name, r.score) for r in limited], [(r.name, r.score) for r in first])
        self.assertEqual((tops.task, tops.owner_key_id), ("image", ""))
        self.assertGreater(tops.created_unix_ms, 0)

        edited = self.dock.update("fmnist-tops-cnn", license="MIT", tags=["x"])
        self.assertEqual((edited.license, edited.tags), ("MIT", ["x"]))
        self.assertEqual(self.dock.audit(limit=1)[0]["action"], "update")
        self.assertEqual(self.dock.update("fmnist-tops-cnn", tags=[]).tags, [])  # --clear-tags

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
        compatible = len(self.dock.list(task="image", input_shape=[1, 28, 28], state="ready"))
        for i, n in enumerate((60, 120, 200)):  # three queries: different samples
            stored = self.dock.report(images, labels, outcomes, source="import", max_samples=n)
            self.assertEqual((stored["num_stored"], stored["num_classes"],
                              stored["num_stage1_scores"], stored["total_queries"]),
                             (3, len(np.unique(labels[:n])), compatible, i + 1))
            # The earlier reports' stage-2 standings may have landed already (below).
            self.assertIn(stored["total_records"], range(3 * (i + 1), 6 * (i + 1) + 1))
        # Each report of several models leaves their stage-2 standings on its samples, scored in
        # the background (the server's default); training waits for those still being scored.
        job = self.dock.train(wait=True)
        self.assertEqual(job["state"], "done", job["message"])
        self.assertGreaterEqual(job["finished_unix_ms"], job["started_unix_ms"])
        self.assertEqual(job["num_queries"], 3)
        self.assertEqual(job["weak_queries"], 3)  # the reports' standings, one task per query
        # The stage-2 weight is chosen on the reported queries' standings, not borrowed.
        self.assertNotIn("needs 3 to choose its own", job["reason"])
        self.assertRegex(job["reason"], r"stage-2 weight (0: held-out|[0-9.]+ chosen on 3 queries)")
        self.assertIn(job["prior_target"], ("facts", "stage1-calibration"))
        listed = self.dock.alignments()
        self.assertEqual(listed["last_training"]["version"], job["version"])
        mine = {v["version"]: v for v in listed["versions"]}[job["version"]]
        self.assertEqual((mine["num_queries"], mine["validation_trained"]),
                         (3, job["validation_trained"]))
        # This test is the only one that reports to this server: 3 queries of 3 outcomes, and
        # each query's 3 standings.
        records = self.dock.records(model="learn-fmnist-tops-cnn")
        self.assertEqual((len(records), records.total_records, records.total_queries), (6, 6, 3))
        self.assertEqual(sorted(r["source"] for r in records), ["import"] * 3 + ["stage2"] * 3)
        self.assertEqual([r["accuracy"] for r in records if r["source"] == "import"],
                         [0.9, 0.9, 0.9])
        # Newest stored first (by record id: a report's standings are stored after they are
        # scored in the background, so their times need not follow the storing order).
        self.assertEqual([r["id"] for r in records],
                         sorted((r["id"] for r in records), reverse=True))
        self.assertEqual(len({r["id"] for r in records}), 6)
        everything = self.dock.records(limit=5)  # the totals count past the limit
        self.assertEqual((len(everything), everything.total_records, everything.total_queries),
                         (5, 18, 3))
        self.assertEqual(self.dock.use_alignment(job["version"]), job["version"])
        self.assertEqual(self.dock.alignments()["serving_version"], job["version"])
        self.assertEqual([v["version"] for v in self.dock.alignments()["versions"]
                          if v["serving"]], [job["version"]])
        served = self.dock.recommend(images, labels=labels, metric="none", top=3)
        self.assertEqual(served.alignment_version, job["version"])
        self.assertIsNotNone(served[0].prior)
        self.dock.use_alignment(0)
        self.assertIsNone(self.dock.recommend(images, labels=labels, metric="none")[0].prior)

    def test_tune_writes_the_winner_and_records_it(self):
        """tune(): rank, fine-tune the top candidate, keep it; progress per epoch; the file
        arrives whole (its SHA-256 is the one named) and loads in torch; a tune record."""
        self.register_demo("fmnist-tops-cnn", name="tune-fmnist-tops-cnn")
        query = os.path.join(DEMO, "query_tops")
        images = read_idx(os.path.join(query, "query-images-idx3-ubyte"))[:, None]
        labels = read_idx(os.path.join(query, "query-labels-idx1-ubyte")).astype(np.int64)
        progress = []
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "best.pt")
            tuned = self.dock.tune(images, labels, top=1, seed=5, max_epochs=2, budget_s=300,
                                   out=out, on_progress=progress.append)
            with open(out, "rb") as f:
                self.assertEqual(f.read(), tuned["model"])
        (candidate,) = tuned["candidates"]
        self.assertTrue(candidate["ok"], candidate["failure"])
        self.assertEqual(tuned["winner"], 0)
        self.assertEqual((tuned["train_samples"], tuned["val_samples"]), (160, 40))
        self.assertEqual(hashlib.sha256(tuned["model"]).hexdigest(), tuned["model_sha256"])
        # One progress message per epoch of the table (epoch 0: the untrained head), in order.
        self.assertEqual([(p["candidate"], p["epoch"], p["val_accuracy"]) for p in progress],
                         [(0, e["epoch"], e["val_accuracy"]) for e in candidate["epochs"]])
        self.assertEqual(candidate["best_accuracy"],
                         max(e["val_accuracy"] for e in candidate["epochs"]))
        records = [r for r in self.dock.records(model=candidate["name"]) if r["source"] == "tune"]
        self.assertEqual([(r["query_id"], r["accuracy"]) for r in records],
                         [(tuned["query_id"], candidate["best_accuracy"])])
        with self.assertRaises(modeldock.ModelDockError) as e:  # tuning needs labels
            self.dock.tune(images, None, top=1)
        self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)

    def test_watch_yields_each_state_until_ready(self):
        with open(os.path.join(DEMO, "fmnist-footwear-cnn.json")) as f:
            meta = json.load(f)
        admitted = self.dock.register(os.path.join(DEMO, "fmnist-footwear-cnn.pt"),
                                      name="watched", input_shape=meta["input_shape"],
                                      labels=meta["class_labels"], wait=False)
        seen = list(self.dock.watch(admitted.id))
        order = ["PENDING", "PROBING", "READY"]
        self.assertEqual(seen[-1].state, "READY", seen[-1].state_reason)
        self.assertEqual({m.id for m in seen}, {admitted.id})
        positions = [order.index(m.state) for m in seen]
        self.assertEqual(positions, sorted(positions))  # never backwards
        # A READY model: its one state, then the stream ends.
        self.assertEqual([m.state for m in self.dock.watch("watched")], ["READY"])
        self.assertEqual(self.dock.wait(admitted.id).state, "READY")
        with self.assertRaises(modeldock.ModelDockError) as e:
            next(self.dock.watch("no-such-model"))
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
        self.assertEqual(self.dock.delete_versions("watched"), [admitted.id])

    def test_health(self):
        self.assertEqual(self.dock.health(), "SERVING")
        self.assertEqual(self.dock.health("modeldock.v1.ModelDockService"), "SERVING")
        with self.assertRaises(modeldock.ModelDockError) as e:
            self.dock.health("no.such.Service")
        self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)

    def test_register_from_a_metadata_sidecar(self):
        sidecar = os.path.join(DEMO, "fmnist-all-mlp.json")
        with open(sidecar) as f:
            meta = json.load(f)
        path = os.path.join(DEMO, "fmnist-all-mlp.pt")
        model = self.dock.register(path, metadata=sidecar, name="sidecar-mlp")
        self.assertEqual((model.name, model.state), ("sidecar-mlp", "READY"))
        self.assertEqual((model.version, model.description, model.license, model.tags),
                         (meta["version"], meta["description"], meta["license"], meta["tags"]))
        self.assertEqual((model.input_shape, model.class_labels, model.task),
                         (meta["input_shape"], meta["class_labels"], "image"))
        # A dict works as the file does; non-empty arguments override it.
        other = self.dock.register(path, metadata=dict(meta, name="sidecar-mlp-2"),
                                   tags=["override"], version="2.0.0")
        self.assertEqual((other.name, other.tags, other.version, other.license),
                         ("sidecar-mlp-2", ["override"], "2.0.0", meta["license"]))
        with self.assertRaises(ValueError):
            self.dock.register(path, metadata=dict(meta, colour="red"))
        with self.assertRaises(ValueError):
            self.dock.register(path, metadata=dict(meta, task="video"))
        with self.assertRaises(ValueError):
            self.dock.register(path, metadata={k: v for k, v in meta.items() if k != "name"})
        self.assertEqual(sorted(self.dock.delete_versions("sidecar-mlp") +
                                self.dock.delete_versions("sidecar-mlp-2")),
                         sorted([model.id, other.id]))

    def test_list_filters_and_pages(self):
        image = self.register_demo("fmnist-tops-cnn", name="filt-image")
        stem = os.path.join(DEMO, "text", "english-fortune-topics-cnn")
        with open(stem + ".json") as f:
            labels = json.load(f)["class_labels"]
        text = self.dock.register(stem + ".pt", name="filt-text", labels=labels, task="text")
        self.assertEqual(text.task, "text")
        names = lambda models: [m.name for m in models]
        self.assertEqual(sorted(names(self.dock.list(name_contains="filt-"))),
                         ["filt-image", "filt-text"])
        self.assertEqual(names(self.dock.list(name_contains="filt-", task="text")), ["filt-text"])
        self.assertEqual(names(self.dock.list(name_contains="filt-", input_shape=[1, 28, 28])),
                         ["filt-image"])
        self.assertEqual(len(self.dock.list(name_contains="filt-", state="ready")), 2)
        self.assertEqual(self.dock.list(name_contains="filt-", state="failed"), [])
        with self.assertRaises(ValueError):
            self.dock.list(state="asleep")
        first = self.dock.list_page(page_size=1, name_contains="filt-")
        self.assertEqual((len(first.models), first.total_size), (1, 2))
        self.assertTrue(first.next_page_token)
        second = self.dock.list_page(page_size=1, page_token=first.next_page_token,
                                     name_contains="filt-")
        self.assertEqual(second.next_page_token, "")
        self.assertEqual(sorted(names(first.models + second.models)), ["filt-image", "filt-text"])
        for model in (image, text):
            self.dock.delete(model.id)

    def test_audit_filters(self):
        model = self.register_demo("fmnist-tops-cnn", name="audited")
        self.dock.update("audited", description="edited")
        self.dock.delete(model.id)
        everything = self.dock.audit(limit=10000)
        mine = [e for e in everything if model.id in e["target"] or "audited" in e["target"]]
        self.assertEqual([e["action"] for e in mine][:3], ["delete", "update", "register"])
        target = mine[0]["target"]
        self.assertEqual(self.dock.audit(limit=10000, target=target),
                         [e for e in everything if e["target"] == target])
        updates = self.dock.audit(limit=10000, action="update")
        self.assertEqual(updates, [e for e in everything if e["action"] == "update"])
        self.assertIn(mine[1], updates)
        self.assertEqual(self.dock.audit(limit=10000, actor="nobody"), [])
        self.assertEqual(len({e["id"] for e in everything}), len(everything))

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


class ScrubTest(unittest.TestCase):
    """scrub() against a server of its own: exact counts, a corrupted file found and forgiven."""

    def test_scrub_finds_a_changed_file(self):
        with tempfile.TemporaryDirectory() as tmp:
            data = os.path.join(tmp, "data")
            server, address = start_server(SERVER, ASSETS, data, ["--workers", "1"])
            try:
                with modeldock.Client(address) as dock:
                    models = {}
                    for name, stem in (("a", "fmnist-tops-cnn"), ("b", "fmnist-tops-cnn"),
                                       ("c", "fmnist-footwear-cnn")):
                        with open(os.path.join(DEMO, stem + ".json")) as f:
                            meta = json.load(f)
                        models[name] = dock.register(os.path.join(DEMO, stem + ".pt"), name=name,
                                                     input_shape=meta["input_shape"],
                                                     labels=meta["class_labels"])
                    sizes = models["a"].size_bytes + models["c"].size_bytes  # a, b: one file
                    clean = dock.scrub(wait=True)
                    self.assertEqual((clean.state, clean.blobs_checked, clean.blobs_ok,
                                      clean.blobs_bad, clean.bytes_hashed, clean.features_bad),
                                     ("done", 2, 2, 0, sizes, 0))
                    self.assertTrue(clean.ok)
                    self.assertLessEqual(clean.started_unix_ms, clean.finished_unix_ms)

                    sha = models["c"].sha256
                    blob = os.path.join(data, "blobs", sha[:2], sha)
                    with open(blob, "r+b") as f:
                        original = f.read()
                        f.seek(len(original) // 2)
                        f.write(bytes([original[len(original) // 2] ^ 0xFF]))
                    bad = dock.scrub(wait=True)
                    self.assertEqual((bad.blobs_checked, bad.blobs_ok, bad.blobs_bad,
                                      bad.models_failed, bad.bad_model_ids, bad.bad_blobs),
                                     (2, 1, 1, 1, [models["c"].id], [sha]))
                    self.assertFalse(bad.ok)
                    failed = dock.get(models["c"].id)
                    self.assertEqual(failed.state, "FAILED")
                    self.assertIn("DATA_LOSS", failed.state_reason)

                    with open(blob, "wb") as f:
                        f.write(original)
                    healed = dock.scrub(wait=True)
                    self.assertEqual((healed.blobs_bad, healed.models_requeued), (0, 1))
                    self.assertEqual(dock.wait(models["c"].id).state, "READY")
            finally:
                stop_server(server)


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
                    provider_key = admin.create_key("provider", name="uploader")
                    with modeldock.Client(address, api_key=provider_key["secret"]) as provider:
                        with open(os.path.join(DEMO, "fmnist-tops-cnn.json")) as f:
                            meta = json.load(f)
                        owned = provider.register(os.path.join(DEMO, "fmnist-tops-cnn.pt"),
                                                  metadata=meta, wait=False)
                    self.assertEqual(owned.owner_key_id, provider_key["id"])
                    self.assertEqual(admin.audit(limit=1, action="register")[0]["actor"],
                                     provider_key["id"])
                    admin.delete(owned.id)
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
