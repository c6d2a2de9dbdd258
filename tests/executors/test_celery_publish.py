"""The server's publisher pushes the very message Celery's ``apply_async`` would (a real redis-server).

Both publish the same task onto the queue of a real Redis, with no worker
to take it; the two list items are compared whole, but for the delivery tag
(a new uuid each time) and the expiry instant (each computed when sent).
A worker reading our message is the Celery suite's business (every test of
test_celery.py goes through it).
"""

import asyncio
import base64
import json
from datetime import datetime

import msgpack
import pytest
import redis
import redis.asyncio
from support import SAMPLES

from ufop_sdk.app.project import load_app
from ufop_sdk.app.settings import Settings
from ufop_sdk.executors.celery.app import make_celery_app
from ufop_sdk.executors.celery.names import RedisNames
from ufop_sdk.executors.celery.publish import TaskPublisher

OPTIONS = {"expires": 11.5, "soft_time_limit": 10.0, "time_limit": 13.0, "argsrepr": "('qiniu/qq')"}
MESSAGE = {"cmd": "qiniu/qq", "processor": "Hello", "body": b"\x00\xff bytes", "reply_id": "r1",
           "reply_to": "ufop:replies:x", "headers": {"X-Qiniu-Mode": "Mg"}}


@pytest.fixture(scope="module")
def celery_and_queue(redis_server):
    settings = Settings.load(str(SAMPLES / "hello"), environ={"UFOP_BROKER_URL": redis_server.url(),
                                                              "UFOP_NAME": "hello-ufop"})
    app = load_app(settings)
    celery = make_celery_app(settings, app)
    names = RedisNames.for_settings(settings)
    route = next(iter(app.routes))
    return celery, celery.tasks[names.task(route)], names.queue, redis_server.url()


def pushed(url, queue):
    """The items on `queue`, oldest first, decoded; the queue emptied."""
    client = redis.Redis.from_url(url)
    items = [json.loads(item) for item in reversed(client.lrange(queue, 0, -1))]
    client.delete(queue)
    return items


def comparable(item):
    """The message without what differs between any two sends: its delivery tag and expiry instant."""
    properties = dict(item["properties"])
    assert len(properties.pop("delivery_tag")) == 36
    headers = dict(item["headers"])
    expires = datetime.fromisoformat(headers.pop("expires"))
    body = msgpack.unpackb(base64.b64decode(item["body"]), raw=False)
    return {**item, "properties": properties, "headers": headers, "body": body}, expires


def test_the_publisher_pushes_what_apply_async_pushes(celery_and_queue):
    celery, task, queue, url = celery_and_queue
    task.apply_async((MESSAGE,), task_id="same-id", kwargsrepr="{}", **OPTIONS)

    async def publish():
        client = redis.asyncio.Redis.from_url(url)
        try:
            await TaskPublisher(celery, client, queue).publish(task.name, (MESSAGE,), "same-id", **OPTIONS)
        finally:
            await client.aclose()

    asyncio.run(publish())
    theirs, ours = pushed(url, queue)
    (theirs, their_expiry), (ours, our_expiry) = comparable(theirs), comparable(ours)
    assert ours == theirs
    assert 0 <= (our_expiry - their_expiry).total_seconds() < 5
    assert ours["body"][0] == [{**MESSAGE, "body": MESSAGE["body"]}]  # bytes stay bytes (msgpack)
    assert ours["properties"]["expiration"] == "11500"


def test_each_message_gets_its_own_delivery_tag(celery_and_queue):
    celery, task, queue, url = celery_and_queue
    publisher = TaskPublisher(celery, None, queue)
    frames = [json.loads(publisher.frame(task.name, (MESSAGE,), f"id-{n}", **OPTIONS)) for n in range(3)]
    tags = {frame["properties"]["delivery_tag"] for frame in frames}
    assert len(tags) == 3
