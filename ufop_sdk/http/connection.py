"""The HTTP/1.1 connection layer: httptools' parser (llhttp, in C) on an asyncio Protocol.

Tornado's own HTTP1ServerConnection parses in Python and runs a coroutine
per request, which cost most of the server's CPU per request. This layer
speaks the part of Tornado's interfaces the rest of http/ and
`tornado.web.Application` use: a `Connection` is the server connection a
`HTTPServerConnectionDelegate` is given (``start_request(server_conn,
request_conn)``, ``on_close(server_conn)``), and an `Exchange` is the
request connection an `HTTPMessageDelegate` writes its answer on
(``write_headers``, ``write``, ``finish``, ``set_close_callback``,
``context``).

One request at a time per connection: requests a client pipelines are
parsed as they arrive and kept, each handed to the delegate once the answer
before it is written. Reading goes on while a request is processed, so a
client leaving is seen at once; it pauses when what is kept passes
PIPELINED_BYTES, and while a delegate has us wait before the next part of
its request (it returned a Future, as Tornado's application does for a
handler that streams its body).
"""

import asyncio
import logging
import re
from collections import deque

import httptools
from tornado import httputil
from tornado.iostream import StreamClosedError

log = logging.getLogger("ufop_sdk.server")

BACKLOG = 128
# What a client may send ahead (pipelined requests and their bodies) before reading pauses.
PIPELINED_BYTES = 1 << 20
# A request line as Tornado took it: llhttp also takes two spaces between its words, and HTTP/0.9.
# One llhttp refuses for its method alone (lowercase, say) is answered 405, as Tornado did.
REQUEST_LINE = re.compile(rb"(?:\r?\n)*[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+ HTTP/1\.[0-9]\r?\n")


class HTTPServer:
    """Listens and serves each connection with `delegate` (an HTTPServerConnectionDelegate).

    `answer_malformed(exchange, status, message)` answers a request that
    cannot be parsed (400; 405 for an unknown method; 413 for a length past
    any limit; 431 for headers past `max_header_size` bytes); the
    connection is closed after it.
    """

    def __init__(self, delegate, max_header_size, answer_malformed):
        self.delegate = delegate
        self.max_header_size = max_header_size
        self.answer_malformed = answer_malformed
        self.no_keep_alive = False  # set while stopping: every connection closes after its answer
        self.connections = set()
        self._server = None

    async def listen(self, port, host):
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: Connection(self), host or None, port,
                                                backlog=BACKLOG, reuse_address=True)

    def stop(self):
        """Stop listening; the connections open stay open."""
        self._server.close()

    async def close_all_connections(self):
        """Close every connection at once, and return once they are closed."""
        for connection in list(self.connections):
            connection.close(ConnectionAbortedError("the server stopped"))
        while self.connections:
            await asyncio.sleep(0.01)


class _Context:
    """What Tornado's HTTPServerRequest reads from ``connection.context``."""

    protocol = "http"

    def __init__(self, address):
        self.address = address
        self.remote_ip = address[0] if isinstance(address, tuple) else "0.0.0.0"

    def __str__(self):
        return self.remote_ip


class _Message:
    """One request as parsed: its start line, headers, and, while it waits its turn, its body."""

    __slots__ = ("line", "url", "headers", "header_bytes", "raw_bytes", "start_line", "keep_alive", "body",
                 "complete")

    def __init__(self, line):
        self.line = line  # what was read from its first byte until its request line ended; None mid-read
        self.url = b""
        self.headers = httputil.HTTPHeaders()
        self.header_bytes = 0  # of its request line and headers, counted exactly as they complete
        self.raw_bytes = 0  # read while its headers were incomplete
        self.start_line = None  # once its headers are complete
        self.keep_alive = False
        self.body = []  # kept only while the message waits for its turn
        self.complete = False


