#!/usr/bin/python3
"""The dock's models over the KServe v2 inference protocol (--kserve-listen), called by a stock
client: plain grpcio stubs generated from proto/kserve/inference.proto, no modeldock code on the
calling side. Outputs are checked against the same TorchScript file run in PyTorch.

    PYTHONPATH=<build>/python kserve_test.py SERVER_BINARY ASSET_DIR
"""
import json
import os
import sys
import tempfile
import unittest

import grpc
import numpy as np
import torch

import modeldock
from kserve import inference_pb2 as pb
from kserve import inference_pb2_grpc as pb_grpc
from live_server import kserve_address, read_idx, start_server, stop_server

SERVER, ASSETS = sys.argv[1], sys.argv[2]
DEMO = os.path.join(ASSETS, "demo")



class KServeTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.err = open(os.path.join(cls.tmp.name, "server.err"), "w+")
        cls.server, cls.address = start_server(
            SERVER, ASSETS, os.path.join(cls.tmp.name, "d"),
            ["--workers", "1", "--kserve-listen", "127.0.0.1:0"], stderr=cls.err)
        cls.channel = grpc.insecure_channel(kserve_address(cls.err))
        cls.kserve = pb_grpc.GRPCInferenceServiceStub(cls.channel)
        cls.dock = modeldock.Client(cls.address)
        with open(os.path.join(DEMO, "fmnist-tops-cnn.json")) as f:
            meta = json.load(f)
        cls.model = cls.dock.register(os.path.join(DEMO, "fmnist-tops-cnn.pt"), name="tops",
                                      input_shape=[1, 28, 28], labels=meta["class_labels"],
                                      version="1.0")
        images = read_idx(os.path.join(DEMO, "query_tops", "query-images-idx3-ubyte"))[:8]
        cls.x = (images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
        with torch.no_grad():
            cls.expected = torch.jit.load(os.path.join(DEMO, "fmnist-tops-cnn.pt"))(
                torch.from_numpy(cls.x)).numpy()

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.dock.close()
        stop_server(cls.server)
        cls.err.close()
        cls.tmp.cleanup()

    def test_health_and_metadata(self):
        self.assertTrue(self.kserve.ServerLive(pb.ServerLiveRequest()).live)
        self.assertTrue(self.kserve.ServerReady(pb.ServerReadyRequest()).ready)
        self.assertEqual(self.kserve.ServerMetadata(pb.ServerMetadataRequest()).name, "modeldock")
        self.assertTrue(self.kserve.ModelReady(pb.ModelReadyRequest(name="tops")).ready)
        self.assertTrue(self.kserve.ModelReady(pb.ModelReadyRequest(name="tops", version="1.0")).ready)
        self.assertFalse(self.kserve.ModelReady(pb.ModelReadyRequest(name="nope")).ready)
        meta = self.kserve.ModelMetadata(pb.ModelMetadataRequest(name="tops"))
        self.assertEqual((meta.name, list(meta.versions), meta.platform),
                         ("tops", ["1.0"], "pytorch_torchscript"))
        self.assertEqual(list(meta.inputs[0].shape), [-1, 1, 28, 28])
        self.assertEqual(meta.inputs[0].datatype, "FP32")
        self.assertEqual(list(meta.outputs[0].shape), [-1, 4])

    def request(self, raw):
        inp = pb.ModelInferRequest.InferInputTensor(name="input", datatype="FP32",
                                                    shape=list(self.x.shape))
        req = pb.ModelInferRequest(model_name="tops", id="r1")
        if raw:
            req.raw_input_contents.append(self.x.tobytes())
        else:
            inp.contents.fp32_contents.extend(self.x.ravel().tolist())
        req.inputs.append(inp)
        return req

    def test_infer_matches_pytorch(self):
        for raw in (False, True):
            out = self.kserve.ModelInfer(self.request(raw))
            self.assertEqual((out.model_name, out.model_version, out.id), ("tops", "1.0", "r1"))
            self.assertEqual(list(out.outputs[0].shape), [8, 4])
            if raw:
                got = np.frombuffer(out.raw_output_contents[0], np.float32).reshape(8, 4)
            else:
                got = np.array(out.outputs[0].contents.fp32_contents, np.float32).reshape(8, 4)
            np.testing.assert_allclose(got, self.expected, rtol=1e-4, atol=1e-5)

    def test_bad_requests(self):
        req = self.request(raw=False)
        req.inputs[0].datatype = "INT64"
        with self.assertRaises(grpc.RpcError) as e:
            self.kserve.ModelInfer(req)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        req = self.request(raw=True)
        req.raw_input_contents[0] = req.raw_input_contents[0][:-4]
        with self.assertRaises(grpc.RpcError) as e:
            self.kserve.ModelInfer(req)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("raw_input_contents holds", e.exception.details())
        req = self.request(raw=False)
        req.model_name = "nope"
        with self.assertRaises(grpc.RpcError) as e:
            self.kserve.ModelInfer(req)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
