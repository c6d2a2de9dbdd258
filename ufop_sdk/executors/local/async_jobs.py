"""The async processor's jobs one worker runs at once, each known by an id on its frames.

A worker runs up to an async processor's concurrency of its jobs at once
(worker_loop.py is the worker's side), each with its own deadline: its
timeout and CANCEL_GRACE (the worker answers 504 itself at the timeout; past
the grace its loop is stuck, and it is killed).
"""

import itertools
import time

from ...app.jobs import CANCEL_GRACE
from . import protocol


class AsyncJobs:
    """The AsyncEntries one worker runs, by id; iterating gives them, `len` counts them."""

    def __init__(self):
        self.entries = {}
        self._ids = itertools.count()

    def __len__(self):
        return len(self.entries)

    def __iter__(self):
        return iter(self.entries.values())

    def shares(self, job):
        """Does this worker run jobs of `job`'s async processor, fewer than its concurrency?"""
        return (bool(self.entries) and job is not None and job.concurrency is not None
                and len(self.entries) < job.concurrency
                and next(iter(self)).job.processor == job.processor)

    def header(self, entry):
        """The header of the frame that sends `entry`'s job, under an id of its own."""
        entry.id = next(self._ids)
        return protocol.async_job_header(entry.job, entry.id)

    def sent(self, entry):
        """`entry`'s frame went out: it runs from now on."""
        entry.started = time.monotonic()
        entry.deadline = entry.started + entry.timeout + CANCEL_GRACE
        self.entries[entry.id] = entry

    def runs(self, entry):
        return self.entries.get(entry.id) is entry

    def answered(self, header):
        """The entry the answer with `header` is for, no longer running; None if it is not known."""
        return self.entries.pop(header["id"], None)

    def late(self, now):
        """The entries past their deadline at `now`: their coroutine does not yield to the loop."""
        return [entry for entry in self if now > entry.deadline]

    def take_all(self):
        """Every entry, forgotten here (the worker is gone)."""
        entries, self.entries = list(self), {}
        return entries
