#!/usr/bin/python3
"""Prometheus metrics of a real modeldock-server, scraped over HTTP and parsed by the stock
Prometheus Python client (Debian's python3-prometheus-client).

    PYTHONPATH=<build>/python metrics_test.py SERVER_BINARY ASSET_DIR
"""
import json
import os
import re
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request

import grpc
from prometheus_client.parser import text_string_to_metric_families

import modeldock
from live_server import start_server, stop_server

SERVER, ASSETS = sys.argv[1], sys.argv[2]
SERVICE = "/modeldock.v1.ModelDockService/"


def scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = response.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(samples, name, **labels):
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class MetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.err = open(os.path.join(cls.tmp.name, "server.err"), "w+")
        cls.server, cls.address = start_server(
            SERVER, ASSETS, os.path.join(cls.tmp.name, "d"),
            ["--workers", "1", "--metrics-listen", "127.0.0.1:0"], stderr=cls.err)
        cls.err.seek(0)
        cls.port = int(re.search(r"metrics listening on 127\.0\.0\.1:(\d+)", cls.err.read()).group(1))
        cls.dock = modeldock.Client(cls.address)

    @classmethod
    def tearDownClass(cls):
        cls.dock.close()
        stop_server(cls.server)
        cls.err.close()
        cls.tmp.cleanup()

    def test_counters_move_with_calls(self):
        before = scrape(self.port)
        with self.assertRaises(modeldock.ModelDockError):
            self.dock.get("nobody")
        self.dock.list()
        demo = os.path.join(ASSETS, "demo")
        with open(os.path.join(demo, "fmnist-tops-cnn.json")) as f:
            meta = json.load(f)
        self.dock.register(os.path.join(demo, "fmnist-tops-cnn.pt"), name=meta["name"],
                           input_shape=meta["input_shape"], labels=meta["class_labels"])
        import numpy as np
        samples = np.random.default_rng(0).random((8, 1, 28, 28), dtype=np.float32)
        self.dock.recommend(samples, labels=[0, 1] * 4)
        self.dock.report(samples, [0, 1] * 4, {meta["name"]: 0.75})
        after = scrape(self.port)

        def moved(name, **labels):
            return value(after, name, **labels) - value(before, name, **labels)

        self.assertEqual(moved("modeldock_rpc_total", method=SERVICE + "GetModel",
                               code="NOT_FOUND"), 1)
        self.assertGreaterEqual(moved("modeldock_rpc_total", method=SERVICE + "ListModels",
                                      code="OK"), 1)
        self.assertEqual(moved("modeldock_rpc_total", method=SERVICE + "RegisterModel",
                               code="OK"), 1)
        self.assertEqual(moved("modeldock_rpc_total", method=SERVICE + "Recommend", code="OK"), 1)
        # The latency histogram agrees with the counter and is cumulative.
        m = SERVICE + "Recommend"
        self.assertEqual(value(after, "modeldock_rpc_duration_seconds_count", method=m), 1)
        self.assertEqual(value(after, "modeldock_rpc_duration_seconds_bucket", method=m, le="+Inf"), 1)
        self.assertGreater(value(after, "modeldock_rpc_duration_seconds_sum", method=m), 0)
        self.assertLessEqual(value(after, "modeldock_rpc_duration_seconds_bucket", method=m,
                                   le="0.005"),
                             value(after, "modeldock_rpc_duration_seconds_bucket", method=m,
                                   le="60.0"))
        self.assertEqual(value(after, "modeldock_models", state="READY"), 1)
        self.assertEqual(moved("modeldock_registrations_total", outcome="admitted"), 1)
        self.assertEqual(moved("modeldock_probes_total", outcome="ready"), 1)
        self.assertGreater(moved("modeldock_probe_seconds_total"), 0)
        self.assertEqual(moved("modeldock_recommendations_total"), 1)
        self.assertEqual(value(after, "modeldock_index_vectors"), 1)
        self.assertEqual(value(after, "modeldock_workers"), 1)
        self.assertGreaterEqual(moved("modeldock_worker_jobs_total"), 3)  # admit, probe, run
        self.assertEqual(moved("modeldock_cache_requests_total", cache="outputs", result="miss"), 1)
        self.assertEqual(moved("modeldock_outcome_records"), 1)
        self.assertEqual(value(after, "modeldock_serving_alignment"), 0)

    def test_only_metrics_is_served(self):
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/other", timeout=10)
        self.assertEqual(e.exception.code, 404)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
