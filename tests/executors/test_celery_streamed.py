"""Streamed sources (``prefetch = False``) in Celery mode: a real ``ufop-sdk worker`` reads the
origin itself, as far as its processor reads, behind the same guard; the server downloads nothing."""

import hashlib
import json
import time

import pytest
from redis_support import Worker
from support import PROJECTS, Origin, Server, open_files

STREAMED = PROJECTS / "streamed"
MAX_SOURCE = 8 << 20
LARGE = 64 << 20


@pytest.fixture(scope="module")
def origin():
    with Origin() as origin:
        yield origin


def celery_pair(redis_server, db, **worker_settings):
    """A worker of the streamed project with `worker_settings`, and a server sending it tasks."""
    url = redis_server.url(db)
    return Worker(STREAMED, url, env=worker_settings), \
        Server(STREAMED, "--host", "127.0.0.1", env={"UFOP_BROKER_URL": url})


@pytest.fixture(scope="module")
def worker_and_server(redis_server):
    worker, server = celery_pair(redis_server, 0, UFOP_BLOCKED_NETWORKS="none", UFOP_FETCH_TIMEOUT="1",
                                 UFOP_MAX_SOURCE_BYTES=str(LARGE))
    with worker, server:
        yield worker, server


@pytest.fixture(scope="module")
def server(worker_and_server):
    return worker_and_server[1]


def error_of(body):
    return json.loads(body)["error"]


def test_a_celery_worker_reading_1_kib_of_64_mib_closes_the_connection_long_before_the_end(server, origin):
    source = origin.stream("/large", LARGE)
    began = time.monotonic()
    status, _, body = server.post("s/head/1024", url=origin.url("/large"), timeout=15)
    assert status == 200, body
    assert time.monotonic() - began < 10
    assert json.loads(body)["sha256"] == hashlib.sha256(source.sent[:1024]).hexdigest()
    assert source.ended.wait(10), "the origin still sends: the worker kept the connection open"
    assert source.written < 8 << 20, f"the origin sent {source.written} bytes for 1 KiB read"


def test_a_celery_worker_reads_a_whole_stream_as_the_source_bytes(server, origin):
    source = origin.stream("/whole", 3 << 20)
    status, _, body = server.post("s/echo", url=origin.url("/whole"), timeout=15)
    assert status == 200 and body == source.sent


def test_a_celery_processor_can_relay_the_stream_as_it_reads_it(server, origin):
    source = origin.stream("/relayed", 3 << 20)
    status, _, body = server.post("s/relay", url=origin.url("/relayed"), timeout=15)
    assert status == 200 and body == source.sent


def test_a_body_reaches_a_celery_processor_as_a_forward_only_stream(server):
    status, _, body = server.post("s/head/5", b"hello body", timeout=15)
    assert status == 200
    described = json.loads(body)
    assert (described["read"], described["size"], described["seekable"]) == (5, None, False)


def test_a_celery_worker_answers_the_errors_of_a_source(server, origin):
    with Origin() as gone:
        unreachable = gone.url("/x")
    status, _, body = server.post("s/echo", url=unreachable, timeout=15)
    assert status == 502 and "127.0.0.1" in error_of(body)
    status, _, body = server.post("s/echo", url=origin.url("/nowhere"), timeout=15)
    assert status == 502 and "404" in error_of(body)
    origin.stream("/stalls", 1 << 20, stall_after=128 << 10)
    status, _, body = server.post("s/digest", url=origin.url("/stalls"), timeout=15)
    assert status == 504 and "sent nothing" in error_of(body)


def test_a_celery_processor_stuck_on_a_stalled_source_is_cut_at_its_timeout(redis_server, origin):
    origin.stream("/stalls-long", 1 << 20, stall_after=256 << 10)
    worker, server = celery_pair(redis_server, 3, UFOP_BLOCKED_NETWORKS="none", UFOP_FETCH_TIMEOUT="30")
    with worker, server:
        assert server.post("s/head/1", b"x", timeout=15)[0] == 200  # its child's connection to Redis is up
        [child] = worker.children()
        before = [target for target in open_files(child) if target.startswith("socket:")]
        began = time.monotonic()
        status, _, body = server.post("s/hasty-digest", url=origin.url("/stalls-long"), timeout=15)
        assert status == 504 and "timeout of 1s" in error_of(body), body
        assert time.monotonic() - began < 5
        after = [target for target in open_files(child) if target.startswith("socket:")]
        assert worker.children() == [child] and len(after) == len(before)


def test_a_celery_worker_refuses_to_read_past_the_limit(redis_server, origin):
    origin.serve("/unsized", b"x" * (MAX_SOURCE + 1), framing="chunked")
    worker, server = celery_pair(redis_server, 1, UFOP_BLOCKED_NETWORKS="none",
                                 UFOP_MAX_SOURCE_BYTES=str(MAX_SOURCE))
    with worker, server:
        status, _, body = server.post("s/digest", url=origin.url("/unsized"), timeout=15)
    assert status == 413 and str(MAX_SOURCE) in error_of(body)


def test_by_default_a_celery_worker_refuses_a_loopback_source(redis_server, origin):
    origin.serve("/secret", b"internal data")
    asked = len(origin.requests)
    worker, server = celery_pair(redis_server, 2)
    with worker, server:
        status, _, body = server.post("s/echo", url=origin.url("/secret"), timeout=15)
    assert status == 403 and "blocked address" in error_of(body)
    assert len(origin.requests) == asked


def test_a_celery_child_holds_no_connection_after_streamed_requests(worker_and_server, origin):
    worker, server = worker_and_server
    assert server.post("s/head/1", b"x", timeout=15)[0] == 200  # its child's connection to Redis is up
    [child] = worker.children()
    before = [target for target in open_files(child) if target.startswith("socket:")]
    origin.stream("/partly", 4 << 20)
    for cmd, status in [("s/head/100", 200), ("s/untouched", 200), ("s/picture", 415)]:
        assert server.post(cmd, url=origin.url("/partly"), timeout=15)[0] == status
    after = [target for target in open_files(child) if target.startswith("socket:")]
    assert len(after) == len(before)


def test_a_stream_a_celery_processor_keeps_is_closed_when_the_request_ends(server, origin):
    source = origin.stream("/kept", 16 << 20)
    assert server.post("s/keep/fail", url=origin.url("/kept"), timeout=15)[0] == 400
    assert source.ended.wait(10), "the worker still holds the connection"
    assert source.written < 8 << 20
