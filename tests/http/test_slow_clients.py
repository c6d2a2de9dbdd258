"""UFOP_IDLE_TIMEOUT, UFOP_BODY_TIMEOUT and UFOP_WRITE_TIMEOUT over real sockets: slow clients are cut off.

The server checks its clients' deadlines once a second, so a connection is
closed between its timeout and about a second after it.
"""

import json
import socket
import textwrap
import time

import pytest
from support import Server, run_cli

IDLE = 1.0
BODY = 2.0
WRITE = 2.0
SWEEP = 1.0  # how often the server looks; plus scheduling slack below
SLACK = 3.0  # a shared 2-core machine under a full suite

PROCESSORS = textwrap.dedent("""
    import time

    from ufop_sdk import Processor


    class Echo(Processor):
        route = r"echo"

        def process(self, req):
            return req.buffer.read(), "application/octet-stream"


    class Big(Processor):
        route = r"big/(?P<mib>[0-9]+)"

        def process(self, req):
            return b"x" * (int(req.args["mib"]) << 20), "application/octet-stream"


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
                env={"UFOP_IDLE_TIMEOUT": str(IDLE), "UFOP_BODY_TIMEOUT": str(BODY),
                     "UFOP_WRITE_TIMEOUT": str(WRITE)}) as server:
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


def request_head(length, cmd="t/echo", request_id="slow"):
    return (f"POST /handler?cmd={cmd} HTTP/1.1\r\nHost: x\r\nX-Request-Id: {request_id}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode()


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
        sock.sendall(request_head(10, request_id="body-too-slow") + b"abc")  # 7 bytes short, forever
        elapsed, received = seconds_until_closed(sock, began)
    assert received == b""
    assert BODY <= elapsed <= BODY + SWEEP + SLACK
    assert access_status(server, "body-too-slow") == [408]
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


def access_status(server, request_id):
    """The status the access log gives `request_id`, once the buffered log has been flushed."""
    statuses = []

    def logged():
        statuses[:] = [json.loads(line)["status"] for line in server.output().splitlines()
                       if line.startswith("{") and f'"request_id":"{request_id}"' in line]
        return statuses

    server.wait_until(logged, 5, f"the access line of {request_id}")
    return statuses


def test_a_client_that_does_not_read_its_answer_is_cut_off_after_the_write_timeout(server):
    size = 32 << 20
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # the answer stalls in the server
    sock.settimeout(30)
    with sock:
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(b"POST /handler?cmd=t/big/32 HTTP/1.1\r\nHost: x\r\nX-Request-Id: never-reads\r\n"
                     b"Content-Length: 0\r\n\r\n")
        time.sleep(WRITE + SWEEP + SLACK + 1)  # the answer takes well under a second to make
        received = 0
        try:
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        except ConnectionResetError:
            pass
    assert received < size, "the whole answer waited for a client that never read it"
    assert access_status(server, "never-reads") == [408]
    assert server.post("t/echo", b"still serving")[::2] == (200, b"still serving")


def test_a_client_that_reads_its_answer_in_time_gets_all_of_it(server):
    status, _, body = server.post("t/big/32")
    assert (status, len(body)) == (200, 32 << 20)


@pytest.mark.parametrize("variable", ["UFOP_IDLE_TIMEOUT", "UFOP_BODY_TIMEOUT", "UFOP_WRITE_TIMEOUT"])
def test_the_timeouts_must_be_positive_seconds(project, variable):
    result = run_cli("serve", "--project", str(project), env={variable: "soon"})
    assert result.returncode != 0
    assert variable.encode() in result.stderr and b"soon" in result.stderr
