"""Celery mode, the server's side: send each request as a task, await its answer.

Sending uses the task's ``apply_async`` in a small thread pool, so a slow or
absent broker never blocks the event loop. Answers come back on this
server's own Redis list, drained by one reader (a BLPOP loop on the event
loop, no polling sleeps), which hands each answer to the request awaiting it.
"""

import asyncio
import concurrent.futures
import logging
import time
import uuid

import msgpack
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from ..errors import Overloaded, ProcessingTimeout, UfopError
from .base import Executor, Reply
from .celery_app import HARD_LIMIT_MARGIN, KEY_TTL, RedisNames, make_celery_app

log = logging.getLogger("ufop_sdk.celery")

# The HTTP deadline is the processor's timeout plus this, for queueing and transport.
DEADLINE_MARGIN = 1.5
BROKER_SECONDS = 0.8  # answering 503 within a second when the broker is unreachable
LISTEN_SECONDS = 1
RECONNECT_DELAY = 0.2
SENDER_THREADS = 4
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
        self.listener_redis = redis.asyncio.Redis.from_url(
            settings.broker_url, socket_connect_timeout=BROKER_SECONDS, socket_timeout=LISTEN_SECONDS + 2)
        self.reply_key = self.names.replies(uuid.uuid4().hex)
        self.sender = concurrent.futures.ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="ufop-send")
        self.waiting = {}
        self.pending_limit = settings.pending_limit
        self.broker_problem = None
        self._listener = None

    async def start(self):
        self._listener = asyncio.ensure_future(self._listen())

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
        if body is None:
            body = await self._take(reply["body_key"])
        total = time.monotonic() - submitted
        return Reply(reply["status"], reply["content_type"], reply["headers"], body,
                     max(0.0, total - reply["seconds"]), reply["seconds"])

    async def health(self):
        for attempt in (1, 2):  # a pooled connection may have died with a Redis now back
            try:
                await asyncio.wait_for(self.redis.ping(), BROKER_SECONDS)
                return {}
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                if attempt == 2 or not isinstance(exc, (RedisConnectionError, ConnectionError)):
                    return {"broker": self._broker_down(exc).message}
        return {}

    def describe(self):
        return {"mode": "celery", "pending": len(self.waiting)}

    async def close(self):
        if self._listener is not None:
            self._listener.cancel()
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(Overloaded("the server is shutting down"))
        self.sender.shutdown(wait=False, cancel_futures=True)
        await self.redis.aclose()
        await self.listener_redis.aclose()

    async def _message(self, job, reply_id):
        message = {"reply_id": reply_id, "reply_to": self.reply_key, "cmd": job.cmd,
                   "processor": job.processor, "groups": job.groups, "request_id": job.request_id,
                   "declared_content_type": job.declared_content_type, "url": job.url}
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
        worker fetches one (as in local mode, the fetch does not eat the processor's time)."""
        return job.timeout + (self.settings.fetch_timeout if job.url else 0)

    async def _send(self, job, message, reply_id, limit):
        task = self.tasks[job.processor]
        sending = asyncio.get_running_loop().run_in_executor(
            self.sender, lambda: task.apply_async(
                (message,), task_id=reply_id, expires=limit + DEADLINE_MARGIN,
                soft_time_limit=limit, time_limit=limit + HARD_LIMIT_MARGIN,
                argsrepr=f"({job.cmd!r})", kwargsrepr="{}"))
        try:
            await asyncio.wait_for(sending, BROKER_SECONDS)
        except Exception as exc:  # noqa: BLE001 - kombu and redis raise many kinds; all mean 503
            raise self._broker_down(exc) from None

    async def _take(self, key):
        data = await self.redis.getdel(key)
        if data is None:
            raise UfopError("the answer expired before the server took it")
        return data

    async def _listen(self):
        """The one reader of this server's reply list."""
        while True:
            try:
                item = await self.listener_redis.blpop([self.reply_key], timeout=LISTEN_SECONDS)
            except (RedisError, OSError) as exc:
                self._broker_down(exc)
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            if item is None:
                continue
            reply = msgpack.unpackb(item[1], raw=False)
            future = self.waiting.get(reply["id"])
            if future is not None and not future.done():
                future.set_result(reply)
            elif reply.get("body_key"):  # nobody waits any more (timed out): drop its answer now
                asyncio.ensure_future(self.redis.delete(reply["body_key"]))

    def _broker_down(self, exc):
        reason = str(exc) or type(exc).__name__
        log.warning("the broker is unreachable: %s", reason)
        return Overloaded(f"the broker is unreachable: {reason}")
