"""The embedded executor: local worker processes run jobs; this is its scheduler.

Jobs wait here in one queue, in order, and each goes to the first worker
that is free (one job per worker, as Celery's prefetch multiplier of 1; an
async processor's job may also join a worker running fewer than that
processor's concurrency of its jobs). When none is free, one may be sent
ahead to a worker running a light processor's job, to run right after it
(pace.py). A
job that waits longer than the queue timeout is answered 503 and never runs.
The workers themselves are the supervisor's (supervisor.py): it spawns them,
replaces one that dies, and kills one past its job's timeout, which fails
only that job. Each worker is a fresh ``python -m
ufop_sdk.executors.local.worker_main`` joined to the server by a socket pair
(worker.py, protocol.py). No thread polls: every event arrives through the
loop, and one periodic sweep checks deadlines.
"""

import asyncio
import time

from tornado.ioloop import PeriodicCallback

from ...errors import Overloaded, ProcessingTimeout, UfopError
from ..base import Executor, Reply
from .entries import AsyncEntry, Entry
from .job_queue import JobQueue
from .pace import Pace
from .supervisor import Supervisor

# Deadlines are checked this often rather than with a timer per request: a
# processor's timeout is honoured to within this, at no cost per request.
DEADLINE_CHECK_SECONDS = 0.05
HEALTH_TIMEOUT = 5.0


class LocalPool(Executor):
    """A pool of workers for the project `settings` describe; see `configure`."""

    def __init__(self, settings, debug=False):
        self.supervisor = Supervisor(self, settings, debug)
        self.jobs = JobQueue()
        self.configure(settings)
        self.pace = Pace()
        self.sent_ahead = 0
        self._deadlines = None

    def configure(self, settings):
        """Take the queue's limits from `settings` (the supervisor takes the rest)."""
        self.jobs.configure(settings)

    async def start(self):
        # A periodic callback outlives an exception in one sweep (a call_later chain would end).
        self._deadlines = PeriodicCallback(self._check_deadlines, DEADLINE_CHECK_SECONDS * 1000)
        self._deadlines.start()
        await self.supervisor.start()

    def reload(self, settings):
        """Replace every worker with one that loads the project afresh (``dev``)."""
        self.configure(settings)
        self.supervisor.reload(settings)

    def admit(self):
        """Count a request as pending before its input is fetched; see Executor.admit."""
        self.jobs.check_room()
        self._check_workers()
        return self.jobs.admit()

    def submit(self, job, admission=None):
        """Queue `job`: a Future of its Reply (no task runs per job)."""
        if admission is None:
            admission = self.admit()
        admission.handed_over()
        kind = Entry if job.concurrency is None else AsyncEntry
        entry = kind(job, job.timeout, asyncio.get_running_loop().create_future())
        self.jobs.waiting.append(entry)
        self.dispatch()
        return entry.future

    async def health(self):
        current = self.supervisor.current()
        problems = {}
        if not current:
            problems["workers"] = f"no worker is running: {self.supervisor.broken or 'starting'}"
        for worker in current:
            problems.update(worker.setup_failures)
        idle = [worker for worker in current if not worker.busy]
        if idle and not problems:
            problems.update(await self._processor_health(idle[0]))
        return problems

    def describe(self):
        current = self.supervisor.current()
        return {"workers": len(current), "busy": sum(1 for worker in current if worker.busy),
                "pending": self.jobs.pending, "size": self.supervisor.size}

    def counters(self):
        return {"ufop_jobs_sent_ahead": ("Jobs sent to a busy worker, to run right after its light job.",
                                         self.sent_ahead)}

    async def close(self):
        if self._deadlines is not None:
            self._deadlines.stop()
        self.jobs.fail_all(Overloaded("the server is shutting down"))
        await self.supervisor.close()

    # Called by the supervisor

    def dispatch(self):
        """Send queued jobs, oldest first, each to a current worker that is free."""
        waiting = self.jobs.waiting
        while waiting:
            entry = waiting[0]
            if entry.future.done():  # its caller gave up waiting
                self.jobs.settle(waiting.popleft())
                continue
            job = entry.job
            worker = (self.supervisor.free_worker(job)
                      or self.supervisor.worker_to_send_ahead(job, self.pace.is_light))
            if worker is None or not worker.send(entry):
                return  # none is free; or its socket is full: the next answer dispatches again
            waiting.popleft()
            self.sent_ahead += worker.ahead is entry

    def answered(self, entry, header, body):
        """`entry`'s worker answered it with a frame (`header`, `body`)."""
        if entry.job is None:  # a health check
            self.jobs.settle(entry, header)
            return
        if entry.future.done() and not isinstance(body, bytes):
            body.close()  # its client left: a file is closed, a stream cancelled
        queued, ran = entry.started - entry.queued, time.monotonic() - entry.started
        if not entry.is_async:
            self.pace.record(entry.job.processor, header["seconds"], streamed="stream" in header)
        self.jobs.settle(entry, Reply.from_wire(header, body, queued, ran))  # by position: the hot path

    def requeue(self, entry):
        """`entry` was sent ahead and never ran: it goes first in the queue again (or fails, closing)."""
        entry.started = None
        if self.supervisor.closing:  # its worker was killed because the server stops
            self.jobs.settle(entry, error=Overloaded("the server is shutting down"))
        else:
            self.jobs.waiting.appendleft(entry)

    def lost(self, entry):
        """`entry` was running when its worker's socket closed (it died, or was killed late)."""
        job = entry.job
        if job is None:
            self.jobs.settle(entry, {"problems": _health_check_lost(entry)})
        elif entry.timed_out:
            self.jobs.settle(entry, error=ProcessingTimeout(
                f"processor {job.processor!r} ran past its timeout of {job.timeout:g}s"))
        elif entry.is_async and entry.cut_short_by is not None:
            self.jobs.settle(entry, error=UfopError(
                f"the worker running processor {job.processor!r} was killed: another of its requests "
                "ran past its timeout without yielding to the event loop"))
        else:
            self.jobs.settle(entry, error=UfopError(f"the worker running processor {job.processor!r} died"))

    def no_worker(self, reason):
        """No current worker runs, and one could not start for `reason`: the queue cannot move."""
        self.jobs.fail_all(Overloaded(f"no worker is available: {reason}"))

    # Inside the scheduler

    def _check_workers(self):
        """Raise Overloaded while no worker runs because none can start."""
        if not self.supervisor.current() and self.supervisor.broken:
            raise Overloaded(f"no worker is available: {self.supervisor.broken}")

    async def _processor_health(self, worker):
        entry = Entry(None, HEALTH_TIMEOUT, asyncio.get_running_loop().create_future())
        if not worker.send(entry):
            return {}  # it just died: its replacement's setup shows in the next check
        return (await entry.future)["problems"]

    def _check_deadlines(self):
        now = time.monotonic()
        self.supervisor.kill_late(now)
        self.jobs.expire(now)


def _health_check_lost(entry):
    """The problems a health check reports when its worker died or was killed under it."""
    if not entry.timed_out:
        return {}  # it died: the replacement's setup shows in the next check
    if entry.checking is None:
        return {"workers": f"the health check ran past {HEALTH_TIMEOUT:g}s"}
    return {entry.checking: f"health() timed out after {HEALTH_TIMEOUT:g}s"}
