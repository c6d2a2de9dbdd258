"""``POST /handler``: the platform's call, on Tornado's HTTP connection layer.

This is the hot path, so it is an `HTTPMessageDelegate` rather than a
RequestHandler: the body streams into a Spool as it arrives, the request is
routed when its headers arrive, and the answer is written in one call. The
other paths (/health, /metrics) are ordinary RequestHandlers in server.py.
"""

import email.utils
import logging
import time
import traceback
from urllib.parse import unquote_plus

from tornado import httputil
from tornado.httputil import HTTPHeaders, ResponseStartLine

from .errors import BadRequest, PayloadTooLarge, UfopError
from .spool import Spool

log = logging.getLogger("ufop_sdk.server")

# After refusing a body, read at most this much more of it before closing the
# connection, so a client still sending reads the error rather than a reset.
DRAIN_LIMIT = 16 << 20
HANDLER_PATHS = ("/handler", "/handler/")
USAGE = "POST /handler?cmd=<ufop-name>[/<params>][&url=<source>]"


class Dispatcher(httputil.HTTPServerConnectionDelegate):
    """Sends ``/handler`` to a ProcessRequest and every other path to `application`.

    Routing on the raw path, before Tornado builds an HTTPServerRequest,
    keeps the hot path free of work it does not need.

    It also bounds how long a client may take to send a request: its
    headers within `idle_seconds` (which also bounds an idle keep-alive
    connection), then its body within `body_seconds`. Tornado's own header
    and body timeouts cost a timer and a task per request; here a
    connection's deadline is one entry in a dict, and `close_slow_clients`,
    run every second, closes the connections past theirs.
    """

    def __init__(self, service, application, idle_seconds, body_seconds):
        self.service = service
        self.application = application
        self.idle_seconds = idle_seconds
        self.body_seconds = body_seconds
        self.deadlines = {}  # HTTP1ServerConnection -> when what it waits for must have arrived

    def start_request(self, server_conn, request_conn):
        self.deadlines[server_conn] = time.monotonic() + self.idle_seconds
        return _Dispatch(self, server_conn, request_conn)

    def on_close(self, server_conn):
        self.deadlines.pop(server_conn, None)
        self.application.on_close(server_conn)

    def close_slow_clients(self):
        now = time.monotonic()
        for server_conn in [conn for conn, deadline in self.deadlines.items() if now > deadline]:
            del self.deadlines[server_conn]
            server_conn.stream.close()


class _Dispatch(httputil.HTTPMessageDelegate):
    def __init__(self, dispatcher, server_conn, request_conn):
        self.dispatcher = dispatcher
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.delegate = None

    def headers_received(self, start_line, headers):
        dispatcher = self.dispatcher
        dispatcher.deadlines[self.server_conn] = time.monotonic() + dispatcher.body_seconds
        if start_line.path.partition("?")[0] in HANDLER_PATHS:
            self.delegate = ProcessRequest(dispatcher.service, self.request_conn)
        else:
            self.delegate = dispatcher.application.start_request(self.server_conn, self.request_conn)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        return self.delegate.data_received(chunk)

    def finish(self):
        self.dispatcher.deadlines.pop(self.server_conn, None)  # answering is bounded by timeouts of its own
        self.delegate.finish()

    def on_connection_close(self):
        self.dispatcher.deadlines.pop(self.server_conn, None)
        if self.delegate is not None:
            self.delegate.on_connection_close()


