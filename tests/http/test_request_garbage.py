"""A request leaves nothing for the garbage collector: its objects are freed as it ends.

Objects in a reference cycle outlive their request until a collection, which
a busy server makes rarely (ufop_sdk.app.gc_tuning): a cycle per request grew the
server's memory and cost it CPU.
"""

import os
import signal
import time
from pathlib import Path

from support import PROJECTS, Server

PROBE = Path(__file__).resolve().parent.parent / "gc_probe"


def freed_by_the_collector(server, probe_dir):
    report = probe_dir / str(server.process.pid)
    lines = len(report.read_text().split()) if report.exists() else 0
    os.kill(server.process.pid, signal.SIGUSR2)
    server.wait_until(lambda: report.exists() and len(report.read_text().split()) > lines, 5, "the probe")
    return int(report.read_text().split()[-1])


def test_answered_requests_leave_no_reference_cycles_in_the_server(tmp_path):
    env = {"GC_PROBE_DIR": str(tmp_path),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PROBE), os.environ.get("PYTHONPATH")]))}
    with Server(PROJECTS / "server", "--host", "127.0.0.1", env=env, workers=1) as server:
        for _ in range(20):  # warm up: first-use caches
            server.post("t/echo", b"x")
        before = freed_by_the_collector(server, tmp_path)
        for index in range(200):
            assert server.post("t/echo", b"x" * index)[0] == 200
            assert server.post("t/nothing-routes-here")[0] == 404
            assert server.request("GET", "/health")[0] == 200
        time.sleep(0.2)
        freed = freed_by_the_collector(server, tmp_path) - before
    assert freed < 200, f"{freed} objects in reference cycles for 600 requests"
