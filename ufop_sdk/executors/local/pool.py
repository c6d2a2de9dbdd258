"""The embedded executor: local worker processes supervised from the event loop.

Each worker is a fresh ``python -m ufop_sdk.executors.local.worker_main`` joined
to the server by a socket pair (see worker.py). Jobs wait here in one
queue, in order, and each goes to the first worker that is free (one job per
worker, as Celery's prefetch multiplier of 1). A job that waits longer than
the queue timeout is answered 503 and never runs. A worker past its job's
timeout is killed (SIGKILL, with its process group and descendants) and
replaced; a worker that dies fails only the job it was running, and is
replaced. No thread polls: every event arrives through the loop, and one
periodic sweep checks deadlines.
"""

import asyncio
import collections
import logging
import sys
import time

from tornado.ioloop import PeriodicCallback

from ...errors import Overloaded, ProcessingTimeout, UfopError
from ..base import Executor, Reply
from .worker import Entry, WorkerLost, WorkerProcess

log = logging.getLogger("ufop_sdk.pool")

READY_TIMEOUT = 120.0  # importing the project and running every setup()
# Deadlines are checked this often rather than with a timer per request: a
# processor's timeout is honoured to within this, at no cost per request.
DEADLINE_CHECK_SECONDS = 0.05
HEALTH_TIMEOUT = 5.0
RESPAWN_DELAYS = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)


