"""The HTTP/1.1 connection layer: httptools' parser (llhttp, in C) on an asyncio Protocol.

Tornado's own HTTP1ServerConnection parses in Python and runs a coroutine
per request, which cost most of the server's CPU per request. This layer
speaks the part of Tornado's interfaces the rest of http/ and
`tornado.web.Application` use: a `Connection` is the server connection a
`HTTPServerConnectionDelegate` is given (``start_request(server_conn,
request_conn)``, ``on_close(server_conn)``), and an `Exchange` is the
request connection an `HTTPMessageDelegate` writes its answer on
(``write_headers``, ``write``, ``finish``, ``set_close_callback``,
``context``; exchange.py). httptools' callbacks are in parsing.py.

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
from collections import deque

import httptools
from tornado.iostream import StreamClosedError

from .exchange import Exchange
from .parsing import RequestParsing, malformed_status

log = logging.getLogger("ufop_sdk.server")

BACKLOG = 128
# What a client may send ahead (pipelined requests and their bodies) before reading pauses.
PIPELINED_BYTES = 1 << 20


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


class Connection(RequestParsing, asyncio.Protocol):
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
        self.parsing = None  # the ParsedRequest being parsed
        self.waiting = deque()  # parsed requests behind the current one
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
            self._malformed(malformed_status(exc, data), str(exc))
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

    def _end_after_answer(self):
        if self.exchange is not None:
            self.exchange.keep_alive = False
        self._stop_reading()

    def _stop_reading(self):
        self.stopped_reading = True
        self.update_reading()

