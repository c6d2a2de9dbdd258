"""A local worker process: runs Jobs sent over its socket until the server goes away.

Started by the local pool as ``python -m ufop_sdk.executors.local_worker``. It
loads the project itself, runs every processor's ``setup()``, reports ready,
then answers one frame at a time. End-of-file on its socket means the server
is gone, and it exits.
"""

import argparse
import io
import os
import signal
import socket
import sys
import traceback

from ..gc_tuning import settle_garbage_collector
from ..project import load_app
from ..runner import Runner
from ..settings import Settings
from . import protocol


def main(argv=None):
    options = _parse(argv)
    # Ctrl-C in `ufop-sdk dev` reaches the whole process group; the server
    # decides when workers stop, so a running request is not cut short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sock = socket.socket(fileno=options.fd)
    try:
        settings = Settings.load(options.project, app=options.app, timeout=options.timeout)
        runner = Runner(load_app(settings), debug=options.debug)
    except Exception:  # noqa: BLE001 - the server reports why its workers cannot start
        protocol.send(sock, {"op": "failed", "error": traceback.format_exc()})
        return 3
    try:
        failures = runner.setup_all()
        settle_garbage_collector()  # models and fonts that setup() loaded stay put
        protocol.send(sock, {"op": "ready", "setup_failures": failures, "pid": os.getpid()})
        serve(sock, runner)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server went away: nothing is waiting for an answer
    return 0


def serve(sock, runner):
    frames = protocol.FrameReceiver(sock)
    while True:
        frame = frames.next()
        if frame is None:
            return
        header, body, fd = frame
        if header["op"] == "health":
            protocol.send(sock, {"op": "health", "problems": runner.health_problems()})
        else:
            _run(sock, runner, header, body, fd)


def _run(sock, runner, header, body, fd):
    with (os.fdopen(fd, "rb") if fd is not None else io.BytesIO(body)) as buffer:
        outcome = runner.execute(header["processor"], header["groups"], header["cmd"], buffer,
                                 declared_content_type=header.get("declared_content_type"),
                                 url=header.get("url"), request_id=header.get("request_id"))
    response = outcome.response
    protocol.send(sock, {"op": "reply", "status": response.status, "content_type": response.content_type,
                         "headers": response.headers}, response.body)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="ufop_sdk.executors.local_worker")
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--project", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
