"""The Celery app both sides build: its configuration, and one task per processor.

``ufop-sdk serve`` builds it to send tasks, ``ufop-sdk worker`` to run them,
from the same settings and project, so task names and limits always agree.

On the wire there is no pickle: messages are msgpack (JSON is accepted too,
nothing else). What a task does is in task.py, where its Redis keys live in
names.py, and the patched kombu transport and worker pool in transport.py.
"""

from urllib.parse import urlsplit

from celery import Celery
from celery.signals import worker_process_init

from ...app.gc_tuning import settle_garbage_collector
from .fleet import Heartbeat
from .names import HARD_LIMIT_MARGIN, RedisNames
from .task import child_state, register_task
from .transport import REDIS_TRANSPORT


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
        register_task(celery, route, names)

    def set_up_child(**_):
        """Each prefork child sets up its own processors and Redis client, once."""
        child_state(celery.ufop)
        settle_garbage_collector()

    celery.ufop["set_up_child"] = set_up_child  # signals hold receivers weakly: keep it alive
    worker_process_init.connect(set_up_child)
    return celery
