"""Async processors for the executor tests: sleeps on the loop, a coroutine that never yields, traces.

Traces go to MARKER_DIR (when set): ``<name>.<point>`` gets one line, the
process id, each time a processor reaches that point.
"""

import asyncio
import itertools
import os
import time
from pathlib import Path

from ufop_sdk import BadRequest, Processor, Response


def trace(name, point):
    """Append this process's id to MARKER_DIR/<name>.<point>."""
    with open(Path(os.environ["MARKER_DIR"]) / f"{name}.{point}", "a") as file:
        file.write(f"{os.getpid()}\n")


class Nap(Processor):
    """Awaits asyncio.sleep: many at once on one worker."""

    route = r"nap/(?P<seconds>[0-9.]+)"
    timeout = 3
    concurrency = 16

    async def process(self, req):
        await asyncio.sleep(float(req.args["seconds"]))
        return {"slept": float(req.args["seconds"]), "pid": os.getpid()}


class Stuck(Processor):
    """A coroutine that never yields to its loop: time.sleep inside async def."""

    route = r"stuck/(?P<seconds>[0-9.]+)"
    timeout = 1
    concurrency = 4

    async def process(self, req):
        time.sleep(float(req.args["seconds"]))
        return "woke"


class Spawns(Processor):
    """Awaits a child process that outlives its timeout."""

    route = r"spawns/(?P<seconds>[0-9.]+)"
    timeout = 1
    concurrency = 4

    async def process(self, req):
        child = await asyncio.create_subprocess_exec("sleep", req.args["seconds"])
        (Path(os.environ["MARKER_DIR"]) / "spawned").write_text(str(child.pid))
        await child.wait()
        return "waited"


class Watched(Processor):
    """Leaves a trace when it starts, when it ends, and when it is cancelled."""

    route = r"watched/(?P<name>[a-z0-9-]+)/(?P<seconds>[0-9.]+)"
    timeout = 30
    concurrency = 4

    async def process(self, req):
        trace(req.args["name"], "started")
        try:
            await asyncio.sleep(float(req.args["seconds"]))
        except asyncio.CancelledError:
            trace(req.args["name"], "cancelled")
            raise
        trace(req.args["name"], "done")
        return "done"


class Answers(Processor):
    """Each kind of value an async process() may answer with, and its errors."""

    route = r"answer/(?P<kind>[a-z-]+)"

    async def process(self, req):
        await asyncio.sleep(0)
        kind = req.args["kind"]
        if kind == "bytes":
            return req.buffer.read(), "application/octet-stream"
        if kind == "text":
            return "hello"
        if kind == "response":
            return Response(b"made", status=201, content_type="text/plain", headers={"X-Kind": "response"})
        if kind == "file":
            path = req.workdir / "out.txt"
            path.write_bytes(b"from a file")
            return path, "text/plain"
        if kind == "stream":
            return (part for part in (b"one ", b"two ", b"three")), "text/plain"
        if kind == "chunks":
            return (bytes([n]) * 65536 for n in range(48))  # 3 MiB
        if kind == "endless":
            return itertools.repeat(b"x" * 65536)
        if kind == "none":
            return None
        if kind == "refused":
            raise BadRequest("refused on purpose")
        raise RuntimeError("a bug on purpose")


class SameLoop(Processor):
    """Says whether it runs on the loop it first ran on in this process: a client made on first use
    (an HTTP client's connection pool, say) is bound to that loop."""

    route = r"same-loop"

    async def process(self, req):
        loop = asyncio.get_running_loop()
        first = self.__dict__.setdefault("first_loop", loop)
        return {"same": first is loop, "pid": os.getpid()}


class Fetches(Processor):
    """req.fetch blocks: an async process() awaits it in a thread, and its loop runs on meanwhile."""

    route = r"fetches"
    concurrency = 4

    async def process(self, req):
        url = req.buffer.read().decode()
        fetched = await asyncio.to_thread(req.fetch, url)
        return fetched.file.read(), fetched.content_type


class Head(Processor):
    """Reads the first bytes of a source it streams (prefetch = False), in a thread: reading blocks."""

    route = r"head/(?P<size>[0-9]+)"
    prefetch = False
    concurrency = 4

    async def process(self, req):
        return await asyncio.to_thread(req.buffer.read, int(req.args["size"])), "application/octet-stream"


class Echo(Processor):
    """A plain processor beside the async ones."""

    route = r"echo"

    def process(self, req):
        return req.buffer.read(), req.content_type
