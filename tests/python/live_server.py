"""A real modeldock-server for the Python tests: started on 127.0.0.1:0, its address read from
the one "listening on" line it prints."""
import queue
import signal
import subprocess
import threading


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
