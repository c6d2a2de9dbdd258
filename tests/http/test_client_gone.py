"""Clients that go away, and answers that cannot be sent: the log and /metrics tell what really happened.

A client that hangs up after sending its request: its job is not started if
it still waits, its running job's answer is dropped, and it is logged 499.
A status is recorded once the answer was really written: 499 when the client
went away during the write, 500 when the answer could not be written at all.
"""

import json
import re
import socket
import textwrap
import time

import pytest
from support import Server, access_line, send_request

PROCESSORS = textwrap.dedent("""
    import os
    import time
    from pathlib import Path

    from ufop_sdk import Processor, Response


    class Mark(Processor):
        \"\"\"Leaves a marker file named in the cmd, so a test sees that it started.\"\"\"

        route = r"mark/(?P<name>[a-z0-9-]+)/(?P<seconds>[0-9.]+)"
        timeout = 30

        def process(self, req):
            (Path(os.environ["MARKERS"]) / req.args["name"]).touch()
            time.sleep(float(req.args["seconds"]))
            return "done"


    class Big(Processor):
        route = r"big/(?P<mib>[0-9]+)"

        def process(self, req):
            return b"x" * (int(req.args["mib"]) << 20), "application/octet-stream"


    class UnsendableHeader(Processor):
        route = r"unsendable/(?P<where>value|content-type)"

        def process(self, req):
            if req.args["where"] == "value":
                return Response(b"hi", headers={"X-Name": "\u732b"})
            return b"x", "text/plain\\r\\nX-Injected: 1"
""")


@pytest.fixture(scope="module")
def markers(tmp_path_factory):
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def server(tmp_path_factory, markers):
    folder = tmp_path_factory.mktemp("client-gone")
    (folder / "processors.py").write_text(PROCESSORS)
    with Server(folder, "--host", "127.0.0.1", workers=1, env={"MARKERS": str(markers)}) as server:
        yield server


def hang_up(sock, reset=False):
    if reset:  # an RST rather than a FIN: what a client killed mid-download sends
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    sock.close()


def requests_counted(server, processor, status):
    metrics = server.request("GET", "/metrics")[2].decode()
    found = re.search(rf'ufop_requests_total{{processor="{processor}",status="{status}"}} (\S+)', metrics)
    return float(found[1]) if found else 0.0


def in_flight(server):
    metrics = server.request("GET", "/metrics")[2].decode()
    return float(re.search(r"^ufop_requests_in_flight (\S+)$", metrics, re.MULTILINE)[1])


def pool_is_idle(server):
    status, health = server.health()
    return status == 200 and health["pending"] == 0 and health["busy"] == 0


def test_a_queued_request_whose_client_hung_up_never_starts_and_is_logged_499(server, markers):
    blocker = send_request(server, "t/mark/blocker/5", "gone-blocker")
    server.wait_until(lambda: (markers / "blocker").exists(), 10, "the blocking job to start")
    gone = [send_request(server, f"t/mark/queued-{n}/0", f"gone-queued-{n}") for n in range(3)]
    server.wait_until(lambda: server.health()[1]["pending"] == 4, 5, "the three requests to queue")
    for sock in gone:
        hang_up(sock)
    lines = [access_line(server, f"gone-queued-{n}") for n in range(3)]
    assert [line["status"] for line in lines] == [499] * 3
    assert in_flight(server) == 1, "only the blocking request is still being answered"
    # The pool lets go of their jobs at once, not when the blocker ends (pending would go 4 -> 0).
    server.wait_until(lambda: server.health()[1]["pending"] == 1, 2, "the pool to drop the three")
    assert blocker.recv(65536).startswith(b"HTTP/1.1 200")
    blocker.close()
    server.wait_until(lambda: pool_is_idle(server), 10, "the pool to be idle")
    time.sleep(0.5)
    started = [n for n in range(3) if (markers / f"queued-{n}").exists()]
    assert started == [], f"requests whose clients had gone were started: {started}"
    assert requests_counted(server, "Mark", 499) >= 3
    assert server.post("t/big/0")[0] == 200


def test_a_running_request_whose_client_hung_up_is_logged_499_and_its_answer_dropped(server, markers):
    sock = send_request(server, "t/mark/running/2", "gone-running")
    server.wait_until(lambda: (markers / "running").exists(), 10, "the job to start")
    hung_up = time.monotonic()
    hang_up(sock)
    line = access_line(server, "gone-running")
    assert line["status"] == 499 and line["bytes_out"] == 0
    assert time.monotonic() - hung_up < 1.5, "logged only once the job was over"
    server.wait_until(lambda: pool_is_idle(server), 10, "the pool to be idle")
    assert in_flight(server) == 0
    assert access_line(server, "gone-running")["status"] == 499  # still one line: the answer was dropped


def test_a_client_that_resets_while_its_answer_is_written_is_logged_499_not_200(server):
    before = requests_counted(server, "Big", 200)
    sock = send_request(server, "t/big/32", "gone-writing", receive_buffer=4096)
    time.sleep(1.5)  # the answer is made, and its writing stalls on the unread socket
    hang_up(sock, reset=True)
    line = access_line(server, "gone-writing")
    assert (line["status"], line["bytes_out"]) == (499, 0)
    assert requests_counted(server, "Big", 200) == before


@pytest.mark.parametrize("where", ["value", "content-type"])
def test_an_answer_whose_header_cannot_be_sent_is_a_json_500_logged_500(server, where):
    status, headers, body = server.request("POST", f"/handler?cmd=t/unsendable/{where}", b"",
                                           headers={"X-Request-Id": f"unsendable-{where}"})
    assert status == 500, body
    assert "UnsendableHeader" in json.loads(body)["error"]
    assert "X-Injected" not in headers and "X-Name" not in headers
    assert access_line(server, f"unsendable-{where}")["status"] == 500
    assert server.post("t/big/0")[0] == 200
