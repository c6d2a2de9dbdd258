"""``POST /handler``: the platform's call, on Tornado's HTTP connection layer.

This is the hot path, so it is an `HTTPMessageDelegate` rather than a
RequestHandler: the body streams into a Spool as it arrives, the request is
routed when its headers arrive, and the answer is written in one call. The
other paths (/health, /metrics) are ordinary RequestHandlers in server.py (this package).
"""

import email.utils
import logging
import time
import traceback
from urllib.parse import parse_qsl

from tornado import httputil
from tornado.concurrent import future_add_done_callback
from tornado.httputil import HTTPHeaders, ResponseStartLine

from ..errors import BadRequest, Overloaded, PayloadTooLarge, UfopError
from ..sources.spool import Spool

log = logging.getLogger("ufop_sdk.server")

# After refusing a body, read at most this much more of it before closing the
# connection, so a client still sending reads the error rather than a reset.
DRAIN_LIMIT = 16 << 20
# Every path but /handler takes no body (the dev pages post only to /handler):
# past this a body is refused before it is read, not buffered whole.
MAX_OTHER_BODY_BYTES = 64 << 10
# Users' route regexes run on the event loop: a cmd is matched only up to this long.
MAX_CMD_CHARS = 4 << 10
MAX_QUERY_FIELDS = 64
HANDLER_PATHS = ("/handler", "/handler/")
USAGE = "POST /handler?cmd=<ufop-name>[/<params>][&url=<source>]"
# What the access log and /metrics say for a request whose client closed the
# connection before its answer was written (nginx's code).
CLIENT_LEFT = 499


class ConnectionCut(Exception):
    """Set as a stream's error when the server closes its connection; `status` is what is logged."""

    status = 500


class SlowClient(ConnectionCut):
    """The client missed its deadline for sending the body, or for taking the answer."""

    status = 408


class ServerStopped(ConnectionCut):
    """The grace period ended before the answer."""

    status = 503


class Dispatcher(httputil.HTTPServerConnectionDelegate):
    """Sends ``/handler`` to a ProcessRequest and every other path to `application`.

    Routing on the raw path, before Tornado builds an HTTPServerRequest,
    keeps the hot path free of work it does not need.

    It also bounds how long a client may take to send a request: its
    headers within `idle_seconds` (which also bounds an idle keep-alive
    connection), then its body within `body_seconds`; and to take a
    /handler answer, within `write_seconds` of its writing. Tornado's own
    header and body timeouts cost a timer and a task per request; here a
    connection's deadline is one entry in a dict, and `close_slow_clients`,
    run every second, closes the connections past theirs.
    """

    def __init__(self, service, application, idle_seconds, body_seconds, write_seconds):
        self.service = service
        self.application = application
        self.idle_seconds = idle_seconds
        self.body_seconds = body_seconds
        self.write_seconds = write_seconds
        self.deadlines = {}  # HTTP1ServerConnection -> when what it waits for must have arrived
        self.requests = {}  # HTTP1ServerConnection -> its current _Dispatch
        self.stopping = False

    def start_request(self, server_conn, request_conn):
        kept_alive = server_conn in self.requests
        if self.stopping and kept_alive:
            server_conn.stream.close()  # its last answer was the last: no keep-alive while stopping
        self.deadlines[server_conn] = time.monotonic() + self.idle_seconds
        dispatch = self.requests[server_conn] = _Dispatch(self, server_conn, request_conn, kept_alive)
        return dispatch

    def on_close(self, server_conn):
        self.deadlines.pop(server_conn, None)
        self.requests.pop(server_conn, None)
        self.application.on_close(server_conn)

    def stop(self):
        """Shutting down: close idle keep-alive connections; the others close after their answer.

        A new connection not yet sending is left to send its first request,
        which is answered (503 for new work) rather than cut off.
        """
        self.stopping = True
        self.service.stopping = True
        for server_conn, dispatch in list(self.requests.items()):
            if dispatch.delegate is None and dispatch.kept_alive:
                server_conn.stream.close()

    def close_all(self):
        """Past the grace period: close every connection, the requests still in flight logged 503."""
        for server_conn in list(self.requests):
            server_conn.stream.close(exc_info=ServerStopped())

    def writing(self, server_conn):
        """An answer is being written on `server_conn`: its client has `write_seconds` to take it."""
        self.deadlines[server_conn] = time.monotonic() + self.write_seconds

    def close_slow_clients(self):
        now = time.monotonic()
        for server_conn in [conn for conn, deadline in self.deadlines.items() if now > deadline]:
            del self.deadlines[server_conn]
            server_conn.stream.close(exc_info=SlowClient())


