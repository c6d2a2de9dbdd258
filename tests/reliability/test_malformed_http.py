"""Malformed and hostile HTTP on raw sockets: each answered 4xx or closed, and the server unharmed.

Bad chunked encoding, conflicting lengths, huge and slow headers, invalid
request lines, HTTP/0.9, NULs, pipelining. What each got goes to
test-artifacts/reliability/malformed_http.json.
"""

import socket
import threading
import time

import pytest
from harness import PROJECT, assert_unharmed, descriptor_count, held_connections, record, sized
from loadgen import echo, run_load
from support import Server

from ufop_sdk.app.settings import Settings
from ufop_sdk.http.lifecycle import header_limit

pytestmark = pytest.mark.reliability

LIMIT = 64 << 10
OVER_HEADERS = header_limit(Settings()) + (6 << 10)  # room for the longest cmd, percent-encoded, and more
OVER_CMD = Settings().max_cmd_bytes + 1
POST = b"POST /handler?cmd=t/echo HTTP/1.1\r\nHost: x\r\n"
outcomes = {}


@pytest.fixture(scope="module")
def server():
    with Server(PROJECT, "--host", "127.0.0.1", workers=2, env={"UFOP_MAX_BODY_BYTES": str(LIMIT)}) as server:
        yield server
    record("malformed_http", {"outcomes": dict(sorted(outcomes.items()))})


def exchange(port, data, *, half_close=False, timeout=5.0):
    """Send `data` on a new connection and read one answer; returns (answer bytes, closed after it).

    b"" means the server closed the connection without answering. AssertionError
    if the server neither answers nor closes within `timeout` seconds.
    """
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server stopped reading and closed: what it answered is still there
        received, length = b"", None
        try:
            while length is None or len(received) < length:
                piece = sock.recv(65536)
                if not piece:
                    return received, True
                received += piece
                head, found, body = received.partition(b"\r\n\r\n")
                if found and length is None:
                    length = len(head) + 4 + _content_length(head)
        except ConnectionResetError:
            return received, True
        except TimeoutError:
            raise AssertionError(f"no answer, no close within {timeout}s; got {received[:200]!r}") from None
        return received, False


def _content_length(head):
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 1 << 62  # no length: the answer ends when the connection closes


def outcome(answer):
    return answer.split(b" ", 2)[1].decode() if answer.startswith(b"HTTP/1.1 ") else "closed" if not answer \
        else f"garbage {answer[:40]!r}"


def chunked(*pieces):
    return POST + b"Transfer-Encoding: chunked\r\n\r\n" + b"".join(pieces)


