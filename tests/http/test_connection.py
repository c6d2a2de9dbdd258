"""The connection layer (http/connection.py) on raw sockets: keep-alive and closing, HTTP/1.0, 100 Continue,
HEAD, pipelining (also past what is read ahead), and the JSON answers to what cannot be parsed."""

import json
import socket
import time

import pytest
from support import Server

from ufop_sdk.app.settings import Settings
from ufop_sdk.http.connection import PIPELINED_BYTES
from ufop_sdk.http.lifecycle import header_limit

PROCESSORS = '''
import time

from ufop_sdk import Processor


class Echo(Processor):
    route = r"echo"

    def process(self, req):
        return req.buffer.read()


class Slow(Processor):
    route = r"slow"

    def process(self, req):
        time.sleep(0.5)
        return b"slow " + req.buffer.read()


class Lines(Processor):
    route = r"lines/(?P<count>\\d+)"

    def process(self, req):
        return (b"line %d\\n" % n for n in range(int(req.args["count"])))
'''


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("connection")
    (folder / "processors.py").write_text(PROCESSORS)
    with Server(folder, "--host", "127.0.0.1", workers=2) as server:
        yield server


def connect(server):
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock, sock.makefile("rb")


def post(cmd, body=b"", version="HTTP/1.1", headers=b""):
    return (b"POST /handler?cmd=t/%s %s\r\nHost: x\r\n%sContent-Length: %d\r\n\r\n"
            % (cmd.encode(), version.encode(), headers, len(body)) + body)


def read_answer(stream, method="POST"):
    """(status, {lowercase name: value}, body) of one answer, framed by its length, chunks, or the close."""
    status_line = stream.readline()
    assert status_line, "the connection closed without an answer"
    status = int(status_line.split(b" ")[1])
    headers = {}
    while (line := stream.readline()) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.lower()] = value.strip()
    if method == "HEAD" or status in (100, 204, 304):
        return status, headers, b""
    if headers.get("transfer-encoding") == "chunked":
        body = b""
        while size := int(stream.readline(), 16):
            body += stream.read(size)
            assert stream.read(2) == b"\r\n"
        assert stream.read(2) == b"\r\n"
        return status, headers, body
    if "content-length" in headers:
        return status, headers, stream.read(int(headers["content-length"]))
    return status, headers, stream.read()


def closed_by_server(sock, seconds=5):
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_a_keep_alive_connection_answers_one_request_after_another(server):
    sock, stream = connect(server)
    with sock:
        for n in range(5):
            sock.sendall(post("echo", b"request %d" % n))
            status, headers, body = read_answer(stream)
            assert (status, body) == (200, b"request %d" % n) and "connection" not in headers


def test_connection_close_is_answered_with_connection_close_and_then_closed(server):
    sock, stream = connect(server)
    with sock:
        sock.sendall(post("echo", b"last", headers=b"Connection: close\r\n"))
        status, headers, body = read_answer(stream)
        assert (status, headers["connection"], body) == (200, "close", b"last")
        assert closed_by_server(sock)


def test_an_http_1_0_request_is_answered_and_its_connection_closed(server):
    sock, stream = connect(server)
    with sock:
        sock.sendall(post("echo", b"old", version="HTTP/1.0"))
        status, headers, body = read_answer(stream)
        assert (status, body) == (200, b"old") and "connection" not in headers
        assert closed_by_server(sock)


def test_an_http_1_0_keep_alive_request_is_told_keep_alive_and_its_connection_serves_the_next(server):
    sock, stream = connect(server)
    with sock:
        for n in range(2):
            sock.sendall(post("echo", b"old %d" % n, version="HTTP/1.0",
                              headers=b"Connection: keep-alive\r\n"))
            status, headers, body = read_answer(stream)
            assert (status, headers["connection"], body) == (200, "Keep-Alive", b"old %d" % n)


def test_a_streamed_answer_to_http_1_0_is_sent_unchunked_and_ended_by_the_close(server):
    sock, stream = connect(server)
    with sock:
        sock.sendall(post("lines/3", version="HTTP/1.0", headers=b"Connection: keep-alive\r\n"))
        status, headers, body = read_answer(stream)
        assert (status, body) == (200, b"line 0\nline 1\nline 2\n")
        assert "transfer-encoding" not in headers and "content-length" not in headers


