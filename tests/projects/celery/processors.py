"""Processors the Celery tests drive: the server project's, plus some that leave traces on disk.

Traces go to the folder named by MARKER_DIR (set for the worker): ``<name>.started``
and ``<name>.done`` get one line, the process id, each time a processor reaches
that point, so a test can tell whether, how often and where a processor ran.
"""

import hashlib
import importlib.util
import os
import time
from pathlib import Path

import attrs

from ufop_sdk import Processor, choice, integer


def _server_project():
    path = Path(__file__).resolve().parent.parent / "server" / "processors.py"
    spec = importlib.util.spec_from_file_location("server_project_processors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_server = _server_project()
Echo, Describe, Sleep, Exit, Fail = _server.Echo, _server.Describe, _server.Sleep, _server.Exit, _server.Fail
Custom, Empty, BadHeader = _server.Custom, _server.Empty, _server.BadHeader


def trace(name, point):
    """Append this process's id to MARKER_DIR/<name>.<point>."""
    with open(Path(os.environ["MARKER_DIR"]) / f"{name}.{point}", "a") as file:
        file.write(f"{os.getpid()}\n")


class Mark(Processor):
    """Sleeps, leaving a trace before and after."""

    route = r"mark/(?P<name>[a-z0-9-]+)/(?P<seconds>[0-9.]+)"
    timeout = 2

    def process(self, req):
        trace(req.args["name"], "started")
        time.sleep(float(req.args["seconds"]))
        trace(req.args["name"], "done")
        return f"slept {req.args['seconds']}"


class Patient(Mark):
    """Mark with time to spare: a timeout of 10 s."""

    route = r"patient/(?P<name>[a-z0-9-]+)/(?P<seconds>[0-9.]+)"
    timeout = 10


class Stubborn(Processor):
    """Like Mark, but swallows whatever interrupts its sleep (the soft time limit) and sleeps on."""

    route = r"stubborn/(?P<name>[a-z0-9-]+)/(?P<seconds>[0-9.]+)"
    timeout = 2

    def process(self, req):
        trace(req.args["name"], "started")
        deadline = time.monotonic() + float(req.args["seconds"])
        while deadline > time.monotonic():
            try:
                time.sleep(deadline - time.monotonic())
            except BaseException:  # noqa: BLE001 - ignoring it is the point
                pass
        trace(req.args["name"], "done")
        return "finished anyway"


class Die(Processor):
    """Leaves a trace, then kills its worker process, every time."""

    route = r"die/(?P<name>[a-z0-9-]+)"

    def process(self, req):
        trace(req.args["name"], "started")
        os._exit(7)


class DieOnce(Processor):
    """Kills its worker process the first time it sees `name`; then answers the input's size and digest."""

    route = r"die-once/(?P<name>[a-z0-9-]+)"

    def process(self, req):
        first = not (Path(os.environ["MARKER_DIR"]) / f"{req.args['name']}.started").exists()
        trace(req.args["name"], "started")
        if first:
            os._exit(7)
        data = req.buffer.read()
        return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


class Whoami(Processor):
    """Which process answered, and its parent (the worker), after a short nap."""

    route = r"whoami/(?P<seconds>[0-9.]+)"

    def process(self, req):
        time.sleep(float(req.args["seconds"]))
        return {"pid": os.getpid(), "parent": os.getppid()}


@attrs.frozen
class ResizeArgs:
    width: int = integer(1, 4096)
    format: str = choice("jpeg", "png")


class Resize(Processor):
    """Typed arguments and accepts: what it would do to an image."""

    route = r"resize/(?P<width>[^/]+)/(?P<format>[^/]+)"
    accepts = ("image/*",)
    Args = ResizeArgs

    def process(self, req):
        return {**attrs.asdict(req.args), "content_type": req.content_type, "size": req.size}


MIB = 1 << 20


def block(index):
    """The `index`th MiB of a generated answer: a different byte pattern for every MiB."""
    return index.to_bytes(4, "big") * (MIB // 4)


def generated(mib):
    """The bytes of a generated answer of `mib` MiB, whole (for the tests to compare)."""
    return b"".join(block(index) for index in range(mib))


class FileAnswer(Processor):
    """Writes `mib` MiB to a file in req.workdir and answers the path; the workdir's path goes to
    MARKER_DIR/<name>.workdir."""

    route = r"file-answer/(?P<name>[a-z0-9-]+)/(?P<mib>[0-9]+)"
    timeout = 10

    def process(self, req):
        (Path(os.environ["MARKER_DIR"]) / f"{req.args['name']}.workdir").write_text(str(req.workdir))
        path = req.workdir / "answer.bin"
        with open(path, "wb") as file:
            for index in range(int(req.args["mib"])):
                file.write(block(index))
        return path, "application/x-generated"


class Generate(Processor):
    """Yields `mib` blocks of a MiB, then raises (``/fail``) or hangs for 30 s (``/hang``) if told.
    MARKER_DIR/<name>.progress says how many it yielded so far; <name>.closed appears when the
    generator is closed or ends."""

    route = r"generate/(?P<name>[a-z0-9-]+)/(?P<mib>[0-9]+)(?:/(?P<then>fail|hang))?"
    timeout = 10

    def process(self, req):
        trace(req.args["name"], "started")
        return self.blocks(Path(os.environ["MARKER_DIR"]) / req.args["name"], int(req.args["mib"]),
                           req.args.get("then"))

    @staticmethod
    def blocks(marker, mib, then):
        try:
            for index in range(mib):
                marker.with_suffix(".progress").write_text(str(index + 1))
                yield block(index)
            if then == "fail":
                raise RuntimeError("the generator failed on purpose")
            if then == "hang":
                time.sleep(30)
                yield b"too late"
        finally:
            marker.with_suffix(".closed").touch()


class Brief(Generate):
    """Generate with a timeout of 2 s: time enough for each chunk, not for a slow client's whole answer."""

    route = r"brief/(?P<name>[a-z0-9-]+)/(?P<mib>[0-9]+)(?:/(?P<then>fail|hang))?"
    timeout = 2


class EchoStream(Processor):
    """Streams its input back, 64 KiB at a time: it reads req.buffer while its answer is sent."""

    route = r"echo-stream"

    def process(self, req):
        return iter(lambda: req.buffer.read(64 << 10), b"")