class Connection(asyncio.Protocol):
    """One client connection: the `server_conn` its delegate sees.

    `error` is why it closed, once it has: the exception given to
    `close`, the socket's error, or None for a clean end.
    """

    def __init__(self, server):
        self.server = server
        self.parser = httptools.HttpRequestParser(self)
        self.transport = None
        self.context = None
        self.error = None
        self.closing = False  # close() called, or the transport is gone
        self.parsing = None  # the _Message being parsed
        self.waiting = deque()  # parsed _Messages behind the current one
        self.waiting_bytes = 0
        self.read_from_message_start = None  # while a read that begins with a new request is parsed
        self.broken = False  # a request behind the current one is malformed: close after the current answer
        self.stopped_reading = False  # nothing more is read: the connection ends after the current answer
        self.reading_paused = False
        self.exchange = None  # the request being read or answered
        self.write_waiter = None  # the future of a write the kernel has not yet taken whole
        self.written = None  # a future already done, the answer to a write taken at once

    # asyncio.Protocol

    def connection_made(self, transport):
        self.transport = transport
        # pause_writing whenever anything is left unsent: a write's future then means "handed to the kernel".
        transport.set_write_buffer_limits(0)
        self.context = _Context(transport.get_extra_info("peername"))
        self.written = asyncio.get_running_loop().create_future()
        self.written.set_result(None)
        self.server.connections.add(self)
        self._next_exchange()

    def data_received(self, data):
        message = self.parsing
        if message is None:
            self.read_from_message_start = data
        elif message.line is not None and b"\n" not in message.line:
            message.line += data
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._end_after_answer()  # CONNECT or Upgrade: the request is answered, nothing is tunnelled
        except httptools.HttpParserError as exc:
            self._malformed(_malformed_status(exc, data), str(exc))
            return
        finally:
            self.read_from_message_start = None
        message = self.parsing
        if message is not None and message.start_line is None and self._header_bytes_over(message, data):
            self._malformed(431, "the request line and headers are over the limit")

    def eof_received(self):
        return False  # close: a half-closed client gets no answer, as with Tornado

    def pause_writing(self):
        self.write_waiter = asyncio.get_running_loop().create_future()

    def resume_writing(self):
        waiter, self.write_waiter = self.write_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def connection_lost(self, exc):
        self.closing = True
        if self.error is None:
            self.error = exc
        waiter, self.write_waiter = self.write_waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(StreamClosedError(real_error=exc))
            waiter.exception()  # retrieved: whoever awaits it still gets it
        self.server.connections.discard(self)
        self.parser = None  # it holds this protocol's methods: no cycle left for the collector
        exchange, self.exchange = self.exchange, None
        try:
            if exchange is not None:
                exchange.connection_lost()
        finally:
            self.server.delegate.on_close(self)

    # What the delegate may call on its server_conn.

    def close(self, cut=None):
        """Close once what was written is sent; with a `cut` (an exception, kept as `error`), at once."""
        if self.error is None:
            self.error = cut
        if not self.closing:
            self.closing = True
            if cut is None:
                self.transport.close()
            else:
                self.transport.abort()

    def closed(self):
        return self.closing or self.transport.is_closing()  # closing once the transport is gone

    # httptools' callbacks

    def on_message_begin(self):
        # Its request line is checked when it begins a read (as a client's first or next request
        # does, unless it pipelines): the read is kept until the line is whole.
        self.parsing = _Message(self.read_from_message_start)
        self.read_from_message_start = None

    def on_url(self, piece):
        message = self.parsing
        message.url += piece
        self._count_header_bytes(message, len(piece))

    def on_header(self, name, value):
        message = self.parsing
        self._count_header_bytes(message, len(name) + len(value) + 4)
        name, value, headers = name.decode("latin-1"), value.rstrip(b" \t").decode("latin-1"), message.headers
        if name in headers:
            headers.add(name, value)
        else:  # without add()'s checks of the name and value, which llhttp has made
            headers[name] = value

    def _count_header_bytes(self, message, nbytes):
        message.header_bytes += nbytes
        if message.header_bytes > self.server.max_header_size:
            raise _HeadersTooLarge()

    def on_headers_complete(self):
        message, parser = self.parsing, self.parser
        if message.line is not None and not REQUEST_LINE.match(message.line):
            raise _BadRequestLine()
        message.start_line = httputil.RequestStartLine(
            parser.get_method().decode(), message.url.decode("latin-1"), "HTTP/" + parser.get_http_version())
        message.keep_alive = parser.should_keep_alive()
        exchange = self.exchange
        if exchange is not None and exchange.message is None and not self.waiting:
            exchange.begin(message)
        else:
            self.waiting.append(message)
            self.waiting_bytes += message.header_bytes

    def on_body(self, chunk):
        exchange = self.exchange
        if exchange is not None and exchange.message is self.parsing:
            exchange.body(chunk)
        else:
            self.parsing.body.append(chunk)
            self._keep_waiting(len(chunk))

    def on_message_complete(self):
        message, self.parsing = self.parsing, None
        exchange = self.exchange
        if exchange is not None and exchange.message is message:
            exchange.complete()
        else:
            message.complete = True

    # Between requests

    def exchange_over(self, close):
        """The answer of the current request was handed to the kernel: close, or go on to the next request."""
        exchange, self.exchange = self.exchange, None
        exchange.delegate = exchange.close_callback = None  # they hold it: no cycle for the collector
        if close or self.broken or self.server.no_keep_alive:
            self.close()
        elif not self.closing:
            self._next_exchange()

    def _next_exchange(self):
        self.exchange = Exchange(self)
        self.exchange.delegate = self.server.delegate.start_request(self, self.exchange)
        if self.waiting:
            message = self.waiting.popleft()
            self.waiting_bytes -= message.header_bytes + sum(map(len, message.body))
            self.update_reading()
            self.exchange.replay(message)
        elif self.reading_paused:  # the request before had us wait
            self.update_reading()

    def _keep_waiting(self, nbytes):
        self.waiting_bytes += nbytes
        self.update_reading()

    def update_reading(self):
        """Read unless told to stop, a delegate has us wait, or what is kept of pipelined requests is full."""
        exchange = self.exchange
        pause = (self.stopped_reading or self.waiting_bytes >= PIPELINED_BYTES
                 or (exchange is not None and exchange.held is not None))
        if pause != self.reading_paused and not self.closing:
            self.reading_paused = pause
            if pause:
                self.transport.pause_reading()
            else:
                self.transport.resume_reading()

    def _header_bytes_over(self, message, data):
        """Headers still arriving, past twice the limit: bounds what the parser holds of a header
        that never ends (the exact limit is checked as each header completes)."""
        message.raw_bytes += len(data)
        return message.raw_bytes > 2 * self.server.max_header_size

    def _end_after_answer(self):
        if self.exchange is not None:
            self.exchange.keep_alive = False
        self._stop_reading()

    def _stop_reading(self):
        self.stopped_reading = True
        self.update_reading()

    def _malformed(self, status, reason):
        """A request that cannot be parsed is answered with an error, then the connection closed.

        One whose headers its delegate has (its body is malformed) is only
        closed, as its delegate may be answering it; one behind the
        request being answered closes the connection after that answer.
        """
        log.info("malformed request from %s: %s", self.context, reason)
        self._stop_reading()
        exchange = self.exchange
        if exchange is not None and exchange.message is not None and exchange.message is not self.parsing:
            self.broken = True
        elif exchange is None or exchange.message is not None or self.closing:
            self.close()
        else:
            exchange.message = _Message(None)
            self.server.answer_malformed(exchange, status, _REASONS.get(status, reason))