def test_a_streamed_answer_to_http_1_1_is_chunked_and_the_connection_kept(server):
    sock, stream = connect(server)
    with sock:
        sock.sendall(post("lines/3") + post("echo", b"after"))
        status, headers, body = read_answer(stream)
        assert (status, headers["transfer-encoding"], body) == (200, "chunked", b"line 0\nline 1\nline 2\n")
        assert read_answer(stream)[2] == b"after"


def test_expect_100_continue_gets_100_continue_then_the_answer(server):
    sock, stream = connect(server)
    with sock:
        sock.sendall(b"POST /handler?cmd=t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                     b"Expect: 100-continue\r\n\r\n")
        assert read_answer(stream)[0] == 100
        sock.sendall(b"body")
        assert read_answer(stream)[::2] == (200, b"body")


def test_a_head_request_gets_the_answers_head_without_its_body_and_the_connection_goes_on(server):
    sock, stream = connect(server)
    with sock:
        sock.sendall(b"HEAD /handler?cmd=t/echo HTTP/1.1\r\nHost: x\r\n\r\n" + post("echo", b"next"))
        status, headers, _ = read_answer(stream, method="HEAD")
        assert status == 405 and int(headers["content-length"]) > 0
        assert read_answer(stream)[::2] == (200, b"next")


def test_pipelined_requests_to_every_path_are_answered_in_order(server):
    sock, stream = connect(server)
    with sock:
        sock.sendall(post("slow", b"1") + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n" + post("echo", b"3")
                     + b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n" + post("lines/1"))
        answers = [read_answer(stream) for _ in range(5)]
    assert [status for status, _, _ in answers] == [200, 200, 200, 404, 200]
    assert (answers[0][2], answers[2][2], answers[4][2]) == (b"slow 1", b"3", b"line 0\n")
    assert json.loads(answers[1][2])["status"] == "ok"


def test_pipelined_requests_past_what_is_read_ahead_are_all_answered_in_order(server):
    body = b"x" * (16 << 10)
    count = 2 * PIPELINED_BYTES // len(body)
    requests = b"".join(post("echo", body, headers=b"X-Request-Id: r%d\r\n" % n) for n in range(count))
    sock, stream = connect(server)
    with sock:
        sock.settimeout(30)
        sock.sendall(requests)
        for n in range(count):
            status, headers, answered = read_answer(stream)
            assert (status, headers["x-request-id"], answered) == (200, f"r{n}", body)


def test_a_client_leaving_while_its_request_is_processed_is_seen_at_once(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(post("slow", headers=b"X-Request-Id: gone-early\r\n"))
        time.sleep(0.2)
    server.wait_until(lambda: '"request_id":"gone-early"' in server.output(), 5, "the request's access line")
    line = next(line for line in server.output().splitlines() if '"request_id":"gone-early"' in line)
    assert json.loads(line[line.index("{"):])["status"] == 499


@pytest.mark.parametrize("request_bytes, status", [
    (b"GET /health HTTP/1.1\r\nX-A: a\x00b\r\n\r\n", 400),
    (b"GET  /health HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * header_limit(Settings()) + b"\r\n\r\n", 431),
    (b"POST /handler?cmd=t/echo HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413),
    (b"get /health HTTP/1.1\r\nHost: x\r\n\r\n", 405),
    (b"GET /health HTTP/1.1\r\nHost: a, b\r\n\r\n", 400),
], ids=["a NUL in a header", "two spaces in the request line", "headers past the limit",
        "a Content-Length past 64 bits", "an unknown method", "two hosts (Tornado's application refuses it)"])
def test_a_request_that_cannot_be_parsed_gets_a_json_error_with_a_request_id_and_the_connection_closes(
        server, request_bytes, status):
    sock, stream = connect(server)
    with sock:
        sock.sendall(request_bytes)
        answered, headers, body = read_answer(stream)
        assert (answered, headers["connection"]) == (status, "close")
        assert json.loads(body)["request_id"] == headers["x-request-id"]
        assert closed_by_server(sock)
