"""Processors the pool's scheduling tests drive: sleeps, marks, logs, and a health() that can hang."""

import logging
import os
import time
from pathlib import Path

from ufop_sdk import Processor

log = logging.getLogger("processors")


def _marker_dir():
    return Path(os.environ["MARKER_DIR"])


class Echo(Processor):
    route = r"echo"

    def process(self, req):
        return req.buffer.read(), req.content_type


class Sleep(Processor):
    route = r"sleep/(?P<seconds>[0-9.]+)"
    timeout = 10

    def process(self, req):
        time.sleep(float(req.args["seconds"]))
        return f"slept {req.args['seconds']}"


class Mark(Processor):
    """Leaves $MARKER_DIR/<name>: proof that it ran."""

    route = r"mark/(?P<name>[a-z0-9-]+)"

    def process(self, req):
        (_marker_dir() / req.args["name"]).write_text("ran")
        return "marked"


class Talk(Processor):
    """Logs at three levels, one with a traceback, then answers."""

    route = r"talk/(?P<word>[a-z0-9-]+)"

    def process(self, req):
        log.info("info %s", req.args["word"])
        log.warning("warning %s", req.args["word"])
        try:
            raise ValueError(f"oops {req.args['word']}")
        except ValueError:
            log.exception("exception %s", req.args["word"])
        return "talked"


class Patient(Processor):
    """Its health() hangs while $MARKER_DIR/hang-health exists."""

    route = r"patient"

    def health(self):
        while (_marker_dir() / "hang-health").exists():
            time.sleep(0.1)

    def process(self, req):
        return "patient"
