#!/usr/bin/python3
"""Remote models over the KServe v2 protocol, between two real docks: dock A serves its models
(--kserve-listen for gRPC, --http-listen for HTTP/REST); dock B registers one of them with
`register_remote` over each binding (the weights never reach B), probes and recommends it, and
says clearly when A cannot be reached.

    PYTHONPATH=<build>/python remote_test.py SERVER_BINARY ASSET_DIR
"""
import json
import os
import subprocess
import sys
import tempfile
import unittest

import grpc
import numpy as np

import modeldock
from kserve import inference_pb2 as pb
from kserve import inference_pb2_grpc as pb_grpc
from live_server import http_address, kserve_address, read_idx, start_server, stop_server

SERVER, ASSETS = sys.argv[1], sys.argv[2]
DEMO = os.path.join(ASSETS, "demo")
TOPS_PT = os.path.join(DEMO, "fmnist-tops-cnn.pt")
with open(os.path.join(DEMO, "fmnist-tops-cnn.json")) as _f:
    TOPS_LABELS = json.load(_f)["class_labels"]


def register_tops_remote(client, kserve, name):
    """Registers on `client`'s dock the model "tops" that the dock at `kserve` serves."""
    return client.register_remote(kserve, "tops", name=name, input_shape=[1, 28, 28],
                                  labels=TOPS_LABELS)


