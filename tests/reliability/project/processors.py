"""Processors the reliability suite drives: good answers, every kind of error, crashes, hangs.

``Traced`` leaves its process id in ``$MARKER_DIR/<name>.started`` and
``<name>.done``, one line per run, so a test can tell whether, how often and
where a request ran (a Celery task delivered again shows two lines).
"""

import os
import signal
import time
from pathlib import Path

import attrs

from ufop_sdk import BadRequest, Processor, Response, choice, integer


class Echo(Processor):
    route = r"echo"

    def process(self, req):
        return req.buffer.read(), req.content_type


class Describe(Processor):
    route = r"describe(?:/(?P<label>[^/]+))?"

    def process(self, req):
        return {"args": dict(req.args), "content_type": req.content_type,
                "declared_content_type": req.declared_content_type, "cmd": req.cmd, "params": req.params,
                "size": req.size, "request_id": req.request_id, "pid": os.getpid()}


@attrs.frozen
class TypedArgs:
    width: int = integer(1, 4096)
    format: str = choice("jpeg", "png")


class Typed(Processor):
    """Typed arguments: `integer` and `choice` fields built from the route's groups."""

    route = r"typed/(?P<width>[^/]*)/(?P<format>[^/]*)"
    Args = TypedArgs

    def process(self, req):
        return {"width": req.args.width, "format": req.args.format}


class Picture(Processor):
    """Takes images only: anything else is 415."""

    route = r"picture"
    accepts = ("image/*",)

    def process(self, req):
        return {"content_type": req.content_type, "size": req.size}


class Sleep(Processor):
    route = r"sleep/(?P<seconds>[0-9.]+)"
    timeout = 2

    def process(self, req):
        time.sleep(float(req.args["seconds"]))
        return f"slept {req.args['seconds']}"


class Exit(Processor):
    route = r"exit"

    def process(self, req):
        os._exit(7)


class Segfault(Processor):
    route = r"segfault"

    def process(self, req):
        os.kill(os.getpid(), signal.SIGSEGV)


SECRET = "SECRET-DETAIL in /etc/shadow"  # must never reach a client


class Fail(Processor):
    route = r"fail/(?P<kind>bad|crash)"

    def process(self, req):
        if req.args["kind"] == "bad":
            raise BadRequest("this input is bad")
        raise RuntimeError(SECRET)


class BadHeader(Processor):
    route = r"bad-header"

    def process(self, req):
        return Response(b"x", headers={"X-Injected": "a\r\nSet-Cookie: evil=1"})


class NotJson(Processor):
    route = r"not-json"

    def process(self, req):
        return {"path": Path("/etc/shadow")}


class Unsendable(Processor):
    route = r"unsendable"

    def process(self, req):
        return 42


class Traced(Processor):
    route = r"traced/(?P<name>[a-z0-9-]+)/(?P<seconds>[0-9.]+)"
    timeout = 10

    def process(self, req):
        _trace(req.args["name"], "started")
        time.sleep(float(req.args["seconds"]))
        _trace(req.args["name"], "done")
        return f"traced {req.args['name']}"


def _trace(name, point):
    with open(Path(os.environ["MARKER_DIR"]) / f"{name}.{point}", "a") as file:
        file.write(f"{os.getpid()}\n")
