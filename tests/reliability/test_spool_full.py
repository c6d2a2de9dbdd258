"""A spool folder with no room (UFOP_SPOOL_DIR on a tiny tmpfs, or RLIMIT_FSIZE where mounting is
not allowed): every input that cannot be stored is answered 507 (503 under the rlimit), never a crash,
and nothing is left behind. Figures go to test-artifacts/reliability/faults.json.
"""

import contextlib
import json
import socket
import time
from urllib.parse import quote

import pytest
from harness import PROJECT, TinySpool, assert_unharmed, files_under, record
from loadgen import Call, answers, echo, fails, handler, run_load
from support import Origin

pytestmark = pytest.mark.reliability

SPOOL_ROOM = 4 << 20
LARGE = 3 << 19  # 1.5 MiB: over the 1 MiB kept in memory, so spooled; several fill the room
HUGE = 5 << 20  # never fits


@pytest.fixture
def tiny_spool():
    spool = TinySpool(SPOOL_ROOM)
    try:
        yield spool
    finally:
        spool.close()


def stored_or_full(spool, body):
    """t/echo of a body that goes to disk: echoed when it fits, else the storage error."""
    full = fails("t/echo", spool.full_status, "store the input").check

    def check(answer):
        return answers(200, body)(answer) if answer.status == 200 else full(answer)

    return Call("large", handler("t/echo"), check, body=body)


def assert_nothing_left(server, spool):
    server.wait_until(lambda: not files_under(server, spool.folder), 5, "every spool to be closed")
    assert list(spool.folder.iterdir()) == []
    assert spool.used_bytes() == 0
    body = b"\4" * LARGE
    assert server.post("t/echo", body, timeout=15)[::2] == (200, body), "the room is free again"


def test_a_full_spool_answers_its_error_and_leaves_nothing_behind(tiny_spool):
    with tiny_spool.server(PROJECT, "--host", "127.0.0.1", workers=2) as server:
        full, message = tiny_spool.full_status, "store the input"
        calls = [
            *(stored_or_full(tiny_spool, bytes([n]) * LARGE) for n in range(8)),
            *(fails("t/echo", full, message, body=b"\2" * HUGE, kind="huge") for _ in range(3)),
            *(fails("t/echo", full, message, body=b"\3" * HUGE, chunked=True, kind="huge-chunked")
              for _ in range(3)),
            *(echo(b"small %d" % n) for n in range(40)),
        ]
        report = run_load(server.port, calls, connections=8)
        record("faults", {"spool_full": {**report.figures(), "method": tiny_spool.method,
                                         "room_bytes": SPOOL_ROOM, "status_when_full": full}})
        assert report.problems() == []
        assert report.statuses().get(str(full), 0) >= 6
        assert_nothing_left(server, tiny_spool)
        assert_unharmed(server)


def upload_slowly(port, size, piece=1000, pause=0.001):
    """POST `size` bytes to t/echo in `piece`-byte writes, so the server receives small pieces;
    returns what came back (b"" if the connection was closed without an answer)."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(b"POST /handler?cmd=t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % size)
        with contextlib.suppress(OSError):  # the server may answer and stop reading before the end
            for sent in range(0, size, piece):
                sock.sendall(b"\5" * min(piece, size - sent))  # a byte past the body would be a request
                time.sleep(pause)
        received = b""
        with contextlib.suppress(OSError):
            while chunk := sock.recv(65536):
                received += chunk
                if received.endswith(b"}"):
                    break
        return received


def test_a_slow_upload_into_a_full_spool_is_answered_not_dropped(tiny_spool):
    """Small pieces wait in the spool file's buffer as the disk fills: closing it must not lose the answer."""
    if tiny_spool.method == "tmpfs":  # leave 100 KiB: the 1 MiB kept in memory cannot be written out
        with open(tiny_spool.folder / "filler", "wb") as filler:
            filler.write(b"\0" * (SPOOL_ROOM - (100 << 10)))
    size = LARGE if tiny_spool.method == "tmpfs" else SPOOL_ROOM + (512 << 10)
    with tiny_spool.server(PROJECT, "--host", "127.0.0.1", workers=2) as server:
        answer = upload_slowly(server.port, size)
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 %d" % tiny_spool.full_status), \
            f"answered {answer[:200]!r}; the server logged:\n{server.output()[-3000:]}"
        assert "store the input" in json.loads(body)["error"]
        (tiny_spool.folder / "filler").unlink(missing_ok=True)
        assert_nothing_left(server, tiny_spool)
        assert_unharmed(server)


def test_a_full_spool_while_fetching_sources_answers_its_error_and_logs_no_traceback(tiny_spool):
    """A source refused mid-fetch (no room, or over UFOP_MAX_SOURCE_BYTES) is the client's problem:
    answered, and logged without a traceback, as every 4xx and 507 is."""
    env = {"UFOP_BLOCKED_NETWORKS": "none", "UFOP_MAX_SOURCE_BYTES": str(HUGE * 2)}
    with tiny_spool.server(PROJECT, "--host", "127.0.0.1", env=env, workers=2) as server, Origin() as origin:
        origin.serve("/huge.bin", b"\1" * HUGE)
        origin.serve("/over-the-limit.bin", b"\1" * (HUGE * 2 + 1))  # refused on its Content-Length
        source = handler("t/echo") + "&url="
        calls = [
            *(fails("", tiny_spool.full_status, "store the input", kind="huge-source",
                    target=source + quote(origin.url("/huge.bin"), safe="")) for _ in range(3)),
            fails("", 413, f"over the limit of {HUGE * 2} bytes", kind="413-source",
                  target=source + quote(origin.url("/over-the-limit.bin"), safe="")),
            *(echo(b"small %d" % n) for n in range(20)),
        ]
        report = run_load(server.port, calls, connections=4)
        assert report.problems() == []
        assert_nothing_left(server, tiny_spool)
        assert_unharmed(server)
