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
from tornado.web import Application, HTTPError, RequestHandler

from ..errors import NotFound, UfopError
from ..executors.base import Job
from ..response import error_response
from .connection import Dispatcher
from .metrics import Metrics

log = logging.getLogger("ufop_sdk.server")

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
        self.bucket = None  # dev --bucket: the folder GET /<key> serves
        self.executor = executor
        self.fetcher = fetcher
        self.debug = debug
        self.metrics = Metrics(executor.describe, lambda: self.in_flight)
        self.in_flight = 0
        self.stopping = False  # set on SIGTERM: /health says so, and every answer closes its connection
        self.idle = asyncio.Event()
        self.idle.set()
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()

    def error_response(self, error, request_id):
        """The JSON error every path answers; with its details (a traceback) only in ``dev``."""
        details = getattr(error, "details", None) if self.debug else None
        return error_response(error, request_id, details)

    def request_id_for(self, headers):
        """The request's inbound X-Request-Id when it is sane, else a new one (cheaply)."""
        inbound = headers.get("X-Request-Id", "")
        return inbound if REQUEST_ID.fullmatch(inbound) else f"{self._id_prefix}-{next(self._ids):x}"

    def resolve(self, cmd):
        if self.app is None:
            raise ProjectUnavailable(self.load_error)
        return self.app.routes.resolve(cmd)

    def process(self, match, cmd, request_id, *, body=None, file=None, url=None,
                declared_content_type=None, timings=None):
        """Start one routed cmd on its input (`body` bytes or an open `file`): a Future of its Reply.

        With only a `url`, the source is fetched here first, unless the
        executor's workers fetch sources themselves, and `timings` gets
        its seconds under "fetch". Raises UfopError when
        the request is refused at once (Overloaded), and the Future fails
        with UfopError when it is refused later. The Future is the
        executor's own when there is nothing to fetch, so the hot path runs
        no task of its own.
        """
        if url is not None and body is None and file is None and not self.executor.fetches_sources:
            # Admitted before anything is downloaded: when the server is full, the answer is 503 at once.
            admission = self.executor.admit()
            fetching = asyncio.ensure_future(self._fetch_and_process(
                match, cmd, request_id, url, {} if timings is None else timings, admission))
            fetching.add_done_callback(lambda _: admission.release())  # a no-op once its job was submitted
            return fetching
        return asyncio.ensure_future(
            self._submit(match, cmd, request_id, url, declared_content_type, body, file))

    def _submit(self, match, cmd, request_id, url, declared_content_type, body, file, admission=None):
        route = match.route
        job = Job(cmd=cmd, processor=route.name, groups=match.groups, timeout=route.timeout,
                  request_id=request_id, url=url, declared_content_type=declared_content_type,
                  body=body, file=file)
        return self.executor.submit(job, admission)

    async def _fetch_and_process(self, match, cmd, request_id, url, timings, admission):
        began = time.monotonic()
        fetched = await self.fetcher.fetch(url)
        timings["fetch"] = time.monotonic() - began
        spool = fetched.spool
        try:
            return await self._submit(
                match, cmd, request_id, url, fetched.content_type,
                body=spool.getvalue() if spool.in_memory else None,
                file=None if spool.in_memory else spool.file(), admission=admission)
        finally:
            spool.close()

    def started(self):
        self.in_flight += 1
        self.idle.clear()

    def finished(self):
        self.in_flight -= 1
        if not self.in_flight:
            self.idle.set()


class JsonHandler(RequestHandler):
    """Sets X-Request-Id and answers every error as JSON."""

    def initialize(self, service):
        self.service = service
        self.request_id = service.request_id_for(self.request.headers)
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
        self.write_response(self.service.error_response(error, self.request_id))

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

    def finish(self, chunk=None):
        if self.service.stopping:  # also for a request read before the server began to stop
            self.set_header("Connection", "close")
        return super().finish(chunk)

    def log_exception(self, typ, value, tb):
        status = getattr(value, "status_code", None) or getattr(value, "status", 500)
        if isinstance(value, (HTTPError, UfopError)) and status < 500:
            return  # the request's access line tells it
        else:
            super().log_exception(typ, value, tb)


class HealthHandler(JsonHandler):
    """``GET /health``: 200 while the instance can answer, else 503 with the reasons.

    From SIGTERM on it is 503 ``stopping``, so a load balancer sends no more.
    """

    async def get(self):
        if self.service.stopping:
            self.set_status(503)
            self.finish({"status": "stopping", **self.service.executor.describe()})
            return
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


def make_application(service, extra_routes=()):
    """What the HTTP server serves: /handler on the fast path, the rest as an Application.

    `extra_routes` are (pattern, handler class) pairs served after the
    server's own paths, which always win (``dev`` adds its playground here).
    """
    application = Application([
        (r"/health/?", HealthHandler, {"service": service}),
        (r"/metrics/?", MetricsHandler, {"service": service}),
        *((pattern, handler, {"service": service}) for pattern, handler in extra_routes),
    ], default_handler_class=UnknownPathHandler, default_handler_args={"service": service},
        compress_response=False, log_function=_no_tornado_access_log)
    settings = service.settings
    return Dispatcher(service, application, settings.idle_timeout, settings.body_timeout,
                      settings.write_timeout)


def _no_tornado_access_log(handler):
    """/handler writes its own structured line; Tornado's would repeat it."""
