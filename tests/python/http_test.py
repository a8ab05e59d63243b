#!/usr/bin/python3
"""The HTTP front door (--http-listen) of a real modeldock-server with the demo models, called
with nothing but urllib: every /v1 route, the error mapping, request ids, API keys and roles,
/metrics on the same listener (parsed by the Prometheus client), that the recommend JSON is the CLI's --json document, and the
KServe v2 HTTP endpoints (/v2) with outputs checked against the TorchScript file run in PyTorch.

    PYTHONPATH=<build>/python http_test.py SERVER_BINARY ASSET_DIR CLI_BINARY
"""
import hashlib
import http.client
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

import numpy as np
import torch
from prometheus_client.parser import text_string_to_metric_families

import modeldock
from live_server import read_idx, start_server, stop_server

SERVER, ASSETS, CLI = sys.argv[1], sys.argv[2], sys.argv[3]
DEMO = os.path.join(ASSETS, "demo")
QUERY = os.path.join(DEMO, "query_tops")
MODELS = ["fmnist-tops-cnn", "fmnist-footwear-cnn", "fmnist-all-mlp"]


def http_port(stderr_file):
    for _ in range(100):
        stderr_file.seek(0)
        found = re.search(r"HTTP API listening on https?://127\.0\.0\.1:(\d+)/", stderr_file.read())
        if found:
            return int(found.group(1))
        time.sleep(0.1)
    raise RuntimeError("the server did not log its HTTP address")


def multipart(fields):
    """fields: name -> bytes, or (filename, bytes). Returns (content type, body)."""
    boundary = uuid.uuid4().hex
    body = b""
    for name, value in fields.items():
        filename = ""
        if isinstance(value, tuple):
            filename, value = value
            filename = f'; filename="{filename}"'
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + value + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    return f"multipart/form-data; boundary={boundary}", body


class Http:
    def __init__(self, port, key=None):
        self.base = f"http://127.0.0.1:{port}"
        self.key = key

    def call(self, method, path, body=None, content_type=None, headers=None):
        """Returns (status, headers, body: parsed JSON or text)."""
        request = urllib.request.Request(self.base + path, data=body, method=method)
        if content_type:
            request.add_header("Content-Type", content_type)
        if self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        try:
            with urllib.request.urlopen(request, timeout=300) as response:
                status, head, raw = response.status, response.headers, response.read()
        except urllib.error.HTTPError as e:
            status, head, raw = e.code, e.headers, e.read()
        text = raw.decode()
        if head.get("Content-Type", "").startswith("application/json"):
            return status, head, json.loads(text)
        return status, head, text

    def register(self, name):
        with open(os.path.join(DEMO, name + ".json"), "rb") as f:
            meta = f.read()
        with open(os.path.join(DEMO, name + ".pt"), "rb") as f:
            model = f.read()
        return self.call("POST", "/v1/models",
                         *reversed(multipart({"metadata": meta, "model": (name + ".pt", model)})))

    def events(self, name):
        """The server-sent events of /v1/models/NAME/events, until the stream ends."""
        request = urllib.request.Request(f"{self.base}/v1/models/{name}/events")
        if self.key:
            request.add_header("Authorization", f"Bearer {self.key}")
        with urllib.request.urlopen(request, timeout=300) as response:
            self_type = response.headers["Content-Type"]
            assert self_type.startswith("text/event-stream"), self_type
            text = response.read().decode()
        return [(m.group(1), json.loads(m.group(2)))
                for m in re.finditer(r"event: (\w+)\ndata: (.*)\n\n", text)]


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def query_parts(options=None):
    parts = {"dataset": ("query-images-idx3-ubyte",
                         read_file(os.path.join(QUERY, "query-images-idx3-ubyte"))),
             "labels": ("query-labels-idx1-ubyte",
                        read_file(os.path.join(QUERY, "query-labels-idx1-ubyte")))}
    if options is not None:
        parts["options"] = json.dumps(options).encode()
    return multipart(parts)


HTTP_SOURCES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "http")


def registered_routes():
    """[(method, regex)] of every server.Get/Post/Patch/Delete in http/*.cc, with the patterns
    named by a `const std::string x = ...` or a `constexpr char kX[] = ...` of the same file
    resolved; the page's files (a loop over the embedded web/ files) as "/" only."""
    routes = []
    for name in sorted(os.listdir(HTTP_SOURCES)):
        if not name.endswith(".cc"):
            continue
        with open(os.path.join(HTTP_SOURCES, name)) as f:
            source = f.read()
        names = {k: v for k, v in re.findall(r'constexpr char (\w+)\[\] = R"\((.*?)\)";', source)}
        for var, value in re.findall(r'const std::string (\w+) = (R"\(.*?\)"|\w+);', source):
            names[var] = value[3:-2] if value.startswith('R"(') else names[value]
        for method, arg in re.findall(r'server(?:\.|->)(Get|Post|Patch|Delete|Put)\(\s*([^,]+),',
                                      source):
            parts = [part.strip() for part in arg.split(" + ")]
            pattern = ""
            for part in parts:
                if part.startswith('R"('):
                    pattern += part[3:-2]
                elif part.startswith('"'):
                    pattern += re.escape(part[1:-1])
                elif part == "file.path":
                    pattern += "/"
                else:
                    pattern += names[part]
            routes.append((method.lower(), pattern))
    return routes


class HttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.err = open(os.path.join(cls.tmp.name, "server.err"), "w+")
        cls.data = os.path.join(cls.tmp.name, "d")
        cls.server, cls.address = start_server(
            SERVER, ASSETS, cls.data, ["--workers", "1", "--http-listen", "127.0.0.1:0"],
            stderr=cls.err)
        cls.http = Http(http_port(cls.err))
        for name in MODELS:
            status, _, body = cls.http.register(name)
            assert status == 200, body
        for name in MODELS:
            events = cls.http.events(name)
            assert events[-1][1]["model"]["state"] == "READY", events

    @classmethod
    def tearDownClass(cls):
        stop_server(cls.server)
        cls.err.close()
        cls.tmp.cleanup()

    def test_0_a_100_mb_upload_is_streamed_not_held(self):
        """Runs first (name): the server's peak resident memory (VmHWM) may not grow by more
        than 32 MB while a 100 MB model file goes through the HTTP spool and the gRPC stream
        to the dock's temp file (the admission checks then refuse it: it is no TorchScript)."""
        def peak_kb():
            with open(f"/proc/{self.server.pid}/status") as f:
                return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))
        meta = json.dumps({"name": "big", "input_shape": [1, 28, 28],
                           "class_labels": ["a", "b"]}).encode()
        content = np.random.default_rng(0).bytes(100 * 1000 * 1000)
        content_type, body = multipart({"metadata": meta, "model": ("big.pt", content)})
        del content
        before = peak_kb()
        status, _, error = self.http.call("POST", "/v1/models", body, content_type)
        after = peak_kb()
        print(f"\n100 MB upload: server peak RSS {before / 1024:.1f} -> {after / 1024:.1f} MB",
              file=sys.stderr)
        self.assertEqual(status, 400, error)
        self.assertEqual(error["code"], "INVALID_ARGUMENT")
        self.assertLess(after - before, 32 * 1024, f"peak RSS grew {(after - before) / 1024:.1f} MB")
        self.assertEqual(os.listdir(os.path.join(self.data, "http-uploads")), [])
        self.assertEqual(self.http.call("GET", "/v1/models/big")[0], 404)

    def test_registered_model_matches_its_file(self):
        status, _, body = self.http.call("GET", "/v1/models/fmnist-tops-cnn")
        self.assertEqual(status, 200)
        model = body["model"]
        content = read_file(os.path.join(DEMO, "fmnist-tops-cnn.pt"))
        meta = json.loads(read_file(os.path.join(DEMO, "fmnist-tops-cnn.json")))
        self.assertEqual(model["sha256"], hashlib.sha256(content).hexdigest())
        self.assertEqual(model["size_bytes"], len(content))
        self.assertEqual(model["class_labels"], meta["class_labels"])
        self.assertEqual(model["input_shape"], meta["input_shape"])
        self.assertEqual(model["state"], "READY")

    def test_list_filters_and_pages(self):
        status, _, body = self.http.call("GET", "/v1/models?name_contains=cnn&state=ready")
        self.assertEqual(status, 200)
        self.assertEqual(sorted(m["name"] for m in body["models"]),
                         ["fmnist-footwear-cnn", "fmnist-tops-cnn"])
        self.assertEqual(body["total_size"], 2)
        seen = []
        token = ""
        while True:
            status, _, page = self.http.call("GET", f"/v1/models?page_size=1&page_token={token}")
            self.assertEqual(status, 200)
            self.assertEqual(len(page["models"]), 1)
            self.assertEqual(page["total_size"], len(MODELS))
            seen.append(page["models"][0]["name"])
            token = page["next_page_token"]
            if not token:
                break
        self.assertEqual(sorted(seen), sorted(MODELS))

    def test_errors_map_to_http_codes_with_the_request_id(self):
        cases = [
            ("GET", "/v1/models/nobody", None, None, 404, "NOT_FOUND"),
            ("GET", "/v1/models?page_size=-1", None, None, 400, "INVALID_ARGUMENT"),
            ("GET", "/v1/models?colour=red", None, None, 400, "INVALID_ARGUMENT"),
            ("GET", "/v1/nothing-here", None, None, 404, "NOT_FOUND"),
            ("PATCH", "/v1/models/fmnist-tops-cnn", b"[1]", "application/json", 400,
             "INVALID_ARGUMENT"),
            ("POST", "/v1/recommend", b"{}", "application/json", 400, "INVALID_ARGUMENT"),
        ]
        for method, path, body, content_type, code, name in cases:
            with self.subTest(path=path):
                status, head, error = self.http.call(method, path, body, content_type)
                self.assertEqual(status, code, error)
                self.assertEqual(error["code"], name)
                self.assertTrue(error["message"])
                self.assertRegex(error["request_id"], r"^r-[0-9a-f]{8}$")
                self.assertEqual(head["X-Request-Id"], error["request_id"])
        # A duplicate registration is ALREADY_EXISTS: 409.
        status, _, error = self.http.register("fmnist-tops-cnn")
        self.assertEqual((status, error["code"]), (409, "ALREADY_EXISTS"), error)

    def test_a_client_request_id_is_kept_and_reaches_the_log(self):
        status, head, error = self.http.call("GET", "/v1/models/nobody-at-all",
                                             headers={"X-Request-Id": "curl-test-42"})
        self.assertEqual(status, 404)
        self.assertEqual(head["X-Request-Id"], "curl-test-42")
        self.assertEqual(error["request_id"], "curl-test-42")
        self.assertIn("(request curl-test-42)", error["message"])

    def test_update_and_delete(self):
        status, _, body = self.http.register("fmnist-shuffled-cnn")
        self.assertEqual(status, 200, body)
        # Metadata changes once probing is over (FAILED_PRECONDITION, 400, before).
        states = [e[1]["model"]["state"] for e in self.http.events("fmnist-shuffled-cnn")]
        self.assertEqual(states[-1], "READY")
        status, _, body = self.http.call(
            "PATCH", "/v1/models/fmnist-shuffled-cnn",
            json.dumps({"description": "edited", "tags": ["a", "b"]}).encode(), "application/json")
        self.assertEqual(status, 200, body)
        self.assertEqual((body["model"]["description"], body["model"]["tags"]), ("edited", ["a", "b"]))
        status, _, body = self.http.call("DELETE", "/v1/models/fmnist-shuffled-cnn")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["ids"], [body["id"]])
        status, _, _ = self.http.call("GET", "/v1/models/fmnist-shuffled-cnn")
        self.assertEqual(status, 404)

    def test_nearest_answers_what_the_cli_prints(self):
        status, _, body = self.http.call("GET", "/v1/models/fmnist-tops-cnn/nearest?k=2")
        self.assertEqual(status, 200, body)
        cli = subprocess.run([CLI, "--server", self.address, "--json", "nearest",
                              "fmnist-tops-cnn", "--k", "2"],
                             capture_output=True, text=True, timeout=60, check=True)
        self.assertEqual(body, json.loads(cli.stdout))
        self.assertEqual(body["model"], "fmnist-tops-cnn")
        names = [n["model"]["name"] for n in body["nearest"]]
        self.assertEqual(sorted(names), ["fmnist-all-mlp", "fmnist-footwear-cnn"])
        similarities = [n["similarity"] for n in body["nearest"]]
        self.assertEqual(similarities, sorted(similarities, reverse=True))
        # k=1: the first of the same order; no k: the server's default (5, so both).
        status, _, one = self.http.call("GET", "/v1/models/fmnist-tops-cnn/nearest?k=1")
        self.assertEqual(status, 200, one)
        self.assertEqual(one["nearest"], body["nearest"][:1])
        status, _, default = self.http.call("GET", "/v1/models/fmnist-tops-cnn/nearest")
        self.assertEqual((status, default), (200, body))
        for path, code in (("/v1/models/nobody/nearest", 404),
                           ("/v1/models/fmnist-tops-cnn/nearest?k=0", 400),
                           ("/v1/models/fmnist-tops-cnn/nearest?k=x", 400),
                           ("/v1/models/fmnist-tops-cnn/nearest?top=2", 400)):
            with self.subTest(path=path):
                status, _, error = self.http.call("GET", path)
                self.assertEqual(status, code, error)

    def test_recommend_answers_what_the_cli_prints(self):
        options = {"top": 3, "metric": "fusion"}
        status, _, body = self.http.call("POST", "/v1/recommend",
                                         *reversed(query_parts(options)))
        self.assertEqual(status, 200, body)
        cli = subprocess.run(
            [CLI, "--server", self.address, "--json", "recommend",
             os.path.join(QUERY, "query-images-idx3-ubyte"),
             "--labels", os.path.join(QUERY, "query-labels-idx1-ubyte"),
             "--top", "3", "--metric", "fusion"],
            capture_output=True, text=True, timeout=300, check=True)
        expected = json.loads(cli.stdout)
        self.assertEqual(list(body.keys()), list(expected.keys()))
        # How long it took, what was cached by then, and the budget's estimate of the time.
        for key in ("timings", "num_cached", "mode_reason"):
            del body[key], expected[key]
        self.assertEqual(body, expected)
        self.assertEqual(len(body["results"]), 3)
        self.assertEqual(body["results"][0]["name"], "fmnist-tops-cnn")
        self.assertEqual(body["metric"], "fusion")

    def test_text_model_and_text_query_as_the_cli(self):
        """Text (issue 25): a text model registered with its sidecar (task text_classification,
        no input_shape), a CSV of texts recommended over REST as the CLI does it."""
        status, _, body = self.http.register("text/spanish-fortune-topics-gru")
        self.assertEqual(status, 200, body)
        self.assertEqual(body["model"]["input_shape"], [])
        events = self.http.events("spanish-fortune-topics-gru")
        self.assertEqual(events[-1][1]["model"]["state"], "READY", events)
        csv_path = os.path.join(DEMO, "query_text.csv")
        status, _, body = self.http.call("POST", "/v1/recommend", *reversed(multipart({
            "dataset": ("query_text.csv", read_file(csv_path)),
            "options": json.dumps({"top": 3}).encode()})))
        self.assertEqual(status, 200, body)
        cli = subprocess.run([CLI, "--server", self.address, "--json", "recommend", csv_path,
                              "--top", "3"], capture_output=True, text=True, timeout=300,
                             check=True)
        expected = json.loads(cli.stdout)
        for key in ("timings", "num_cached", "mode_reason"):
            del body[key], expected[key]
        self.assertEqual(body, expected)
        self.assertEqual([r["name"] for r in body["results"]], ["spanish-fortune-topics-gru"])
        self.assertEqual(body["num_compatible"], 1)
        self.assertEqual(self.http.call("DELETE", "/v1/models/spanish-fortune-topics-gru")[0], 200)

    def test_audio_arrays_as_the_cli(self):
        """Audio (issue 25): an audio model registered with its sidecar, and an NPZ of int16
        clips [N, T] recommended over REST with options.task "audio" as the CLI does it; the same
        clips as a float32 NPY with a labels part rank the same; a 1-D array is a 400."""
        status, _, body = self.http.register("audio/speech-commands-cnn")
        self.assertEqual(status, 200, body)
        events = self.http.events("speech-commands-cnn")
        self.assertEqual(events[-1][1]["model"]["state"], "READY", events)
        # Two classes of seeded noisy tones, 16 kHz mono, int16 PCM.
        rng = np.random.default_rng(25)
        t = np.arange(16000) / 16000.0
        clips, labels = [], []
        for label, hz in enumerate((440.0, 1760.0)):
            for _ in range(8):
                wave = 0.4 * np.sin(2 * np.pi * hz * rng.uniform(0.9, 1.1) * t)
                wave += 0.05 * rng.standard_normal(t.size)
                clips.append(np.round(wave * 32767).astype(np.int16))
                labels.append(label)
        clips, labels = np.stack(clips), np.array(labels, dtype=np.int64)
        npz_path = os.path.join(self.tmp.name, "clips.npz")
        np.savez(npz_path, samples=clips, labels=labels)
        options = json.dumps({"top": 3, "task": "audio"}).encode()
        status, _, body = self.http.call("POST", "/v1/recommend", *reversed(multipart({
            "dataset": ("clips.npz", read_file(npz_path)), "options": options})))
        self.assertEqual(status, 200, body)
        cli = subprocess.run([CLI, "--server", self.address, "--json", "recommend", npz_path,
                              "--task", "audio", "--top", "3"], capture_output=True, text=True,
                             timeout=300, check=True)
        expected = json.loads(cli.stdout)
        for key in ("timings", "num_cached", "mode_reason"):
            del body[key], expected[key]
        self.assertEqual(body, expected)
        self.assertEqual([r["name"] for r in body["results"]], ["speech-commands-cnn"])
        self.assertEqual(body["num_compatible"], 1)
        self.assertIn("took the 16 rows of 16000 samples as 16 kHz mono clips",
                      body["dataset_notes"])
        self.assertIn("scaled int16 PCM by 1/32768 to [-1, 1)", body["dataset_notes"])
        # The same clips as float32 in [-1, 1) (exact: int16 / 2^15) in an NPY with labels.
        npy_path = os.path.join(self.tmp.name, "clips.npy")
        np.save(npy_path, (clips / 32768.0).astype(np.float32))
        np.save(os.path.join(self.tmp.name, "labels.npy"), labels)
        status, _, floats = self.http.call("POST", "/v1/recommend", *reversed(multipart({
            "dataset": ("clips.npy", read_file(npy_path)),
            "labels": ("labels.npy", read_file(os.path.join(self.tmp.name, "labels.npy"))),
            "options": options})))
        self.assertEqual(status, 200, floats)
        self.assertEqual(floats["results"], body["results"])
        self.assertEqual(floats["dataset_notes"], body["dataset_notes"][:1])
        # A 1-D array: INVALID_ARGUMENT (400) naming the shape expected.
        one_d = os.path.join(self.tmp.name, "one_d.npy")
        np.save(one_d, clips[0])
        status, _, error = self.http.call("POST", "/v1/recommend", *reversed(multipart({
            "dataset": ("one_d.npy", read_file(one_d)), "options": options})))
        self.assertEqual(status, 400, error)
        self.assertEqual(error["code"], "INVALID_ARGUMENT")
        self.assertIn("[N, T]", error["message"])
        self.assertIn("1-D array of shape [16000]", error["message"])
        self.assertEqual(self.http.call("DELETE", "/v1/models/speech-commands-cnn")[0], 200)

    def test_report_answers_what_the_cli_prints(self):
        def report(outcomes):
            parts = {"dataset": ("q", read_file(os.path.join(QUERY, "query-images-idx3-ubyte"))),
                     "labels": ("l", read_file(os.path.join(QUERY, "query-labels-idx1-ubyte"))),
                     "outcomes": json.dumps({"outcomes": outcomes}).encode()}
            return self.http.call("POST", "/v1/report", *reversed(multipart(parts)))
        status, _, body = report([{"model": "fmnist-tops-cnn", "accuracy": 0.9}])
        self.assertEqual(status, 200, body)
        self.assertEqual((body["num_stored"], body["num_classes"]), (1, 4))
        cli = subprocess.run(
            [CLI, "--server", self.address, "--json", "report",
             os.path.join(QUERY, "query-images-idx3-ubyte"),
             "--labels", os.path.join(QUERY, "query-labels-idx1-ubyte"),
             "--model", "fmnist-footwear-cnn", "--accuracy", "0.5"],
            capture_output=True, text=True, timeout=300, check=True)
        expected = json.loads(cli.stdout)
        self.assertEqual(list(body.keys()), list(expected.keys()))
        self.assertEqual(expected["total_records"], body["total_records"] + 1)
        for outcomes, code, name in (([{"model": "fmnist-tops-cnn", "accuracy": 1.5}], 400,
                                      "INVALID_ARGUMENT"),
                                     ([{"model": "nobody", "accuracy": 0.5}], 404, "NOT_FOUND"),
                                     ([], 400, "INVALID_ARGUMENT")):
            with self.subTest(outcomes=outcomes):
                status, _, error = report(outcomes)
                self.assertEqual((status, error["code"]), (code, name), error)

    def test_recommend_rejects_bad_options(self):
        status, _, error = self.http.call("POST", "/v1/recommend",
                                          *reversed(query_parts({"top": 3, "colour": 1})))
        self.assertEqual((status, error["code"]), (400, "INVALID_ARGUMENT"))
        self.assertIn("colour", error["message"])

    def test_metrics_on_the_same_listener(self):
        self.http.call("GET", "/v1/models/nobody")
        status, head, text = self.http.call("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertTrue(head["Content-Type"].startswith("text/plain; version=0.0.4"))
        # Parsed by the stock Prometheus client: the order of a series' labels is not fixed.
        found = [sample.value for family in text_string_to_metric_families(text)
                 for sample in family.samples
                 if sample.name == "modeldock_rpc_total" and sample.labels == {
                     "method": "/modeldock.v1.ModelDockService/GetModel", "code": "NOT_FOUND"}]
        self.assertEqual(len(found), 1, text[:2000])
        self.assertGreaterEqual(found[0], 1)

    def test_kserve_v2_health_metadata_and_readiness(self):
        self.assertEqual(self.http.call("GET", "/v2/health/live")[::2], (200, {"live": True}))
        self.assertEqual(self.http.call("GET", "/v2/health/ready")[::2], (200, {"ready": True}))
        status, _, server = self.http.call("GET", "/v2")
        self.assertEqual((status, server["name"]), (200, "modeldock"))
        status, _, meta = self.http.call("GET", "/v2/models/fmnist-tops-cnn")
        self.assertEqual(status, 200, meta)
        self.assertEqual((meta["name"], meta["versions"]), ("fmnist-tops-cnn", ["1.0.0"]))
        self.assertEqual(meta["inputs"], [{"name": "input", "datatype": "FP32",
                                           "shape": [-1, 1, 28, 28]}])
        self.assertEqual(meta["outputs"], [{"name": "output", "datatype": "FP32",
                                            "shape": [-1, 4]}])
        self.assertEqual(self.http.call("GET", "/v2/models/fmnist-tops-cnn/versions/1.0.0")[0],
                         200)
        self.assertEqual(self.http.call("GET", "/v2/models/fmnist-tops-cnn/ready")[::2],
                         (200, {"name": "fmnist-tops-cnn", "ready": True}))
        self.assertEqual(self.http.call("GET", "/v2/models/nobody/ready")[::2],
                         (400, {"name": "nobody", "ready": False}))

    def test_kserve_v2_infer_matches_pytorch(self):
        images = read_idx(os.path.join(QUERY, "query-images-idx3-ubyte"))[:5]
        x = (images.astype(np.float32) / 255.0).reshape(-1, 1, 28, 28)
        with torch.no_grad():
            expected = torch.jit.load(os.path.join(DEMO, "fmnist-tops-cnn.pt"))(
                torch.from_numpy(x)).numpy()
        for datatype, data in (("FP32", x.tolist()),  # nested arrays
                               ("UINT8", images.ravel().tolist())):  # flat, scaled by 1/255
            with self.subTest(datatype=datatype):
                request = {"id": "q1", "inputs": [{"name": "input", "shape": list(x.shape),
                                                   "datatype": datatype, "data": data}],
                           "outputs": [{"name": "output"}]}
                status, _, answer = self.http.call(
                    "POST", "/v2/models/fmnist-tops-cnn/infer", json.dumps(request).encode(),
                    "application/json")
                self.assertEqual(status, 200, answer)
                self.assertEqual((answer["model_name"], answer["model_version"], answer["id"]),
                                 ("fmnist-tops-cnn", "1.0.0", "q1"))
                out = answer["outputs"][0]
                self.assertEqual((out["name"], out["datatype"], out["shape"]),
                                 ("output", "FP32", [5, 4]))
                np.testing.assert_allclose(np.array(out["data"]).reshape(5, 4), expected,
                                           rtol=1e-4, atol=1e-4)

    def test_kserve_v2_errors(self):
        good = {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                            "data": [0.5] * 784}]}
        bad_type = {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "INT64",
                                "data": [0] * 784}]}
        short = {"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "FP32",
                             "data": [0.5] * 783}]}
        # The last is refused by the HTTP layer itself, the others by the KServe service,
        # whose messages name the request id.
        for path, body, code, by_service in (
                ("/v2/models/nobody/infer", good, 404, True),
                ("/v2/models/fmnist-tops-cnn/infer", bad_type, 400, True),
                ("/v2/models/fmnist-tops-cnn/infer", short, 400, True),
                ("/v2/models/fmnist-tops-cnn/infer", [1], 400, False)):
            with self.subTest(body=str(body)[:60]):
                status, head, error = self.http.call("POST", path, json.dumps(body).encode(),
                                                     "application/json")
                self.assertEqual(status, code, error)
                self.assertEqual(list(error.keys()), ["error"])
                self.assertRegex(head["X-Request-Id"], r"^r-[0-9a-f]{8}$")
                if by_service:
                    self.assertIn(f"(request {head['X-Request-Id']})", error["error"])

    def test_openapi_documents_only_routes_that_exist(self):
        """Every operation of /v1/openapi.json is routed: called on a model that does not exist
        (nothing changes), each answers anything but the server's own "no route" 404."""
        status, _, doc = self.http.call("GET", "/v1/openapi.json")
        self.assertEqual(status, 200)
        self.assertEqual(doc["openapi"], "3.0.3")
        operations = [(path, method) for path, item in doc["paths"].items()
                      for method in item if method != "parameters"]
        self.assertEqual(len({doc["paths"][p][m]["operationId"] for p, m in operations}),
                         len(operations))
        self.assertLessEqual({"listModels", "getModel", "registerModel", "recommend", "watchModel",
                              "modelInfer", "serverReady", "metrics"},
                             {doc["paths"][p][m]["operationId"] for p, m in operations})
        for path, method in operations:
            with self.subTest(route=f"{method.upper()} {path}"):
                url = path.replace("{model}", "no-such-model").replace("{version}", "9").replace(
                    "{id}", "no-such-key")
                status, _, body = self.http.call(method.upper(), url, b"{}" if method in (
                    "post", "patch") else None, "application/json")
                no_route = status == 404 and isinstance(body, dict) and \
                    body.get("message", "").startswith("no route")
                self.assertFalse(no_route, body)
                responses = doc["paths"][path][method]["responses"]
                self.assertTrue(str(status) in responses or "default" in responses, status)
        # And the check can fail: an undocumented path is not routed.
        status, _, body = self.http.call("GET", "/v1/undocumented")
        self.assertTrue(status == 404 and body["message"].startswith("no route"))

    def test_every_route_is_documented(self):
        """The reverse of the test above: every route the http/ sources register (server.Get,
        Post, Patch, Delete with a literal or a named pattern) matches a documented operation
        of /v1/openapi.json; the page's own files (/static/...) are not API."""
        _, _, doc = self.http.call("GET", "/v1/openapi.json")
        documented = [(method, path.replace("{model}", "m").replace("{version}", "1")
                       .replace("{id}", "k")) for path, item in doc["paths"].items()
                      for method in item if method != "parameters"]
        routes = registered_routes()
        self.assertGreaterEqual(len(routes), 19)  # the parse found the registrations (19 today)
        for method, pattern in routes:
            with self.subTest(route=f"{method.upper()} {pattern}"):
                self.assertTrue(any(m == method and re.fullmatch(pattern, p)
                                    for m, p in documented), "not in openapi.json")
        # And the check can fail: a route missing from the document is caught.
        self.assertFalse(any(m == "get" and re.fullmatch(r"/v1/undocumented", p)
                             for m, p in documented))


