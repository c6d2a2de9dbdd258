"""A job's place in the local pool: an Entry, or an AsyncEntry for an async processor's job."""

import time


class Entry:
    """A Job's place in the pool: its timeout, the Future awaiting its Reply, when it queued and started.

    A job of None is a health check; `checking` is the processor whose health() it runs now.
    """

    __slots__ = ("job", "timeout", "future", "queued", "started", "timed_out", "checking")
    is_async = False

    def __init__(self, job, timeout, future):
        self.job = job
        self.timeout = timeout
        self.future = future
        self.queued = time.monotonic()
        self.started = None
        self.timed_out = False
        self.checking = None


class AsyncEntry(Entry):
    """An async processor's job: its id on its worker, its deadline, and, if its worker was killed
    for another job's sake, that job's processor (`cut_short_by`)."""

    __slots__ = ("id", "deadline", "cut_short_by")
    is_async = True

    def __init__(self, job, timeout, future):
        super().__init__(job, timeout, future)
        self.id = None
        self.deadline = None
        self.cut_short_by = None