class RemoteModelTest(unittest.TestCase):
    def test_a_model_served_by_one_dock_is_registered_and_recommended_by_another(self):
        tmp = tempfile.TemporaryDirectory()
        err = open(os.path.join(tmp.name, "a.err"), "w+")
        server_a, address_a = start_server(SERVER, ASSETS, os.path.join(tmp.name, "a"),
                                           ["--workers", "1", "--kserve-listen", "127.0.0.1:0",
                                            "--http-listen", "127.0.0.1:0"],
                                           stderr=err)
        err_b = open(os.path.join(tmp.name, "b.err"), "w+")
        server_b, address_b = start_server(SERVER, ASSETS, os.path.join(tmp.name, "b"),
                                           ["--workers", "1", "--kserve-listen", "127.0.0.1:0"],
                                           stderr=err_b)
        a, b = modeldock.Client(address_a), modeldock.Client(address_b)
        channel_b = grpc.insecure_channel(kserve_address(err_b))
        try:
            kserve = kserve_address(err)
            a.register(TOPS_PT, name="tops", input_shape=[1, 28, 28], labels=TOPS_LABELS)

            remote = register_tops_remote(b, kserve, "tops-remote")
            self.assertEqual(remote.state, "READY", remote.state_reason)
            self.assertEqual(remote.remote, (kserve, "tops", ""))
            self.assertEqual(remote.size_bytes, 0)
            b.register(TOPS_PT, name="tops-local", input_shape=[1, 28, 28], labels=TOPS_LABELS)
            # The same model of A over KServe v2's HTTP/REST binding (JSON tensors): an
            # endpoint written as a URL.
            http_a = http_address(err)
            over_http = register_tops_remote(b, http_a, "tops-http")
            self.assertEqual(over_http.state, "READY", over_http.state_reason)
            self.assertEqual(over_http.remote, (http_a, "tops", ""))
            # B's own KServe endpoint says what each model is: a TorchScript file it runs, or a
            # model it forwards to another KServe v2 server.
            kserve_b = pb_grpc.GRPCInferenceServiceStub(channel_b)
            platforms = {name: kserve_b.ModelMetadata(pb.ModelMetadataRequest(name=name)).platform
                         for name in ("tops-remote", "tops-local")}
            self.assertEqual(platforms, {"tops-remote": "remote_kserve_v2",
                                         "tops-local": "pytorch_torchscript"})

            query = os.path.join(DEMO, "query_tops")
            images = read_idx(os.path.join(query, "query-images-idx3-ubyte"))[:, None]
            y = read_idx(os.path.join(query, "query-labels-idx1-ubyte")).astype(np.int64)
            # LEEP reads the logits only: the remote and the local copy score the same.
            leep = {r.name: r for r in b.recommend(images, y, top=5, metric="leep",
                                                   brute_force=True)}
            self.assertEqual(set(leep), {"tops-remote", "tops-local", "tops-http"})
            self.assertAlmostEqual(leep["tops-remote"].score, leep["tops-local"].score, places=6)
            self.assertAlmostEqual(leep["tops-http"].score, leep["tops-local"].score, places=5)
            default = b.recommend(images, y, top=5, brute_force=True)
            self.assertEqual(default.num_scored, 3)
            self.assertIn("logits (no embed)", {r.name: r for r in default}["tops-remote"].reason)

            # Unreachable server / unknown model: refused with the reason; nothing stored.
            with self.assertRaises(modeldock.ModelDockError) as e:
                b.register_remote("127.0.0.1:1", "tops", name="nowhere", input_shape=[1, 28, 28],
                                  labels=TOPS_LABELS)
            self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)
            self.assertIn("127.0.0.1:1", str(e.exception))
            for endpoint in ("http://127.0.0.1:1", "https://127.0.0.1:1"):
                with self.assertRaises(modeldock.ModelDockError) as e:
                    b.register_remote(endpoint, "tops", name="nowhere",
                                      input_shape=[1, 28, 28], labels=TOPS_LABELS)
                self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)
                self.assertIn(endpoint, str(e.exception))
            with self.assertRaises(modeldock.ModelDockError) as e:
                b.register_remote("http://127.0.0.1:99999", "tops", name="bad-url",
                                  input_shape=[1, 28, 28], labels=TOPS_LABELS)
            self.assertEqual(e.exception.code, grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn("is not a URL", str(e.exception))
            for endpoint in (kserve, http_a):
                with self.assertRaises(modeldock.ModelDockError) as e:
                    b.register_remote(endpoint, "no-such-model", name="unknown",
                                      input_shape=[1, 28, 28], labels=TOPS_LABELS)
                self.assertEqual(e.exception.code, grpc.StatusCode.NOT_FOUND)
            with self.assertRaises(modeldock.ModelDockError) as e:
                b.register_remote(kserve, "tops", name="wrong-labels", input_shape=[1, 28, 28],
                                  labels=["a", "b"])
            self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
            self.assertEqual({m.name for m in b.list()}, {"tops-remote", "tops-local", "tops-http"})
            # The options of `modeldock register --remote`: a metadata sidecar (its labels,
            # shape, description...), the task, a remote version, arguments overriding.
            sidecar = os.path.join(DEMO, "fmnist-tops-cnn.json")
            with open(sidecar) as f:
                meta = json.load(f)
            described = b.register_remote(kserve, "tops", metadata=sidecar, name="tops-meta",
                                          task="image", tags=["remote"])
            self.assertEqual((described.state, described.remote), ("READY", (kserve, "tops", "")))
            self.assertEqual((described.description, described.version, described.license,
                              described.tags, described.class_labels, described.input_shape,
                              described.task),
                             (meta["description"], meta["version"], meta["license"], ["remote"],
                              meta["class_labels"], meta["input_shape"], "image"))
            with self.assertRaises(modeldock.ModelDockError) as e:  # A serves no version 7
                b.register_remote(kserve, "tops", metadata=sidecar, name="tops-v7",
                                  remote_version="7")
            self.assertIn(e.exception.code, (grpc.StatusCode.NOT_FOUND,
                                             grpc.StatusCode.FAILED_PRECONDITION))
            self.assertEqual(b.delete_versions("tops-meta"), [described.id])
            self.assertEqual({m.name for m in b.list()}, {"tops-remote", "tops-local", "tops-http"})

            # A gone: the remote model is skipped with a warning that says why; B still answers.
            stop_server(server_a)
            server_a = None
            # (other samples than before: outputs on a query already seen come from B's cache)
            gone = b.recommend(images[:100], y[:100], top=5, metric="leep", brute_force=True)
            self.assertEqual([r.name for r in gone if r.scored], ["tops-local"])
            self.assertTrue(any("tops-remote" in w and kserve in w for w in gone.warnings),
                            gone.warnings)
        finally:
            channel_b.close()
            a.close()
            b.close()
            if server_a is not None:
                stop_server(server_a)
            stop_server(server_b)
            err.close()
            err_b.close()
            tmp.cleanup()


def make_certs(directory):
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl, EC P-256)."""
    def openssl(*args):
        subprocess.run(["/usr/bin/openssl", *args], cwd=directory, check=True,
                       capture_output=True)
    openssl("ecparam", "-name", "prime256v1", "-out", "curve.pem")
    openssl("req", "-x509", "-newkey", "ec:curve.pem", "-nodes", "-days", "1", "-subj", "/CN=ca",
            "-keyout", "ca.key", "-out", "ca.pem")
    with open(os.path.join(directory, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "ec:curve.pem", "-nodes", "-subj", "/CN=server", "-keyout",
            "server.key", "-out", "server.csr")
    openssl("x509", "-req", "-days", "1", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-extfile", "san.ext", "-out", "server.pem")
    return {name: os.path.join(directory, name) for name in ("ca.pem", "server.pem", "server.key")}


class RemoteTlsTest(unittest.TestCase):
    def test_remote_models_over_tls(self):
        """Dock A serves KServe v2 over TLS; B trusts A's CA (--remote-tls-ca) and registers a
        model of A; C, without remote TLS, cannot reach it and says so."""
        tmp = tempfile.TemporaryDirectory()
        certs = make_certs(tmp.name)
        err = open(os.path.join(tmp.name, "a.err"), "w+")
        servers = []
        try:
            server_a, address_a = start_server(
                SERVER, ASSETS, os.path.join(tmp.name, "a"),
                ["--workers", "1", "--kserve-listen", "127.0.0.1:0", "--http-listen",
                 "127.0.0.1:0", "--tls-cert", certs["server.pem"], "--tls-key",
                 certs["server.key"]], stderr=err)
            servers.append(server_a)
            server_b, address_b = start_server(SERVER, ASSETS, os.path.join(tmp.name, "b"),
                                               ["--workers", "1", "--remote-tls-ca",
                                                certs["ca.pem"]])
            servers.append(server_b)
            server_c, address_c = start_server(SERVER, ASSETS, os.path.join(tmp.name, "c"),
                                               ["--workers", "1"])
            servers.append(server_c)
            kserve = kserve_address(err)
            with modeldock.Client(address_a, tls_ca=certs["ca.pem"]) as a:
                a.register(TOPS_PT, name="tops",
                           input_shape=[1, 28, 28], labels=TOPS_LABELS)
            https_a = http_address(err)
            self.assertTrue(https_a.startswith("https://"), https_a)
            with modeldock.Client(address_b) as b:
                remote = register_tops_remote(b, kserve, "tops-tls")
                self.assertEqual(remote.state, "READY", remote.state_reason)
                # HTTPS: the same CA (--remote-tls-ca) verifies A's HTTP listener.
                remote = register_tops_remote(b, https_a, "tops-https")
                self.assertEqual(remote.state, "READY", remote.state_reason)
            with modeldock.Client(address_c) as c:
                for endpoint in (kserve, https_a):
                    with self.assertRaises(modeldock.ModelDockError) as e:
                        register_tops_remote(c, endpoint, "tops-plain")
                    self.assertEqual(e.exception.code, grpc.StatusCode.UNAVAILABLE)
                    self.assertIn(endpoint, str(e.exception))
                self.assertEqual(c.list(), [])
        finally:
            for server in servers:
                stop_server(server)
            err.close()
            tmp.cleanup()


class RemoteCredentialsTest(unittest.TestCase):
    def test_per_endpoint_bearer_token(self):
        """Dock A requires API keys (--auth) on its KServe endpoint too; B lists A's endpoint in
        --remote-credentials with a consumer key of A as bearer token and registers a model of A;
        C, without it, is refused by A: FAILED_PRECONDITION naming the endpoint, nothing stored."""
        tmp = tempfile.TemporaryDirectory()
        err = open(os.path.join(tmp.name, "a.err"), "w+")
        servers = []
        try:
            data_a = os.path.join(tmp.name, "a")
            server_a, address_a = start_server(
                SERVER, ASSETS, data_a,
                ["--workers", "1", "--auth", "--kserve-listen", "127.0.0.1:0", "--http-listen",
                 "127.0.0.1:0"], stderr=err)
            servers.append(server_a)
            kserve = kserve_address(err)
            http_a = http_address(err)
            with open(os.path.join(data_a, "admin.key")) as f:
                admin_key = f.read().strip()
            with modeldock.Client(address_a, api_key=admin_key) as a:
                a.register(TOPS_PT, name="tops",
                           input_shape=[1, 28, 28], labels=TOPS_LABELS)
                consumer = a.create_key("consumer", name="dock-b")
            with open(os.path.join(tmp.name, "token-for-a"), "w") as f:
                f.write(consumer["secret"] + "\n")
            with open(os.path.join(tmp.name, "credentials.json"), "w") as f:
                json.dump({kserve: {"bearer_token_file": "token-for-a"},  # relative path
                           http_a: {"bearer_token_file": "token-for-a"}}, f)
            server_b, address_b = start_server(
                SERVER, ASSETS, os.path.join(tmp.name, "b"),
                ["--workers", "1", "--remote-credentials",
                 os.path.join(tmp.name, "credentials.json")])
            servers.append(server_b)
            server_c, address_c = start_server(SERVER, ASSETS, os.path.join(tmp.name, "c"),
                                               ["--workers", "1"])
            servers.append(server_c)
            with modeldock.Client(address_b) as b:
                remote = register_tops_remote(b, kserve, "tops-with-token")
                self.assertEqual(remote.state, "READY", remote.state_reason)
                remote = register_tops_remote(b, http_a, "tops-http-with-token")
                self.assertEqual(remote.state, "READY", remote.state_reason)
            # The key is rotated on A: B is refused until the token file holds the new key, and
            # then served without a restart (the file is read before every call).
            with modeldock.Client(address_a, api_key=admin_key) as a:
                a.revoke_key(consumer["id"])
                rotated = a.create_key("consumer", name="dock-b-rotated")
            with modeldock.Client(address_b) as b:
                with self.assertRaises(modeldock.ModelDockError) as e:
                    register_tops_remote(b, kserve, "tops-revoked-token")
                self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
                with open(os.path.join(tmp.name, "token-for-a"), "w") as f:
                    f.write(rotated["secret"])
                remote = register_tops_remote(b, kserve, "tops-rotated-token")
                self.assertEqual(remote.state, "READY", remote.state_reason)
            with modeldock.Client(address_c) as c:
                for endpoint in (kserve, http_a):
                    with self.assertRaises(modeldock.ModelDockError) as e:
                        register_tops_remote(c, endpoint, "tops-without-token")
                    self.assertEqual(e.exception.code, grpc.StatusCode.FAILED_PRECONDITION)
                    self.assertIn(endpoint, str(e.exception))
                    self.assertIn("--remote-credentials", str(e.exception))
                self.assertEqual(c.list(), [])
            # A credentials file the server cannot use stops it at start with the reason.
            bad = os.path.join(tmp.name, "bad.json")
            with open(bad, "w") as f:
                json.dump({kserve: {"bearer_token": "inline secrets are not read"}}, f)
            run = subprocess.run(
                [SERVER, "--data-dir", os.path.join(tmp.name, "d"), "--asset-dir", ASSETS,
                 "--listen", "127.0.0.1:0", "--remote-credentials", bad],
                capture_output=True, text=True, timeout=120)
            self.assertNotEqual(run.returncode, 0)
            self.assertIn("unknown key 'bearer_token'", run.stderr + run.stdout)
            self.assertNotIn("inline secrets", run.stderr + run.stdout)
        finally:
            for server in servers:
                stop_server(server)
            err.close()
            tmp.cleanup()


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
