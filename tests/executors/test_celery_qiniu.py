"""req.headers and req.qiniu in Celery mode: the headers cross a real Redis to a real ``ufop-sdk worker``."""

import pytest
from qiniu_support import DECODED, PLATFORM_HEADERS, QINIU, described
from redis_support import Worker
from support import Server


@pytest.fixture(scope="module")
def celery_server(redis_server):
    with Worker(QINIU, redis_server.url(0)), \
            Server(QINIU, "--host", "127.0.0.1", env={"UFOP_BROKER_URL": redis_server.url(0)}) as server:
        yield server


def test_headers_and_the_decoded_platform_headers_reach_a_celery_worker(celery_server):
    answer = described(celery_server, {**PLATFORM_HEADERS, "x-CUSTOM": "one"})
    assert answer["x-custom"] == "one"
    assert answer["qiniu"] == DECODED


def test_large_headers_cross_redis_whole(celery_server):
    big = "v" * (40 << 10)
    assert described(celery_server, {"X-Custom": big})["x-custom"] == big
