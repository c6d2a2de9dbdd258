"""Celery mode's answers on their way back: this server's own Redis list, drained by one reader.

Each worker pushes a task's answer (msgpack: its status, headers, body or
where the body waits) onto the list named for the server that sent it. One
BLPOP loop on the event loop (no polling sleeps) hands each answer to the
request awaiting it. The reader is supervised: a bad item is skipped, and a
reader that ends is started again. An answer nobody waits for any more has
its claim-check key deleted, or its stream's worker stopped.
"""

import asyncio
import logging

import msgpack
from msgpack import UnpackException
from redis.exceptions import RedisError

from .streams import cancel_stream

log = logging.getLogger("ufop_sdk.celery")

LISTEN_SECONDS = 1
RECONNECT_DELAY = 0.2


class ReplyReader:
    """Reads `key` on `listener_redis` and sets the Future in `waiting` ({reply id: Future}) of each
    answer; `redis` and `stream_redis` drop the answers nobody waits for. `broker_down(exc)` says
    why the broker failed."""

    def __init__(self, key, listener_redis, redis, stream_redis, broker_down):
        self.key = key
        self.listener_redis = listener_redis
        self.redis = redis
        self.stream_redis = stream_redis
        self.broker_down = broker_down
        self.waiting = {}
        self.problem = None
        self.task = None
        self._closing = False

    def start(self):
        if not self._closing:
            self.problem = None
            self.task = asyncio.ensure_future(self._listen())
            self.task.add_done_callback(self._ended)

    def close(self):
        self._closing = True
        if self.task is not None:
            self.task.cancel()

    def drop(self, future):
        """The answer `future` holds, if it came, will not be sent."""
        if future.done() and not future.cancelled() and future.exception() is None:
            self._drop_answer(future.result())

    def _ended(self, task):
        """Start the reader again, a moment later, however it ended (unless the server closes)."""
        if self._closing:
            return
        reason = "cancelled" if task.cancelled() else repr(task.exception())
        self.problem = f"it stopped ({reason}); restarting it"
        log.error("the reader of this server's answers stopped (%s); restarting it", reason)
        asyncio.get_running_loop().call_later(RECONNECT_DELAY, self.start)

    async def _listen(self):
        while True:
            try:
                item = await self.listener_redis.blpop([self.key], timeout=LISTEN_SECONDS)
            except (RedisError, OSError) as exc:
                self.problem = self.broker_down(exc).message
                await asyncio.sleep(RECONNECT_DELAY)
                continue
            self.problem = None
            if item is not None:
                self._deliver(item[1])

    def _deliver(self, packed):
        """Hand an answer to the request awaiting it; an item no worker wrote is logged and skipped."""
        try:
            reply = msgpack.unpackb(packed, raw=False)
            reply_id = reply["id"]
        except (UnpackException, ValueError, TypeError, KeyError, AttributeError) as exc:
            log.error("skipped a malformed item in this server's reply list (%d bytes, %r...): %s",
                      len(packed), packed[:32], exc)
            return
        future = self.waiting.get(reply_id)
        if future is not None and not future.done():
            future.set_result(reply)
        else:  # nobody waits any more (timed out)
            self._drop_answer(reply)

    def _drop_answer(self, reply):
        """Drop an answer nobody will send now: its claim-check key goes, its stream's worker stops."""
        if reply.get("body_key"):
            asyncio.ensure_future(self.redis.delete(reply["body_key"]))
        elif "stream" in reply:
            asyncio.ensure_future(cancel_stream(self.stream_redis, reply["stream"]))
