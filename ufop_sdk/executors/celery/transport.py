"""The kombu transport fix and the worker's pool: Celery and kombu classes with one change each.

These patch kombu's and Celery's private internals: see versions.py for the
series they are tested with and what to re-check before widening it.
"""

from queue import Empty

import redis
from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool
from kombu.transport import redis as kombu_redis

from .versions import require_tested_versions

require_tested_versions()

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
