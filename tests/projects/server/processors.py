"""Processors the server tests drive: good answers, errors, crashes and hangs."""

import os
import signal
import time

from ufop_sdk import BadRequest, Processor, Response


class Echo(Processor):
    route = r"echo"

    def process(self, req):
        return req.buffer.read(), req.content_type


class Describe(Processor):
    route = r"describe(?:/(?P<label>[^/]+))?"

    def process(self, req):
        return {"args": dict(req.args), "content_type": req.content_type,
                "declared_content_type": req.declared_content_type, "cmd": req.cmd, "name": req.name,
                "params": req.params, "url": req.url, "size": req.size, "request_id": req.request_id,
                "pid": os.getpid()}


class Long(Describe):
    """Describe, for cmds up to 256 KiB (a processor's are at most 4 KiB unless it says more)."""

    route = r"long/(?P<label>[^/]+)"
    max_cmd_bytes = 256 << 10


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


class Fail(Processor):
    route = r"fail/(?P<kind>bad|crash)"

    def process(self, req):
        if req.args["kind"] == "bad":
            raise BadRequest("this input is bad")
        raise RuntimeError("secret detail /etc/passwd")


class Custom(Processor):
    route = r"custom"

    def process(self, req):
        return Response(b"<p>hi</p>", status=201, headers={"X-Custom": "yes"}, content_type="text/html")


class Empty(Processor):
    route = r"empty"

    def process(self, req):
        return None


class BadHeader(Processor):
    """Returns a header value that would split the response if it were sent as it is."""

    route = r"bad-header"

    def process(self, req):
        return Response(b"x", headers={"X-Injected": "a\r\nSet-Cookie: evil=1"})
