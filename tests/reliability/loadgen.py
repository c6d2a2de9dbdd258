"""A load generator that checks every answer: keep-alive connections on asyncio.

    calls = [echo(b"hello"), fails("t/nothing", 404, "no processor matches"), ...]
    report = run_load(server.port, calls, connections=64)
    assert report.problems() == []

Each connection sends its next call once it has read the answer to the last
one (HTTP/1.1 keep-alive), so at most `connections` requests are in flight.
Every call carries its own X-Request-Id and its answer must carry it back: an
answer given to the wrong request is a problem, like a wrong status or body,
or a connection that fails. Loopback only.
"""

import asyncio
import collections
import itertools
import json
import time
from dataclasses import dataclass, field
from urllib.parse import quote

HOST = "127.0.0.1"
CHUNK = 16 << 10
# What a broken connection or a garbled answer raises: recorded as the call's error.
CONNECTION_FAILURES = (OSError, EOFError, ValueError, IndexError, asyncio.TimeoutError,
                       asyncio.LimitOverrunError)


@dataclass(frozen=True)
class Call:
    """One request, and `check(answer)`: None when its answer is right, else what is wrong."""

    kind: str
    target: str
    check: object
    method: str = "POST"
    body: bytes = b""
    headers: tuple = ()
    chunked: bool = False


@dataclass
class Answer:
    """What one call got. `error` is set when the connection failed before a whole answer."""

    call: Call
    request_id: str
    sent: float
    received: float = 0.0
    status: int | None = None
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    error: str | None = None

    @property
    def seconds(self):
        return self.received - self.sent

    def problem(self):
        if self.error:
            return f"connection error: {self.error}"
        if self.headers.get("x-request-id") != self.request_id:
            answered_id = self.headers.get("x-request-id")
            return f"the answer's X-Request-Id is {answered_id!r}, not {self.request_id!r}"
        return self.call.check(self)


@dataclass
class Report:
    answers: list
    seconds: float
    connections: int
    opened: int  # TCP connections opened; more than `connections` when some were closed

    def problems(self, limit=20):
        """Up to `limit` descriptions of wrong answers, each naming its call."""
        found = ((answer, answer.problem()) for answer in self.answers)
        return [f"{answer.call.kind} {answer.request_id} {answer.call.target[:80]}: {problem}"
                for answer, problem in itertools.islice(((a, p) for a, p in found if p), limit)]

    def statuses(self):
        counts = collections.Counter(str(answer.status) if answer.error is None else "connection error"
                                     for answer in self.answers)
        return dict(sorted(counts.items()))

    def figures(self):
        latencies = sorted(answer.seconds for answer in self.answers if answer.error is None)
        return {
            "requests": len(self.answers), "connections": self.connections,
            "tcp_connections_opened": self.opened,
            "seconds": round(self.seconds, 2), "requests_per_second": round(len(self.answers) / self.seconds),
            "statuses": self.statuses(), "kinds": dict(sorted(collections.Counter(
                answer.call.kind for answer in self.answers).items())),
            "connection_errors": sum(1 for answer in self.answers if answer.error),
            "latency_ms": {name: round(percentile(latencies, q) * 1000, 1)
                           for name, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))},
        }


def percentile(values, q):
    """The `q` quantile of sorted `values` (nearest rank); 0 for none."""
    return values[min(len(values) - 1, int(q * len(values)))] if values else 0.0


def run_load(port, calls, connections, *, timeout=30.0, limit=300.0):
    """`load` from synchronous code, all of it within `limit` seconds."""
    return asyncio.run(asyncio.wait_for(load(port, calls, connections, timeout=timeout), limit))


async def load(port, calls, connections, *, timeout=30.0, answers=None):
    """Send every call of `calls` (any iterable, read lazily) over `connections` keep-alive connections.

    Each request and its answer must take under `timeout` seconds. Returns a
    Report; connection failures are recorded in it, never raised. Pass a list
    as `answers` to watch them arrive while the load runs.
    """
    calls = iter(calls)
    numbers = itertools.count(1)
    answers, opened = ([] if answers is None else answers), [0]
    began = time.monotonic()
    await asyncio.gather(*(_connection(port, calls, numbers, answers, opened, timeout)
                           for _ in range(connections)))
    return Report(answers, time.monotonic() - began, connections, opened[0])


