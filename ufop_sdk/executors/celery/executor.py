"""Celery mode, the server's side: send each request as a task, await its answer.

Sending pushes Celery's own task message from the event loop, bounded in time
so a slow or absent broker answers 503 (publish.py). Answers come back on this
server's own Redis list, drained by one reader (replies.py). Workers'
heartbeats (fleet.py) say whether any consumes the queue.
"""

import asyncio
import logging
import time
import uuid

import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ...app.jobs import CANCEL_GRACE
from ...errors import Overloaded, ProcessingTimeout, UfopError
from ..base import Executor, Reply
from .app import make_celery_app
from .fleet import HEARTBEAT_SECONDS, HEARTBEAT_TTL, Fleet, read_fleet
from .names import HARD_LIMIT_MARGIN, KEY_TTL, RedisNames
from .publish import TaskPublisher
from .replies import LISTEN_SECONDS, ReplyReader
from .streams import RedisStream, stream_reader
from .task import task_message

log = logging.getLogger("ufop_sdk.celery")

# The HTTP deadline is the processor's timeout plus this, for queueing and transport.
DEADLINE_MARGIN = 1.5
BROKER_SECONDS = 0.8  # answering 503 within a second when the broker is unreachable
STORE_CHUNK = 1 << 20


class CeleryExecutor(Executor):
    """Runs jobs on ``ufop-sdk worker`` processes through Redis."""

    fetches_sources = True  # a url source is fetched by the worker, never through the broker

    def __init__(self, settings, app):
        self.settings = settings
        self.celery = make_celery_app(settings, app)
        self.names = RedisNames.for_settings(settings)
        self.tasks = {route.name: self.celery.tasks[self.names.task(route)] for route in app.routes}
        self.redis = redis.asyncio.Redis.from_url(settings.broker_url, socket_connect_timeout=BROKER_SECONDS,
                                                  socket_timeout=BROKER_SECONDS)
        listener_redis = redis.asyncio.Redis.from_url(
            settings.broker_url, socket_connect_timeout=BROKER_SECONDS, socket_timeout=LISTEN_SECONDS + 2)
        # A stream's BLPOPs hold their connections: a pool of their own, not the one sends and checks use.
        self.stream_redis = stream_reader(settings.broker_url, BROKER_SECONDS)
        self.reply_key = self.names.replies(uuid.uuid4().hex)
        self.replies = ReplyReader(self.reply_key, listener_redis, self.redis, self.stream_redis,
                                   self._broker_down)
        self.waiting = self.replies.waiting
        self.publisher = TaskPublisher(self.celery, self.redis, self.names.queue)
        self.pending_limit = settings.pending_limit
        self.fleet = Fleet()
        self._watcher = None

    async def start(self):
        self.replies.start()
        self._watcher = asyncio.ensure_future(self._watch_workers())

    async def submit(self, job, admission=None):  # workers fetch sources: nothing is admitted early
        if len(self.waiting) >= self.pending_limit:
            raise Overloaded(f"too many requests in progress ({self.pending_limit}); retry shortly")
        reply_id = uuid.uuid4().hex
        future = asyncio.get_running_loop().create_future()
        self.waiting[reply_id] = future
        submitted = time.monotonic()
        try:
            message = await self._message(job, reply_id)
            limit = self._time_limit(job)
            await self._send(job, message, reply_id, limit)
            try:
                reply = await asyncio.wait_for(future, limit + DEADLINE_MARGIN)
            except asyncio.CancelledError:  # its client left, maybe just as the answer came
                self.replies.drop(future)
                raise
            except asyncio.TimeoutError:
                # Nothing is revoked: the task's hard time limit ends it if it runs on, and its
                # `expires` (this same deadline) drops it if it never started. Celery's docs warn
                # against terminating from code (the process may run another request by then), and
                # a revoke per 504 would be one more broker round trip on the threads that send.
                raise ProcessingTimeout(f"processor {job.processor!r} did not answer within its timeout "
                                        f"of {job.timeout:g}s") from None
        finally:
            self.waiting.pop(reply_id, None)
        body = reply.get("body")
        if "stream" in reply:
            # Its worker pushes each chunk within the processor's timeout, or is killed (leases.py).
            body = RedisStream(self.stream_redis, reply["stream"],
                               stall=limit + HARD_LIMIT_MARGIN + DEADLINE_MARGIN)
        elif body is None:
            body = await self._take(reply["body_key"])
        total = time.monotonic() - submitted
        return Reply.from_wire(reply, body=body, queued_seconds=max(0.0, total - reply["seconds"]),
                               processing_seconds=reply["seconds"])

    async def health(self):
        problems = await self._broker_health()
        if problems:
            return problems
        if self.replies.problem:
            problems["replies"] = f"the reader of this server's answers is down: {self.replies.problem}"
        if not self.fleet.nodes:
            problems["workers"] = (f"no worker consumes the queue {self.names.queue!r}: none has sent a "
                                   f"heartbeat in the last {HEARTBEAT_TTL}s (start `ufop-sdk worker` with "
                                   "this server's UFOP_BROKER_URL and UFOP_NAME)")
        return problems

    async def _broker_health(self):
        """The broker's problem, if any; else `fleet` is read afresh, not up to a second old
        (just after Redis restarts, the heartbeats are there again before requests succeed)."""
        for attempt in (1, 2):  # a pooled connection may have died with a Redis now back
            try:
                self.fleet = await asyncio.wait_for(read_fleet(self.redis, self.names), BROKER_SECONDS)
                return {}
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                if attempt == 2 or not isinstance(exc, (RedisConnectionError, ConnectionError)):
                    return {"broker": self._broker_down(exc).message}
        return {}

    def describe(self):
        """``workers`` and ``busy`` count the processes of every live worker of this ufop (which
        all its servers share); ``pending``, this server's requests awaiting an answer."""
        return {"mode": "celery", "workers": self.fleet.processes, "busy": self.fleet.busy,
                "worker_nodes": self.fleet.nodes, "pending": len(self.waiting)}

    async def close(self):
        self.replies.close()
        if self._watcher is not None:
            self._watcher.cancel()
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(Overloaded("the server is shutting down"))
        await self.redis.aclose()
        await self.replies.listener_redis.aclose()
        await self.stream_redis.aclose()

    async def _message(self, job, reply_id):
        message = task_message(job, reply_id, self.reply_key)
        if job.url is not None:
            return message
        if job.file is None and len(job.body or b"") <= self.settings.inline_bytes:
            message["body"] = job.body or b""
            return message
        message["body_key"] = self.names.input(reply_id)
        await self._store(message["body_key"], job)
        return message

    async def _store(self, key, job):
        """Put a large input under `key` (with a TTL), in chunks so it never sits in memory whole."""
        try:
            if job.file is None:
                await self.redis.set(key, job.body, ex=KEY_TTL)
                return
            job.file.seek(0)
            await self.redis.set(key, b"", ex=KEY_TTL)
            for chunk in iter(lambda: job.file.read(STORE_CHUNK), b""):
                await self.redis.append(key, chunk)
        except (RedisError, OSError) as exc:
            raise self._broker_down(exc) from None

    def _time_limit(self, job):
        """The task's soft time limit: the processor's timeout, and the source's fetch when the
        worker fetches one (as in local mode, the fetch does not eat the processor's time). An
        async processor is cancelled at its timeout in the worker: the limit, CANCEL_GRACE later,
        stops one that never yields to its loop."""
        grace = CANCEL_GRACE if job.concurrency is not None else 0
        return job.timeout + grace + (self.settings.fetch_timeout if job.url else 0)

    async def _send(self, job, message, reply_id, limit):
        sending = self.publisher.publish(
            self.tasks[job.processor].name, (message,), reply_id, expires=limit + DEADLINE_MARGIN,
            soft_time_limit=limit, time_limit=limit + HARD_LIMIT_MARGIN, argsrepr=f"({job.cmd!r})")
        try:
            await asyncio.wait_for(sending, BROKER_SECONDS)
        except Exception as exc:  # noqa: BLE001 - kombu and redis raise many kinds; all mean 503
            raise self._broker_down(exc) from None

    async def _take(self, key):
        data = await self.redis.getdel(key)
        if data is None:
            raise UfopError("the answer expired before the server took it")
        return data

    async def _watch_workers(self):
        """Keep `fleet` current from the workers' heartbeats; the broker check reports a failure."""
        while True:
            try:
                self.fleet = await asyncio.wait_for(read_fleet(self.redis, self.names), BROKER_SECONDS)
            except (RedisError, OSError, asyncio.TimeoutError):
                pass
            await asyncio.sleep(HEARTBEAT_SECONDS)

    def _broker_down(self, exc):
        reason = str(exc) or type(exc).__name__
        log.warning("the broker is unreachable: %s", reason)
        return Overloaded(f"the broker is unreachable: {reason}")
