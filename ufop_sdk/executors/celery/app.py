"""The Celery app both sides build: one task per processor, and what a task does.

``ufop-sdk serve`` builds it to send tasks, ``ufop-sdk worker`` to run them,
from the same settings and project, so task names and limits always agree.

On the wire there is no pickle: messages are msgpack (JSON is accepted too,
nothing else). An input or answer over UFOP_INLINE_BYTES travels by reference
(a claim check): its bytes go under a Redis key with a TTL, the message
carries the key (RedisNames). Answers are pushed to the
sending server's own reply list, which one reader per server drains.
"""

import asyncio
import contextlib
import io
import logging
import signal
import time
from queue import Empty
from urllib.parse import urlsplit

import attrs
import msgpack
import redis
from celery import Celery
from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init
from kombu.transport import redis as kombu_redis

from ...app.gc_tuning import settle_garbage_collector
from ...app.runner import Runner
from ...errors import ProcessingTimeout, SourceError, UfopError
from ...response import error_response
from ...sources.fetch import SourceFetcher, SourcePolicy
from .fleet import Heartbeat
from .versions import require_tested_versions

# The classes below patch kombu's and Celery's private internals: see versions.py for the
# series they are tested with and what to re-check before widening it.
require_tested_versions()

log = logging.getLogger("ufop_sdk.celery")

MAX_ATTEMPTS = 3  # deliveries of one request that may kill their worker before it fails with 500
KEY_TTL = 600  # seconds a claim-check key, reply list or attempt counter outlives its request
HARD_LIMIT_MARGIN = 1.0  # the hard time limit, past the soft one (the processor's timeout)
POOL_CHECK_SECONDS = 0.5
PREFORK = f"{__name__}:Prefork"  # for ``celery worker --pool``
REDIS_TRANSPORT = f"{__name__}:RedisTransport"  # for ``broker_transport``


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, made safe to close while Redis is down (kombu 5.7; on an upgrade,
    re-check close() and _connparams() against kombu/transport/redis.py, see versions.py).

    On a lost connection Celery calls ``Connection.collect()``, which closes the
    channels and then detaches the transport (``transport.client = None``), then
    ``Connection.close()``, which closes the default channel again.
    """

    def close(self):
        # kombu's close() first reads the reply to a BRPOP in flight; with Redis gone that raises,
        # and the channel is left open, its unacknowledged messages not restored. Read it here and
        # go on closing, so the second close() has nothing left to do.
        if self._in_poll and not self.closed:
            try:
                self._brpop_read()
            except (Empty, *self.connection.connection_errors):
                pass
        super().close()

    def _connparams(self, asynchronous=False):
        # A detached transport made kombu raise AttributeError here (restoring or acknowledging a
        # message too late), an "Unrecoverable error" that stopped the worker. A connection error
        # makes Celery reconnect; the messages come back after the visibility timeout.
        if self.connection.client is None:
            raise redis.ConnectionError("this channel's connection to the broker was closed")
        return super()._connparams(asynchronous=asynchronous)


class RedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with RedisChannel."""

    Channel = RedisChannel


class QuickPool(AsynPool):
    """Celery's prefork pool, checking on its children every half second rather than
    every five: a child killed mid-task is noticed (and its task delivered again)
    well within a short processor timeout."""

    @property
    def timers(self):
        return {self.maintain_pool: POOL_CHECK_SECONDS}


class Prefork(TaskPool):
    """``ufop-sdk worker``'s pool: prefork, with QuickPool."""

    Pool = QuickPool


@attrs.frozen
class RedisNames:
    """Where one ufop's requests live in Redis: its queue, task names and keys, for both sides.

    Scoped by UFOP_NAME, so two ufops sharing a Redis never take each other's
    requests: ``myufop`` has the queue ``ufop.myufop``, tasks
    ``ufop.myufop.<Processor>`` and keys ``ufop:myufop:...``. Without a name,
    the queue is ``ufop``.
    """

    prefix: str = "ufop"

    @classmethod
    def for_settings(cls, settings):
        return cls("ufop" if settings.name is None else f"ufop:{settings.name}")

    @property
    def queue(self):
        return self.prefix.replace(":", ".")

    def task(self, route):
        return f"{self.queue}.{route.name}"

    def input(self, reply_id):
        """A claim-checked input: the worker reads it and deletes it with the answer."""
        return f"{self.prefix}:input:{reply_id}"

    def output(self, reply_id):
        """A claim-checked answer: the server takes it."""
        return f"{self.prefix}:output:{reply_id}"

    def attempts(self, reply_id):
        return f"{self.prefix}:attempts:{reply_id}"

    def workers(self):
        """The set naming the workers whose heartbeats are current (celery_fleet)."""
        return f"{self.prefix}:workers"

    def worker(self, node):
        """One worker's heartbeat, which expires unless renewed."""
        return f"{self.prefix}:worker:{node}"

    def replies(self, server_id):
        """One server's reply list, which its listener drains."""
        return f"{self.prefix}:replies:{server_id}"


