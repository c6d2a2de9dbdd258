"""One processor whose jobs are light until asked otherwise: the pool sends jobs ahead behind it."""

import os
import time

from ufop_sdk import Processor


class Paced(Processor):
    """``paced/fast/<label>`` answers at once; ``paced/sleep/<seconds>`` sleeps first;
    ``paced/stream/<seconds>`` waits 0.3 s, then streams ten chunks over `seconds`;
    ``paced/big/<mib>`` answers `mib` MiB at once; ``paced/exit/<code>`` exits the worker."""

    route = r"paced/(?P<kind>fast|sleep|stream|big|exit)/(?P<value>[^/]+)"
    timeout = 2

    def process(self, req):
        kind, value = req.args["kind"], req.args["value"]
        if kind == "fast":
            return f"{value} {req.buffer.read().decode()} {os.getpid()}"
        if kind == "big":
            return b"b" * (int(value) << 20)
        if kind == "exit":
            os._exit(int(value))
        if kind == "sleep":
            time.sleep(float(value))
            return f"slept {value} {os.getpid()}"
        time.sleep(0.3)  # the server cannot yet tell this answer from a light one
        return _chunks(float(value) / 10)


def _chunks(pause):
    for number in range(10):
        time.sleep(pause)
        yield f"chunk {number}\n".encode()


class Slow(Processor):
    """Never light: the pool sends no job ahead behind it."""

    route = r"slow/(?P<seconds>[0-9.]+)"

    def process(self, req):
        time.sleep(float(req.args["seconds"]))
        return f"slept {req.args['seconds']} {os.getpid()}"


class TailWork(Processor):
    """A stream of one chunk, then 0.5 s of work after it."""

    route = r"tail"

    def process(self, req):
        def chunks():
            yield b"a-chunk"
            time.sleep(0.5)
        return chunks()


class ThreeChunks(Processor):
    """A stream of three chunks, 0.1 s apart."""

    route = r"three"

    def process(self, req):
        def chunks():
            for number in range(3):
                time.sleep(0.1)
                yield f"c{number}".encode()
        return chunks()
