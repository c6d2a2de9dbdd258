"""RequestHandlers for ``GET /health``, ``GET /metrics`` and unknown paths; the dispatcher over them.

``POST /handler`` is not among them: it runs on the connection layer (see
dispatch.py and handler_request.py). Handlers get the ServerState through
``initialize``. Every error a client sees is the JSON of
`ServerState.error_response`, with the request's ``X-Request-Id``.
"""

import traceback

from tornado import httputil
from tornado.routing import Matcher, PathMatches, Rule
from tornado.web import Application, HTTPError, RequestHandler, stream_request_body

from ..errors import NotFound, UfopError
from .dispatch import Dispatcher


class JsonHandler(RequestHandler):
    """Sets X-Request-Id and answers every error as JSON."""

    def initialize(self, server):
        self.server = server
        self.request_id = server.request_id_for(self.request.headers)
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
        self.write_response(self.server.error_response(error, self.request_id))
        if 600 <= error.status < 700:  # dev's platform emulation answers Qiniu's own (612, 631)
            self.set_status(error.status)

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
        if self.server.stopping:  # also for a request read before the server began to stop
            self.set_header("Connection", "close")
        return super().finish(chunk)

    def log_exception(self, typ, value, tb):
        status = getattr(value, "status_code", None) or getattr(value, "status", 500)
        if isinstance(value, (HTTPError, UfopError)) and not 500 <= status < 600:
            return  # the request's access line tells it
        else:
            super().log_exception(typ, value, tb)


@stream_request_body
class StreamedBodyHandler(JsonHandler):
    """A handler that takes its body as it arrives (`data_received`), within its own `body_limit`.

    Every other path but /handler takes at most MAX_OTHER_BODY_BYTES, which
    Tornado buffers; the dispatcher lets a request routed here take up to
    `body_limit(settings)` (a dispatch.BodyLimit), still refused with a JSON
    413 past it.
    """

    @classmethod
    def body_limit(cls, settings):
        raise NotImplementedError


class MethodMatches(Matcher):
    """A route for one method on a path pattern, as ``Rule(MethodMatches("POST", r"/"), handler)``:
    Tornado's own routes match on the path only."""

    def __init__(self, method, path_pattern):
        self.method = method
        self.path = PathMatches(path_pattern)

    def __repr__(self):
        return f"MethodMatches({self.method!r}, {self.path.regex.pattern!r})"

    def match(self, request):
        return self.path.match(request) if request.method == self.method else None


class HealthHandler(JsonHandler):
    """``GET /health``: 200 while the instance can answer, else 503 with the reasons.

    From SIGTERM on it is 503 ``stopping``, so a load balancer sends no more.
    """

    async def get(self):
        if self.server.stopping:
            self.set_status(503)
            self.finish({"status": "stopping", **self.server.executor.describe()})
            return
        problems = {}
        if self.server.app is None:
            problems["project"] = self.server.load_error.strip().splitlines()[-1]
        problems.update(await self.server.executor.health())
        body = {"status": "unhealthy" if problems else "ok", **self.server.executor.describe()}
        if problems:
            body["problems"] = problems
        self.set_status(503 if problems else 200)
        self.finish(body)


class MetricsHandler(JsonHandler):
    """``GET /metrics``: Prometheus text."""

    def get(self):
        self.set_header("Content-Type", self.server.metrics.content_type)
        self.finish(self.server.metrics.render())


class UnknownPathHandler(JsonHandler):
    def prepare(self):
        raise NotFound(f"no such path {self.request.path!r}: the platform calls POST /handler?cmd=...")


def make_dispatcher(server, extra_routes=()):
    """What the HTTP server serves: /handler on the fast path, the rest as an Application.

    `extra_routes` are (path pattern or tornado Matcher, handler class) pairs
    served in order after the server's own paths, which always win (``dev``
    adds its playground, bucket and upload here). Those whose handler is a
    StreamedBodyHandler take bodies up to its own limit.
    """
    rules = [Rule(PathMatches(route) if isinstance(route, str) else route, handler, {"server": server})
             for route, handler in extra_routes]
    application = Application([
        (r"/health/?", HealthHandler, {"server": server}),
        (r"/metrics/?", MetricsHandler, {"server": server}),
        *rules,
    ], default_handler_class=UnknownPathHandler, default_handler_args={"server": server},
        compress_response=False, log_function=_no_tornado_access_log)
    settings = server.settings
    streamed = [rule for rule in rules if issubclass(rule.target, StreamedBodyHandler)]
    return Dispatcher(server, application, settings.idle_timeout, settings.body_timeout,
                      settings.write_timeout, streamed)


def _no_tornado_access_log(handler):
    """/handler writes its own structured line; Tornado's would repeat it."""