def make_celery_app(settings, app):
    """The Celery app for `app` (a loaded project) on `settings.broker_url`."""
    longest = max(route.timeout for route in app.routes) + HARD_LIMIT_MARGIN
    celery = Celery(f"ufop-{app.module_name}", broker=settings.broker_url, set_as_current=False)
    names = RedisNames.for_settings(settings)
    celery.conf.update(
        task_serializer="msgpack",
        accept_content=["msgpack", "json"],
        task_ignore_result=True,  # answers go to the server's reply list, not a result backend
        task_acks_late=True,  # a message is acknowledged only once its task has finished...
        task_reject_on_worker_lost=True,  # ...and one whose worker died is delivered again (bounded)
        worker_prefetch_multiplier=1,  # a worker holds no more than it runs
        task_default_queue=names.queue,
        task_publish_retry=False,  # with the broker down, fail the request now (503), not later
        broker_connection_timeout=1.0,
        broker_connection_retry_on_startup=True,
        # Not for rediss://: kombu turns SSL on by the scheme's transport name.
        broker_transport=REDIS_TRANSPORT if urlsplit(settings.broker_url or "").scheme == "redis" else None,
        # A message not acknowledged within this goes back to the queue: longer than any task can run.
        broker_transport_options={"visibility_timeout": int(longest * 2 + 10)},
        worker_send_task_events=False,
        worker_hijack_root_logger=False,
        # With the broker gone, the worker cancels what runs (acks_late: it is delivered
        # again) rather than finishing into a pool it cannot drain: it then recovers by itself.
        worker_cancel_long_running_tasks_on_connection_loss=True,
    )
    celery.steps["consumer"].add(Heartbeat)
    celery.ufop = {"settings": settings, "app": app, "runner": None, "redis": None, "names": names}
    for route in app.routes:
        _register(celery, route, names)

    def set_up_child(**_):
        """Each prefork child sets up its own processors and Redis client, once."""
        _child_state(celery.ufop)
        settle_garbage_collector()

    celery.ufop["set_up_child"] = set_up_child  # signals hold receivers weakly: keep it alive
    worker_process_init.connect(set_up_child)
    return celery


def _register(celery, route, names):
    @celery.task(name=names.task(route), bind=True, soft_time_limit=route.timeout,
                 time_limit=route.timeout + HARD_LIMIT_MARGIN)
    def run(task, message):
        return run_message(task.app, message)

    return run


def _child_state(state):
    if state["runner"] is None:
        state["runner"] = Runner(state["app"], timeout_exceptions=(SoftTimeLimitExceeded,))
        state["runner"].setup_all()
        state["redis"] = redis.Redis.from_url(state["settings"].broker_url)
    return state


def run_message(celery, message):
    """Run one request in this worker and push its answer to the server that sent it."""
    state = _child_state(celery.ufop)
    client, settings = state["redis"], state["settings"]
    reply_id = message["reply_id"]
    began = time.monotonic()
    attempts_key = state["names"].attempts(reply_id)
    counting = client.pipeline(transaction=False).incr(attempts_key).expire(attempts_key, KEY_TTL)
    attempts, _ = counting.execute()
    if attempts > MAX_ATTEMPTS:
        error = UfopError(f"the worker running processor {message['processor']!r} died "
                          f"{MAX_ATTEMPTS} times on this request")
        response = error_response(error, message["request_id"])
    else:
        response = _process(state["runner"], client, settings, message)
    _send_reply(client, settings, state["names"], message, response, time.monotonic() - began)


def _process(runner, client, settings, message):
    try:
        buffer, declared = _open_input(client, settings, message)
    except UfopError as exc:
        return error_response(exc, message["request_id"])
    except SoftTimeLimitExceeded:  # while reading the input: answered, never silence
        return error_response(ProcessingTimeout("the request's input took too long to read"),
                              message["request_id"])
    timeout = runner.app.routes.route_named(message["processor"]).timeout
    with buffer, _processor_clock(timeout if message.get("url") else None):
        return runner.execute(message["processor"], message["groups"], message["cmd"], buffer,
                              declared_content_type=declared, url=message.get("url"),
                              request_id=message["request_id"]).response


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
    raise SoftTimeLimitExceeded()  # what the Runner answers 504, as for Celery's own soft limit


def _open_input(client, settings, message):
    """The input as a binary file and its declared content type: inline, by key, or fetched."""
    if message.get("url"):
        return _fetch(settings, message["url"])
    if message.get("body_key"):
        # Read, not taken: if this worker dies, the task is delivered again and needs it.
        # The key goes with the answer (_send_reply), or with its TTL.
        data = client.get(message["body_key"])
        if data is None:
            raise SourceError("the request's input expired before a worker took it")
        return io.BytesIO(data), message.get("declared_content_type")
    return io.BytesIO(message.get("body") or b""), message.get("declared_content_type")


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
    reply = {"id": message["reply_id"], "status": response.status, "content_type": response.content_type,
             "headers": response.headers, "seconds": seconds}
    pipeline = client.pipeline(transaction=False)
    if len(response.body) > settings.inline_bytes:
        reply["body_key"] = names.output(message["reply_id"])
        pipeline.set(reply["body_key"], response.body, ex=KEY_TTL)
    else:
        reply["body"] = response.body
    if message.get("body_key"):
        pipeline.delete(message["body_key"])  # answered: no delivery will need the input again
    pipeline.lpush(message["reply_to"], msgpack.packb(reply, use_bin_type=True))
    pipeline.expire(message["reply_to"], KEY_TTL)
    pipeline.execute()
