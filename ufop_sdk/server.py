"""The Tornado application: ``POST /handler``, ``GET /health`` and ``GET /metrics``.

Handlers get the shared Service through ``initialize``. Every error a client
sees is the JSON of `error_response`, with the request's ``X-Request-Id``.
"""

import asyncio
import itertools
import logging
import os
import re
import time
import traceback

from tornado import httputil
from tornado.web import Application, HTTPError, RequestHandler, stream_request_body

from .errors import BadRequest, NotFound, PayloadTooLarge, UfopError
from .executors.base import Job
from .metrics import Metrics
from .response import error_response
from .spool import Spool

log = logging.getLogger("ufop_sdk.server")

# After refusing a body, read at most this much more of it before closing the
# connection, so a client still sending reads the error rather than a reset.
DRAIN_LIMIT = 16 << 20
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class ProjectUnavailable(UfopError):
    """``dev`` only: the project failed to load; `details` holds the traceback."""

    def __init__(self, load_error):
        super().__init__(f"the project cannot be loaded: {load_error.strip().splitlines()[-1]}")
        self.details = load_error


class Service:
    """What the handlers share: the project's routes, the executor, the fetcher, metrics.

    In ``dev``, `app` is replaced when the project changes, and is None with
    `load_error` set while it cannot be loaded.
    """

    def __init__(self, *, settings, app, executor, fetcher, access_log, debug=False):
        self.settings = settings
        self.access_log = access_log
        self.app = app
        self.load_error = None
        self.executor = executor
        self.fetcher = fetcher
        self.debug = debug
        self.metrics = Metrics(executor.describe)
        self.in_flight = 0
        self.idle = asyncio.Event()
        self.idle.set()
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()

    def new_request_id(self):
        return f"{self._id_prefix}-{next(self._ids):x}"

    def resolve(self, cmd):
        if self.app is None:
            raise ProjectUnavailable(self.load_error)
        return self.app.routes.resolve(cmd)

    def started(self):
        self.in_flight += 1
        self.metrics.in_flight.inc()
        self.idle.clear()

    def finished(self):
        self.in_flight -= 1
        self.metrics.in_flight.dec()
        if not self.in_flight:
            self.idle.set()


class JsonHandler(RequestHandler):
    """Sets X-Request-Id and answers every error as JSON."""

    def initialize(self, service):
        self.service = service
        inbound = self.request.headers.get("X-Request-Id", "")
        self.request_id = inbound if REQUEST_ID.fullmatch(inbound) else service.new_request_id()
        self.set_header("X-Request-Id", self.request_id)

    def set_default_headers(self):
        if hasattr(self, "request_id"):
            self.set_header("X-Request-Id", self.request_id)

    def write_error(self, status_code, **kwargs):
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, UfopError):
            self.write_error_body(exc)
        elif isinstance(exc, HTTPError):
            self.write_error_body(UfopError(
                exc.log_message if exc.status_code < 500 and exc.log_message
                else httputil.responses.get(status_code, "error").lower(), status_code))
        else:
            error = UfopError("internal server error", status_code)
            error.details = "".join(traceback.format_exception(*kwargs["exc_info"])) if exc else None
            self.write_error_body(error)

    def write_error_body(self, error):
        """The JSON error; its details (a traceback) only in ``dev``."""
        details = getattr(error, "details", None) if self.service.debug else None
        self.write_response(error_response(error, self.request_id, details))

    def write_response(self, response):
        """Status, content type, headers and body of a Response, not yet finished."""
        self.set_status(response.status)
        for name, value in response.headers.items():
            self.set_header(name, value)
        if response.content_type:
            self.set_header("Content-Type", response.content_type)
        else:
            self.clear_header("Content-Type")
        if response.status not in (204, 304):
            self.set_header("Content-Length", len(response.body))
            self.write(response.body)

    def log_exception(self, typ, value, tb):
        status = getattr(value, "status_code", None) or getattr(value, "status", 500)
        if isinstance(value, (HTTPError, UfopError)) and status < 500:
            return  # the request's access line tells it
        else:
            super().log_exception(typ, value, tb)