class HttpBusyTest(unittest.TestCase):
    """The bounded work queue: with --http-threads 1 one connection is served and 4 wait; a
    connection past that is answered 503 with the API's JSON error at once, and the listener
    serves again once they are gone."""

    def test_full_queue_answers_503_with_a_json_error(self):
        import socket
        with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "err"), "w+") as err:
            server, _ = start_server(SERVER, ASSETS, os.path.join(tmp, "d"),
                                     ["--workers", "1", "--http-threads", "1",
                                      "--http-listen", "127.0.0.1:0"], stderr=err)
            try:
                port = http_port(err)
                # Each sends its headers and promises a body it never sends: the one served
                # waits for it (up to the 30 s read timeout), the next 4 wait in the queue.
                head = (b"POST /v1/recommend HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                        b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
                held = []
                for _ in range(1 + 4 + 2):
                    conn = socket.create_connection(("127.0.0.1", port), timeout=20)
                    conn.sendall(head)
                    held.append(conn)
                answer = b""
                while b"\r\n\r\n" not in answer or not answer.rstrip().endswith(b"}"):
                    chunk = held[-1].recv(65536)
                    if not chunk:
                        break
                    answer += chunk
                status_line, _, rest = answer.partition(b"\r\n")
                self.assertTrue(status_line.startswith(b"HTTP/1.1 503"), answer[:300])
                body = json.loads(rest.partition(b"\r\n\r\n")[2])
                self.assertEqual(body["code"], "UNAVAILABLE")
                self.assertIn("busy", body["message"])
                self.assertTrue(body["request_id"])
                for conn in held:
                    conn.close()
                # Once they are gone (the queued ones end as their peers close) the listener
                # serves again.
                served = None
                for _ in range(300):
                    try:
                        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/health/live",
                                                    timeout=30) as response:
                            served = response.status
                            break
                    except urllib.error.HTTPError as e:
                        self.assertEqual(e.code, 503)
                        time.sleep(0.1)
                self.assertEqual(served, 200)
            finally:
                stop_server(server)


