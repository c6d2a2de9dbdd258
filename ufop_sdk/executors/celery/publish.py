"""A task published from the server's event loop: Celery's own message, one LPUSH on the asyncio client.

``task.apply_async`` runs kombu's publish path (routing, declaring, a
blocking Redis call), so the server ran it on sender threads: about 600 µs
of CPU per request across those threads and 380 µs inside kombu, of a Celery
request's 2.4 ms in all (benchmarks/cpu_breakdown.py --celery). Here Celery
still builds the message (``amqp.create_task_message``, the task protocol a
worker reads) and kombu still serializes its body; only the Redis
transport's framing of it is written out, as kombu 5.7's virtual channel
frames a message for the default direct queue: ``prepare_message``, then
``_inplace_augment_message``, then an LPUSH of its JSON on the queue's list.
tests/executors/test_celery_publish.py holds it to what ``apply_async`` pushes.
"""

import base64
import uuid

from kombu.serialization import dumps as serialize
from kombu.utils.json import dumps as to_json

PERSISTENT = 2  # kombu's delivery_mode for the messages of a durable queue (Celery's default)


class TaskPublisher:
    """Frames and pushes task messages onto `queue` with the asyncio Redis client `redis`."""

    def __init__(self, celery, redis, queue):
        self.celery = celery
        self.amqp = celery.amqp
        self.serializer = celery.conf.task_serializer
        self.ignore_result = celery.conf.task_ignore_result
        self.redis = redis
        self.queue = queue

    def frame(self, task_name, args, task_id, *, expires, soft_time_limit, time_limit, argsrepr):
        """The bytes a worker's BRPOP takes: what ``apply_async(args, task_id=..., expires=...,
        soft_time_limit=..., time_limit=..., argsrepr=..., kwargsrepr="{}")`` pushes."""
        headers, properties, body, _ = self.amqp.create_task_message(
            task_id, task_name, args, {}, expires=expires, time_limit=time_limit,
            soft_time_limit=soft_time_limit, argsrepr=argsrepr, kwargsrepr="{}",
            reply_to=self.celery.thread_oid, ignore_result=self.ignore_result)
        content_type, content_encoding, payload = serialize(body, serializer=self.serializer)
        if isinstance(payload, str):
            payload = payload.encode(content_encoding)
        # send_task_message copies the leftover options into the properties, the reprs among them
        properties.update(argsrepr=argsrepr, kwargsrepr="{}", delivery_mode=PERSISTENT,
                          expiration=str(int(expires * 1000)), priority=0, body_encoding="base64",
                          delivery_tag=str(uuid.uuid4()),
                          delivery_info={"exchange": "", "routing_key": self.queue})
        return to_json({"body": base64.b64encode(payload).decode(), "content-encoding": content_encoding,
                        "content-type": content_type, "headers": headers, "properties": properties})

    async def publish(self, task_name, args, task_id, **options):
        await self.redis.lpush(self.queue, self.frame(task_name, args, task_id, **options))
