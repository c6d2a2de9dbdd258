"""A local worker process: runs Jobs sent over its socket until the server goes away.

Started by the local pool as ``python -m ufop_sdk.executors.local.worker_main``. It
loads the project itself, runs every processor's ``setup()``, reports ready,
then answers one frame at a time. End-of-file on its socket means the server
is gone, and it exits.

It is its descendants' subreaper, and before each answer it kills what the
job started (see descendants.py). Its log records are JSON lines carrying
the request id (see logs.py).

Async processors' jobs, whose frames carry an id, run on an event loop in a
thread of its own (worker_loop.py).
"""

import argparse
import io
import os
import signal
import socket
import sys
import time
import traceback

from ...app.gc_tuning import settle_garbage_collector
from ...app.jobs import Job
from ...app.logs import REQUEST_ID, configure_worker_logging
from ...app.project import load_app
from ...app.runner import ProcessorRunner
from ...app.settings import Settings
from ...sources.blocking import BlockingFetcher
from ...sources.networks import DEFAULT_BLOCKED_NETWORKS
from . import protocol
from .answers import send_answer
from .descendants import track_descendants
from .worker_loop import WorkerLoop


def main(argv=None):
    options = _parse(argv)
    # Ctrl-C in `ufop-sdk dev` reaches the whole process group; the server
    # decides when workers stop, so a running request is not cut short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # What a processor execs (os.system, Popen(close_fds=False)) must not hold
    # the server's socket open after this process is gone.
    os.set_inheritable(options.fd, False)
    sock = socket.socket(fileno=options.fd)
    fds_sock = None
    if options.fds_fd is not None:
        os.set_inheritable(options.fds_fd, False)
        fds_sock = socket.socket(fileno=options.fds_fd)
    descendants = track_descendants()
    try:
        settings = Settings.load(options.project, app=options.app, timeout=options.timeout)
        configure_worker_logging(settings.log_dir)
        # dev (--debug) fetches from anywhere, as its server does for sources; serve keeps the default list
        fetcher = BlockingFetcher(settings, () if options.debug else DEFAULT_BLOCKED_NETWORKS)
        runner = ProcessorRunner(load_app(settings), debug=options.debug, fetcher=fetcher,
                                  settings=settings)
    except Exception:  # noqa: BLE001 - the server reports why its workers cannot start
        protocol.send(sock, {"op": "failed", "error": traceback.format_exc()})
        return 3
    try:
        failures = runner.processors.setup_all()
        descendants.keep_current()  # helpers that setup() started live as long as this worker
        settle_garbage_collector()  # models and fonts that setup() loaded stay put
        protocol.send(sock, {"op": "ready", "setup_failures": failures, "pid": os.getpid()})
        serve(sock, runner, descendants, fds_sock)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server went away: nothing is waiting for an answer
    finally:
        descendants.kill_all()
    return 0


def serve(sock, runner, descendants, fds_sock=None):
    frames = protocol.FrameReceiver(sock)
    async_jobs = WorkerLoop(sock, runner, descendants, fds_sock)
    while True:
        frame = frames.next()
        if frame is None:
            return
        header, body, fd = frame
        op = header["op"]
        if op == "health":
            _health(sock, runner)
        elif "id" in header:
            async_jobs.received(header, body, fd)
        elif op == "run":
            _job(sock, frames, fds_sock, runner, descendants, Job.from_wire(header), body, fd)
        elif op not in ("more", "cancel"):  # those two crossed their stream's `end`: nothing waits for them
            raise ValueError(f"a frame of an unknown kind: {op!r}")


def _health(sock, runner):
    """Each processor's name goes out before its health() runs: if one hangs, the server knows which."""
    problems = runner.processors.health_problems(
        checking=lambda name: protocol.send(sock, {"op": "checking", "processor": name}))
    protocol.send(sock, {"op": "health", "problems": problems})


def _job(sock, frames, fds_sock, runner, descendants, job, body, fd):
    """Run `job` and send its answer; its input, files and workdir are released once it is sent
    (a stream may read its input as it goes)."""
    token = REQUEST_ID.set(job.request_id)
    try:
        with (os.fdopen(fd, "rb") if fd is not None else io.BytesIO(body)) as buffer:
            began = time.monotonic()
            outcome = runner.process_job(job, buffer)
            seconds = time.monotonic() - began
            try:
                whole = isinstance(outcome.response.body, bytes)
                if whole:
                    descendants.kill_new()  # before the answer: once it is in, nothing the job started runs
                send_answer(sock, frames, fds_sock, outcome.response, runner.max_output_bytes, seconds)
            finally:
                outcome.close()
                if not whole:
                    descendants.kill_new()  # a file or stream may need what the job started until sent
    finally:
        REQUEST_ID.reset(token)


def _parse(argv):
    parser = argparse.ArgumentParser(prog="ufop_sdk.executors.local.worker_main")
    parser.add_argument("--fd", type=int, required=True)
    # where file answers' descriptors go; without it a file is sent as a stream
    parser.add_argument("--fds-fd", type=int)
    parser.add_argument("--project", required=True)
    parser.add_argument("--app", required=True)
    parser.add_argument("--timeout", type=float, required=True)
    parser.add_argument("--debug", action="store_true")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