class HttpDrainTest(unittest.TestCase):
    """--drain-delay-s: at SIGTERM readiness turns false while the listener still answers (so a
    load balancer sees not-ready rather than a refused connection), then the server stops."""

    def test_not_ready_while_draining(self):
        import signal
        with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "err"), "w+") as err:
            server, _ = start_server(SERVER, ASSETS, os.path.join(tmp, "d"),
                                     ["--workers", "1", "--drain-delay-s", "5",
                                      "--http-listen", "127.0.0.1:0"], stderr=err)
            port = http_port(err)
            url = f"http://127.0.0.1:{port}/v2/health/ready"
            with urllib.request.urlopen(url, timeout=10) as response:
                self.assertEqual(response.status, 200)
            server.send_signal(signal.SIGTERM)
            answer = None
            for _ in range(200):
                try:
                    with urllib.request.urlopen(url, timeout=10) as response:
                        pass
                except urllib.error.HTTPError as e:
                    answer = (e.code, json.loads(e.read()))
                    break
                time.sleep(0.01)
            self.assertEqual(answer, (503, {"ready": False}))
            self.assertEqual(server.wait(timeout=60), 0)
            err.seek(0)
            self.assertIn("draining for 5 s", err.read())


class HttpAuthTest(unittest.TestCase):
    """A server with --auth: the same keys and roles as on gRPC."""

    def test_keys_and_roles(self):
        with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "err"), "w+") as err:
            data = os.path.join(tmp, "d")
            server, address = start_server(
                SERVER, ASSETS, data, ["--workers", "1", "--auth", "--http-listen", "127.0.0.1:0"],
                stderr=err)
            try:
                port = http_port(err)
                with open(os.path.join(data, "admin.key")) as f:
                    admin_key = f.read().strip()
                admin = Http(port, admin_key)
                status, _, created = admin.call("POST", "/v1/keys", json.dumps(
                    {"role": "consumer", "name": "reader"}).encode(), "application/json")
                self.assertEqual(status, 200, created)
                self.assertEqual((created["role"], created["name"]), ("consumer", "reader"))
                consumer = created["secret"]
                with modeldock.Client(address, api_key=admin_key) as grpc_admin:
                    self.assertIn(created["id"], {k["id"] for k in grpc_admin.list_keys()})
                status, _, keys = admin.call("GET", "/v1/keys")
                self.assertEqual(status, 200)
                self.assertIn(created["id"], {k["id"] for k in keys["keys"]})
                status, _, error = Http(port, consumer).call("GET", "/v1/keys")
                self.assertEqual((status, error["code"]), (403, "PERMISSION_DENIED"))
                status, _, error = admin.call("POST", "/v1/keys", b'{"role": "root"}',
                                              "application/json")
                self.assertEqual((status, error["code"]), (400, "INVALID_ARGUMENT"))
                status, _, error = Http(port).call("GET", "/v1/models")
                self.assertEqual((status, error["code"]), (401, "UNAUTHENTICATED"))
                status, _, error = Http(port).call("GET", "/v1/models",
                                                   headers={"Authorization": "Basic eDp5"})
                self.assertEqual((status, error["code"]), (401, "UNAUTHENTICATED"))
                status, _, error = Http(port, "mdk_bad_key").call("GET", "/v1/models")
                self.assertEqual((status, error["code"]), (401, "UNAUTHENTICATED"))
                status, _, body = Http(port, consumer).call("GET", "/v1/models")
                self.assertEqual((status, body["total_size"]), (200, 0))
                status, _, error = Http(port, consumer).register("fmnist-tops-cnn")
                self.assertEqual((status, error["code"]), (403, "PERMISSION_DENIED"))
                self.assertIn("provider", error["message"])
                status, _, body = Http(port, admin_key).register("fmnist-tops-cnn")
                self.assertEqual(status, 200, body)
                # KServe v2: liveness stays open, models need a key.
                self.assertEqual(Http(port).call("GET", "/v2/health/live")[0], 200)
                status, _, error = Http(port).call("GET", "/v2/models/fmnist-tops-cnn")
                self.assertEqual(status, 401)
                self.assertIn("API key", error["error"])
                status, _, meta = Http(port, consumer).call("GET", "/v2/models/fmnist-tops-cnn")
                self.assertEqual((status, meta["name"]), (200, "fmnist-tops-cnn"))
                # A revoked key is refused from then on.
                status, _, body = admin.call("DELETE", f"/v1/keys/{created['id']}")
                self.assertEqual((status, body), (200, {"revoked": created["id"]}))
                status, _, error = Http(port, consumer).call("GET", "/v1/models")
                self.assertEqual((status, error["code"]), (401, "UNAUTHENTICATED"))
            finally:
                stop_server(server)


