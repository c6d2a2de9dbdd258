"""Running an async processor's coroutine with its timeout: on a running loop (`within`), or from
blocking code on a loop kept for the process's life (`OwnLoop`)."""

import asyncio
import inspect
import weakref


class OutOfTime(Exception):
    """An async process() ran past its timeout and was cancelled (`within`)."""


async def within(seconds, awaitable):
    """Await `awaitable` in this task; past `seconds` cancel it and raise OutOfTime.

    Our own timer rather than asyncio.wait_for (whose TimeoutError a processor's own wait_for
    also raises) or asyncio.timeout (Python 3.11+). A processor's plain value is returned as is
    (a worker told a plain process() was async: ``dev`` reloading between two versions).
    """
    if not inspect.isawaitable(awaitable):
        return awaitable
    task = asyncio.current_task()
    expired = []
    timer = asyncio.get_running_loop().call_later(seconds, lambda: expired.append(task.cancel()))
    try:
        return await awaitable
    except asyncio.CancelledError:
        if not expired:
            raise  # cancelled from outside: its client left
        if hasattr(task, "uncancel"):  # Python 3.11+: this task is not being cancelled any more
            task.uncancel()
        raise OutOfTime() from None
    finally:
        timer.cancel()


class OwnLoop:
    """An event loop made on first use and kept for the process's life, so that clients a
    processor made on it on first use stay usable (Celery, ``test``, ufop_sdk.testing)."""

    def __init__(self):
        self.loop = None

    def run(self, coroutine, timeout):
        """Run `coroutine` to its end on this loop, cancelled past `timeout` (OutOfTime)."""
        if self.loop is None:
            self.loop = asyncio.new_event_loop()
            weakref.finalize(self, self.loop.close)  # one let go of (tests make many runners) closes it
        task = self.loop.create_task(within(timeout, coroutine))
        try:
            return self.loop.run_until_complete(task)
        except BaseException:
            # A time limit's signal raised in the loop's own code (Celery's soft limit) leaves the
            # task pending: cancel it now, or the next run of this loop would resume it.
            task.cancel()
            self.loop.run_until_complete(asyncio.gather(task, return_exceptions=True))
            raise
