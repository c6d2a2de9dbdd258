"""UFOP_IDLE_TIMEOUT and UFOP_BODY_TIMEOUT over real sockets: slow clients are cut off, in time.

The server checks its clients' deadlines once a second, so a connection is
closed between its timeout and about a second after it.
"""

import socket
import textwrap
import time

import pytest
from support import Server, run_cli

IDLE = 1.0
BODY = 2.0
SWEEP = 1.0  # how often the server looks; plus scheduling slack below
SLACK = 3.0  # a shared 2-core machine under a full suite

PROCESSORS = textwrap.dedent("""
    import time

    from ufop_sdk import Processor


    class Echo(Processor):
        route = r"echo"

        def process(self, req):
            return req.buffer.read(), "application/octet-stream"


    class Nap(Processor):
        route = r"nap/(?P<seconds>[0-9.]+)"
        timeout = 30

        def process(self, req):
            time.sleep(float(req.args["seconds"]))
            return "rested"
""")


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    folder = tmp_path_factory.mktemp("slow-clients")
    (folder / "processors.py").write_text(PROCESSORS)
    return folder


@pytest.fixture(scope="module")
def server(project):
    with Server(project, "--host", "127.0.0.1",
                env={"UFOP_IDLE_TIMEOUT": str(IDLE), "UFOP_BODY_TIMEOUT": str(BODY)}) as server:
        yield server


def connect(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=IDLE + BODY + SWEEP + 10)
    return sock


def seconds_until_closed(sock, since):
    """Reads until the server closes; returns when it did, and what it sent before."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return time.monotonic() - since, received


def request_head(length, cmd="t/echo"):
    return (f"POST /handler?cmd={cmd} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n").encode()


def test_a_connection_that_sends_nothing_is_closed_after_the_idle_timeout(server):
    with connect(server) as sock:
        elapsed, received = seconds_until_closed(sock, time.monotonic())
    assert received == b""
    assert IDLE <= elapsed <= IDLE + SWEEP + SLACK


def test_headers_sent_too_slowly_are_cut_off(server):
    began = time.monotonic()
    with connect(server) as sock:
        sock.sendall(b"POST /handler?cmd=t/echo HTTP/1.1\r\n")
        time.sleep(IDLE / 2)
        sock.sendall(b"Host: x\r\n")  # still short of the blank line: the clock keeps running
        elapsed, received = seconds_until_closed(sock, began)
    assert received == b""
    assert IDLE <= elapsed <= IDLE + SWEEP + SLACK


def test_an_idle_keep_alive_connection_is_closed_after_its_last_answer(server):
    with connect(server) as sock:
        sock.sendall(request_head(2) + b"hi")
        answered = time.monotonic()
        elapsed, received = seconds_until_closed(sock, answered)
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"hi")
    assert IDLE <= elapsed + 0.05 <= IDLE + SWEEP + SLACK


def test_a_body_that_takes_too_long_is_cut_off_without_an_answer(server):
    began = time.monotonic()
    with connect(server) as sock:
        sock.sendall(request_head(10) + b"abc")  # 7 bytes short, forever
        elapsed, received = seconds_until_closed(sock, began)
    assert received == b""
    assert BODY <= elapsed <= BODY + SWEEP + SLACK
    assert server.post("t/echo", b"still serving")[::2] == (200, b"still serving")


def test_a_slow_body_within_the_timeout_is_answered(server):
    with connect(server) as sock:
        sock.sendall(request_head(6) + b"abc")
        time.sleep(IDLE + SWEEP)  # past the idle timeout: the body's own, longer, clock applies
        sock.sendall(b"def")
        answer = sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"abcdef")


def test_processing_time_does_not_count_against_the_client(server):
    with connect(server) as sock:
        sock.sendall(request_head(0, cmd=f"t/nap/{BODY + SWEEP + SLACK}"))
        answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        sock.sendall(request_head(2) + b"ok")  # the connection is still good for another request
        assert sock.recv(65536).endswith(b"ok")


@pytest.mark.parametrize("variable", ["UFOP_IDLE_TIMEOUT", "UFOP_BODY_TIMEOUT"])
def test_the_timeouts_must_be_positive_seconds(project, variable):
    result = run_cli("serve", "--project", str(project), env={variable: "soon"})
    assert result.returncode != 0
    assert variable.encode() in result.stderr and b"soon" in result.stderr