async def _connection(port, calls, numbers, answers, opened, timeout):
    reader = writer = None
    try:
        for call in calls:
            answer = Answer(call, f"r{next(numbers)}", time.monotonic())
            answers.append(answer)
            try:
                if writer is None:
                    reader, writer = await asyncio.wait_for(
                        asyncio.open_connection(HOST, port, limit=1 << 20), timeout)
                    opened[0] += 1
                keep_open = await asyncio.wait_for(_exchange(reader, writer, call, answer), timeout)
            except CONNECTION_FAILURES as exc:
                answer.error, keep_open = f"{type(exc).__name__}: {exc}", False
            answer.received = time.monotonic()
            if not keep_open and writer is not None:
                writer.close()
                reader = writer = None
    finally:
        if writer is not None:
            writer.close()


async def _exchange(reader, writer, call, answer):
    """Send `call`, read its answer into `answer`; returns whether the connection stays open."""
    writer.write(_request_bytes(call, answer.request_id))
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
    answer.status = int(status_line.split(" ", 2)[1])
    for line in lines:
        name, _, value = line.partition(":")
        answer.headers[name.strip().lower()] = value.strip()
    if "content-length" in answer.headers:
        answer.body = await reader.readexactly(int(answer.headers["content-length"]))
    elif answer.headers.get("transfer-encoding", "").lower() == "chunked":
        answer.body = await _read_chunked(reader)
    elif answer.status in (204, 304):
        answer.body = b""
    else:
        answer.body = await reader.read()  # no length: the body ends with the connection
        return False
    return answer.headers.get("connection", "").lower() != "close"


def _request_bytes(call, request_id):
    lines = [f"{call.method} {call.target} HTTP/1.1", f"Host: {HOST}", f"X-Request-Id: {request_id}",
             *(f"{name}: {value}" for name, value in call.headers)]
    if call.chunked:
        lines.append("Transfer-Encoding: chunked")
        pieces = (call.body[start:start + CHUNK] for start in range(0, len(call.body), CHUNK))
        body = b"".join(b"%x\r\n%s\r\n" % (len(piece), piece) for piece in pieces) + b"0\r\n\r\n"
    else:
        lines.append(f"Content-Length: {len(call.body)}")
        body = call.body
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


async def _read_chunked(reader):
    body = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(body)
        body += await reader.readexactly(size)
        await reader.readexactly(2)


async def eventually(condition, seconds, what):
    """Poll `condition` every 20 ms without blocking the loop; AssertionError after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds}s waiting for {what}")
        await asyncio.sleep(0.02)


# Calls and their checks.

def every(count, period, special, usual):
    """`count` calls: every `period`-th is `special(k)` (k counts them from 0), the rest `usual(n)`."""
    return [special(n // period) if n % period == period - 1 else usual(n) for n in range(count)]


def handler(cmd):
    """The /handler target for `cmd`, percent-encoded."""
    return "/handler?cmd=" + quote(cmd, safe="/")


def echo(body, *, chunked=False, kind="echo"):
    """t/echo of `body`: 200 with the same bytes."""
    return Call(kind, handler("t/echo"), answers(200, body), body=body, chunked=chunked)


def describe(body, label="x"):
    """t/describe/<label>: 200 with JSON naming the body's size and the request id."""
    def check(answer):
        if answer.status != 200:
            return f"status {answer.status}, expected 200: {answer.body[:200]!r}"
        described = json.loads(answer.body)
        if (described["size"], described["args"], described["request_id"]) != (
                len(body), {"label": label}, answer.request_id):
            return f"described as {described}"
        return None

    return Call("describe", handler(f"t/describe/{label}"), check, body=body)


def fails(cmd, status, message, *, body=b"", method="POST", chunked=False, kind=None, target=None):
    """A call to `cmd` that must be answered `status` with a JSON error containing `message`."""
    return Call(kind or str(status), target or handler(cmd), error_check(status, message), method=method,
                body=body, chunked=chunked)


def answers(status, body):
    def check(answer):
        if answer.status != status:
            return f"status {answer.status}, expected {status}: {answer.body[:200]!r}"
        if answer.body != body:
            return f"the body of {len(answer.body)} bytes is not the {len(body)} expected"
        return None

    return check


def error_check(status, message):
    """The JSON error every error answer has: its status, {"error", "request_id"}, no traceback."""
    def check(answer):
        if answer.status != status:
            return f"status {answer.status}, expected {status}: {answer.body[:200]!r}"
        try:
            payload = json.loads(answer.body)
        except ValueError:
            return f"the error is not JSON: {answer.body[:200]!r}"
        if set(payload) != {"error", "request_id"} or payload["request_id"] != answer.request_id:
            return f"the error body is {payload}"
        if message not in payload["error"] or "Traceback" in payload["error"]:
            return f"the error is {payload['error']!r}, expected it to say {message!r}"
        return None

    return check
