"""Qiniu's conventions in Celery mode: headers and parameters cross a real Redis to a real worker."""

import pytest
from qiniu_support import DECODED, PLATFORM_HEADERS, QINIU, answer_of, b64, described
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


def test_key_value_parameters_parse_in_a_celery_worker(celery_server):
    cmd = f"q/mkzip/2/url/{b64('http://a/1')}/url/{b64('http://b/2')}/alias/{b64('two')}"
    assert answer_of(celery_server, cmd) == (200, [["http://a/1", None], ["http://b/2", "two"]])
    status, answer = answer_of(celery_server, "q/mkzip/2/url/%%%")
    assert (status, answer["error"]) == (400, "invalid argument 'url': expected URL-safe base64, got '%%%'")
