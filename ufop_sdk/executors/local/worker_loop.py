"""A worker's event loop for async processors: their jobs run as tasks on it, in a thread of its own.

The worker's main thread keeps reading frames and running plain processors'
jobs. A frame that carries an ``"id"`` concerns an async processor's job: a
run frame starts it as a task here (the server sends no more at once than the
processor's concurrency), a cancel frame (its client left) cancels it. Every
job answers once, with its id, from this thread. No lock: the server sends a
worker no plain job or health check while it has async jobs, nor an async job
while it runs a plain one, so the two threads never write at once.

A job past its timeout is cancelled and answered 504 by the runner
(app/runner.py's `within`); one whose coroutine never yields blocks the
loop, and the server kills the worker past its deadline. The loop starts
with the first async job: a worker of plain processors keeps one thread.
"""

import asyncio
import io
import logging
import os
import tempfile
import threading

import attrs

from ...app.bodies import FileBody, close_body, read_body
from ...app.jobs import Job
from ...app.logs import REQUEST_ID
from ...app.workdir import process_folder
from ...errors import UfopError
from ...response import error_response
from . import protocol
from .answers import send_file

log = logging.getLogger("ufop_sdk.worker")

# How the answer of a job cancelled because its client left is marked; nobody reads it but the server,
# which frees the job's place with it.
CLIENT_LEFT = 499


class WorkerLoop:
    """Async jobs of one worker process, on `runner` (a ProcessorRunner), answering on `sock`.

    `descendants` are killed once no async job runs: the jobs share the process, so
    what one started cannot be told from what another did while they run.
    """

    def __init__(self, sock, runner, descendants, fds_sock=None):
        self.sock = sock
        self.fds_sock = fds_sock  # where a file answer's descriptor goes (answers.py)
        self.runner = runner
        self.descendants = descendants
        self.loop = None
        self.tasks = {}  # id -> Task, touched only on the loop's thread

    def received(self, header, body, fd):
        """A frame with an id, in the main thread: start its job, or cancel one."""
        if header["op"] == "cancel":
            if self.loop is not None:
                self.loop.call_soon_threadsafe(self._cancel, header["id"])
            return
        # The input is opened here: a descriptor is this thread's to take from the frame.
        buffer = os.fdopen(fd, "rb") if fd is not None else io.BytesIO(body)
        self._running_loop().call_soon_threadsafe(self._start, header["id"], Job.from_wire(header), buffer)

    def _running_loop(self):
        if self.loop is None:
            logging.getLogger("asyncio").addFilter(_QUIET_REAPED)
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="ufop-async", daemon=True).start()
            self.loop = loop
        return self.loop

    def _start(self, job_id, job, buffer):
        self.tasks[job_id] = self.loop.create_task(self._run(job_id, job, buffer))

    def _cancel(self, job_id):
        task = self.tasks.get(job_id)
        if task is not None:
            task.cancel()

    async def _run(self, job_id, job, buffer):
        REQUEST_ID.set(job.request_id)  # this task's own context: its log lines carry its id
        outcome = None
        try:
            with buffer:  # open until the answer is whole: a stream may read the input as it goes
                outcome = await self.runner.process_job_async(job, buffer)
                response = await self._sendable(outcome.response, job.request_id)
        except asyncio.CancelledError:
            response = error_response(UfopError("the request was cancelled: its client left", CLIENT_LEFT),
                                      job.request_id)
        finally:
            del self.tasks[job_id]
        if not self.tasks:
            self.descendants.kill_new()  # before the answer, as for a plain job
        try:
            self._send(job_id, response)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server went away: the main thread sees end-of-file, and the worker exits
        finally:
            if outcome is not None:
                outcome.close()
                if response.body is not outcome.response.body:
                    close_body(response.body)  # the file a stream was written to

    async def _sendable(self, response, request_id):
        """`response` as it can go: bytes, or a file by its descriptor. A stream is written to a
        temporary file first, in a thread so that the loop runs on (an async job's answer is not
        paced by the server's credit, and is never held whole in memory)."""
        body = response.body
        if isinstance(body, bytes) or (isinstance(body, FileBody) and self.fds_sock is not None):
            return response
        try:
            spooled = await asyncio.to_thread(_spooled, body, self.runner.max_output_bytes,
                                              process_folder(self.runner.workdir_root))
        except UfopError as exc:
            return error_response(exc, request_id)
        except Exception as exc:  # noqa: BLE001 - the processor's iterator failed: a 500, as a plain job's
            log.exception("request %s: its streamed answer failed", request_id)
            return error_response(UfopError(f"the streamed answer failed: {type(exc).__name__}"), request_id)
        if self.fds_sock is None:  # no socket for descriptors (a worker started by hand): in the frame
            with spooled.file:
                return attrs.evolve(response, body=read_body(spooled))
        return attrs.evolve(response, body=spooled)

    def _send(self, job_id, response):
        header = protocol.async_reply_header(response, job_id)
        if isinstance(response.body, FileBody):
            send_file(self.sock, self.fds_sock, header, response.body)
        else:
            protocol.send(self.sock, header, response.body)


def _spooled(body, limit, folder):
    """A FileBody of `body`'s chunks written to an unnamed file in `folder`; UfopError once it grows
    past `limit` (None: no limit)."""
    file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 - closed once sent (the job's outcome)
    try:
        size = 0
        for chunk in body.chunks():
            size += len(chunk)
            if limit is not None and size > limit:
                raise UfopError(f"the answer grew past the limit of {limit} bytes (UFOP_MAX_OUTPUT_BYTES)")
            file.write(chunk)
        file.seek(0)
    except BaseException:
        file.close()
        raise
    return FileBody.of(file)


class _QuietReaped(logging.Filter):
    """asyncio's child watcher says a child it waited for was "unknown" when the worker killed and
    reaped it first: what a job started (``asyncio.create_subprocess_exec``) and left running when it
    was cancelled, killed on purpose (descendants.py)."""

    def filter(self, record):
        message = record.getMessage()
        return not (message.startswith("Unknown child process pid ") and message.endswith("returncode 255"))


_QUIET_REAPED = _QuietReaped()
