"""Writing an answer on the HTTP/1 connection layer (connection.py), and refusing a request before its body
is read."""

import email.utils
import time

from tornado import httputil
from tornado.httputil import HTTPHeaders, ResponseStartLine

# After refusing a body, read at most this much more of it before closing the
# connection, so a client still sending reads the error rather than a reset.
DRAIN_LIMIT = 16 << 20


def write_response(connection, response, request_id, closing=False):
    """Status line, headers and body of `response`, in one write; returns the future of the writing.

    Raises ValueError, having written nothing, for a header that cannot be sent.
    `closing` adds ``Connection: close`` (the server is stopping).
    """
    body = b"" if response.status in (204, 304) else response.body
    return connection.write_headers(*response_head(response, request_id, closing, len(body)), body)


def response_head(response, request_id, closing, length):
    """The start line and headers of `response`; `length` None sends the body chunked."""
    headers = HTTPHeaders(response.headers)
    headers["X-Request-Id"] = request_id
    headers["Date"] = _http_date()
    if length is not None and response.status not in (204, 304):
        headers["Content-Length"] = str(length)
    if response.content_type:
        headers["Content-Type"] = response.content_type
    if closing:
        headers["Connection"] = "close"
    reason = httputil.responses.get(response.status, "Unknown")
    return ResponseStartLine("HTTP/1.1", response.status, reason), headers


class RefusableRequest(httputil.HTTPMessageDelegate):
    """A request that can be answered with an error before its body has arrived.

    After `refuse`, what is left of the body is read and dropped, up to
    DRAIN_LIMIT more bytes, then the connection is closed: a client still
    sending reads the error rather than a reset. Subclasses set
    `connection` and `request_id`.
    """

    bytes_in = 0
    drain_until = None

    def refuse(self, response, headers):
        """Write `response` now; returns True when the exchange is over (the client expected 100 Continue)."""
        self.drain_until = self.bytes_in + DRAIN_LIMIT
        self._write(response)
        if headers.get("Expect", "").lower() == "100-continue":
            # The client waits for 100 Continue before sending the body: it never will.
            self.connection.finish()
            return True
        return False

    def _write(self, response):
        return write_response(self.connection, response, self.request_id)

    def drain(self, chunk):
        self.bytes_in += len(chunk)
        if self.bytes_in > self.drain_until:
            self.connection.close()


_date_cache = [0, ""]


def _http_date():
    """The Date header, formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True)]
    return _date_cache[1]