class _Dispatch(httputil.HTTPMessageDelegate):
    def __init__(self, dispatcher, server_conn, request_conn, kept_alive):
        self.dispatcher = dispatcher
        self.server_conn = server_conn
        self.request_conn = request_conn
        self.kept_alive = kept_alive  # not the connection's first request
        self.delegate = None

    def headers_received(self, start_line, headers):
        dispatcher = self.dispatcher
        dispatcher.deadlines[self.server_conn] = time.monotonic() + dispatcher.body_seconds
        if start_line.path.partition("?")[0] in HANDLER_PATHS:
            self.delegate = ProcessRequest(dispatcher.service, self.request_conn, dispatcher,
                                           self.server_conn)
        else:
            routed = dispatcher.application.start_request(self.server_conn, self.request_conn)
            self.delegate = OtherPath(dispatcher.service, self.request_conn, routed)
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        return self.delegate.data_received(chunk)

    def finish(self):
        self.dispatcher.deadlines.pop(self.server_conn, None)  # until an answer is written
        self.delegate.finish()

    def on_connection_close(self):
        self.dispatcher.deadlines.pop(self.server_conn, None)
        if self.delegate is not None:
            self.delegate.on_connection_close()


class _Refusing(httputil.HTTPMessageDelegate):
    """A request that can be answered with an error before its body has arrived.

    After `refuse`, what is left of the body is read and dropped, up to
    DRAIN_LIMIT more bytes, then the connection is closed: a client still
    sending reads the error rather than a reset.
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


class OtherPath(_Refusing):
    """A path other than /handler: the application's `delegate`, with a body of at most MAX_OTHER_BODY_BYTES.

    A body past that (declared, or counted as it arrives, chunked or not) is
    answered with a JSON 413 instead, and never buffered.
    """

    def __init__(self, service, connection, delegate):
        self.service = service
        self.connection = connection
        self.delegate = delegate

    def headers_received(self, start_line, headers):
        self.path = start_line.path.partition("?")[0]
        self.headers = headers
        length = headers.get("Content-Length", "")
        if length.isdecimal() and int(length) > MAX_OTHER_BODY_BYTES:
            self._refuse_body()
            return None
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        if self.drain_until is not None:
            self.drain(chunk)
            return None
        self.bytes_in += len(chunk)
        if self.bytes_in > MAX_OTHER_BODY_BYTES:
            self.delegate.on_connection_close()  # it never gets the rest
            self._refuse_body()
            return None
        return self.delegate.data_received(chunk)

    def finish(self):
        if self.drain_until is None:
            self.delegate.finish()
        else:
            self.connection.finish()

    def on_connection_close(self):
        if self.drain_until is None:
            self.delegate.on_connection_close()

    def _refuse_body(self):
        self.request_id = self.service.request_id_for(self.headers)
        error = PayloadTooLarge(f"{self.path} takes no body over {MAX_OTHER_BODY_BYTES} bytes; "
                                "the platform calls POST /handler?cmd=...")
        self.refuse(self.service.error_response(error, self.request_id), self.headers)


class ProcessRequest(_Refusing):
    """One ``/handler`` request, from its headers to the answer and its log line.

    A request is logged once, with the status its client really got: the
    status written, once the whole answer has been handed to the kernel;
    else CLIENT_LEFT, or the status of the ConnectionCut the server closed it for.
    """

    def __init__(self, service, connection, dispatcher, server_conn):
        self.service = service
        self.connection = connection
        # Not the _Dispatch, which holds this request: a cycle would leave every
        # request to the garbage collector (+9 bytes of RSS a request, and its CPU).
        self.dispatcher = dispatcher
        self.server_conn = server_conn
        self.began = time.monotonic()
        self.timings = {}
        self.cmd = self.url = self.match = self.spool = self.reply = None
        self.processor = None
        self.bytes_out = 0
        self.status = None
        self.logged = False
        service.started()

    def headers_received(self, start_line, headers):
        self.headers = headers
        self.request_id = self.service.request_id_for(headers)
        try:
            self._route(start_line, headers)
        except UfopError as exc:
            self.reject(exc)

    def _route(self, start_line, headers):
        """Resolve the cmd, check what can be checked before the body; raises UfopError."""
        if self.service.stopping:
            raise Overloaded("the server is stopping")
        if start_line.method != "POST":
            raise UfopError(f"method {start_line.method} is not allowed: use {USAGE}", 405)
        query = _query_parameters(start_line.path.partition("?")[2])
        self.cmd = query.get("cmd")
        if not self.cmd:
            raise BadRequest(f"missing cmd: {USAGE}")
        if len(self.cmd) > MAX_CMD_CHARS:
            raise UfopError(f"the cmd is {len(self.cmd)} characters, over the limit of {MAX_CMD_CHARS}", 414)
        self.url = query.get("url") or None
        self.match = self.service.resolve(self.cmd)
        self.processor = self.match.route.name
        limit = self.service.settings.max_body_bytes
        length = headers.get("Content-Length", "")
        if length.isdecimal() and int(length) > limit:
            raise PayloadTooLarge(f"the body is {int(length)} bytes, over the limit of {limit} bytes")
        if self.url is None:
            self.spool = Spool(limit, self.service.settings.spool_dir)

    def data_received(self, chunk):
        if self.drain_until is not None:
            self.drain(chunk)
            return
        self.bytes_in += len(chunk)
        if self.spool is None:  # url mode: the body is not the input, but it is bounded
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
            self._log(self.status)
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
        # Tornado watches the connection from now until the answer is written.
        self.connection.set_close_callback(self._client_left)

    def on_connection_close(self):
        """The connection closed while the request was being read."""
        self._close_spool()
        self._log(self.status if self.status is not None else self._cut_off_status())

    def reject(self, error):
        """Answer `error` now (see _Refusing)."""
        self._close_spool()
        if self.refuse(self.service.error_response(error, self.request_id), self.headers):
            self._log(self.status)

    def _client_left(self):
        """The connection closed before the answer: drop the job, queued or running."""
        self._log(self._cut_off_status())
        self.reply.cancel()  # a queued job is then never started; a running one's answer is dropped

    def _replied(self, future):
        self._close_spool()
        if self.logged:  # the client went away while we worked
            return
        error = UfopError("the request was cancelled", 503) if future.cancelled() else future.exception()
        self._answer(error, None if error else future.result())

    def _answer(self, error, reply):
        """Send `reply`, or the JSON of `error`; the request is logged once the answer is written."""
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
        self.dispatcher.writing(self.server_conn)
        try:
            written = self._write(response)
        except ValueError:  # a header Tornado refuses (not latin-1, or CR/LF): nothing was written
            log.exception("request %s: cannot send the answer", self.request_id)
            error = UfopError(f"processor {self.processor!r} answered a header that cannot be sent")
            written = self._write(self.service.error_response(error, self.request_id))
        self.connection.finish()
        future_add_done_callback(written, self._written)  # at once when written at once, as is usual

    def _written(self, future):
        """The answer has been handed to the kernel, or its connection closed first."""
        error = self.connection.stream.error
        if error is None and not future.exception():
            self._log(self.status)
        else:
            self.bytes_out = 0
            self._log(self._cut_off_status())

    def _cut_off_status(self):
        error = self.connection.stream.error
        return error.status if isinstance(error, ConnectionCut) else CLIENT_LEFT

    def _write(self, response):
        """Write `response` (a Response or a Reply): the future of its writing."""
        self.status = response.status
        self.bytes_out = 0 if response.status in (204, 304) else len(response.body)
        return write_response(self.connection, response, self.request_id, self.service.stopping)

    def _close_spool(self):
        if self.spool is not None:
            self.spool.close()
            self.spool = None

    def _log(self, status):
        if self.logged:
            return
        self.logged = True
        self.service.finished()
        self.timings["total"] = time.monotonic() - self.began
        self.service.metrics.observe(self.processor, status, self.timings)
        self.service.access_log.request(getattr(self, "request_id", None), self.cmd, self.processor, status,
                                        self.bytes_in, self.bytes_out, self.timings)


def write_response(connection, response, request_id, closing=False):
    """Status line, headers and body of `response`, in one write; returns the future of the writing.

    Raises ValueError, having written nothing, for a header Tornado cannot send.
    `closing` adds ``Connection: close`` (the server is stopping).
    """
    headers = HTTPHeaders(response.headers)
    headers["X-Request-Id"] = request_id
    headers["Date"] = _http_date()
    body = response.body
    if response.status in (204, 304):
        body = b""
    else:
        headers["Content-Length"] = str(len(body))
    if response.content_type:
        headers["Content-Type"] = response.content_type
    if closing:
        headers["Connection"] = "close"
    reason = httputil.responses.get(response.status, "Unknown")
    return connection.write_headers(ResponseStartLine("HTTP/1.1", response.status, reason), headers, body)


def _query_parameters(query):
    """The first value of each parameter, percent-decoded as UTF-8 (strictly); raises BadRequest.

    Not strict_parsing: it would refuse a trailing ``&`` or a bare flag
    (``cmd=x&debug``), which were always accepted.
    """
    try:
        pairs = parse_qsl(query, keep_blank_values=True, errors="strict", max_num_fields=MAX_QUERY_FIELDS)
    except UnicodeDecodeError:
        raise BadRequest("the query string is not valid UTF-8") from None
    except ValueError:  # the only other one parse_qsl raises when not strict_parsing
        raise BadRequest(f"the query string has more than {MAX_QUERY_FIELDS} parameters") from None
    return dict(reversed(pairs))  # the first value of a repeated parameter wins


_date_cache = [0, ""]


def _http_date():
    """The Date header, formatted once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[:] = [now, email.utils.formatdate(now, usegmt=True)]
    return _date_cache[1]
