"""The embedded executor: local worker processes supervised from the event loop.

Each worker is a fresh ``python -m ufop_sdk.executors.local_worker`` joined
to the server by a socket pair. The server sends a job only to an idle
worker, so a processor's timeout starts when the worker gets the job. A
worker past its timeout is killed (SIGKILL) and replaced; a worker that dies
shows up as end-of-file on its socket, fails only the request it was running,
and is replaced. No thread polls: every event arrives through the loop.
"""

import asyncio
import collections
import json
import logging
import os
import socket
import subprocess
import sys
import time

from ..errors import Overloaded, ProcessingTimeout, UfopError
from ..settings import read_env_file
from . import protocol
from .base import Executor, Reply

log = logging.getLogger("ufop_sdk.pool")

READY_TIMEOUT = 120.0  # importing the project and running every setup()
# Deadlines are checked this often rather than with a timer per request: a
# processor's timeout is honoured to within this, at no cost per request.
DEADLINE_CHECK_SECONDS = 0.05
HEALTH_TIMEOUT = 5.0
INITIAL_BUFFER = 64 << 10
MIN_FREE = 16 << 10
SHRINK_ABOVE = 4 << 20
RESPAWN_DELAYS = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)


class WorkerLost(Exception):
    """The worker's socket closed: it died, or it was killed."""


class FrameReader(asyncio.BufferedProtocol):
    """Receives a worker's frames straight into one buffer (recv_into, no read copies).

    The exchange is strictly one frame out, one frame back, so a complete
    frame always ends the data received so far.
    """

    def __init__(self, on_lost):
        self.buffer = bytearray(INITIAL_BUFFER)
        self.filled = 0
        self.frames = collections.deque()
        self.waiter = None
        self.lost = False
        self.on_lost = on_lost

    def get_buffer(self, sizehint):
        if len(self.buffer) - self.filled < MIN_FREE:
            self._grow(2 * len(self.buffer))
        return memoryview(self.buffer)[self.filled:]

    def _grow(self, size):
        # A new buffer rather than a resize: the loop may still hold a view of the old one.
        bigger = bytearray(size)
        bigger[:self.filled] = memoryview(self.buffer)[:self.filled]
        self.buffer = bigger

    def buffer_updated(self, nbytes):
        self.filled += nbytes
        while self.filled >= protocol.PREFIX.size:
            header_length, body_length = protocol.PREFIX.unpack_from(self.buffer)
            end = protocol.PREFIX.size + header_length + body_length
            if self.filled < end:
                if len(self.buffer) < end:
                    self._grow(end)
                return
            with memoryview(self.buffer) as view:
                header = json.loads(str(view[protocol.PREFIX.size:protocol.PREFIX.size + header_length],
                                        "utf-8"))
                body = bytes(view[end - body_length:end])
            self._frame_received(header, body)
            self.buffer[:self.filled - end] = self.buffer[end:self.filled]
            self.filled -= end
        if len(self.buffer) > SHRINK_ABOVE and self.filled == 0:
            self.buffer = bytearray(INITIAL_BUFFER)

    def _frame_received(self, header, body):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result((header, body))
            self.waiter = None
        else:
            self.frames.append((header, body))

    def connection_lost(self, exc):
        self.lost = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(WorkerLost())
        self.on_lost()

    async def next_frame(self):
        if self.frames:
            return self.frames.popleft()
        if self.lost:
            raise WorkerLost()
        self.waiter = asyncio.get_running_loop().create_future()
        return await self.waiter


