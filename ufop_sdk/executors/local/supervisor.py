"""The local pool's supervisor: keeps its worker processes running (spawn, replace, retire, kill).

It starts `size` workers of the current generation, replaces one that dies
(with a back-off while they keep failing to start), retires the previous
generation's after a reload, and kills a worker past its job's deadline
(deadlines.py). Jobs are the
scheduler's (pool.py): the supervisor tells it what becomes of them.
"""

import asyncio
import logging
import shutil
import sys

from ...app.workdir import folder_of
from .deadlines import kill_late
from .worker import WorkerLost, WorkerProcess

log = logging.getLogger("ufop_sdk.pool")

READY_TIMEOUT = 120.0  # importing the project and running every setup()
RESPAWN_DELAYS = (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)


class Supervisor:
    """The workers of one pool. `scheduler` hears of each event that concerns its jobs:
    ``answered(entry, header, body)``, ``lost(entry)``, ``requeue(entry)`` (a job sent ahead came
    back unrun), ``no_worker(reason)`` and ``dispatch()`` (a worker may be free)."""

    def __init__(self, scheduler, settings, debug=False):
        self.scheduler = scheduler
        self.debug = debug
        self.configure(settings)
        self.generation = 0
        self.workers = set()
        self.broken = None  # why the last worker could not start, until one does
        self.closing = False
        self._failures_in_a_row = 0
        self._tasks = set()

    def configure(self, settings):
        """Take the worker count and project from `settings`.

        Workers inherit this process's environment, which holds the project's
        ``.env`` already (settings.load_env_file, on every command and reload).
        """
        self.command = [sys.executable, "-m", "ufop_sdk.executors.local.worker_main", "--project",
                        str(settings.project_dir), "--app", settings.app, "--timeout", str(settings.timeout)]
        if self.debug:
            self.command.append("--debug")
        self.size = settings.concurrency
        self.spool_dir = settings.spool_dir

    async def start(self):
        await asyncio.gather(*(self._spawn(self.generation) for _ in range(self.size)))

    def reload(self, settings):
        """Replace every worker with one that loads the project afresh; busy ones finish their job first."""
        self.configure(settings)
        self.generation += 1
        self._failures_in_a_row = 0  # the back-off is for the same code failing, not new code
        self.broken = None
        for worker in list(self.workers):
            if not worker.busy:
                self._retire(worker)
        for _ in range(self.size):
            self._background(self._spawn(self.generation))

    def current(self):
        """The workers of the current generation."""
        return [worker for worker in self.workers if worker.generation == self.generation]

    def free_worker(self, job):
        """A current worker that can take `job` now, or None. An async processor's job goes first
        to a worker already running that processor's jobs, leaving the others free."""
        if job is not None and job.concurrency is not None:
            sharing = next((worker for worker in self.current()
                            if worker.async_jobs and worker.can_take(job)), None)
            if sharing is not None:
                return sharing
        return next((worker for worker in self.workers
                     if worker.generation == self.generation and worker.can_take(job)), None)

    def worker_to_send_ahead(self, job, is_light):
        """A current worker that can hold `job` behind the job it runs, whose processor `is_light`
        (a function of its name), or None."""
        return next((worker for worker in self.workers
                     if worker.generation == self.generation and worker.can_hold(job)
                     and is_light(worker.running.job.processor)), None)

    def kill_late(self, now):
        """Kill every worker past its job's deadline at `now` (time.monotonic): deadlines.py."""
        kill_late(list(self.workers), now)

    async def close(self):
        """Stop every worker: idle ones at once, busy ones killed (past the grace period)."""
        self.closing = True
        workers = list(self.workers)
        for worker in workers:
            if worker.busy:  # its request is abandoned
                worker.kill()
            self._retire(worker)
        await asyncio.gather(*(_stopped(worker) for worker in workers))

    # Called by WorkerProcess

    def entry_answered(self, worker, entry, header, body):
        self.scheduler.answered(entry, header, body)
        self.worker_free(worker)

    def entry_returned(self, entry):
        """A job sent ahead came back unrun (its worker streams an answer)."""
        self.scheduler.requeue(entry)
        self.scheduler.dispatch()

    def worker_free(self, worker):
        """`worker` may take a job (it is free, one of its async jobs' places is, or it runs a light
        job): one of a previous generation retires once it is free."""
        if worker.generation != self.generation and not worker.busy:
            self._retire(worker)
        self.scheduler.dispatch()

    def worker_lost(self, worker, running):
        """A worker's socket closed: the job it was `running` fails (and its async jobs); it is replaced."""
        if running is not None:
            self.scheduler.lost(running)
        ahead = worker.take_ahead()
        if ahead is not None:  # it never ran: another worker runs it
            self.scheduler.requeue(ahead)
        for entry in worker.async_jobs.take_all():
            self.scheduler.lost(entry)
        if worker not in self.workers:
            return
        self.workers.discard(worker)
        worker.kill()
        if not self.closing and worker.generation == self.generation:
            self._background(self._spawn(self.generation))
        self.scheduler.dispatch()

    def worker_exited(self, worker, code):
        if not (worker.timed_out or worker.retired or self.closing):
            log.error("worker %s died (exit code %s); starting another", worker.pid, code)
        # What its requests left in req.workdir (a worker killed at a timeout never removed it): in a
        # thread, as a large folder takes a while; here while stopping (the loop's threads may be gone).
        folder = folder_of(self.spool_dir, worker.pid)
        if self.closing:
            shutil.rmtree(folder, ignore_errors=True)
        else:
            self._background(asyncio.to_thread(shutil.rmtree, folder, ignore_errors=True))

    # Inside the supervisor

    def _retire(self, worker):
        self.workers.discard(worker)
        worker.close()

    async def _spawn(self, generation):
        delay = RESPAWN_DELAYS[min(self._failures_in_a_row, len(RESPAWN_DELAYS) - 1)]
        if delay:
            await asyncio.sleep(delay)
        if self.closing or generation != self.generation:
            return
        try:
            worker = await WorkerProcess.start(self.command, generation, self)
        except Exception as exc:  # noqa: BLE001 - whatever stops a worker starting, /health says why
            if not isinstance(exc, OSError):  # a bad environment or a bug: the traceback says which
                log.exception("cannot start a worker")
            self._spawn_failed(generation, f"cannot start a worker: {_reason(exc)}")
            return
        failure = await _ready(worker)
        if failure is not None:
            log.error("a worker cannot load the project:\n%s", failure)
            self._spawn_failed(generation, "a worker cannot load the project: "
                                           + failure.strip().splitlines()[-1])
            return
        if self.closing or generation != self.generation:
            worker.close()
            return
        self._failures_in_a_row = 0
        self.broken = None
        self.workers.add(worker)
        self.scheduler.dispatch()

    def _spawn_failed(self, generation, reason):
        """`reason` is one line: it goes to /health and to 503 answers."""
        log.error("%s", reason)
        self.broken = reason
        self._failures_in_a_row += 1
        if not self.current():
            self.scheduler.no_worker(reason)
        self._background(self._spawn(generation))

    def _background(self, coroutine):
        task = asyncio.ensure_future(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _ready(worker):
    """None once `worker` reports ready (its setup failures noted); else why it could not load the
    project, the worker stopped."""
    try:
        header = await asyncio.wait_for(asyncio.shield(worker.ready), READY_TIMEOUT)
    except (WorkerLost, asyncio.TimeoutError):
        worker.kill()
        header = {"op": "failed", "error": f"it exited while starting (exit code {await worker.gone})"}
    if header["op"] == "failed":
        worker.close()
        worker.kill()
        await worker.gone
        return header["error"]
    worker.setup_failures = header["setup_failures"]
    return None


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
