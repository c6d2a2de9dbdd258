"""Parsing a connection's requests with httptools (llhttp): its callbacks, and what cannot be parsed.

`RequestParsing` is the part of a `Connection` (connection.py) httptools
calls back as a request arrives: each request becomes a `ParsedRequest`,
given to the current `Exchange` as it is read, or kept while the one before
it is answered. A request that cannot be parsed is answered with an error
(`answer_malformed`), then the connection closed.
"""

import logging
import re

import httptools
from tornado import httputil

log = logging.getLogger("ufop_sdk.server")

# A request line as Tornado took it: llhttp also takes two spaces between its words, and HTTP/0.9.
# One llhttp refuses for its method alone (lowercase, say) is answered 405, as Tornado did.
REQUEST_LINE = re.compile(rb"(?:\r?\n)*[!#$%&'*+.^_`|~0-9A-Za-z-]+ [^ \r\n]+ HTTP/1\.[0-9]\r?\n")


class ParsedRequest:
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


class _HeadersTooLarge(Exception):
    pass


class _BadRequestLine(Exception):
    pass


_REASONS = {431: "the request line and headers are over the limit",
            413: "the body is over the limit (its Content-Length overflows)"}


def malformed_status(exc, data):
    if isinstance(exc.__context__, _HeadersTooLarge):
        return 431
    if isinstance(exc, httptools.HttpParserInvalidMethodError) and REQUEST_LINE.match(data):
        return 405
    if str(exc) == "Content-Length overflow":
        return 413
    return 400


class RequestParsing:
    """httptools' callbacks, as methods of the Connection it parses for (a mixin of Connection)."""

    def on_message_begin(self):
        # Its request line is checked when it begins a read (as a client's first or next request
        # does, unless it pipelines): the read is kept until the line is whole.
        self.parsing = ParsedRequest(self.read_from_message_start)
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

    def _header_bytes_over(self, message, data):
        """Headers still arriving, past twice the limit: bounds what the parser holds of a header
        that never ends (the exact limit is checked as each header completes)."""
        message.raw_bytes += len(data)
        return message.raw_bytes > 2 * self.server.max_header_size

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
            exchange.message = ParsedRequest(None)
            self.server.answer_malformed(exchange, status, _REASONS.get(status, reason))
