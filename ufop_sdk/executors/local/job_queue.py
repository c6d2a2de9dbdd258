"""The local pool's queue: jobs waiting for a worker, in order, and the count of every pending one.

A request counts as pending from its admission (before its input is
fetched) until its entry is settled: waiting here, sent ahead, or running.
Past `pending_limit` a request is refused 503; a job that waits here longer
than `queue_timeout` is answered 503 and never runs; one whose caller gave
up (its client left) is let go without running.
"""

import collections

from ...errors import Overloaded


class JobQueue:
    """Entries (entries.py) waiting for a worker, oldest first, and the pending count."""

    def __init__(self):
        self.waiting = collections.deque()
        self.pending = 0
        self.pending_limit = self.queue_timeout = None

    def configure(self, settings):
        self.pending_limit = settings.pending_limit
        self.queue_timeout = settings.queue_timeout

    def check_room(self):
        """Raise Overloaded when another request cannot be admitted."""
        if self.pending >= self.pending_limit:
            self.drop_abandoned()
        if self.pending >= self.pending_limit:
            raise Overloaded(f"too many requests in progress ({self.pending_limit}); retry shortly")

    def admit(self):
        """Count a request as pending (once `check_room` let it in): its Admission."""
        self.pending += 1
        return Admission(self)

    def settle(self, entry, result=None, error=None):
        """The one place an entry ends: it stops counting as pending, and its Future is set."""
        if entry.job is not None:
            self.pending -= 1
        if entry.future.done():
            return
        if error is None:
            entry.future.set_result(result)
        else:
            entry.future.set_exception(error)

    def drop_abandoned(self):
        """Let go of waiting jobs whose callers gave up (a client that hung up), so they stop
        counting as pending at once rather than when the queue next moves."""
        if any(entry.future.done() for entry in self.waiting):
            waiting = collections.deque()
            for entry in self.waiting:
                if entry.future.done():
                    self.settle(entry)
                else:
                    waiting.append(entry)
            self.waiting = waiting

    def fail_all(self, error):
        while self.waiting:
            self.settle(self.waiting.popleft(), error=error)

    def expire(self, now):
        """Answer 503 to the jobs that have waited past the queue timeout at `now`."""
        self.drop_abandoned()
        while self.waiting and now - self.waiting[0].queued > self.queue_timeout:
            self.settle(self.waiting.popleft(), error=Overloaded(
                f"no worker was free for {self.queue_timeout:g}s; retry shortly"))


class Admission:
    """A request counted as pending while its input is fetched (see Executor.admit)."""

    __slots__ = ("queue",)

    def __init__(self, queue):
        self.queue = queue

    def handed_over(self):
        """Its job is submitted: the job's own end releases the place."""
        self.queue = None

    def release(self):
        if self.queue is not None:
            self.queue.pending -= 1
            self.queue = None
