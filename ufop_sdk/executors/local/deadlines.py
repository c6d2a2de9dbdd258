"""Killing a worker past its job's deadline: the timeout that really stops a processor's work.

The pool sweeps every DEADLINE_CHECK_SECONDS (pool.py). A plain job's worker
is killed past the job's timeout; an async job's past its timeout and
CANCEL_GRACE (its coroutine never yielded, so its loop could not cancel it),
failing the other async jobs it runs. Killing takes the worker's process
group and descendants (spawning.py); the supervisor then replaces it.
"""

import logging

log = logging.getLogger("ufop_sdk.pool")


def kill_late(workers, now):
    """Kill each of `workers` past its job's deadline at `now` (time.monotonic)."""
    for worker in workers:
        if worker.deadline is not None and now > worker.deadline and not worker.timed_out:
            _kill_running_late(worker)
        elif worker.async_jobs and not worker.timed_out:
            _kill_if_async_late(worker, now)


def _kill_running_late(worker):
    worker.timed_out = True
    entry = worker.running
    if entry is not None:
        entry.timed_out = True
    if entry is not None and entry.job is None:
        log.warning("worker %s: health() of processor %s ran past %gs: killing it", worker.pid,
                    entry.checking, entry.timeout)
    else:
        log.warning("worker %s ran past its job's timeout: killing it", worker.pid)
    worker.kill()


def _kill_if_async_late(worker, now):
    """Kill `worker` if one of its async jobs is past its deadline: a coroutine that does not
    yield, which its worker could not cancel. The others it runs fail with it."""
    late = worker.async_jobs.late(now)
    if not late:
        return
    worker.timed_out = True
    for entry in worker.async_jobs:
        if entry in late:
            entry.timed_out = True
        else:
            entry.cut_short_by = late[0].job.processor
    log.warning("worker %s: processor %s ran past its timeout without yielding to its event loop: "
                "killing it, and %d other requests it runs", worker.pid, late[0].job.processor,
                len(worker.async_jobs) - len(late))
    worker.kill()
