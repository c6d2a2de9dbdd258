"""The one path every executor runs: route -> args -> accepts -> process -> Response.

An ``async def process`` is awaited on the caller's event loop (`process_job_async`, a local
worker's loop thread) or, from blocking code (`process_job`: Celery, ``test``, ufop_sdk.testing),
on an event loop the runner keeps for its process's life (coroutines.py's OwnLoop). Either way
it is cancelled at its timeout and answered 504 (`within`).
"""

import asyncio
import logging
import traceback

import attrs

from ..arguments import build_args
from ..errors import ProcessingTimeout, UfopError, UnsupportedMediaType
from ..qiniu import Headers
from ..request import Request
from ..response import error_response, to_response
from .bodies import close_body, read_body
from .coroutines import OutOfTime, OwnLoop, within
from .fetches import RequestFetches
from .inputs import forward_only
from .instances import ProcessorInstances
from .jobs import Job
from .media import SNIFF_BYTES, media_type_matches, sniff_bytes, sniff_file
from .routing import split_cmd
from .workdir import Workdir

log = logging.getLogger("ufop_sdk.runner")


@attrs.frozen
class Outcome:
    """A request's Response and the processor that answered (None if none matched).

    `close()` once the answer has been sent (or abandoned): it closes a file or
    streamed answer, what ``req.fetch`` opened, and removes ``req.workdir``.
    """

    response: object
    processor: object = None
    leftovers: tuple = ()

    def close(self):
        close_body(self.response.body)
        for leftover in self.leftovers:
            leftover.close()

    def kept_whole(self):
        """The Response with its body read into bytes, and everything closed (ufop_sdk.testing)."""
        try:
            return attrs.evolve(self.response, body=read_body(self.response.body))
        finally:
            self.close()


class ProcessorRunner:
    """Runs a loaded App's processors in this process: `process_cmd` routes a cmd first (`test`,
    ufop_sdk.testing), `process_job` runs a Job the server routed (the workers of both executors).

    `processors` holds the processors' instances, each set up once (instances.py).
    With ``debug`` true, a 500's body carries the traceback (``dev`` and
    ``test``); otherwise only the log does. `fetcher` serves
    ``req.fetch`` (sources/blocking.py's BlockingFetcher, built from the settings).
    `settings` give ``req.workdir``'s place (UFOP_SPOOL_DIR) and UFOP_MAX_OUTPUT_BYTES.
    """

    def __init__(self, app, debug=False, timeout_exceptions=(), fetcher=None, settings=None):
        self.app = app
        self.debug = debug
        self.fetcher = fetcher
        self.workdir_root = settings.spool_dir if settings is not None else None
        self.max_output_bytes = settings.max_output_bytes if settings is not None else None
        # what an executor raises inside process() when time is up (Celery's soft limit)
        self.timeout_exceptions = tuple(timeout_exceptions)
        self._timeouts = (OutOfTime, *self.timeout_exceptions)
        self.processors = ProcessorInstances(app)
        self._own_loop = OwnLoop()  # async processors' loop when called from blocking code

    def process_cmd(self, cmd, buffer, *, declared_content_type=None, url=None, request_id=None,
                    headers=None):
        """Route `cmd` and process one input; always an Outcome, errors as JSON Responses."""
        try:
            match = self.app.routes.resolve(cmd)
        except UfopError as exc:
            return Outcome(error_response(exc, request_id))
        job = Job(cmd=cmd, processor=match.route.name, groups=match.groups, timeout=match.route.timeout,
                  request_id=request_id, declared_content_type=declared_content_type, url=url,
                  headers=dict(Headers(headers or ())))
        return self.process_job(job, buffer)

    def process_job(self, job, buffer):
        """Process `job` (a Job, already routed) on its input, `buffer` (a binary file).

        The server routes before it hands a request over, so a worker starts
        here. Always returns an Outcome, to `close()` once its answer is sent;
        errors become JSON Responses.
        """
        fetches, workdir = RequestFetches(self.fetcher), Workdir(self.workdir_root)
        outcome = Outcome(self._response(job, buffer, fetches, workdir), job.processor, (fetches, workdir))
        if isinstance(outcome.response.body, bytes):
            outcome.close()  # nothing left to send from disk: free it all now
        return outcome

    async def process_job_async(self, job, buffer):
        """`process_job` awaited on the running event loop, for an async processor's `job`.

        Its process() is cancelled past its timeout (a 504 Outcome). Cancelling this coroutine
        (its client left) cancels process() too and raises CancelledError, all it opened closed.
        """
        fetches, workdir = RequestFetches(self.fetcher), Workdir(self.workdir_root)
        try:
            response = await self._response_async(job, buffer, fetches, workdir)
        except BaseException:
            fetches.close()
            workdir.close()
            raise
        outcome = Outcome(response, job.processor, (fetches, workdir))
        if isinstance(response.body, bytes):
            outcome.close()
        return outcome

    def _response(self, job, buffer, fetches, workdir):
        processor = job.processor
        try:
            route = self.app.routes.route_named(processor)
            if not route.prefetch:
                job, buffer = _streamed_input(job, buffer, fetches)
            request = _build_request(route, job, buffer, fetches, workdir)
            value = self.processors.get(route).process(request)
            if route.concurrency is not None:  # an async process(), called from blocking code
                value = self._own_loop.run(value, route.timeout)
            return self._bounded(to_response(value, processor), processor)
        except Exception as exc:  # noqa: BLE001 - every failure is an answer (_failure logs the unexpected)
            return self._failure(job, exc)

    async def _response_async(self, job, buffer, fetches, workdir):
        processor = job.processor
        try:
            route = self.app.routes.route_named(processor)
            if route.prefetch:
                request = _build_request(route, job, buffer, fetches, workdir)
            else:  # a streamed source's first bytes come from its origin: waited for off this loop
                request = await asyncio.to_thread(_streamed_request, route, job, buffer, fetches, workdir)
            value = await within(route.timeout, self.processors.get(route).process(request))
            return self._bounded(to_response(value, processor), processor)
        except Exception as exc:  # noqa: BLE001 - every failure is an answer (_failure logs the unexpected)
            return self._failure(job, exc)

    def _failure(self, job, exc):
        """The error Response for `exc`, raised while processing `job`; called in its except block."""
        processor, request_id = job.processor, job.request_id
        if isinstance(exc, UfopError):
            return error_response(exc, request_id)
        if isinstance(exc, self._timeouts):
            timeout = self.app.routes.route_named(processor).timeout
            error = ProcessingTimeout(f"processor {processor!r} ran past its timeout of {timeout:g}s")
            return error_response(error, request_id)
        log.exception("request %s: processor %s raised", request_id, processor)
        error = UfopError(f"internal error in processor {processor!r}")
        details = traceback.format_exc() if self.debug else None
        return error_response(error, request_id, details)

    def _bounded(self, response, processor):
        """`response`, or UfopError when its length is known and over UFOP_MAX_OUTPUT_BYTES (a
        stream's is checked as it is sent)."""
        body, limit = response.body, self.max_output_bytes
        length = len(body) if isinstance(body, bytes) else getattr(body, "length", None)
        if limit is not None and length is not None and length > limit:
            close_body(body)
            raise UfopError(f"processor {processor!r} answered {length} bytes, over the limit of {limit} "
                            "bytes (UFOP_MAX_OUTPUT_BYTES)")
        return response


