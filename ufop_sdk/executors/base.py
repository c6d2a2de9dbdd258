"""The executor interface the server uses, and what travels through it (Job and Reply, from app/jobs.py)."""


from ..app.jobs import Job, Reply

__all__ = ["Executor", "Job", "Reply"]


class Executor:
    """Runs Jobs somewhere other than the event loop.

    `fetches_sources` says who downloads a ``url`` source: False, the server
    before submitting (the Job then carries the bytes); True, the worker.
    A processor with ``prefetch = False`` reads its source in the worker either way.

        reply = await executor.submit(job)
        assert reply.status == 200

    `submit` returns an awaitable of the Reply: a coroutine, or a Future
    when the executor can answer without a task of its own (the local pool
    does, on the hot path). It raises Overloaded when too many requests
    wait; the Reply fails with ProcessingTimeout past the job's timeout, or
    UfopError when the worker died. A processor's own errors come back as
    Replies with their status.
    """

    fetches_sources = False

    async def start(self):
        """Start workers; returns when the executor can take jobs."""

    def submit(self, job, admission=None):
        """`admission`: what `admit` gave for this request, if it was admitted before its input was ready."""
        raise NotImplementedError

    def admit(self):
        """Count a request as pending before its input is ready (a ``url`` the server fetches).

        Raises Overloaded, as `submit` would, before anything is downloaded.
        Returns an admission for `submit(job, admission)`; its `release()`
        gives the place back if the job is never submitted (a failed fetch),
        and does nothing once it was.
        """
        raise NotImplementedError

    async def health(self):
        """Problems by component, e.g. ``{"Thumbnail": "setup() failed: ..."}``; empty if healthy."""
        return {}

    def describe(self):
        """Figures for /health and /metrics, e.g. ``{"workers": 2, "busy": 1}``."""
        return {}

    def counters(self):
        """Running totals for /metrics only, by name: ``{"ufop_jobs_sent_ahead": (help, 12)}``."""
        return {}

    async def close(self):
        """Stop taking jobs, let running ones finish, and stop the workers."""
