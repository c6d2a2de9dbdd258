"""UFOP_MAX_BODY_BYTES over real HTTP: 413 as soon as it is known, and a client that reads it."""

import contextlib
import http.client
import json
import socket
import threading

import pytest
from support import PROJECTS, Server, rss_bytes

LIMIT = 1 << 20


@pytest.fixture(scope="module")
def server():
    with Server(PROJECTS / "server", "--host", "127.0.0.1", env={"UFOP_MAX_BODY_BYTES": "1MiB"}) as server:
        yield server


def connect(server):
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)


def assert_too_large(status, headers, body):
    assert status == 413, body[:200]
    assert headers["Content-Type"].startswith("application/json")
    payload = json.loads(body)
    assert str(LIMIT) in payload["error"] and payload["request_id"] == headers["X-Request-Id"]


def chunks(size, piece=64 << 10):
    for start in range(0, size, piece):
        yield b"x" * min(piece, size - start)


def test_a_body_of_exactly_the_limit_is_accepted(server):
    body = b"y" * LIMIT
    assert server.post("t/echo", body)[::2] == (200, body)


def test_a_body_over_the_limit_is_413(server):
    assert_too_large(*server.post("t/echo", b"x" * (2 * LIMIT)))


def test_one_byte_over_the_limit_is_413(server):
    assert_too_large(*server.post("t/echo", b"x" * (LIMIT + 1)))


def test_a_keep_alive_client_reads_the_413_and_can_go_on(server):
    connection = connect(server)
    try:
        connection.request("POST", "/handler?cmd=t/echo", body=b"x" * (2 * LIMIT))
        response = connection.getresponse()
        assert_too_large(response.status, dict(response.getheaders()), response.read())
        if response.will_close:  # the server said so: a fresh connection is the way on
            connection.close()
            connection = connect(server)
        connection.request("POST", "/handler?cmd=t/echo", body=b"next")
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"next")
    finally:
        connection.close()


def test_a_chunked_body_over_the_limit_is_413(server):
    connection = connect(server)
    try:
        connection.request("POST", "/handler?cmd=t/echo", body=chunks(2 * LIMIT), encode_chunked=True)
        response = connection.getresponse()
        assert_too_large(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()
    assert server.post("t/echo", b"after")[::2] == (200, b"after")


def test_a_chunked_body_within_the_limit_is_accepted(server):
    connection = connect(server)
    try:
        connection.request("POST", "/handler?cmd=t/describe", body=chunks(LIMIT), encode_chunked=True)
        response = connection.getresponse()
        assert response.status == 200
        assert json.loads(response.read())["size"] == LIMIT
    finally:
        connection.close()


def test_expect_100_continue_with_a_too_large_length_is_413_without_the_body(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /handler?cmd=t/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: %d\r\nExpect: 100-continue\r\n\r\n" % (2 * LIMIT))
        answer = b""
        while b"\r\n\r\n" not in answer:
            piece = sock.recv(65536)
            assert piece, f"the server closed the connection without answering: {answer!r}"
            answer += piece
        head, _, rest = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 413"), head
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
        while len(rest) < int(headers["Content-Length"]):
            piece = sock.recv(65536)
            assert piece, "the 413's body was cut short"
            rest += piece
        assert_too_large(413, headers, rest)


def test_expect_100_continue_within_the_limit_gets_continue(server):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /handler?cmd=t/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = sock.recv(65536)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        sock.sendall(b"hello")
        answer = b""
        while not answer.endswith(b"hello"):
            piece = sock.recv(65536)
            assert piece, answer
            answer += piece
        assert answer.startswith(b"HTTP/1.1 200")


ENDLESS = 150 << 20  # bytes a client offers before the test gives up on the server refusing them


def post_endless_body(port, path, framing, piece=16 << 10):
    """POST a body of ENDLESS bytes to `path` while reading the answer; returns the answer's bytes.

    The body is sent from a thread, which stops when the server closes the
    connection; the answer is read until the server closes it.
    """
    framing_header = "Transfer-Encoding: chunked" if framing == "chunked" else f"Content-Length: {ENDLESS}"
    chunk = (b"%x\r\n%s\r\n" % (piece, b"x" * piece)) if framing == "chunked" else b"x" * piece
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send():
        with contextlib.suppress(OSError):  # the server refused the rest: what the test wants
            sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{framing_header}\r\n\r\n".encode())
            for _ in range(ENDLESS // piece):
                sock.sendall(chunk)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer = b""
    with sock, contextlib.suppress(ConnectionResetError):
        while received := sock.recv(65536):
            answer += received
    sender.join(30)
    return answer


@pytest.mark.parametrize("framing", ["chunked", "length"])
@pytest.mark.parametrize("path", ["/nope", "/health"])
def test_an_endless_body_to_a_path_other_than_handler_is_refused_unread(server, path, framing):
    before = rss_bytes(server.process.pid)
    answer = post_endless_body(server.port, path, framing)
    grown = rss_bytes(server.process.pid) - before
    assert answer.startswith(b"HTTP/1.1 413"), answer[:300]
    assert "takes no body" in json.loads(answer.partition(b"\r\n\r\n")[2])["error"]
    assert grown < 20 << 20, f"the server grew by {grown >> 20} MiB"
    assert server.health()[0] == 200
    assert server.post("t/echo", b"still serving")[::2] == (200, b"still serving")


@pytest.mark.parametrize("chunked", [False, True])
def test_a_small_body_to_another_path_is_still_answered_by_it(server, chunked):
    connection = connect(server)
    try:
        body = chunks(32 << 10, piece=4 << 10) if chunked else b"x" * (32 << 10)
        connection.request("POST", "/nope", body=body, encode_chunked=chunked)
        response = connection.getresponse()
        assert response.status == 404 and json.loads(response.read())["error"]
    finally:
        connection.close()
