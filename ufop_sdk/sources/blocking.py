"""`req.fetch`'s engine in a process that runs processors: the guarded SourceFetcher, on an
event loop in a thread of its own, behind a blocking API. (And the opener of a streamed
source, stream.py, which needs no thread.)

A thread rather than ``asyncio.run`` per call: `fetch_all` keeps many fetches
running while the processor takes the results, and it works the same from a
processor that runs inside an event loop. The thread starts on the first fetch
in each process (a Celery prefork child is forked after its parent loaded the
project), and is a daemon: a worker that is killed at its timeout takes it along.
"""

import asyncio
import contextlib
import io
import itertools
import logging
import os
import threading
from collections import deque
from concurrent.futures import FIRST_COMPLETED, wait

from ..app.media import sniff_file
from ..errors import UfopError
from ..request import FetchedUrl
from .fetch import SourceFetcher, SourcePolicy
from .networks import DEFAULT_BLOCKED_NETWORKS
from .stream import open_stream

# Tornado queues fetches past its max_clients, and times them out while queued:
# the bound is each fetch_all's concurrency, not this.
MAX_CLIENTS = 1024


class BlockingFetcher:
    """Fetches for processors, within the SSRF guard and limits of a source. One per process;
    thread-safe.

        fetcher = BlockingFetcher(settings)
        fetched = fetcher.fetch("https://example.com/logo.png")
    """

    def __init__(self, settings, default_blocked=DEFAULT_BLOCKED_NETWORKS):
        """A fetcher within the policy `settings` describe; `default_blocked` applies when
        UFOP_BLOCKED_NETWORKS is unset. The policy is made at the first fetch, so a process
        that never fetches says nothing about it (an empty UFOP_BLOCKED_NETWORKS's warning)."""
        self.settings = settings
        self.default_blocked = default_blocked
        self._lock = threading.Lock()
        self._pid = None
        self._loop = None
        self._fetcher = None

    def __repr__(self):
        return f"BlockingFetcher(project_dir={str(self.settings.project_dir)!r})"

    def fetch(self, url, *, max_bytes=None, timeout=None):
        """A FetchedUrl for `url`; raises a UfopError naming it (see Request.fetch)."""
        future = self._submit(url, max_bytes, timeout)
        try:
            return future.result()
        except BaseException:
            _abandon(future)  # a timeout signal while waiting: the fetch stops too
            raise

    def fetch_all(self, urls, *, concurrency=8, max_bytes=None, timeout=None):
        """Yields a FetchedUrl for each of `urls`, in order, fetching up to `concurrency` at once.

        Up to twice `concurrency` are started ahead of the one the caller waits for, so one slow
        origin does not stop the others. The first failure is raised as soon as it is known;
        closing the generator, or a failure, cancels the fetches not yet yielded.
        """
        semaphore = asyncio.Semaphore(concurrency)
        pending = deque()
        urls = iter(urls)
        try:
            while True:
                ahead = itertools.islice(urls, 2 * concurrency - len(pending))
                pending.extend(self._submit(url, max_bytes, timeout, semaphore) for url in ahead)
                if not pending:
                    return
                yield _next_in_order(pending)
        finally:
            for future in pending:
                _abandon(future)

    def open_stream(self, url):
        """The body of the source `url` as a SourceStream (stream.py), taken from the origin as it is
        read, in the caller's thread (a processor's with ``prefetch = False``). Raises a UfopError as a
        prefetched source's fetch does; the same messages, as it is the request's own source."""
        return open_stream(url, self._policy())

    def _policy(self):
        return SourcePolicy.from_settings(self.settings, self.default_blocked)

    def _submit(self, url, max_bytes, timeout, semaphore=None):
        coroutine = self._fetch(url, max_bytes, timeout, semaphore or contextlib.nullcontext())
        return asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())

    async def _fetch(self, url, max_bytes, timeout, semaphore):
        async with semaphore:
            try:
                fetched = await self._fetcher.fetch(url, max_bytes=max_bytes, timeout=timeout)
                return _fetched_url(fetched)
            except UfopError as exc:
                raise _naming(url, exc) from None

    def _running_loop(self):
        with self._lock:
            if self._pid != os.getpid():
                self._loop = asyncio.new_event_loop()
                threading.Thread(target=self._loop.run_forever, name="ufop-fetch", daemon=True).start()
                self._fetcher = asyncio.run_coroutine_threadsafe(self._new_fetcher(), self._loop).result()
                self._pid = os.getpid()
            return self._loop

    async def _new_fetcher(self):
        logging.getLogger("tornado.application").addFilter(_QUIET_CANCELLED)  # once: filters are a set
        return SourceFetcher(self._policy(), max_clients=MAX_CLIENTS)  # on the loop that will run it


class _QuietCancelled(logging.Filter):
    """Tornado logs how a fetch we cancelled (fetch_all's failure, its generator closed) ended
    afterwards, the origin's connection reset, say, as "Exception after Future was cancelled".
    In a process that runs processors the fetches are our own, and cancelling them is on purpose."""

    def filter(self, record):
        return record.getMessage() != "Exception after Future was cancelled"


_QUIET_CANCELLED = _QuietCancelled()


def _fetched_url(fetched):
    spool = fetched.spool
    file = io.BytesIO(spool.getvalue()) if spool.in_memory else spool.file()
    return FetchedUrl(file=file, size=spool.size, content_type=sniff_file(file),
                      declared_content_type=fetched.content_type, url=fetched.url)


def _naming(url, error):
    """`error` with the URL in its message: a processor may fetch many."""
    return type(error)(f"fetching {url}: {error.message}", status=error.status, headers=dict(error.headers))


def _next_in_order(pending):
    """The first pending fetch's FetchedUrl once it is in, or the first failure among them all."""
    while True:
        failed = next((future for future in pending if future.done() and future.exception()), None)
        if failed is not None:
            raise failed.exception()
        if pending[0].done():
            return pending.popleft().result()
        wait([future for future in pending if not future.done()], return_when=FIRST_COMPLETED)


def _abandon(future):
    """Cancel a fetch; if it is already in, close its file."""
    future.cancel()
    future.add_done_callback(_close_result)


def _close_result(future):
    if not future.cancelled() and future.exception() is None:
        future.result().file.close()
