"""The connection layer: each request goes to /handler's HandlerRequest or to the Tornado Application.

It also keeps each connection's deadline (for the headers, the body, taking
the answer) and closes connections for a graceful stop. The other paths
(/health, /metrics, unknown ones) are RequestHandlers in handlers.py.
"""

import time
from typing import NamedTuple

import attrs
from tornado import httputil

from ..errors import PayloadTooLarge
from .cuts import SERVER_STOPPED, SLOW_CLIENT, ConnectionCut
from .handler_request import HandlerRequest
from .replies import RefusableRequest

# Every path but /handler takes no body (the dev pages post only to /handler),
# unless its handler takes the body as a stream (dev's upload): past this a
# body is refused before it is read, not buffered whole.
MAX_OTHER_BODY_BYTES = 64 << 10
HANDLER_PATHS = ("/handler", "/handler/")


class BodyLimit(NamedTuple):
    """The largest body a path takes, what the 413 past it says, and the headers (such as Qiniu's
    X-Reqid) that carry the request id on that 413 besides X-Request-Id."""

    max_bytes: int
    hint: str
    request_id_headers: tuple = ()


OTHER_PATHS_LIMIT = BodyLimit(MAX_OTHER_BODY_BYTES, "the platform calls POST /handler?cmd=...")


class Dispatcher(httputil.HTTPServerConnectionDelegate):
    """Sends ``/handler`` to a HandlerRequest and every other path to `application`.

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

    def __init__(self, server, application, idle_seconds, body_seconds, write_seconds, streamed_rules=()):
        self.server = server
        self.application = application
        self.streamed_rules = streamed_rules  # the application's Rules whose handler streams its body
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
        self.server.stopping = True
        for server_conn, dispatch in list(self.requests.items()):
            if dispatch.delegate is None and dispatch.kept_alive:
                server_conn.stream.close()

    def close_all(self):
        """Past the grace period: close every connection, the requests still in flight logged 503."""
        for server_conn in list(self.requests):
            server_conn.stream.close(exc_info=ConnectionCut(SERVER_STOPPED))

    def body_limit(self, start_line, headers):
        """The BodyLimit of a request to the application: its handler's own `body_limit(settings)`
        when one of `streamed_rules` matches it, else OTHER_PATHS_LIMIT."""
        if self.streamed_rules:
            try:
                request = httputil.HTTPServerRequest(start_line=start_line, headers=headers)
            except httputil.HTTPInputError:  # no Host: the application refuses it as before
                return OTHER_PATHS_LIMIT
            for rule in self.streamed_rules:
                if rule.matcher.match(request) is not None:
                    return rule.target.body_limit(self.server.settings)
        return OTHER_PATHS_LIMIT

    def writing(self, server_conn):
        """An answer is being written on `server_conn`: its client has `write_seconds` to take it."""
        self.deadlines[server_conn] = time.monotonic() + self.write_seconds

    def close_slow_clients(self):
        now = time.monotonic()
        for server_conn in [conn for conn, deadline in self.deadlines.items() if now > deadline]:
            del self.deadlines[server_conn]
            server_conn.stream.close(exc_info=ConnectionCut(SLOW_CLIENT))


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
            self.delegate = HandlerRequest(dispatcher.server, self.request_conn, dispatcher,
                                           self.server_conn)
        else:
            routed = dispatcher.application.start_request(self.server_conn, self.request_conn)
            limit = dispatcher.body_limit(start_line, headers)
            self.delegate = OtherPath(dispatcher.server, self.request_conn, routed, limit)
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


class OtherPath(RefusableRequest):
    """A path other than /handler: the application's `delegate`, with a body within `limit` (a BodyLimit).

    A body past that (declared, or counted as it arrives, chunked or not) is
    answered with a JSON 413 instead, and never buffered.
    """

    def __init__(self, server, connection, delegate, limit=OTHER_PATHS_LIMIT):
        self.server = server
        self.connection = connection
        self.delegate = delegate
        self.limit = limit

    def headers_received(self, start_line, headers):
        self.path = start_line.path.partition("?")[0]
        self.headers = headers
        length = headers.get("Content-Length", "")
        if length.isdecimal() and int(length) > self.limit.max_bytes:
            self._refuse_body()
            return None
        return self.delegate.headers_received(start_line, headers)

    def data_received(self, chunk):
        if self.drain_until is not None:
            self.drain(chunk)
            return None
        self.bytes_in += len(chunk)
        if self.bytes_in > self.limit.max_bytes:
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
        self.request_id = self.server.request_id_for(self.headers)
        error = PayloadTooLarge(f"{self.path} takes no body over {self.limit.max_bytes} bytes; "
                                f"{self.limit.hint}")
        response = self.server.error_response(error, self.request_id)
        extra = {name: self.request_id for name in self.limit.request_id_headers}
        self.refuse(attrs.evolve(response, headers={**response.headers, **extra}), self.headers)