class LocalPool(Executor):
    """A pool of workers for the project `settings` describe; see `configure`."""

    def __init__(self, settings, debug=False):
        self.debug = debug
        self.configure(settings)
        self.pending = 0
        self.generation = 0
        self.workers = set()
        self.queue = collections.deque()
        self.broken = None
        self._failures_in_a_row = 0
        self._closing = False
        self._tasks = set()
        self._deadlines = None

    def configure(self, settings):
        """Take the worker count, limits and project from `settings`.

        Workers inherit this process's environment, which holds the project's
        ``.env`` already (settings.load_env_file, on every command and reload).
        """
        self.command = [sys.executable, "-m", "ufop_sdk.executors.local.worker_main", "--project",
                        str(settings.project_dir), "--app", settings.app, "--timeout", str(settings.timeout)]
        if self.debug:
            self.command.append("--debug")
        self.size = settings.concurrency
        self.pending_limit = settings.pending_limit
        self.queue_timeout = settings.queue_timeout

    async def start(self):
        # A periodic callback outlives an exception in one sweep (a call_later chain would end).
        self._deadlines = PeriodicCallback(self._check_deadlines, DEADLINE_CHECK_SECONDS * 1000)
        self._deadlines.start()
        await asyncio.gather(*(self._spawn(self.generation) for _ in range(self.size)))

    def reload(self, settings):
        """Replace every worker with one that loads the project afresh (``dev``)."""
        self.configure(settings)
        self.generation += 1
        self._failures_in_a_row = 0  # the back-off is for the same code failing, not new code
        self.broken = None
        for worker in list(self.workers):
            if not worker.busy:
                self._retire(worker)
        for _ in range(self.size):
            self._background(self._spawn(self.generation))

    def admit(self):
        """Count a request as pending before its input is fetched; see Executor.admit."""
        self._check_room()
        self.pending += 1
        return Admission(self)

    def submit(self, job, admission=None):
        """Queue `job`: a Future of its Reply (no task runs per job)."""
        if admission is None:
            self._check_room()
            self.pending += 1
        else:
            admission.handed_over()
        header = {"op": "run", "cmd": job.cmd, "processor": job.processor, "groups": job.groups,
                  "request_id": job.request_id, "declared_content_type": job.declared_content_type,
                  "url": job.url, "fd": job.file is not None}
        entry = Entry(job, header, job.timeout, asyncio.get_running_loop().create_future())
        self.queue.append(entry)
        self._dispatch()
        return entry.future

    async def health(self):
        problems = {}
        if not self._current_workers():
            problems["workers"] = f"no worker is running: {self.broken or 'starting'}"
        for worker in self._current_workers():
            problems.update(worker.setup_failures)
        idle = [worker for worker in self._current_workers() if not worker.busy]
        if idle and not problems:
            problems.update(await self._processor_health(idle[0]))
        return problems

    def describe(self):
        current = self._current_workers()
        return {"workers": len(current), "busy": sum(1 for worker in current if worker.busy),
                "pending": self.pending, "size": self.size}

    async def close(self):
        self._closing = True
        if self._deadlines is not None:
            self._deadlines.stop()
        while self.queue:
            self._settle(self.queue.popleft(), error=Overloaded("the server is shutting down"))
        workers = list(self.workers)
        for worker in workers:
            if worker.busy:  # past the grace period: its request is abandoned
                worker.kill()
            self._retire(worker)
        await asyncio.gather(*(_stopped(worker) for worker in workers))

    # Called by WorkerProcess

    def entry_answered(self, worker, entry, header, body):
        if entry.job is None:  # a health check
            self._settle(entry, header)
        else:
            finished = time.monotonic()
            self._settle(entry, Reply(header["status"], header["content_type"], header["headers"], body,
                                      entry.started - entry.queued, finished - entry.started))
        if worker.generation != self.generation:
            self._retire(worker)
        self._dispatch()

    def worker_lost(self, worker, running):
        """A worker's socket closed: the job it was `running` fails, and it is replaced."""
        if running is not None:
            self._end_lost(running)
        if worker not in self.workers:
            return
        self.workers.discard(worker)
        worker.kill()
        if not self._closing and worker.generation == self.generation:
            self._background(self._spawn(self.generation))
        self._dispatch()

    def worker_exited(self, worker, code):
        if not (worker.timed_out or worker.retired or self._closing):
            log.error("worker %s died (exit code %s); starting another", worker.pid, code)

    # Inside the pool

    def _dispatch(self):
        """Send queued jobs, oldest first, each to a current worker that is free."""
        while self.queue:
            entry = self.queue[0]
            if entry.future.done():  # its caller gave up waiting
                self._settle(self.queue.popleft())
                continue
            worker = next((worker for worker in self.workers
                           if worker.generation == self.generation and worker.can_take(entry.job)), None)
            if worker is None or not worker.send(entry):
                return  # none is free; or its socket is full: the next answer dispatches again
            self.queue.popleft()

    def _check_room(self):
        """Raise Overloaded when another request cannot be admitted."""
        if self.pending >= self.pending_limit:
            self._drop_abandoned()
        if self.pending >= self.pending_limit:
            raise Overloaded(f"too many requests in progress ({self.pending_limit}); retry shortly")
        if not self._current_workers() and self.broken:
            raise Overloaded(f"no worker is available: {self.broken}")

    def _drop_abandoned(self):
        """Let go of queued jobs whose callers gave up (a client that hung up), so they stop
        counting as pending at once rather than when the queue next moves."""
        if any(entry.future.done() for entry in self.queue):
            waiting = collections.deque()
            for entry in self.queue:
                if entry.future.done():
                    self._settle(entry)
                else:
                    waiting.append(entry)
            self.queue = waiting

    def _end_lost(self, entry):
        """`entry` was running when its worker's socket closed."""
        job = entry.job
        if job is None:
            self._settle(entry, {"problems": _health_check_lost(entry)})
        elif entry.timed_out:
            self._settle(entry, error=ProcessingTimeout(
                f"processor {job.processor!r} ran past its timeout of {job.timeout:g}s"))
        else:
            self._settle(entry, error=UfopError(f"the worker running processor {job.processor!r} died"))

    def _settle(self, entry, result=None, error=None):
        """The one place an entry ends: it stops counting as pending, and its Future is set."""
        if entry.job is not None:
            self.pending -= 1
        if entry.future.done():
            return
        if error is None:
            entry.future.set_result(result)
        else:
            entry.future.set_exception(error)

    def _current_workers(self):
        return [worker for worker in self.workers if worker.generation == self.generation]

    async def _processor_health(self, worker):
        entry = Entry(None, {"op": "health"}, HEALTH_TIMEOUT, asyncio.get_running_loop().create_future())
        if not worker.send(entry):
            return {}  # it just died: its replacement's setup shows in the next check
        return (await entry.future)["problems"]

    def _check_deadlines(self):
        now = time.monotonic()
        for worker in list(self.workers):
            if worker.deadline is not None and now > worker.deadline and not worker.timed_out:
                self._kill_late(worker)
        self._drop_abandoned()
        while self.queue and now - self.queue[0].queued > self.queue_timeout:
            self._settle(self.queue.popleft(), error=Overloaded(
                f"no worker was free for {self.queue_timeout:g}s; retry shortly"))

    def _kill_late(self, worker):
        worker.timed_out = True
        entry = worker.running
        if entry is not None:
            entry.timed_out = True
        if entry is not None and entry.job is None:
            log.warning("worker %s: health() of processor %s ran past %gs: killing it", worker.pid,
                        entry.checking, HEALTH_TIMEOUT)
        else:
            log.warning("worker %s ran past its job's timeout: killing it", worker.pid)
        worker.kill()

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
            worker = await WorkerProcess.start(self.command, generation, self)
        except Exception as exc:  # noqa: BLE001 - whatever stops a worker starting, /health says why
            if not isinstance(exc, OSError):  # a bad environment or a bug: the traceback says which
                log.exception("cannot start a worker")
            self._spawn_failed(generation, f"cannot start a worker: {_reason(exc)}")
            return
        try:
            header = await asyncio.wait_for(asyncio.shield(worker.ready), READY_TIMEOUT)
        except (WorkerLost, asyncio.TimeoutError):
            worker.kill()
            header = {"op": "failed", "error": f"it exited while starting (exit code {await worker.gone})"}
        if header["op"] == "failed":
            worker.close()
            worker.kill()
            await worker.gone
            log.error("a worker cannot load the project:\n%s", header["error"])
            self._spawn_failed(generation, "a worker cannot load the project: "
                                           + header["error"].strip().splitlines()[-1])
            return
        worker.setup_failures = header["setup_failures"]
        if self._closing or generation != self.generation:
            worker.close()
            return
        self._failures_in_a_row = 0
        self.broken = None
        self.workers.add(worker)
        self._dispatch()

    def _spawn_failed(self, generation, reason):
        """`reason` is one line: it goes to /health and to 503 answers."""
        log.error("%s", reason)
        self.broken = reason
        self._failures_in_a_row += 1
        if not self._current_workers():
            error = Overloaded(f"no worker is available: {reason}")
            while self.queue:
                self._settle(self.queue.popleft(), error=error)
        self._background(self._spawn(generation))

    def _background(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Admission:
    """A request counted as pending while its input is fetched (see Executor.admit)."""

    __slots__ = ("pool",)

    def __init__(self, pool):
        self.pool = pool

    def handed_over(self):
        """Its job is submitted: the job's own end releases the place."""
        self.pool = None

    def release(self):
        if self.pool is not None:
            self.pool.pending -= 1
            self.pool = None


def _health_check_lost(entry):
    """The problems a health check reports when its worker died or was killed under it."""
    if not entry.timed_out:
        return {}  # it died: the replacement's setup shows in the next check
    if entry.checking is None:
        return {"workers": f"the health check ran past {HEALTH_TIMEOUT:g}s"}
    return {entry.checking: f"health() timed out after {HEALTH_TIMEOUT:g}s"}


def _reason(exc):
    """One line on why a worker could not start."""
    if isinstance(exc, OSError):
        return exc.strerror or str(exc)
    return f"{type(exc).__name__}: {exc}"


async def _stopped(worker, timeout=5.0):
    """Wait for `worker` to exit; past `timeout`, kill it."""
    try:
        await asyncio.wait_for(asyncio.shield(worker.gone), timeout)
    except asyncio.TimeoutError:
        worker.kill()
        await worker.gone
