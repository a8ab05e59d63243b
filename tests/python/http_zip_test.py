#!/usr/bin/python3
"""A zipped image folder (one folder per class) as the `dataset` part of POST /v1/recommend and
/v1/report, and as `modeldock recommend photos.zip`, on a real modeldock-server: it ranks
exactly as the folder does; a zip bomb is refused from its directory without being inflated (the
server's peak memory does not move); a path leaving the folder is refused.

    PYTHONPATH=<build>/python http_zip_test.py SERVER_BINARY ASSET_DIR CLI_BINARY
"""
import io
import json
import os
import re
import struct
import subprocess
import sys
import tempfile
import unittest
import zipfile
import zlib

from http_test import DEMO, Http, http_port, multipart, read_file
from live_server import start_server, stop_server

SERVER, ASSETS, CLI = sys.argv[1], sys.argv[2], sys.argv[3]
FOLDER = os.path.join(DEMO, "query_emoji")
MODELS = ["colour/emoji-categories-cnn", "fmnist-tops-cnn", "fmnist-footwear-cnn"]
VOLATILE = ("timings", "num_cached", "mode_reason")  # how long, what was cached, time estimate


def zip_folder(folder, top=None):
    """The folder as `zip -r` writes it (deflated, folder records first), its files under
    `top`/ when given."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for root, dirs, files in os.walk(folder):
            dirs.sort()
            rel = os.path.relpath(root, folder)
            prefix = "" if rel == "." else rel + "/"
            if top:
                prefix = f"{top}/{prefix}"
            if prefix:
                z.writestr(zipfile.ZipInfo(prefix), b"")
            for name in sorted(files):
                z.write(os.path.join(root, name), prefix + name)
    return out.getvalue()


class HttpZipTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.err = open(os.path.join(cls.tmp.name, "server.err"), "w+")
        cls.server, cls.address = start_server(
            SERVER, ASSETS, os.path.join(cls.tmp.name, "d"),
            ["--workers", "1", "--http-listen", "127.0.0.1:0"], stderr=cls.err)
        cls.http = Http(http_port(cls.err))
        for stem in MODELS:
            status, _, body = cls.http.register(stem)
            assert status == 200, body
        for stem in MODELS:
            events = cls.http.events(os.path.basename(stem))
            assert events[-1][1]["model"]["state"] == "READY", events

    @classmethod
    def tearDownClass(cls):
        stop_server(cls.server)
        cls.err.close()
        cls.tmp.cleanup()

    def cli(self, *args):
        done = subprocess.run([CLI, "--server", self.address, "--json", *args],
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(done.returncode, 0, done.stderr)
        return json.loads(done.stdout)

    def recommend(self, name, content, options):
        return self.http.call("POST", "/v1/recommend", *reversed(multipart({
            "dataset": (name, content), "options": json.dumps(options).encode()})))

    def peak_kb(self):
        with open(f"/proc/{self.server.pid}/status") as f:
            return int(re.search(r"VmHWM:\s+(\d+) kB", f.read()).group(1))

    def test_a_zipped_folder_ranks_as_the_folder(self):
        folder = self.cli("recommend", FOLDER, "--top", "3")
        for key in VOLATILE:
            del folder[key]
        self.assertEqual(folder["results"][0]["name"], "emoji-categories-cnn")
        self.assertEqual(len(folder["results"]), 3)
        for top in (None, "query_emoji"):
            with self.subTest(top=top):
                content = zip_folder(FOLDER, top)
                status, _, body = self.recommend("photos.zip", content, {"top": 3})
                self.assertEqual(status, 200, body)
                for key in VOLATILE:
                    del body[key]
                self.assertEqual(body, folder)
                # And the CLI reads the same zip.
                path = os.path.join(self.tmp.name, "photos.zip")
                with open(path, "wb") as f:
                    f.write(content)
                cli = self.cli("recommend", path, "--top", "3")
                for key in VOLATILE:
                    del cli[key]
                self.assertEqual(cli, folder)

    def test_a_report_on_the_zip_is_a_report_on_the_folder(self):
        """The query id is the SHA-256 of the samples and labels: equal, so the same data."""
        by_folder = self.cli("report", FOLDER, "--model", "emoji-categories-cnn",
                             "--accuracy", "0.7")
        status, _, body = self.http.call("POST", "/v1/report", *reversed(multipart({
            "dataset": ("photos.zip", zip_folder(FOLDER)),
            "outcomes": json.dumps({"outcomes": [{"model": "emoji-categories-cnn",
                                                  "accuracy": 0.7}]}).encode()})))
        self.assertEqual(status, 200, body)
        self.assertEqual((body["query_id"], body["num_classes"]),
                         (by_folder["query_id"], by_folder["num_classes"]))
        self.assertEqual(body["num_classes"], 4)

    def test_a_zip_bomb_is_refused_without_inflating(self):
        # 1 GiB of zeros deflates to about 1 MB; the directory declares its true size.
        squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
        zeros = bytes(1 << 20)
        packed = b"".join(squeeze.compress(zeros) for _ in range(1024)) + squeeze.flush()
        crc = 0
        for _ in range(1024):
            crc = zlib.crc32(zeros, crc)
        png = read_file(os.path.join(FOLDER, "food-and-drink", "025.png"))
        bomb = raw_zip([("food/025.png", png, len(png), zlib.crc32(png), 0),
                        ("food/bomb.png", packed, 1 << 30, crc, 8)])
        # The archive is sound: Python's zipfile reads the bomb's directory as declared.
        with zipfile.ZipFile(io.BytesIO(bomb)) as z:
            self.assertEqual(z.getinfo("food/bomb.png").file_size, 1 << 30)
            self.assertEqual(z.testzip(), None)
        before = self.peak_kb()
        status, _, error = self.recommend("bomb.zip", bomb, {"top": 3})
        after = self.peak_kb()
        print(f"\n1 GiB zip bomb: server peak RSS {before / 1024:.1f} -> {after / 1024:.1f} MB",
              file=sys.stderr)
        self.assertEqual((status, error["code"]), (400, "INVALID_ARGUMENT"), error)
        self.assertIn("member 'food/bomb.png' would unpack to 1.0 GiB", error["message"])
        self.assertIn("one image may be at most 64.0 MiB", error["message"])
        self.assertLess(after - before, 32 * 1024, f"peak RSS grew {(after - before) / 1024} MB")
        # The CLI says the same.
        path = os.path.join(self.tmp.name, "bomb.zip")
        with open(path, "wb") as f:
            f.write(bomb)
        done = subprocess.run([CLI, "--server", self.address, "recommend", path],
                              capture_output=True, text=True, timeout=300)
        self.assertEqual(done.returncode, 2, done.stderr)
        self.assertIn("would unpack to 1.0 GiB", done.stderr)

    def test_a_path_out_of_the_folder_is_refused(self):
        png = read_file(os.path.join(FOLDER, "food-and-drink", "025.png"))
        for name, expected in (("../escape.png", "has '..' in its path"),
                               ("food/../../escape.png", "has '..' in its path"),
                               ("/tmp/food/escape.png", "has an absolute path"),
                               ("a/food/deep/escape.png", "is nested deeper than CLASS/IMAGE")):
            with self.subTest(name=name):
                out = io.BytesIO()
                with zipfile.ZipFile(out, "w") as z:
                    z.writestr("food/025.png", png)
                    z.writestr(zipfile.ZipInfo(name), png)
                status, _, error = self.recommend("bad.zip", out.getvalue(), {})
                self.assertEqual((status, error["code"]), (400, "INVALID_ARGUMENT"), error)
                self.assertIn(f"'{name}'", error["message"])
                self.assertIn(expected, error["message"])


def raw_zip(members):
    """A zip archive of (name, stored bytes, declared size, crc32, method) members, written
    by hand so that a member can declare what it likes."""
    body, records = b"", b""
    for name, data, size, crc, method in members:
        encoded = name.encode()
        records += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014b50, 20, 20, 0, method, 0, 0, crc,
                               len(data), size, len(encoded), 0, 0, 0, 0, 0, len(body)) + encoded
        body += struct.pack("<IHHHHHIIIHH", 0x04034b50, 20, 0, method, 0, 0, crc, len(data),
                            size, len(encoded), 0) + encoded + data
    return body + records + struct.pack("<IHHHHIIH", 0x06054b50, 0, 0, len(members),
                                        len(members), len(records), len(body), 0)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