class ProcessRequest(httputil.HTTPMessageDelegate):
    """One ``/handler`` request, from its headers to the answer and its log line."""

    def __init__(self, service, connection):
        self.service = service
        self.connection = connection
        self.began = time.monotonic()
        self.timings = {}
        self.cmd = self.url = self.match = self.spool = self.reply = None
        self.processor = None
        self.bytes_in = self.bytes_out = 0
        self.status = None
        self.answered = self.logged = False
        self.drain_until = None
        service.started()

    def headers_received(self, start_line, headers):
        self.headers = headers
        self.request_id = self.service.request_id_for(headers)
        limit = self.service.settings.max_body_bytes
        try:
            if start_line.method != "POST":
                raise UfopError(f"method {start_line.method} is not allowed: use {USAGE}", 405)
            query = _query_parameters(start_line.path.partition("?")[2])
            self.cmd = query.get("cmd")
            if not self.cmd:
                raise BadRequest(f"missing cmd: {USAGE}")
            self.url = query.get("url") or None
            self.match = self.service.resolve(self.cmd)
            self.processor = self.match.route.name
            length = headers.get("Content-Length", "")
            if length.isdecimal() and int(length) > limit:
                raise PayloadTooLarge(f"the body is {int(length)} bytes, over the limit of {limit} bytes")
            if self.url is None:
                self.spool = Spool(limit, self.service.settings.spool_dir)
        except UnicodeDecodeError:
            self.reject(BadRequest("the query string is not valid UTF-8"))
        except UfopError as exc:
            self.reject(exc)

    def data_received(self, chunk):
        self.bytes_in += len(chunk)
        if self.drain_until is not None:
            if self.bytes_in > self.drain_until:
                self.connection.close()
        elif self.spool is None:  # url mode: the body is not the input, but it is bounded
            limit = self.service.settings.max_body_bytes
            if self.bytes_in > limit:
                self.reject(PayloadTooLarge(f"the body is over the limit of {limit} bytes"))
        else:
            try:
                self.spool.write(chunk)
            except UfopError as exc:
                self.reject(exc)

    def finish(self):
        if self.drain_until is not None:
            self.connection.finish()
            self._log()
            return
        spool = self.spool
        try:
            reply = self.service.process(
                self.match, self.cmd, self.request_id, url=self.url, timings=self.timings,
                declared_content_type=self.headers.get("Content-Type"),
                body=spool.getvalue() if spool is not None and spool.in_memory else None,
                file=spool.file() if spool is not None and not spool.in_memory else None)
        except Exception as exc:  # noqa: BLE001 - answered like a failure of the reply
            self._close_spool()
            self._answer(exc, None)
            return
        # Held here, as the connection holds this request: asyncio keeps only weak references to tasks.
        self.reply = reply
        reply.add_done_callback(self._replied)

    def on_connection_close(self):
        self._close_spool()
        self._log()

    def reject(self, error):
        """Answer `error` now; then read (and drop) what is left of the body, within bounds."""
        self.drain_until = self.bytes_in + DRAIN_LIMIT
        self._close_spool()
        self._write(self.service.error_response(error, self.request_id))
        if self.headers.get("Expect", "").lower() == "100-continue":
            # The client waits for 100 Continue before sending the body: it never will.
            self.connection.finish()
            self._log()

    def _replied(self, future):
        self._close_spool()
        error = UfopError("the request was cancelled", 503) if future.cancelled() else future.exception()
        self._answer(error, None if error else future.result())

    def _answer(self, error, reply):
        """Send `reply`, or the JSON of `error`; then log the request."""
        if reply is not None:
            self.timings["queue"] = reply.queued_seconds
            self.timings["process"] = reply.processing_seconds
            response = reply
        elif isinstance(error, UfopError):
            response = self.service.error_response(error, self.request_id)
        else:  # a bug here must cost one request, not the server
            log.error("request %s failed", self.request_id, exc_info=error)
            internal = UfopError("internal server error")
            internal.details = "".join(traceback.format_exception(error))
            response = self.service.error_response(internal, self.request_id)
        if self.logged:  # the client went away while we worked
            return
        try:
            self._write(response)
            self.connection.finish()
        except Exception:  # noqa: BLE001 - the client went away, or a header was unusable
            log.exception("request %s: cannot send the answer", self.request_id)
            self.connection.close()
        self._log()

    def _write(self, response):
        """Status line, headers and body of `response` (a Response or a Reply), in one write."""
        headers = HTTPHeaders(response.headers)
        headers["X-Request-Id"] = self.request_id
        headers["Date"] = _http_date()
        body = response.body
        if response.status in (204, 304):
            body = b""
        else:
            headers["Content-Length"] = str(len(body))
        if response.content_type:
            headers["Content-Type"] = response.content_type
        self.status = response.status
        self.bytes_out = len(body)
        self.answered = True
        reason = httputil.responses.get(response.status, "Unknown")
        self.connection.write_headers(ResponseStartLine("HTTP/1.1", response.status, reason), headers, body)

    def _close_spool(self):
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def _log(self):
        if self.logged:
            return
        self.logged = True
        self.service.finished()
        self.timings["total"] = time.monotonic() - self.began
        status = self.status if self.answered else 499
        self.service.metrics.observe(self.processor, status, self.timings)
        self.service.access_log.request(getattr(self, "request_id", None), self.cmd, self.processor, status,
                                        self.bytes_in, self.bytes_out, self.timings)


def _query_parameters(query):
    """The first value of each parameter, percent-decoded as UTF-8 (strictly)."""
    parameters = {}
    for field in query.split("&"):
        name, _, value = field.partition("=")
        name = unquote_plus(name, errors="strict")
        if name not in parameters:
            parameters[name] = unquote_plus(value, errors="strict")
    return parameters


_date_cache = [0, ""]


def _http_date():
    """The Date header, formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True)]
    return _date_cache[1]