REFUSED = {"400", "closed"}
CASES = {
    # chunked encoding
    "chunk size not hex": (chunked(b"zz\r\nabc\r\n0\r\n\r\n"), REFUSED),
    "chunk size negative": (chunked(b"-3\r\nabc\r\n0\r\n\r\n"), REFUSED),
    "chunk size overflowing": (chunked(b"ffffffffffffffffffff\r\nabc\r\n0\r\n\r\n"), REFUSED),
    "chunk size with a space": (chunked(b"3 \r\nabc\r\n0\r\n\r\n"), REFUSED | {"200"}),
    "chunk data without its CRLF": (chunked(b"3\r\nabcXX0\r\n\r\n"), REFUSED),
    "chunk shorter than its size (client half-closes)": (chunked(b"10\r\nabc\r\n0\r\n\r\n"), REFUSED),
    "chunk extension with a NUL": (chunked(b"3;\x00\r\nabc\r\n0\r\n\r\n"), REFUSED),
    "chunked body cut short (client half-closes)": (chunked(b"3\r\nabc\r\n"), REFUSED),
    "chunked, larger than the body limit": (
        chunked(b"%x\r\n" % (LIMIT + 1) + b"x" * (LIMIT + 1) + b"\r\n0\r\n\r\n"), {"413"}),
    # lengths
    "Content-Length and Transfer-Encoding": (POST + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
                                             b"3\r\nabc\r\n0\r\n\r\n", REFUSED),
    "two different Content-Lengths": (POST + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", REFUSED),
    "Content-Length not a number": (POST + b"Content-Length: abc\r\n\r\nabc", REFUSED),
    "Content-Length negative": (POST + b"Content-Length: -1\r\n\r\nabc", REFUSED),
    "Content-Length with a sign": (POST + b"Content-Length: +3\r\n\r\nabc", REFUSED),
    "Content-Length of 10^23": (POST + b"Content-Length: 99999999999999999999999\r\n\r\nabc", {"413"}),
    "Transfer-Encoding gzip": (POST + b"Transfer-Encoding: gzip\r\n\r\nabc", REFUSED),
    "Transfer-Encoding chunked twice": (POST + b"Transfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n",
                                        REFUSED),
    # request lines
    "request line of one word": (b"GARBAGE\r\n\r\n", REFUSED),
    "request line with an extra word": (b"GET /health HTTP/1.1 extra\r\nHost: x\r\n\r\n", REFUSED),
    "request line with two spaces": (b"GET  /health HTTP/1.1\r\nHost: x\r\n\r\n", REFUSED),
    "HTTP/0.9": (b"GET /health\r\n\r\n", REFUSED),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", REFUSED),
    "HTTP/9.9": (b"GET /health HTTP/9.9\r\nHost: x\r\n\r\n", REFUSED),
    "binary noise": (bytes(range(256)) * 4 + b"\r\n\r\n", REFUSED),
    "TLS client hello": (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\0" * 64 + b"\r\n\r\n", REFUSED),
    "lowercase method": (b"post /handler?cmd=t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na",
                         {"405"}),
    "CONNECT": (b"CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n",
                {"400", "404", "405", "closed"}),
    "TRACE on /handler": (b"TRACE /handler?cmd=t/echo HTTP/1.1\r\nHost: x\r\n\r\n", {"405"}),
    "absolute URI to another host (no proxying)": (b"GET http://169.254.169.254/latest/meta-data HTTP/1.1\r\n"
                                                   b"Host: 169.254.169.254\r\n\r\n", {"404"}),
    # NULs and odd bytes
    "NUL in the path": (b"POST /handler\x00?cmd=t/echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na",
                        REFUSED),
    "NUL in the query": (b"POST /handler?cmd=t/ec\x00ho HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na",
                         REFUSED),
    "%00 in the cmd": (b"POST /handler?cmd=t/ec%00ho HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na",
                       {"400"}),
    "invalid UTF-8 percent-encoded in the cmd": (b"POST /handler?cmd=t/%ff%fe HTTP/1.1\r\nHost: x\r\n"
                                                 b"Content-Length: 1\r\n\r\na", {"400"}),
    "raw non-UTF-8 bytes in the cmd": (b"POST /handler?cmd=t/\xff\xfe HTTP/1.1\r\nHost: x\r\n"
                                       b"Content-Length: 1\r\n\r\na", {"400", "404"}),
    "NUL in a header value": (POST + b"X-A: a\x00b\r\nContent-Length: 1\r\n\r\na", REFUSED),
    "CR alone in a header value": (POST + b"X-A: a\rb\r\nContent-Length: 1\r\n\r\na", REFUSED),
    "header without a colon": (POST + b"NoColonHere\r\nContent-Length: 1\r\n\r\na", REFUSED),
    "header name with a space": (POST + b"X A: b\r\nContent-Length: 1\r\n\r\na", REFUSED),
    "obsolete line folding": (POST + b"X-A: a\r\n b\r\nContent-Length: 1\r\n\r\na", REFUSED),
    # sizes
    "a header past the header limit": (POST + b"X-Big: " + b"a" * OVER_HEADERS
                                       + b"\r\nContent-Length: 1\r\n\r\na", REFUSED | {"431"}),
    "a request line past the header limit": (b"GET /" + b"a" * OVER_HEADERS + b" HTTP/1.1\r\nHost: x\r\n\r\n",
                                             REFUSED | {"414", "431"}),
    "a cmd past the header limit": (b"POST /handler?cmd=t/" + b"e" * OVER_HEADERS
                                    + b" HTTP/1.1\r\nHost: x\r\n\r\n", REFUSED | {"414", "431"}),
    "a cmd past UFOP_MAX_CMD_BYTES": (b"POST /handler?cmd=t/" + b"e" * OVER_CMD + b" HTTP/1.1\r\nHost: x\r\n"
                                      b"Content-Length: 1\r\n\r\na", {"414"}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_malformed_requests_are_refused_and_harm_nothing(server, name):
    data, allowed = CASES[name]
    answer, _ = exchange(server.port, data, half_close="half-closes" in name)
    outcomes[name] = outcome(answer)
    assert outcomes[name] in allowed, answer[:300]
    if answer and outcomes[name] != "400" or b"Content-Type: application/json" in answer:
        assert b'"request_id"' in answer, answer[:300]  # a JSON error, not Tornado's bare 400
    assert server.process.poll() is None


def test_the_server_is_unharmed_after_every_malformed_request(server):
    before = descriptor_count(server.process.pid)
    for name, (data, _) in CASES.items():
        exchange(server.port, data, half_close="half-closes" in name)
    server.wait_until(lambda: descriptor_count(server.process.pid) <= before, 5,
                      "the malformed requests' connections to be closed")
    assert_unharmed(server)


def test_many_small_headers_are_answered_in_bounded_time(server):
    headers = b"".join(b"X-H%d: v\r\n" % n for n in range(5_000))  # about 50 KiB, under the 64 KiB limit
    began = time.monotonic()
    answer, _ = exchange(server.port, POST + headers + b"Content-Length: 2\r\n\r\nok")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"ok")
    assert time.monotonic() - began < 10
    outcomes["5,000 small headers"] = outcome(answer)


def test_pipelined_requests_are_answered_in_order_even_past_a_refused_one(server):
    requests = []
    for n in range(30):
        if n == 10:  # refused on its length, then its body is read and dropped: the next one is answered
            requests.append(b"POST /handler?cmd=t/echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: p%d\r\n"
                            b"Content-Length: %d\r\n\r\n" % (n, LIMIT + 1) + b"z" * (LIMIT + 1))
        elif n % 7 == 3:
            requests.append(b"POST /handler?cmd=t/nothing HTTP/1.1\r\nHost: x\r\nX-Request-Id: p%d\r\n"
                            b"Content-Length: 0\r\n\r\n" % n)
        else:
            requests.append(b"POST /handler?cmd=t/echo HTTP/1.1\r\nHost: x\r\nX-Request-Id: p%d\r\n"
                            b"Content-Length: %d\r\n\r\nbody %d" % (n, len(b"body %d" % n), n))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"".join(requests))
        stream = sock.makefile("rb")
        for n in range(30):
            status = stream.readline().split(b" ")[1]
            headers = {}
            while (line := stream.readline()) != b"\r\n":
                name, _, value = line.decode().partition(":")
                headers[name.lower()] = value.strip()
            body = stream.read(int(headers["content-length"]))
            assert headers["x-request-id"] == f"p{n}"
            expected = b"413" if n == 10 else b"404" if n % 7 == 3 else b"200"
            assert status == expected and (status != b"200" or body == b"body %d" % n), (n, status, body)
    outcomes["30 pipelined requests, one refused"] = "answered in order"


# Slow clients.

def dribble(port, stop, opening, trickle):
    """A slow client: `opening`, then `trickle` every 0.2 s until `stop` is set."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(opening)
        while not stop.wait(0.2):
            try:
                sock.sendall(trickle)
            except OSError:
                return


def test_slow_clients_do_not_hold_up_the_others(server):
    slow = sized(200, 1000)
    stop = threading.Event()
    openings = [(POST, b"X-Slow: 1\r\n"),  # slow headers (slowloris)
                (POST + b"Content-Length: 1000000\r\n\r\n", b"x" * 10)]  # a slow body
    # Earlier tests' connections closing during the wait below would hide slow clients from the count.
    server.wait_until(lambda: held_connections(server.port) == 0, 10, "earlier connections to close")
    before = descriptor_count(server.process.pid)
    threads = [threading.Thread(target=dribble, args=(server.port, stop, *openings[n % 2]), daemon=True)
               for n in range(slow)]
    for thread in threads:
        thread.start()
    try:
        server.wait_until(lambda: descriptor_count(server.process.pid) >= before + slow, 30,
                          "the slow clients to connect")
        calls = [echo(b"beside the slow ones %d" % n) for n in range(sized(500, 5000))]
        report = run_load(server.port, calls, 8)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert report.problems() == []
    figures = report.figures()
    assert figures["latency_ms"]["max"] < 10_000, figures["latency_ms"]
    server.wait_until(lambda: descriptor_count(server.process.pid) <= before, 5,
                      "the slow connections to close")
    assert_unharmed(server)
    record("malformed_http", {"slow_clients": {"slow_connections": slow, "others": figures}})
