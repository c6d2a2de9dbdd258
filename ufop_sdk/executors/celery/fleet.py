"""Which workers consume a ufop's queue: their heartbeats, written by workers and read by servers.

Once its consumer is connected, a ``ufop-sdk worker`` writes every
HEARTBEAT_SECONDS how many child processes it runs and how many are busy,
under a key Redis drops HEARTBEAT_TTL seconds later, and names that key in a
set. A server reads them (`read_fleet`) for ``/health`` (no live worker: 503)
and the ``ufop_workers`` gauge. The keys are scoped by UFOP_NAME
(RedisNames), so a worker started with another name never counts: the
mistake shows as "no worker", not as requests that wait for nothing.

A heartbeat rather than Celery's ``control.ping``: a ping broadcasts to
every worker on the Redis, whatever queue it consumes, and waits out its
whole timeout for the replies.
"""

import json
import logging
import os
import threading

import attrs
import redis
from celery import bootsteps
from celery.worker import state

log = logging.getLogger("ufop_sdk.celery")

HEARTBEAT_SECONDS = 1.0
HEARTBEAT_TTL = 5  # seconds: a worker that stopped beating (killed, cut off) stops counting within this


@attrs.frozen
class Fleet:
    """The live workers of one ufop, all servers' together: how many, their processes, the busy ones."""

    nodes: int = 0
    processes: int = 0
    busy: int = 0

    @classmethod
    def from_beats(cls, beats):
        beats = list(beats)
        return cls(len(beats), sum(beat["processes"] for beat in beats), sum(beat["busy"] for beat in beats))


async def read_fleet(client, names):
    """The Fleet whose heartbeats are in Redis now (`client`: a redis.asyncio client)."""
    nodes = sorted(await client.smembers(names.workers()))
    if not nodes:
        return Fleet()
    beats = await client.mget([names.worker(node.decode()) for node in nodes])
    gone = [node for node, beat in zip(nodes, beats, strict=True) if beat is None]
    if gone:
        await client.srem(names.workers(), *gone)
    parsed = (_parsed(beat) for beat in beats if beat is not None)
    return Fleet.from_beats(beat for beat in parsed if beat is not None)


def _parsed(beat):
    """A heartbeat's figures, or None for a value no worker of ours wrote."""
    try:
        value = json.loads(beat)
        figures = value.get("processes"), value.get("busy")
        return value if all(isinstance(figure, int) for figure in figures) else None
    except (ValueError, AttributeError):
        return None


class Heartbeat(bootsteps.StartStopStep):
    """The worker's consumer bootstep that beats, in a thread of its own so a slow Redis never
    stalls the consumer. Started after the consumer's task queue, stopped with it (a lost broker
    connection stops it until the consumer reconnects)."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, consumer, **kwargs):
        self.stopped = threading.Event()
        self.thread = None
        super().__init__(consumer, **kwargs)

    def start(self, consumer):
        ufop = consumer.app.ufop
        node = f"{consumer.hostname}:{os.getpid()}"
        self.stopped.clear()
        self.thread = threading.Thread(target=self._beat, name="ufop-heartbeat", daemon=True,
                                       args=(ufop["settings"].broker_url, ufop["names"], node,
                                             consumer.controller.concurrency))
        self.thread.start()

    def stop(self, consumer):
        self.stopped.set()
        if self.thread is not None:
            self.thread.join(HEARTBEAT_SECONDS * 3)
            self.thread = None

    shutdown = stop

    def _beat(self, broker_url, names, node, processes):
        client = redis.Redis.from_url(broker_url, socket_timeout=HEARTBEAT_SECONDS,
                                      socket_connect_timeout=HEARTBEAT_SECONDS)
        failing = False
        with client:
            while True:
                try:
                    _write(client, names, node, processes)
                    failing = False
                except redis.RedisError as exc:
                    if not failing:
                        log.warning("could not send this worker's heartbeat: %s", exc)
                    failing = True
                if self.stopped.wait(HEARTBEAT_SECONDS):
                    break
            _forget(client, names, node)


def _write(client, names, node, processes):
    beat = json.dumps({"processes": processes, "busy": len(state.active_requests)})
    (client.pipeline(transaction=False)
     .set(names.worker(node), beat, ex=HEARTBEAT_TTL)
     .sadd(names.workers(), node)
     .expire(names.workers(), HEARTBEAT_TTL)
     .execute())


def _forget(client, names, node):
    """A worker stopping cleanly stops counting at once."""
    try:
        client.pipeline(transaction=False).delete(names.worker(node)).srem(names.workers(), node).execute()
    except redis.RedisError:
        pass
