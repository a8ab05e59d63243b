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

# Every family of /metrics as the hand-written encoder wrote it (scraped from a server of
# 2026-12-06 before prometheus-cpp): name, type, help and the label names of its samples.
# Dashboards depend on these; the move to prometheus-cpp must not change one of them.
EXPECTED_FAMILIES = [
    ("modeldock_rpc_total", "counter", "gRPC calls handled, by method and status code.",
     {"modeldock_rpc_total": ("code", "method")}),
    ("modeldock_rpc_duration_seconds", "histogram",
     "gRPC call latency from the call's start to its status, by method.",
     {"modeldock_rpc_duration_seconds_bucket": ("le", "method"),
      "modeldock_rpc_duration_seconds_sum": ("method",),
      "modeldock_rpc_duration_seconds_count": ("method",)}),
    ("modeldock_models", "gauge", "Registered models by state.",
     {"modeldock_models": ("state",)}),
    ("modeldock_registrations_total", "counter",
     "Registrations since start: admitted (stored) or rejected.",
     {"modeldock_registrations_total": ("outcome",)}),
    ("modeldock_probes_total", "counter", "Probing jobs finished since start.",
     {"modeldock_probes_total": ("outcome",)}),
    ("modeldock_probe_seconds_total", "counter", "Time spent probing models that became READY.",
     {"modeldock_probe_seconds_total": ()}),
    ("modeldock_probe_queue", "gauge", "Models waiting to be probed.",
     {"modeldock_probe_queue": ()}),
    ("modeldock_recommendations_total", "counter", "Recommendations answered.",
     {"modeldock_recommendations_total": ()}),
    ("modeldock_stage_seconds_total", "counter",
     "Time spent in each recommend stage, summed over recommendations.",
     {"modeldock_stage_seconds_total": ("stage",)}),
    ("modeldock_index_vectors", "gauge", "Knowledge vectors in the FAISS index.",
     {"modeldock_index_vectors": ()}),
    ("modeldock_cache_requests_total", "counter",
     "Cache lookups by cache (outputs: model outputs on query datasets; proxy: compressed probe "
     "features) and result.",
     {"modeldock_cache_requests_total": ("cache", "result")}),
    ("modeldock_workers", "gauge", "Model worker processes.", {"modeldock_workers": ()}),
    ("modeldock_worker_waiting_jobs", "gauge", "Jobs waiting for a free model worker.",
     {"modeldock_worker_waiting_jobs": ()}),
    ("modeldock_worker_jobs_total", "counter", "Jobs run by model workers.",
     {"modeldock_worker_jobs_total": ()}),
    ("modeldock_worker_restarts_total", "counter",
     "Model workers killed (limits, cancellation) or lost, and replaced.",
     {"modeldock_worker_restarts_total": ()}),
    ("modeldock_outcome_records", "gauge", "Reported fine-tune outcomes stored.",
     {"modeldock_outcome_records": ()}),
    ("modeldock_serving_alignment", "gauge",
     "Trained ranker version serving recommendations (0 = untrained).",
     {"modeldock_serving_alignment": ()}),
    ("modeldock_blob_verifications_total", "counter",
     "Model file checks before a run: hashed, or answered from the verified-state cache.",
     {"modeldock_blob_verifications_total": ("how",)}),
    ("modeldock_blob_hashed_bytes_total", "counter",
     "Bytes of model files hashed (checks before runs and scrubs).",
     {"modeldock_blob_hashed_bytes_total": ()}),
    ("modeldock_blobs_bad_total", "counter",
     "Checks that found a model file missing, truncated or changed.",
     {"modeldock_blobs_bad_total": ()}),
    ("modeldock_blobs_restored_total", "counter",
     "Bad model files replaced by a good copy from a mirror.",
     {"modeldock_blobs_restored_total": ()}),
    ("modeldock_scrubs_total", "counter", "Scrubs finished since start.",
     {"modeldock_scrubs_total": ()}),
    ("modeldock_scrub_last_finished_seconds", "gauge",
     "When the last scrub finished (Unix time; 0 = none since start).",
     {"modeldock_scrub_last_finished_seconds": ()}),
    ("modeldock_scrub_last_blobs", "gauge",
     "Model files the last finished scrub checked, by result.",
     {"modeldock_scrub_last_blobs": ("result",)}),
    ("modeldock_scrub_last_bad_features", "gauge",
     "Stored probe feature rows the last scrub found not matching their checksum.",
     {"modeldock_scrub_last_bad_features": ()}),
]
# The fixed label values of today's output (method and code vary with the calls made).
EXPECTED_LABEL_VALUES = {
    "state": {"PENDING", "PROBING", "READY", "FAILED"},
    "outcome": {"admitted", "rejected", "ready", "failed"},
    "stage": {"1", "2"},
    "cache": {"outputs", "proxy"},
    "result": {"hit", "miss", "ok", "bad", "restored"},
    "how": {"hashed", "cached"},
    "le": {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30",
           "60", "+Inf"},
}
SAMPLE_LINE = re.compile(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-z_]+)="((?:[^"\\]|\\.)*)"')


def raw_scrape(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        return response.read().decode()


def families_of(text):
    """[(name, type, help, {sample name: sorted label names})] in order, and {label: values}."""
    order, helps, types, samples, values = [], {}, {}, {}, {}
    for line in text.splitlines():
        if line.startswith("# HELP "):
            name, text_help = line[len("# HELP "):].split(" ", 1)
            order.append(name)
            helps[name] = text_help
        elif line.startswith("# TYPE "):
            name, kind = line[len("# TYPE "):].split(" ", 1)
            types[name] = kind
        elif line:
            found = SAMPLE_LINE.match(line)
            assert found, line
            labels = LABEL.findall(found.group(2) or "")
            family = order[-1]
            samples.setdefault(family, {})[found.group(1)] = tuple(sorted(k for k, _ in labels))
            for k, v in labels:
                values.setdefault(k, set()).add(v)
    return [(n, types.get(n), helps[n], samples.get(n, {})) for n in order], values


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

    def test_names_types_help_and_labels_are_unchanged(self):
        # One call so that the RPC families have samples, then the exact list.
        self.dock.list()
        families, values = families_of(raw_scrape(self.port))
        self.assertEqual(sorted(f[0] for f in families), sorted(f[0] for f in EXPECTED_FAMILIES))
        by_name = {f[0]: f for f in families}
        for expected in EXPECTED_FAMILIES:
            self.assertEqual(by_name[expected[0]], expected)
        for label, expected in EXPECTED_LABEL_VALUES.items():
            self.assertEqual(values[label], expected, label)

    def test_only_metrics_is_served(self):
        with self.assertRaises(urllib.error.HTTPError) as e:
            urllib.request.urlopen(f"http://127.0.0.1:{self.port}/other", timeout=10)
        self.assertEqual(e.exception.code, 404)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
