"""What every path of one server process shares: the project, the executor, the fetcher, metrics, logs.

`ServerState` also counts the requests in flight (graceful stop waits for
them), knows whether the server is stopping, and starts a routed cmd on its
input (`process`).
"""

import asyncio
import itertools
import os
import re
import time

from ..errors import UfopError
from ..executors.base import Job
from ..response import error_response
from .metrics import Metrics

REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class ProjectUnavailable(UfopError):
    """``dev`` only: the project failed to load; `details` holds the traceback."""

    def __init__(self, load_error):
        super().__init__(f"the project cannot be loaded: {load_error.strip().splitlines()[-1]}")
        self.details = load_error


class ServerState:
    """What the handlers share: the project's routes, the executor, the fetcher, metrics.

    In ``dev``, `app` is replaced when the project changes, and is None with
    `load_error` set while it cannot be loaded.
    """

    def __init__(self, *, settings, app, executor, fetcher, access_log, debug=False):
        self.settings = settings
        self.access_log = access_log
        self.app = app
        self.load_error = None
        self.platform = None  # dev: its emulation of the Qiniu platform (dev/platform.py)
        self.executor = executor
        self.fetcher = fetcher
        self.debug = debug
        self.metrics = Metrics(executor, lambda: self.in_flight)
        self.in_flight = 0
        self.stopping = False  # set on SIGTERM: /health says so, and every answer closes its connection
        self.idle = asyncio.Event()
        self.idle.set()
        self._ids = itertools.count(1)
        self._id_prefix = os.urandom(4).hex()

    def error_response(self, error, request_id):
        """The JSON error every path answers; with its details (a traceback) only in ``dev``."""
        details = getattr(error, "details", None) if self.debug else None
        return error_response(error, request_id, details)

    def request_id_for(self, headers):
        """The request's inbound X-Request-Id when it is sane, else a new one (cheaply)."""
        inbound = headers.get("X-Request-Id", "")
        return inbound if REQUEST_ID.fullmatch(inbound) else f"{self._id_prefix}-{next(self._ids):x}"

    def resolve(self, cmd):
        if self.app is None:
            raise ProjectUnavailable(self.load_error)
        return self.app.routes.resolve(cmd)

    def process(self, match, cmd, request_id, *, body=None, file=None, url=None,
                declared_content_type=None, timings=None, headers=None):
        """Start one routed cmd on its input (`body` bytes or an open `file`): a Future of its Reply.

        With only a `url`, the source is fetched here first, unless the
        executor's workers fetch sources themselves or the processor streams
        it (``prefetch = False``: its worker reads it), and `timings` gets
        its seconds under "fetch". `headers` ({name: value}) go to the processor. Raises UfopError when
        the request is refused at once (Overloaded), and the Future fails
        with UfopError when it is refused later. The Future is the
        executor's own when there is nothing to fetch, so the hot path runs
        no task of its own.
        """
        if url is not None and body is None and file is None and self._fetches_here(match.route):
            # Admitted before anything is downloaded: when the server is full, the answer is 503 at once.
            admission = self.executor.admit()
            fetching = asyncio.ensure_future(self._fetch_and_process(
                match, cmd, request_id, url, {} if timings is None else timings, admission, headers))
            fetching.add_done_callback(lambda _: admission.release())  # a no-op once its job was submitted
            return fetching
        return asyncio.ensure_future(
            self._submit(match, cmd, request_id, url, declared_content_type, body, file, headers=headers))

    def _fetches_here(self, route):
        return not self.executor.fetches_sources and route.prefetch

    def _submit(self, match, cmd, request_id, url, declared_content_type, body=None, file=None,
                admission=None, headers=None):
        route = match.route
        job = Job(cmd=cmd, processor=route.name, groups=match.groups, timeout=route.timeout,
                  request_id=request_id, url=url, declared_content_type=declared_content_type,
                  body=body, file=file, headers=headers or {}, concurrency=route.concurrency)
        return self.executor.submit(job, admission)

    async def _fetch_and_process(self, match, cmd, request_id, url, timings, admission, headers):
        began = time.monotonic()
        fetched = await self.fetcher.fetch(url)
        timings["fetch"] = time.monotonic() - began
        try:
            return await self._submit(match, cmd, request_id, url, fetched.content_type,
                                      **spooled_input(fetched.spool), admission=admission,
                                      headers=headers)
        finally:
            fetched.spool.close()

    def started(self):
        self.in_flight += 1
        self.idle.clear()

    def finished(self):
        self.in_flight -= 1
        if not self.in_flight:
            self.idle.set()


def spooled_input(spool):
    """A Spool as `process`'s input: {"body": its bytes} while in memory, else {"file": its file}."""
    return {"body": spool.getvalue()} if spool.in_memory else {"file": spool.file()}