class Worker:
    """One worker process and the socket to it. Create with `Worker.start`."""

    def __init__(self, process, sock, generation):
        self.process = process
        self.socket = sock
        self.generation = generation
        self.timed_out = False
        self.deadline = None
        self.setup_failures = {}
        self.transport = None
        self.reader = None

    @classmethod
    async def start(cls, command, environment, generation, on_lost):
        """Start the process; `on_lost(worker)` runs when its socket closes."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            process = subprocess.Popen([*command, "--fd", str(child.fileno())],
                                       pass_fds=[child.fileno()], env=environment)
        except OSError:
            parent.close()
            raise
        finally:
            child.close()
        worker = cls(process, parent, generation)
        worker.transport, worker.reader = await asyncio.get_running_loop().create_unix_connection(
            lambda: FrameReader(lambda: on_lost(worker)), sock=parent)
        return worker

    @property
    def pid(self):
        return self.process.pid

    async def ready(self):
        """Wait for the worker to load the project; raises UfopError if it cannot."""
        header, _ = await self.reader.next_frame()
        if header["op"] == "failed":
            raise UfopError(f"a worker cannot load the project:\n{header['error']}")
        self.setup_failures = header["setup_failures"]

    async def call(self, header, body=b"", file=None):
        """Send one frame (a file's descriptor beside it) and return the reply (header, body)."""
        if self.reader.lost:
            raise WorkerLost()
        frame = protocol.encode(header, body)
        if file is not None:
            # The transport has nothing buffered (the worker was idle), so the
            # descriptor's frame cannot overtake or split earlier bytes.
            sent = socket.send_fds(self.socket, [frame], [file.fileno()])
            frame = frame[sent:]
        self.transport.writelines([frame, body])
        return await self.reader.next_frame()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()

    def close(self):
        """Close the socket: an idle worker sees end-of-file and exits."""
        if self.transport is not None:
            self.transport.close()


class LocalPool(Executor):
    """A pool of workers for the project `settings` describe; see `configure`."""

    def __init__(self, settings, debug=False):
        self.debug = debug
        self.configure(settings)
        self.pending = 0
        self.generation = 0
        self.workers = set()
        self.idle = collections.deque()
        self.waiters = collections.deque()
        self.broken = None
        self._failures_in_a_row = 0
        self._closing = False
        self._tasks = set()
        self._deadlines = None

    def configure(self, settings):
        """Take the worker count, limits, project and environment from `settings`.

        Workers get the project's ``.env`` in their environment, under the
        process's own, so processors can read their own variables.
        """
        self.command = [sys.executable, "-m", "ufop_sdk.executors.local_worker", "--project",
                        str(settings.project_dir), "--app", settings.app, "--timeout", str(settings.timeout)]
        if self.debug:
            self.command.append("--debug")
        self.environment = {**read_env_file(settings.project_dir), **os.environ}
        self.size = settings.concurrency
        self.pending_limit = settings.pending_limit

    async def start(self):
        self._deadlines = asyncio.get_running_loop().call_later(DEADLINE_CHECK_SECONDS, self._check_deadlines)
        await asyncio.gather(*(self._spawn(self.generation) for _ in range(self.size)))

    def reload(self, settings):
        """Replace every worker with one that loads the project afresh (``dev``)."""
        self.configure(settings)
        self.generation += 1
        self._failures_in_a_row = 0  # the back-off is for the same code failing, not new code
        self.broken = None
        while self.idle:
            self._retire(self.idle.pop())
        for _ in range(self.size):
            self._background(self._spawn(self.generation))

    async def submit(self, job):
        if self.pending >= self.pending_limit:
            raise Overloaded(f"too many requests in progress ({self.pending_limit}); retry shortly")
        if not self.workers and self.broken:
            raise Overloaded(f"no worker is available: {self.broken.splitlines()[0]}")
        self.pending += 1
        started = time.monotonic()
        try:
            worker = await self._acquire()
            queued = time.monotonic() - started
            header, body = await self._run(worker, job)
            return Reply(header["status"], header["content_type"], header["headers"], body,
                         queued, time.monotonic() - started - queued)
        finally:
            self.pending -= 1

    async def health(self):
        problems = {}
        if not self.workers:
            problems["workers"] = f"no worker is running: {self.broken or 'starting'}"
        for worker in self.workers:
            problems.update(worker.setup_failures)
        if self.idle and not problems:
            problems.update(await self._processor_health(self.idle.pop()))
        return problems

    def describe(self):
        return {"workers": len(self.workers), "busy": len(self.workers) - len(self.idle),
                "pending": self.pending, "size": self.size}

    async def close(self):
        self._closing = True
        if self._deadlines is not None:
            self._deadlines.cancel()
        for waiter in self.waiters:
            waiter.cancel()
        for worker in list(self.workers):
            self._retire(worker)
        await asyncio.gather(*(asyncio.to_thread(_reap, worker) for worker in list(self.workers)))
        self.workers.clear()

    async def _run(self, worker, job):
        worker.deadline = time.monotonic() + job.timeout
        header = {"op": "run", "cmd": job.cmd, "processor": job.processor, "groups": job.groups,
                  "request_id": job.request_id, "declared_content_type": job.declared_content_type,
                  "url": job.url}
        try:
            reply = await worker.call(header, job.body or b"", job.file)
        except WorkerLost:
            self._lose(worker)
            if worker.timed_out:
                raise ProcessingTimeout(f"processor {job.processor!r} ran past its timeout of "
                                        f"{job.timeout:g}s") from None
            raise UfopError(f"the worker running processor {job.processor!r} died") from None
        finally:
            worker.deadline = None
        self._release(worker)
        return reply

    async def _processor_health(self, worker):
        try:
            header, _ = await asyncio.wait_for(worker.call({"op": "health"}), HEALTH_TIMEOUT)
        except asyncio.TimeoutError:
            self._time_out(worker)
            return {"workers": f"a worker did not answer the health check within {HEALTH_TIMEOUT:g}s"}
        except WorkerLost:
            self._lose(worker)
            return {}
        self._release(worker)
        return header["problems"]

    async def _acquire(self):
        if self.idle:
            return self.idle.pop()
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        return await waiter

    def _release(self, worker):
        if self._closing or worker.generation != self.generation:
            self._retire(worker)
            return
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self.idle.append(worker)

    def _check_deadlines(self):
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.deadline is not None and now > worker.deadline and not worker.timed_out:
                self._time_out(worker)
        if not self._closing:
            self._deadlines = asyncio.get_running_loop().call_later(DEADLINE_CHECK_SECONDS,
                                                                    self._check_deadlines)

    def _time_out(self, worker):
        worker.timed_out = True
        log.warning("worker %s ran past its timeout: killing it", worker.pid)
        worker.kill()

    def _lose(self, worker):
        """A worker died or was killed: forget it, reap it, start another."""
        if worker not in self.workers:
            return
        self.workers.discard(worker)
        worker.close()
        worker.kill()
        self._background(asyncio.to_thread(_reap, worker, report=not worker.timed_out))
        if not self._closing and worker.generation == self.generation:
            self._background(self._spawn(self.generation))

    def _lost_while_idle(self, worker):
        """A worker's socket closed. If it was idle (killed from outside, OOM), replace it now."""
        if worker in self.idle:
            self.idle.remove(worker)
            self._lose(worker)

    def _retire(self, worker):
        self.workers.discard(worker)
        worker.close()

    async def _spawn(self, generation):
        delay = RESPAWN_DELAYS[min(self._failures_in_a_row, len(RESPAWN_DELAYS) - 1)]
        if delay:
            await asyncio.sleep(delay)
        if self._closing or generation != self.generation:
            return
        try:
            worker = await Worker.start(self.command, self.environment, generation, self._lost_while_idle)
        except OSError as exc:
            self._spawn_failed(generation, f"cannot start a worker: {exc}")
            return
        try:
            await asyncio.wait_for(worker.ready(), READY_TIMEOUT)
        except (UfopError, WorkerLost, asyncio.TimeoutError) as exc:
            worker.close()
            worker.kill()
            await asyncio.to_thread(_reap, worker)
            reason = str(exc) if isinstance(exc, UfopError) else \
                f"a worker exited while starting (exit code {worker.process.poll()})"
            self._spawn_failed(generation, reason)
            return
        if self._closing or generation != self.generation:
            self._retire(worker)
            return
        self._failures_in_a_row = 0
        self.broken = None
        self.workers.add(worker)
        self._release(worker)

    def _spawn_failed(self, generation, reason):
        log.error("%s", reason)
        self.broken = reason
        self._failures_in_a_row += 1
        for waiter in self.waiters:
            if not self.workers and not waiter.done():
                waiter.set_exception(Overloaded(f"no worker is available: {reason.splitlines()[0]}"))
        self.waiters.clear() if not self.workers else None
        self._background(self._spawn(generation))

    def _background(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _reap(worker, timeout=5.0, report=False):
    try:
        code = worker.process.wait(timeout)
    except subprocess.TimeoutExpired:
        worker.kill()
        code = worker.process.wait()
    if report:
        log.error("worker %s died (exit code %s); starting another", worker.pid, code)
