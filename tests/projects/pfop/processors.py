"""Small processors for dev's persistent processing (tests/dev/test_pfop.py): ``pfoptest/<route>``."""

import tempfile
import time

import attrs

from ufop_sdk import BadRequest, Processor, integer

FAILURE = "this fop always fails"


class Upper(Processor):
    route = r"upper"

    def process(self, req):
        return req.buffer.read().upper(), "text/plain"


class Reverse(Processor):
    route = r"reverse"

    def process(self, req):
        return req.buffer.read()[::-1], "text/plain"


class Fail(Processor):
    route = r"fail"

    def process(self, req):
        raise BadRequest(FAILURE)


class Sleep(Processor):
    """The input back after some seconds: a job that stays running for a while."""

    route = r"sleep/(?P<seconds>\d+)"
    timeout = 120

    @attrs.frozen
    class Args:
        seconds: int = integer(0, 100)

    def process(self, req):
        time.sleep(req.args.seconds)
        return req.buffer.read(), "text/plain"


class Timed(Processor):
    """When it started and ended (Unix seconds), after some seconds: shows fops running side by side."""

    route = r"timed/(?P<seconds>\d+)"

    @attrs.frozen
    class Args:
        seconds: int = integer(0, 100)

    def process(self, req):
        started = time.time()
        time.sleep(req.args.seconds)
        return {"started": started, "ended": time.time()}


class Platform(Processor):
    """What the platform told the processor of the call (req.qiniu)."""

    route = r"platform"

    def process(self, req):
        return attrs.asdict(req.qiniu)


class Big(Processor):
    """Some MiB of bytes: an output of several of the etag's 4 MiB blocks."""

    route = r"big/(?P<mebibytes>\d+)"

    @attrs.frozen
    class Args:
        mebibytes: int = integer(1, 64)

    def process(self, req):
        return bytes(range(256)) * (req.args.mebibytes << 12), "application/octet-stream"


class Overtime(Processor):
    """Runs past its own 1 s timeout."""

    route = r"overtime"
    timeout = 1

    def process(self, req):
        time.sleep(10)


class Crash(Processor):
    """A bug: an exception that is not a UfopError (a 500, its traceback in the log)."""

    route = r"crash"

    def process(self, req):
        raise RuntimeError("a bug in the processor")


class Lines(Processor):
    """The input upper-cased, streamed a line at a time (an iterator: a chunked answer)."""

    route = r"lines"

    def process(self, req):
        return (line.upper() for line in req.buffer), "text/plain"


class Spooled(Processor):
    """The input upper-cased, answered as an open file (sent from disk)."""

    route = r"spooled"

    def process(self, req):
        file = tempfile.TemporaryFile()  # noqa: SIM115 - the answer closes it
        file.write(req.buffer.read().upper())
        file.seek(0)
        return file, "text/plain"


class Forward(Processor):
    """The input upper-cased, read as a forward-only stream (prefetch off: the worker reads the source)."""

    route = r"forward"
    prefetch = False

    def process(self, req):
        return b"".join(req.buffer).upper(), "text/plain"
