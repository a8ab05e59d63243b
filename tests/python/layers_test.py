#!/usr/bin/python3
"""Layer selection (embed_layers) through a real modeldock-server and the Python client: every
layer's stage-2 score equals the independent NumPy oracle (scoring/testdata/metrics_oracle.py)
computed on the layer's features, which this test gets by running the same TorchScript file in
PyTorch.

    PYTHONPATH=<build>/python layers_test.py SERVER_BINARY ASSET_DIR CRAFTED_DIR ORACLE_DIR
"""
import os
import sys
import tempfile
import unittest

import numpy as np
import torch

import modeldock
from live_server import read_idx, start_server, stop_server

SERVER, ASSETS, CRAFTED, ORACLE_DIR = sys.argv[1:5]
sys.path.insert(0, ORACLE_DIR)
import metrics_oracle  # noqa: E402  (the scoring tests' oracles, imported from their directory)
import proxy_oracle  # noqa: E402

QUERY = os.path.join(ASSETS, "demo", "query_tops")
LABELS = [f"c{i}" for i in range(10)]


class LayersTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.server, cls.address = start_server(SERVER, ASSETS, os.path.join(cls.tmp.name, "data"),
                                               ["--workers", "1"])
        cls.dock = modeldock.Client(cls.address)
        images = read_idx(os.path.join(QUERY, "query-images-idx3-ubyte"))
        cls.samples = (images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
        cls.labels = read_idx(os.path.join(QUERY, "query-labels-idx1-ubyte")).astype(np.int64)
        cls.dock.register(os.path.join(CRAFTED, "layers.pt"), name="layered",
                          input_shape=[1, 28, 28], labels=LABELS)

    @classmethod
    def tearDownClass(cls):
        cls.dock.close()
        stop_server(cls.server)
        cls.tmp.cleanup()

    def test_layer_scores_match_the_numpy_oracle(self):
        model = self.dock.get("layered")
        self.assertEqual(model.state, "READY", model.state_reason)
        self.assertEqual(model.layers, [("pixels", 49), ("corners", 4), ("hidden", 16)])

        module = torch.jit.load(os.path.join(CRAFTED, "layers.pt"))
        with torch.no_grad():
            layers = [t.double().numpy()
                      for t in module.embed_layers(torch.from_numpy(self.samples))]
        # With layers in the dock a single metric compares every view on its top 32 principal
        # components (scoring/proxy.h's CompressFeatures = the proxy oracle's compress) that vary
        # (DropNullComponents), TMI on the raw features (its L-infinity neighbours are not
        # rotation-invariant).
        oracles = {"logme": metrics_oracle.logme, "tmi": metrics_oracle.tmi,
                   "hscore": metrics_oracle.hscore}
        for metric, oracle in oracles.items():
            result = self.dock.recommend(self.samples, self.labels, top=5, metric=metric,
                                         brute_force=True)
            r = result[0]
            self.assertEqual(r.name, "layered")
            self.assertEqual([l.name for l in r.layer_scores], ["pixels", "corners", "hidden"])
            views = layers if metric == "tmi" else [
                proxy_oracle.drop_null_components(proxy_oracle.compress(f, 32)) for f in layers]
            expected = [oracle(f, self.labels) for f in views]
            for got, want in zip(r.layer_scores, expected):
                self.assertAlmostEqual(got.score, want, delta=1e-4 * abs(want) + 1e-6,
                                       msg=f"{metric} on layer {got.name}")
            best = max(r.layer_scores, key=lambda l: l.score)
            self.assertEqual(r.layer, best.name, metric)
            self.assertAlmostEqual(r.stage2_score, best.score, places=12)
            self.assertIn(f"layer '{best.name}'", r.reason)

    def test_the_fusion_ranks_every_layer_with_the_models(self):
        result = self.dock.recommend(self.samples, self.labels, top=5, brute_force=True)
        r = next(x for x in result if x.name == "layered")
        self.assertEqual(len(r.layer_scores), 3)
        self.assertEqual(r.stage2_score, max(l.score for l in r.layer_scores))

if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
