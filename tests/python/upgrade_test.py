#!/usr/bin/python3
"""Upgrades: a data directory written by an earlier release (tests/fixtures/upgrade/) is opened
by this server with nothing lost: the same model ids, names, files, metadata edits, outcome
records and audit log, the schema migrated to the current one, and the models recommended.

    PYTHONPATH=<build>/python upgrade_test.py SERVER_BINARY ASSET_DIR
"""
import hashlib
import os
import sqlite3
import sys
import tarfile
import tempfile
import unittest

import numpy as np

import modeldock
from live_server import read_idx, start_server, stop_server

SERVER, ASSETS = sys.argv[1], sys.argv[2]
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "upgrade")
CURRENT_SCHEMA = "7"


def sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


class UpgradeTest(unittest.TestCase):
    def test_a_schema_6_data_directory_opens_with_nothing_lost(self):
        tmp = tempfile.TemporaryDirectory()
        with tarfile.open(os.path.join(FIXTURES, "data-schema6-5798ea6.tar.gz")) as archive:
            archive.extractall(tmp.name)
        data = os.path.join(tmp.name, "data")
        db = os.path.join(data, "modeldock.db")
        with sqlite3.connect(db) as old:
            self.assertEqual(old.execute("SELECT value FROM meta WHERE key = 'schema_version'")
                             .fetchone()[0], "6")
            stored = dict(old.execute("SELECT id, sha256 FROM models"))
        server, address = start_server(SERVER, ASSETS, data, ["--workers", "1"])
        client = modeldock.Client(address)
        try:
            # The models: same ids and files; READY again (probed again only if this build's
            # assets differ from the ones the fixture was made with).
            models = {m.name: client.wait(m.id) for m in client.list()}
            self.assertEqual({n: m.id for n, m in models.items()},
                             {"fmnist-tops-cnn": "m-20e0daf1aaf4600c",
                              "glyph-digits-cnn": "m-a11805bde8e87667"})
            for model in models.values():
                self.assertEqual(model.state, "READY", model.state_reason)
                self.assertEqual(model.sha256, stored[model.id])
                blob = os.path.join(data, "blobs", model.sha256[:2], model.sha256)
                self.assertEqual(sha256(blob), model.sha256)
            digits = models["glyph-digits-cnn"]
            self.assertEqual((digits.description, digits.tags),
                             ("digits, described before the upgrade", ["upgrade-fixture"]))

            # The reported outcomes and their stage-2 standings, the audit log.
            records = client.records()
            self.assertEqual(sorted((r["model"], r["accuracy"], r["source"]) for r in records),
                             [("fmnist-tops-cnn", 0.83, "finetune"),
                              ("fmnist-tops-cnn", 1.0, "stage2"),
                              ("glyph-digits-cnn", 0.0, "stage2"),
                              ("glyph-digits-cnn", 0.41, "finetune")])
            self.assertEqual(records.total_queries, 1)
            self.assertEqual([(e["action"], e["target"]) for e in reversed(client.audit())][:3],
                             [("register", "m-20e0daf1aaf4600c"),
                              ("register", "m-a11805bde8e87667"),
                              ("update", "m-a11805bde8e87667")])

            # Recommended as before: the model trained on the query's classes first.
            query = os.path.join(ASSETS, "demo", "query_tops")
            images = read_idx(os.path.join(query, "query-images-idx3-ubyte"))[:, None]
            labels = read_idx(os.path.join(query, "query-labels-idx1-ubyte")).astype(np.int64)
            result = client.recommend(images, labels, top=2, brute_force=True)
            self.assertEqual([r.name for r in result], ["fmnist-tops-cnn", "glyph-digits-cnn"])
        finally:
            client.close()
            stop_server(server)
        # Migrated in place, and what the old schema had is still there.
        with sqlite3.connect(db) as new:
            self.assertEqual(new.execute("SELECT value FROM meta WHERE key = 'schema_version'")
                             .fetchone()[0], CURRENT_SCHEMA)
            self.assertEqual(new.execute("SELECT COUNT(*) FROM outcomes").fetchone()[0], 4)
        tmp.cleanup()


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
