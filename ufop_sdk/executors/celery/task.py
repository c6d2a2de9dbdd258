"""The task every processor's Celery task runs: count the delivery, take the input (inline, by
its claim-check key, or fetched), run the processor, push the answer to the sending server's reply list
(a file or streamed answer then follows in chunks: streams.py).

An input or answer over UFOP_INLINE_BYTES travels by reference (a claim
check): its bytes go under a Redis key with a TTL (names.py), the message
carries the key.
"""

import asyncio
import contextlib
import io
import logging
import signal
import time

import attrs
import msgpack
import redis
from celery.exceptions import SoftTimeLimitExceeded

from ...app.jobs import Job, Reply
from ...app.runner import Outcome, ProcessorRunner
from ...errors import ProcessingTimeout, SourceError, UfopError
from ...response import error_response
from ...sources.blocking import BlockingFetcher
from ...sources.fetch import SourceFetcher, SourcePolicy
from .names import HARD_LIMIT_MARGIN, KEY_TTL, MAX_ATTEMPTS
from .streams import Pace, send_stream, stream_client, stream_fields

log = logging.getLogger("ufop_sdk.celery")


def register_task(celery, route, names):
    @celery.task(name=names.task(route), bind=True, soft_time_limit=route.timeout,
                 time_limit=route.timeout + HARD_LIMIT_MARGIN)
    def run(task, message):
        return run_message(task.app, message)

    return run


def child_state(state):
    if state["runner"] is None:
        state["runner"] = ProcessorRunner(state["app"], timeout_exceptions=(SoftTimeLimitExceeded,),
                                          fetcher=BlockingFetcher(state["settings"]),
                                          settings=state["settings"])
        state["runner"].processors.setup_all()
        state["redis"] = redis.Redis.from_url(state["settings"].broker_url)
        state["streams"] = stream_client(state["settings"].broker_url)
    return state


def task_message(job, reply_id, reply_to):
    """The message of the task that runs `job` (a Job); the caller adds its input (body or body_key)."""
    message = job.to_wire()
    message["reply_id"] = reply_id
    message["reply_to"] = reply_to
    return message


def run_message(celery, message):
    """Run one request in this worker and push its answer to the server that sent it."""
    state = child_state(celery.ufop)
    client, settings = state["redis"], state["settings"]
    reply_id = message["reply_id"]
    began = time.monotonic()
    attempts_key = state["names"].attempts(reply_id)
    counting = (client.pipeline(transaction=False).incr(attempts_key).expire(attempts_key, KEY_TTL)
                .exists(state["names"].answered(reply_id)))
    attempts, _, answered = counting.execute()
    if answered:  # delivered again while (or after) its answer streamed: see streams.py
        log.info("request %s was answered already: not run again", message.get("request_id"))
        return
    job = Job.from_wire(message)
    if attempts > MAX_ATTEMPTS:
        error = UfopError(f"the worker running processor {job.processor!r} died "
                          f"{MAX_ATTEMPTS} times on this request")
        outcome = Outcome(error_response(error, job.request_id))
    else:
        outcome = _process(state["runner"], client, settings, job, message)
    _answer(state, message, outcome, time.monotonic() - began)


def _answer(state, message, outcome, seconds):
    """Push `outcome`'s answer to the server that sent `message`: a file or streamed answer then
    follows in chunks (streams.py). The outcome is closed after the last chunk (or on a cancel)."""
    settings, body = state["settings"], outcome.response.body
    try:
        reply = _send_reply(state["redis"], settings, state["names"], message, outcome.response, seconds)
        if "stream" in reply:
            send_stream(state["streams"], reply["stream"], body, settings.max_output_bytes,
                        Pace.of(message["timeout"], settings))
    finally:
        outcome.close()  # the file or stream closed, req.workdir removed


def _process(runner, client, settings, job, message):
    try:
        buffer, declared = _open_input(client, settings, job, message, runner.app.routes)
    except UfopError as exc:
        return Outcome(error_response(exc, job.request_id))
    except SoftTimeLimitExceeded:  # while reading the input: answered, never silence
        error = ProcessingTimeout("the request's input took too long to read")
        return Outcome(error_response(error, job.request_id))
    timeout = runner.app.routes.route_named(job.processor).timeout
    try:
        with _processor_clock(timeout if job.url else None):
            outcome = runner.process_job(attrs.evolve(job, declared_content_type=declared), buffer)
    except BaseException:
        buffer.close()
        raise
    # Closed with the outcome, once the answer is sent: a stream may read its input as it goes.
    return attrs.evolve(outcome, leftovers=(*outcome.leftovers, buffer))


@contextlib.contextmanager
def _processor_clock(seconds):
    """The processor's own timeout, started once a fetched source is in: the task's soft limit
    then covers the fetch and the processor together (see CeleryExecutor._time_limit)."""
    if seconds is None:
        yield
        return
    previous = signal.signal(signal.SIGALRM, _out_of_time)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _out_of_time(signum, frame):
    raise SoftTimeLimitExceeded()  # what the runner answers 504, as for Celery's own soft limit


def _open_input(client, settings, job, message, routes):
    """The input as a binary file and its declared content type: inline, by key, or fetched.

    A ``url`` source the processor streams (``prefetch = False``) is not fetched here: the
    runner opens it as the processor reads, and the file given is empty."""
    if job.url and routes.route_named(job.processor).prefetch:
        return _fetch(settings, job.url)
    if job.url:
        return io.BytesIO(), job.declared_content_type
    if message.get("body_key"):
        # Read, not taken: if this worker dies, the task is delivered again and needs it.
        # The key goes with the answer (_send_reply), or with its TTL.
        data = client.get(message["body_key"])
        if data is None:
            raise SourceError("the request's input expired before a worker took it")
        return io.BytesIO(data), job.declared_content_type
    return io.BytesIO(message.get("body") or b""), job.declared_content_type


def _fetch(settings, url):
    async def fetch():
        fetcher = SourceFetcher(SourcePolicy.from_settings(settings))
        try:
            return await fetcher.fetch(url)
        finally:
            fetcher.close()

    fetched = asyncio.run(fetch())
    spool = fetched.spool
    buffer = io.BytesIO(spool.getvalue()) if spool.in_memory else spool.file()
    return buffer, fetched.content_type


def _send_reply(client, settings, names, message, response, seconds):
    reply = Reply.wire_of(response)
    reply["id"] = message["reply_id"]
    reply["seconds"] = seconds
    pipeline = client.pipeline(transaction=False)
    if not isinstance(response.body, bytes):
        reply["stream"] = stream_fields(names, message["reply_id"], response.body)
        pipeline.set(reply["stream"]["answered"], 1, ex=KEY_TTL)
    elif len(response.body) > settings.inline_bytes:
        reply["body_key"] = names.output(message["reply_id"])
        pipeline.set(reply["body_key"], response.body, ex=KEY_TTL)
    else:
        reply["body"] = response.body
    if message.get("body_key"):
        pipeline.delete(message["body_key"])  # answered: no delivery will need the input again
    pipeline.lpush(message["reply_to"], msgpack.packb(reply, use_bin_type=True))
    pipeline.expire(message["reply_to"], KEY_TTL)
    pipeline.execute()
    return reply