def _streamed_input(job, buffer, fetches):
    """The input of a processor with ``prefetch = False``, forward-only: over the ``url`` source,
    which no one fetched (opened here, taken as it is read; the job with the source's declared
    Content-Type), else over `buffer` (the body the server spooled, a local file)."""
    if job.url is None:
        return job, forward_only(buffer)
    stream, declared = fetches.open_stream(job.url)
    return attrs.evolve(job, declared_content_type=declared), stream


def _streamed_request(route, job, buffer, fetches, workdir):
    """The Request of a processor with ``prefetch = False`` (see `_streamed_input`)."""
    job, buffer = _streamed_input(job, buffer, fetches)
    return _build_request(route, job, buffer, fetches, workdir)


def _build_request(route, job, buffer, fetches, workdir):
    name, params = split_cmd(job.cmd)
    args = build_args(route.processor.Args, job.groups)
    # A stream's first bytes were read ahead for this: peek gives them, and they are read again.
    content_type = sniff_file(buffer) if route.prefetch else sniff_bytes(buffer.peek(SNIFF_BYTES))
    if route.accepts and not any(media_type_matches(p, content_type) for p in route.accepts):
        raise UnsupportedMediaType(
            f"processor {route.name!r} accepts {', '.join(route.accepts)}, got {content_type}")
    size = _size(buffer) if route.prefetch else None
    return Request(buffer=buffer, args=args, content_type=content_type, cmd=job.cmd, name=name,
                   params=params, size=size, declared_content_type=job.declared_content_type,
                   url=job.url, request_id=job.request_id, fetches=fetches, headers=job.headers,
                   scratch=workdir)


def _size(buffer):
    buffer.seek(0, 2)
    size = buffer.tell()
    buffer.seek(0)
    return size
