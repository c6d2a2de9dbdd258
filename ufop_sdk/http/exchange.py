"""One request on a connection and its answer: the `request_conn` an HTTPMessageDelegate sees.

`Exchange` gives the delegate its request as the Connection reads it, each
part once the delegate is done with the one before; `AnswerWriter`, its
base, is Tornado's HTTPConnection interface the delegate writes its answer
with (``write_headers``, ``write``, ``finish``).
"""

import asyncio
import logging
from collections import deque

from tornado import httputil
from tornado.iostream import StreamClosedError

log = logging.getLogger("ufop_sdk.server")


class AnswerWriter:
    """The answer's writing, framed for the request's HTTP version; each write's future is done once
    the kernel has taken it. Exchange holds the state it reads."""

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


class Exchange(AnswerWriter):
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
