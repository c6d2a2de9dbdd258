"""The kombu transport fix and the worker's pool: Celery and kombu classes with one change each.

These patch kombu's, Celery's and billiard's private internals: see versions.py for the
series they are tested with and what to re-check before widening it.
"""

from queue import Empty

import redis
from celery.concurrency.asynpool import AsynPool
from celery.concurrency.prefork import TaskPool
from kombu.transport import redis as kombu_redis

from .leases import forget_leases, lease_left, make_lease_folder
from .versions import require_tested_versions

require_tested_versions()

POOL_CHECK_SECONDS = 0.5
PREFORK = f"{__name__}:Prefork"  # for ``celery worker --pool``
REDIS_TRANSPORT = f"{__name__}:RedisTransport"  # for ``broker_transport``


class RedisChannel(kombu_redis.Channel):
    """kombu's Redis channel, made safe to close while Redis is down, and with one client for its
    commands (kombu 5.7; on an upgrade, re-check close(), _connparams() and _create_client()
    against kombu/transport/redis.py, see versions.py).

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

    _client = None

    def _create_client(self, asynchronous=False):
        # kombu builds a new redis.Redis for every publish and every acknowledgement: about 75 µs
        # of the server's 380 µs apply_async (measured here, 3000 publishes). One client on the
        # channel's current pool does the same work.
        if asynchronous:
            return super()._create_client(asynchronous=True)
        if self._client is None or self._client.connection_pool is not self.pool:
            self._client = super()._create_client()
        return self._client

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
    well within a short processor timeout. A child streaming an answer is held
    to its lease rather than to its task's time limits (leases.py)."""

    def __init__(self, *args, **kwargs):
        make_lease_folder()
        super().__init__(*args, **kwargs)

    @property
    def timers(self):
        return {self.maintain_pool: POOL_CHECK_SECONDS}

    def _create_timelimit_handlers(self, hub):
        self._lease_hub = hub
        super()._create_timelimit_handlers(hub)

    def _on_soft_timeout(self, job, soft, hard, hub):
        if not self._lease_left(job):
            super()._on_soft_timeout(job, soft, hard, hub)
        elif hard:  # streaming: no soft limit, and the hard one waits on the lease
            self._tref_for_id[job] = hub.call_later(hard - soft, self._on_hard_timeout, job)

    def _on_hard_timeout(self, job):
        left = self._lease_left(job)
        if left:  # streaming, and within its lease: look again when it runs out
            self._tref_for_id[job] = self._lease_hub.call_later(left, self._on_hard_timeout, job)
            return
        super()._on_hard_timeout(job)

    def _lease_left(self, job):
        result = self._cache.get(job)
        return lease_left(result._worker_pid) if result is not None else 0

    def join(self):
        super().join()
        forget_leases()

    def terminate(self):
        super().terminate()
        forget_leases()


class Prefork(TaskPool):
    """``ufop-sdk worker``'s pool: prefork, with QuickPool."""

    Pool = QuickPool