@stream_request_body
class ProcessHandler(JsonHandler):
    """``POST /handler?cmd=<name>/<params>[&url=<source>]``: the platform's call."""

    def prepare(self):
        self.began = time.monotonic()
        self.timings = {}
        self.processor = None
        self.bytes_in = 0
        self.bytes_out = 0
        self.rejected = False
        self.spool = None
        self.service.started()
        self.counted = True
        if self.request.method != "POST":
            raise HTTPError(405, "use POST /handler?cmd=...")
        self.limit = self.service.settings.max_body_bytes
        try:
            self.cmd = self.get_query_argument("cmd", "")
            if not self.cmd:
                raise BadRequest("missing cmd: POST /handler?cmd=<ufop-name>[/<params>][&url=<source>]")
            self.url = self.get_query_argument("url", "") or None
            self.match = self.service.resolve(self.cmd)
            self.processor = self.match.route.name
            length = self.request.headers.get("Content-Length", "")
            if length.isdecimal() and int(length) > self.limit:
                raise PayloadTooLarge(f"the body is {int(length)} bytes, "
                                      f"over the limit of {self.limit} bytes")
            if self.url is None:
                self.spool = Spool(self.limit, self.service.settings.spool_dir)
        except UfopError as exc:
            self.reject(exc)

    def data_received(self, chunk):
        self.bytes_in += len(chunk)
        if self.rejected:
            if self.bytes_in > self.drain_until:
                self.request.connection.close()
        elif self.spool is None:
            if self.bytes_in > self.limit:
                self.reject(PayloadTooLarge(f"the body is over the limit of {self.limit} bytes"))
        else:
            try:
                self.spool.write(chunk)
            except UfopError as exc:
                self.reject(exc)

    def reject(self, error):
        """Answer `error` now; read (and drop) what is left of the body, within bounds."""
        self.rejected = True
        self.drain_until = self.bytes_in + DRAIN_LIMIT
        self._close_spool()
        self.write_error_body(error)
        if self.request.headers.get("Expect", "").lower() == "100-continue":
            self.finish()  # the client waits for 100 Continue: it will not send the body
        else:
            self.flush()

    async def post(self):
        if self.rejected:
            self.finish()
            return
        try:
            reply = await self._process()
        except UfopError as exc:
            self.write_error_body(exc)
            self.finish()
            return
        self.write_response(reply)
        self.finish()

    async def _process(self):
        declared = self.request.headers.get("Content-Type")
        if self.url is not None:
            fetch_began = time.monotonic()
            fetched = await self.service.fetcher.fetch(self.url)
            self.timings["fetch"] = time.monotonic() - fetch_began
            self.spool, declared = fetched.spool, fetched.content_type
        route = self.match.route
        in_memory = self.spool.in_memory
        job = Job(cmd=self.cmd, processor=route.name, groups=self.match.groups, timeout=route.timeout,
                  request_id=self.request_id, body=self.spool.getvalue() if in_memory else None,
                  file=None if in_memory else self.spool.file(), declared_content_type=declared,
                  url=self.url)
        reply = await self.service.executor.submit(job)
        self.timings["queue"] = reply.queued_seconds
        self.timings["process"] = reply.processing_seconds
        return reply

    def write_response(self, response):
        super().write_response(response)
        self.bytes_out = len(response.body)

    def on_finish(self):
        self._done()

    def on_connection_close(self):
        self._done()

    def _done(self):
        self._close_spool()
        if not self.counted:
            return
        self.counted = False
        self.service.finished()
        self.timings["total"] = time.monotonic() - self.began
        status = self.get_status() if self._finished else 499
        self.service.metrics.observe(self.processor, status, self.timings)
        self.service.access_log.write(
            request_id=self.request_id, cmd=getattr(self, "cmd", None), processor=self.processor,
            status=status, bytes_in=self.bytes_in, bytes_out=self.bytes_out,
            ms={stage: round(seconds * 1000, 2) for stage, seconds in self.timings.items()})

    def _close_spool(self):
        if self.spool is not None:
            self.spool.close()
            self.spool = None


class HealthHandler(JsonHandler):
    """``GET /health``: 200 while the instance can answer, else 503 with the reasons."""

    async def get(self):
        problems = {}
        if self.service.app is None:
            problems["project"] = self.service.load_error.strip().splitlines()[-1]
        problems.update(await self.service.executor.health())
        body = {"status": "unhealthy" if problems else "ok", **self.service.executor.describe()}
        if problems:
            body["problems"] = problems
        self.set_status(503 if problems else 200)
        self.finish(body)


class MetricsHandler(JsonHandler):
    """``GET /metrics``: Prometheus text."""

    def get(self):
        self.set_header("Content-Type", self.service.metrics.content_type)
        self.finish(self.service.metrics.render())


class UnknownPathHandler(JsonHandler):
    def prepare(self):
        raise NotFound(f"no such path {self.request.path!r}: the platform calls POST /handler?cmd=...")


def make_application(service):
    """The Tornado Application serving `service`."""
    routes = [
        (r"/handler/?", ProcessHandler, {"service": service}),
        (r"/health/?", HealthHandler, {"service": service}),
        (r"/metrics/?", MetricsHandler, {"service": service}),
    ]
    return Application(routes, default_handler_class=UnknownPathHandler,
                       default_handler_args={"service": service}, compress_response=False,
                       log_function=_no_tornado_access_log)


def _no_tornado_access_log(handler):
    """/handler writes its own structured line; Tornado's would repeat it."""
