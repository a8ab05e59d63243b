"""Helpers of the Python tests: a real modeldock-server started on 127.0.0.1:0 (its address read
from the one "listening on" line it prints), the address of its KServe endpoint, IDX files."""
import queue
import re
import signal
import struct
import subprocess
import threading
import time

import numpy as np


def read_idx(path):
    """An IDX file (the demo query's images and labels) as a numpy array."""
    with open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def kserve_address(stderr_file):
    """The "127.0.0.1:PORT" a server started with --kserve-listen logs (to `stderr_file`)."""
    for _ in range(100):
        stderr_file.seek(0)
        found = re.search(r"KServe v2 inference protocol on (127\.0\.0\.1:\d+)",
                          stderr_file.read())
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise RuntimeError("the server did not log its KServe address")


def http_address(stderr_file):
    """The "http[s]://127.0.0.1:PORT" a server started with --http-listen logs."""
    for _ in range(100):
        stderr_file.seek(0)
        found = re.search(r"HTTP API listening on (https?://127\.0\.0\.1:\d+)/",
                          stderr_file.read())
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise RuntimeError("the server did not log its HTTP address")


def stop_server(proc):
    """SIGTERM, then waits for the server to exit (it drains its calls first)."""
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=60)


def start_server(binary, assets, data_dir, extra_args=(), stderr=subprocess.DEVNULL):
    """Returns (process, "127.0.0.1:PORT"); raises if no address comes within two minutes."""
    proc = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--data-dir", data_dir,
                             "--asset-dir", assets, "--torch-threads", "1", *extra_args],
                            stdout=subprocess.PIPE, stderr=stderr, text=True)
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(l) for l in proc.stdout], daemon=True).start()
    line = lines.get(timeout=120)
    if not line.startswith("modeldock-server listening on "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.strip().rsplit(" ", 1)[1]