class _HeadersTooLarge(Exception):
    pass


class _BadRequestLine(Exception):
    pass


_REASONS = {431: "the request line and headers are over the limit",
            413: "the body is over the limit (its Content-Length overflows)"}


def _malformed_status(exc, data):
    if isinstance(exc.__context__, _HeadersTooLarge):
        return 431
    if isinstance(exc, httptools.HttpParserInvalidMethodError) and REQUEST_LINE.match(data):
        return 405
    if str(exc) == "Content-Length overflow":
        return 413
    return 400


class Exchange:
    """One request and its answer: the `request_conn` its HTTPMessageDelegate sees."""

    def __init__(self, connection):
        self.connection = connection
        self.context = connection.context
        self.delegate = None
        self.message = None  # the _Message being read, once its headers are complete
        self.keep_alive = True
        self.started = False  # the answer's head was written
        self.finished = False  # finish() was called
        self.head = False  # a HEAD request: the answer's body is not sent
        self.chunked = False
        self.close_callback = None
        self.held = None  # while the delegate has us wait (it returned a Future): what it gets next, in order
        self.finish_given = False  # the delegate's finish() was called: it has the whole request
        self.failed = False  # one of the delegate's methods raised

    # The request, from the Connection: each part given to the delegate once it is done with the one before

    def begin(self, message):
        self.message = message
        self.keep_alive = message.keep_alive
        self.head = message.start_line.method == "HEAD"
        self._give(self.delegate.headers_received, message.start_line, message.headers)
        if (not self.finished and not self.connection.closing
                and message.headers.get("Expect", "").lower() == "100-continue"):
            self.connection.transport.write(b"HTTP/1.1 100 (Continue)\r\n\r\n")

    def body(self, chunk):
        if self.held is not None:
            self.held.append(chunk)
        elif not (self.finished or self.failed):  # an answer finished early drops the rest of the body
            self._give(self.delegate.data_received, chunk)

    def complete(self):
        self.message.complete = True
        if self.held is not None:
            self.held.append(None)
        elif not (self.finished or self.failed):
            self.finish_given = True
            self._call(self.delegate.finish)

    def _give(self, method, *args):
        """Call a delegate's method; when it returns an awaitable (Tornado's application does, for a
        handler that streams its body), hold what comes next, and the reading, until it is done."""
        waiting = self._call(method, *args)
        if waiting is not None and not (asyncio.isfuture(waiting) and waiting.done()):
            self.held = deque()
            self.connection.update_reading()
            asyncio.ensure_future(waiting).add_done_callback(self._release)

    def _release(self, waited):
        held, self.held = self.held, None
        if self.delegate is None or self.connection.closing:
            return  # over: nothing more is given
        if not waited.cancelled() and waited.exception() is not None:
            log.error("request from %s failed", self.context, exc_info=waited.exception())
            self.connection.close()
            return
        self.connection.update_reading()
        while held:
            part = held.popleft()
            if part is None:
                self.complete()
            else:
                self.body(part)
            if self.held is not None:  # told to wait again: the rest stays behind, in order
                self.held.extend(held)
                return

    def replay(self, message):
        """A pipelined request, parsed while the one before it was answered."""
        self.begin(message)
        for chunk in message.body:
            self.body(chunk)
        message.body = []
        if message.complete:
            self.complete()

    def connection_lost(self):
        delegate, self.delegate = self.delegate, None
        if self.message is None or delegate is None:
            return
        if not self.finish_given:
            self._call(delegate.on_connection_close)
        elif self.close_callback is not None:
            # After the callbacks of the write it interrupted, which tell what was sent, as with Tornado.
            asyncio.get_running_loop().call_soon(self.close_callback)
            self.close_callback = None

    def _call(self, method, *args):
        """A delegate's method, and what it returns. Once one raises, the delegate gets nothing more
        but on_connection_close: HTTPInputError (Tornado's application finds the request malformed)
        is answered 400, any other exception logged; the connection is closed."""
        try:
            return method(*args)
        except httputil.HTTPInputError as exc:
            log.info("malformed request from %s: %s", self.context, exc)
            self.failed = True
            if self.started or self.connection.closed():
                self.connection.close()
            else:
                self.keep_alive = False
                self.connection.server.answer_malformed(self, 400, str(exc))
        except Exception:
            log.exception("request from %s failed", self.context)
            self.failed = True
            self.connection.close()
        return None

    # The answer, from the delegate (Tornado's HTTPConnection interface)

    def write_headers(self, start_line, headers, chunk=None):
        """Write the answer's status line and headers, and `chunk` of its body: the future of the writing.

        Raises ValueError, writing nothing, for a header that cannot be sent.
        """
        version = self.message.start_line.version if self.message.start_line else "HTTP/1.1"
        status = start_line.code
        bodyless = status in (204, 304) or 100 <= status < 200
        self.chunked = (version == "HTTP/1.1" and not bodyless and not self.head
                        and "Content-Length" not in headers and "Transfer-Encoding" not in headers)
        if self.chunked:
            headers["Transfer-Encoding"] = "chunked"
        elif "Content-Length" not in headers and not bodyless:
            self.keep_alive = False  # its end is the connection's
        self.keep_alive = self.keep_alive and not self.connection.server.no_keep_alive
        if version == "HTTP/1.1" and not self.keep_alive:
            headers["Connection"] = "close"
        elif version == "HTTP/1.0" and self.keep_alive:
            headers["Connection"] = "Keep-Alive"
        lines = [b"HTTP/1.1 %d %s" % (status, start_line.reason.encode("latin-1"))]
        lines.extend(f"{name}: {value}".encode("latin-1") for name, value in headers.get_all())
        head = b"\r\n".join(lines)
        if head.count(b"\r") != len(lines) - 1 or head.count(b"\n") != len(lines) - 1:
            raise ValueError(f"illegal characters (CR or LF) in a header: {head!r}")
        self.started = True
        return self._send(head + b"\r\n\r\n" + self._framed(chunk))

    def write(self, chunk):
        return self._send(self._framed(chunk))

    def finish(self):
        self.finished = True
        connection = self.connection
        if self.chunked and not self.head:
            self._send(b"0\r\n\r\n")
        if not self.message or not self.message.complete:
            self.keep_alive = False  # the rest of the body is not read: only closing the connection ends it
        if connection.closing:
            return
        if connection.write_waiter is None:
            connection.exchange_over(not self.keep_alive)
        else:
            connection.write_waiter.add_done_callback(self._flushed)

    def set_close_callback(self, callback):
        self.close_callback = callback

    def close(self):
        self.connection.close()

    def _flushed(self, future):
        if not future.exception():
            self.connection.exchange_over(not self.keep_alive)

    def _framed(self, chunk):
        if not chunk or self.head:
            return b""
        return b"%x\r\n%s\r\n" % (len(chunk), chunk) if self.chunked else chunk

    def _send(self, data):
        connection = self.connection
        if connection.closed():
            future = asyncio.get_running_loop().create_future()
            future.set_exception(StreamClosedError())
            future.exception()  # retrieved: a writer that does not await it logs nothing
            return future
        if data:
            connection.transport.write(data)
        return connection.write_waiter or connection.written
