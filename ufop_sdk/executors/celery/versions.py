"""The Celery and kombu versions Celery mode is tested with, checked before it starts.

transport.py subclasses private parts of kombu and Celery (kombu's Redis
Channel: ``close``, ``_in_poll``, ``_brpop_read``, ``_connparams``, ``_create_client``; Celery's
``AsynPool.timers``, ``_create_timelimit_handlers``, ``_on_soft_timeout``,
``_on_hard_timeout``, ``_tref_for_id``, ``_cache`` and ``TaskPool.Pool``). Those change without notice between
minor releases, so a release outside the series below is refused rather than
run on untested patches. This module imports neither Celery nor kombu: the
check runs before them.
"""

from importlib.metadata import PackageNotFoundError, version

# Also the pins in setup.py. To widen: re-check transport.py's RedisChannel (close(), _connparams()
# and _create_client() against kombu/transport/redis.py: the BRPOP-in-flight read on close, the
# detached transport, ``client = None`` in Connection.collect, the pool a client is built on),
# QuickPool (AsynPool.timers, maintain_pool; the time-limit timers its leases put off:
# _on_soft_timeout, _on_hard_timeout, _tref_for_id, hub.call_later) and Prefork (TaskPool.Pool),
# then run tests/executors/test_celery.py (redelivery and Redis-restart tests above all) and
# test_celery_streams.py (the leases).
TESTED_SERIES = {"celery": "5.7", "kombu": "5.7"}


class UntestedVersions(Exception):
    """The installed Celery or kombu is outside the series Celery mode is tested with."""


def untested_versions(installed):
    """Of `installed` ({distribution: version string}), those outside TESTED_SERIES, as 'kombu 5.8.0'."""
    return [f"{name} {installed[name]}" for name, series in TESTED_SERIES.items()
            if _series(installed[name]) != series]


def require_tested_versions():
    """Raise UntestedVersions naming what is installed and what is tested."""
    untested = untested_versions({name: _installed(name) for name in TESTED_SERIES})
    if untested:
        tested = ", ".join(f"{name} {series}.x" for name, series in TESTED_SERIES.items())
        raise UntestedVersions(
            f"Celery mode is tested with {tested}, found {', '.join(untested)}: it patches their private "
            f"internals, so install a tested release (pip install 'ufop-sdk' brings them) or serve "
            f"without UFOP_BROKER_URL")


def _series(release):
    return ".".join(release.split(".")[:2])


def _installed(name):
    try:
        return version(name)
    except PackageNotFoundError:
        return "(not installed)"
