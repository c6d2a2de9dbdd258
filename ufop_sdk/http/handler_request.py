"""``POST /handler``: the platform's call, on the connection layer (connection.py).

This is the hot path, so it is an `HTTPMessageDelegate` rather than a
RequestHandler: the request is routed when its headers arrive, the body
streams into a Spool as it arrives, and the answer is written in one call.
"""

import asyncio
import enum
import logging
import time
import traceback
from urllib.parse import parse_qsl

from tornado.concurrent import future_add_done_callback
from tornado.iostream import StreamClosedError

from ..app.bodies import AnswerCut, close_body
from ..errors import BadRequest, Overloaded, PayloadTooLarge, UfopError
from ..sources.spool import Spool
from .cuts import cut_off_status
from .replies import RefusableRequest, write_response
from .state import spooled_input
from .streamed import write_streamed

log = logging.getLogger("ufop_sdk.server")

MAX_QUERY_FIELDS = 64
USAGE = "POST /handler?cmd=<ufop-name>[/<params>][&url=<source>]"


class Stage(enum.Enum):
    """Where a HandlerRequest is; each stage's methods are grouped under it below."""

    READING = "its body is arriving"
    REFUSED = "an error was written before the body was read; the rest of the body is drained"
    PROCESSING = "the executor has it; its client leaving cancels it"
    WRITING = "its answer is being handed to the kernel"
    RECORDED = "over, its log line and metrics written: answered, or its client gone"


class RequestBody:
    """A /handler body as it arrives: into a Spool, or (url mode) only bounded, as it is not the input."""

    def __init__(self, settings, url):
        self.limit = settings.max_body_bytes
        self.spool = Spool(self.limit, settings.spool_dir) if url is None else None

    def receive(self, chunk, bytes_in):
        """Take `chunk`, `bytes_in` bytes having arrived with it; raises UfopError past the limit."""
        if self.spool is not None:
            self.spool.write(chunk)
        elif bytes_in > self.limit:
            raise PayloadTooLarge(f"the body is over the limit of {self.limit} bytes")

    def as_input(self):
        """The keyword arguments of ServerState.process for this body."""
        return {} if self.spool is None else spooled_input(self.spool)

    def close(self):
        if self.spool is not None:
            self.spool.close()
            self.spool = None


