"""No pickle on the local workers' wire: a worker answers its msgpack frames, and closes on anything
else without running what it carries. Outcomes go to test-artifacts/reliability/security.json."""

import json
import pickle
import socket
import subprocess
import sys

import msgpack
import pytest
from harness import PROJECT, record
from hostile import Exploit
from support import clean_environment

from ufop_sdk.app.jobs import Job
from ufop_sdk.executors.local import protocol

pytestmark = pytest.mark.reliability


def test_the_exploit_would_work_if_unpickled(tmp_path):
    pickle.loads(pickle.dumps(Exploit(tmp_path / "unpickled")))
    assert (tmp_path / "unpickled").exists()


@pytest.fixture
def local_worker(tmp_path):
    """A local worker of the project, started as the pool starts one: (process, its socket) once ready."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    process = subprocess.Popen(
        [sys.executable, "-m", "ufop_sdk.executors.local.worker_main", "--fd", str(theirs.fileno()),
         "--project", str(PROJECT), "--app", "processors", "--timeout", "5"],
        pass_fds=[theirs.fileno()], env=clean_environment({"MARKER_DIR": str(tmp_path)}),
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    theirs.close()
    ours.settimeout(30)
    try:
        header, _, _ = protocol.FrameReceiver(ours).next()
        assert header["op"] == "ready", header
        yield process, ours
    finally:
        ours.close()
        if process.poll() is None:
            process.kill()
        process.wait(10)


def run_frame(body):
    job = Job(cmd="t/echo", processor="Echo", groups={}, timeout=5, request_id="x", body=body)
    return protocol.encode(protocol.job_header(job), body) + body


def test_a_local_worker_answers_its_frames(local_worker):
    process, sock = local_worker
    sock.sendall(run_frame(b"a frame"))
    header, body, _ = protocol.FrameReceiver(sock).next()
    sock.shutdown(socket.SHUT_WR)
    assert (header["op"], header["status"], body) == ("reply", 200, b"a frame")
    assert process.wait(10) == 0, "end-of-file on its socket: the worker exits"


HOSTILE_FRAMES = {
    "pickle": lambda marker: pickle.dumps({"op": "run", "payload": Exploit(marker)}),
    "pickle of a bare exploit": lambda marker: pickle.dumps(Exploit(marker)),
    "not UTF-8": lambda marker: b"\xff\xfe\x80" + str(marker).encode(),
    "JSON, not an object": lambda marker: json.dumps(["touch", str(marker)]).encode(),
    "JSON naming no processor": lambda marker: json.dumps({"op": "exec", "code": f"touch {marker}"}).encode(),
    "msgpack, not a map": lambda marker: msgpack.packb(["touch", str(marker)]),
    "msgpack naming no processor": lambda marker: msgpack.packb({"op": "exec", "code": f"touch {marker}"}),
    "msgpack extension type": lambda marker: msgpack.packb({"op": msgpack.ExtType(1, str(marker).encode())}),
}


@pytest.mark.parametrize("kind", list(HOSTILE_FRAMES))
def test_a_local_worker_closes_on_a_frame_that_is_not_its_own(local_worker, tmp_path, kind):
    process, sock = local_worker
    marker = tmp_path / "unpickled"
    header = HOSTILE_FRAMES[kind](marker)
    sock.sendall(protocol.PREFIX.pack(len(header), 0) + header)
    assert sock.recv(65536) == b"", "the worker must close its socket"
    assert process.wait(10) != 0
    assert not marker.exists(), "the worker ran what the frame carried"
    record("security", {"local_worker_hostile_frames": {kind: f"closed, exit code {process.returncode}"}})