class HttpNonLoopbackTest(unittest.TestCase):
    def test_an_open_http_address_needs_auth(self):
        """Without --auth (or --insecure-open) the server refuses a non-loopback HTTP address,
        as it does for its gRPC address."""
        with tempfile.TemporaryDirectory() as tmp:
            done = subprocess.run(
                [SERVER, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "d"),
                 "--asset-dir", ASSETS, "--http-listen", "0.0.0.0:0"],
                capture_output=True, text=True, timeout=120)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("refusing to serve 0.0.0.0:0 without --auth", done.stderr)


class HttpTlsTest(unittest.TestCase):
    """--tls-cert/--tls-key/--tls-client-ca hold for the HTTP listener as for gRPC."""

    def test_mutual_tls(self):
        from remote_test import make_certs
        with tempfile.TemporaryDirectory() as tmp, open(os.path.join(tmp, "err"), "w+") as err:
            certs = make_certs(tmp)
            for args in (["req", "-newkey", "ec:curve.pem", "-nodes", "-subj", "/CN=client",
                          "-keyout", "client.key", "-out", "client.csr"],
                         ["x509", "-req", "-days", "1", "-in", "client.csr", "-CA", "ca.pem",
                          "-CAkey", "ca.key", "-CAcreateserial", "-out", "client.pem"]):
                subprocess.run(["/usr/bin/openssl", *args], cwd=tmp, check=True,
                               capture_output=True)
            server, _ = start_server(
                SERVER, ASSETS, os.path.join(tmp, "d"),
                ["--workers", "1", "--http-listen", "127.0.0.1:0", "--tls-cert", certs["server.pem"],
                 "--tls-key", certs["server.key"], "--tls-client-ca", certs["ca.pem"]],
                stderr=err)
            try:
                url = f"https://127.0.0.1:{http_port(err)}/v1/models"
                context = ssl.create_default_context(cafile=certs["ca.pem"])
                context.load_cert_chain(os.path.join(tmp, "client.pem"),
                                        os.path.join(tmp, "client.key"))
                with urllib.request.urlopen(url, context=context, timeout=30) as response:
                    self.assertEqual(json.loads(response.read())["total_size"], 0)
                # No client certificate: the handshake fails; plaintext is not answered.
                without = ssl.create_default_context(cafile=certs["ca.pem"])
                with self.assertRaises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
                    urllib.request.urlopen(url, context=without, timeout=30).read()
                with self.assertRaises((urllib.error.URLError, ConnectionError,
                                        http.client.HTTPException)):
                    urllib.request.urlopen(url.replace("https", "http"), timeout=30).read()
            finally:
                stop_server(server)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