class HandlerRequest(RefusableRequest):
    """One ``/handler`` request: it receives the body, writes the reply, and records the outcome once.

    The outcome is recorded (`_record`: the access log line and metrics)
    with the status its client really got: the status written, once the
    whole answer has been handed to the kernel; else CLIENT_LEFT, or the
    status of the ConnectionCut the server closed the connection for.
    """

    def __init__(self, server, connection, dispatcher, server_conn):
        self.server = server
        self.connection = connection
        # Not the _Dispatch, which holds this request: a cycle would leave every
        # request to the garbage collector (+9 bytes of RSS a request, and its CPU).
        self.dispatcher = dispatcher
        self.server_conn = server_conn
        self.stage = Stage.READING
        self.began = time.monotonic()
        self.timings = {}
        self.request_id = self.cmd = self.processor = None
        self.url = self.match = self.body = self.reply = self.streaming = None
        self.status = None  # of the answer written
        self.bytes_out = 0
        server.started()

    # READING: the headers route the request, the body goes into a RequestBody.

    def headers_received(self, start_line, headers):
        self.headers = headers
        self.request_id = self.server.request_id_for(headers)
        try:
            self._route(start_line, headers)
        except UfopError as exc:
            self.reject(exc)

    def _route(self, start_line, headers):
        """Resolve the cmd, check what can be checked before the body; raises UfopError."""
        if self.server.stopping:
            raise Overloaded("the server is stopping")
        if start_line.method != "POST":
            raise UfopError(f"method {start_line.method} is not allowed: use {USAGE}", 405)
        query = _query_parameters(start_line.path.partition("?")[2])
        self.cmd = query.get("cmd")
        if not self.cmd:
            raise BadRequest(f"missing cmd: {USAGE}")
        _check_cmd_length(self.cmd, self.server.settings.max_cmd_bytes)
        self.url = query.get("url") or None
        self.match = self.server.resolve(self.cmd)
        self.processor = self.match.route.name
        limit = self.server.settings.max_body_bytes
        length = headers.get("Content-Length", "")
        if length.isdecimal() and int(length) > limit:
            raise PayloadTooLarge(f"the body is {int(length)} bytes, over the limit of {limit} bytes")
        self.body = RequestBody(self.server.settings, self.url)

    def data_received(self, chunk):
        if self.stage is not Stage.READING:  # refused (also when over since: 100 Continue refused)
            self.drain(chunk)
            return
        self.bytes_in += len(chunk)
        try:
            self.body.receive(chunk, self.bytes_in)
        except UfopError as exc:
            self.reject(exc)

    def finish(self):
        if self.stage is not Stage.READING:
            self.connection.finish()
            self._record(self.status)
            return
        self.stage = Stage.PROCESSING
        try:
            reply = self.server.process(self.match, self.cmd, self.request_id, url=self.url,
                                        timings=self.timings, **self.body.as_input(),
                                        declared_content_type=self.headers.get("Content-Type"),
                                        headers={name: self.headers[name] for name in self.headers})
        except Exception as exc:  # noqa: BLE001 - answered like a failure of the reply
            self._close_body()
            self._answer(exc, None)
            return
        # Held here, as the connection holds this request: asyncio keeps only weak references to tasks.
        self.reply = reply
        reply.add_done_callback(self._replied)
        # The connection layer tells us from now until the answer is written.
        self.connection.set_close_callback(self._client_left)

    def on_connection_close(self):
        """The connection closed while the request was being read (or drained, once refused)."""
        self._close_body()
        refused = self.stage is Stage.REFUSED
        self._record(self.status if refused else cut_off_status(self.server_conn))

    # REFUSED: an error answered before the body was read (see RefusableRequest).

    def reject(self, error):
        """Answer `error` now; the rest of the body is drained."""
        self._close_body()
        self.stage = Stage.REFUSED
        if self.refuse(self.server.error_response(error, self.request_id), self.headers):
            self._record(self.status)

    # PROCESSING: the executor has it.

    def _client_left(self):
        """The connection closed before the answer: drop the job, queued or running."""
        self._record(cut_off_status(self.server_conn))
        self.reply.cancel()  # a queued job is then never started; a running one's answer is dropped

    def _replied(self, future):
        self._close_body()
        error = UfopError("the request was cancelled", 503) if future.cancelled() else future.exception()
        self._answer(error, None if error else future.result())

    # WRITING: the reply, or the JSON of an error, in one write.

    def _answer(self, error, reply):
        """Send `reply`, or the JSON of `error`; the outcome is recorded once the answer is written."""
        response = self._response_for(error, reply)
        if self.stage is Stage.RECORDED:  # the client went away while we worked
            close_body(response.body)  # a file closed, a stream cancelled
            return
        self.stage = Stage.WRITING
        self.dispatcher.writing(self.server_conn)
        if not isinstance(response.body, bytes):
            # Held here, as the connection holds this request: asyncio keeps only weak references to tasks.
            self.streaming = asyncio.ensure_future(self._stream(response))
            return
        try:
            written = self._write(response)
        except ValueError:  # a header that cannot be sent (not latin-1, or CR/LF): nothing was written
            log.exception("request %s: cannot send the answer", self.request_id)
            error = UfopError(f"processor {self.processor!r} answered a header that cannot be sent")
            written = self._write(self.server.error_response(error, self.request_id))
        self.connection.finish()
        future_add_done_callback(written, self._written)  # at once when written at once, as is usual

    def _response_for(self, error, reply):
        if reply is not None:
            self.timings["queue"] = reply.queued_seconds
            self.timings["process"] = reply.processing_seconds
            return reply
        if isinstance(error, UfopError):
            return self.server.error_response(error, self.request_id)
        # a bug here must cost one request, not the server
        log.error("request %s failed", self.request_id, exc_info=error)
        internal = UfopError("internal server error")
        internal.details = "".join(traceback.format_exception(error))
        return self.server.error_response(internal, self.request_id)

    def _write(self, response):
        """Write `response` (a Response or a Reply): the future of its writing."""
        self.status = response.status
        self.bytes_out = 0 if response.status in (204, 304) else len(response.body)
        return write_response(self.connection, response, self.request_id, self.server.stopping)

    async def _stream(self, response):
        """Send a file or streamed answer as its client takes it (streamed.py); a cut-off one is
        logged, its connection closed, and recorded as a 500."""
        self.status = response.status
        try:
            await write_streamed(self.connection, response, self.request_id, self.server.stopping,
                                 self.server.settings.max_output_bytes, self._taken)
            self.connection.finish()
        except ValueError:  # a header that cannot be sent: nothing was written
            log.exception("request %s: cannot send the answer", self.request_id)
            error = UfopError(f"processor {self.processor!r} answered a header that cannot be sent")
            future_add_done_callback(self._write(self.server.error_response(error, self.request_id)),
                                     self._written)
            self.connection.finish()
            return
        except AnswerCut as exc:
            log.error("request %s: the answer was cut off after %d bytes: %s", self.request_id,
                      self.bytes_out, exc)
            self.connection.close()
            self._record(500)
            return
        except StreamClosedError:
            self._record(cut_off_status(self.server_conn))
            return
        finally:
            close_body(response.body)
        self._record(self.status)

    def _taken(self, nbytes):
        """The client took `nbytes` more of a streamed answer: its write deadline starts again."""
        self.bytes_out += nbytes
        self.dispatcher.writing(self.server_conn)

    def _written(self, future):
        """The answer has been handed to the kernel, or its connection closed first."""
        if self.server_conn.error is None and not future.exception():
            self._record(self.status)
        else:
            self.bytes_out = 0
            self._record(cut_off_status(self.server_conn))

    # RECORDED: the one place a request's outcome is told.

    def _record(self, status):
        """The access log line and metrics of the request, with `status`; once, whichever path ends it."""
        if self.stage is Stage.RECORDED:
            return
        self.stage = Stage.RECORDED
        self.server.finished()
        self.timings["total"] = time.monotonic() - self.began
        self.server.metrics.observe(self.processor, status, self.timings)
        self.server.access_log.request(self.request_id, self.cmd, self.processor, status,
                                       self.bytes_in, self.bytes_out, self.timings)

    def _close_body(self):
        if self.body is not None:  # None when refused before it was routed
            self.body.close()


def _check_cmd_length(cmd, limit):
    """Users' route regexes run on the event loop: a cmd is matched only up to UFOP_MAX_CMD_BYTES."""
    size = len(cmd.encode())
    if size > limit:
        raise UfopError(f"the cmd is {size} bytes, over the limit of {limit} bytes", 414)


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
