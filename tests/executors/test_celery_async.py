"""Async processors in Celery mode: a real redis-server, a real ``ufop-sdk worker`` and ``ufop-sdk serve``.

A prefork child runs one task at a time, so there an async processor runs one
request per child, on an event loop the child keeps (its ``concurrency`` is
for the embedded pool's workers).
"""

import json
import time

import pytest
from redis_support import Worker
from support import PROJECTS, Server
from test_async_local import ANSWERS

ASYNC = PROJECTS / "async_processors"


@pytest.fixture(scope="module")
def worker(redis_server, tmp_path_factory):
    markers = tmp_path_factory.mktemp("markers")
    with Worker(ASYNC, redis_server.url(0), concurrency=1, env={"MARKER_DIR": str(markers)}) as worker:
        yield worker


@pytest.fixture(scope="module")
def celery_server(redis_server, worker):
    with Server(ASYNC, "--host", "127.0.0.1", env={"UFOP_BROKER_URL": redis_server.url(0)}) as server:
        yield server


@pytest.mark.parametrize(("kind", "status", "body"), ANSWERS)
def test_an_async_process_answers_with_every_kind_of_value_in_a_celery_worker(celery_server, kind, status,
                                                                               body):
    answer_status, _, answer_body = celery_server.post(f"t/answer/{kind}", b"input")
    assert (answer_status, answer_body[:len(body)]) == (status, body)


def test_a_celery_child_runs_every_async_request_on_the_loop_it_keeps(celery_server, worker):
    answers = [json.loads(celery_server.post("t/same-loop")[2]) for _ in range(3)]
    assert [answer["same"] for answer in answers] == [True] * 3
    assert {answer["pid"] for answer in answers} == set(worker.children())


def test_an_async_process_past_its_timeout_is_cancelled_and_answered_504_by_its_celery_child(celery_server,
                                                                                            worker):
    children = worker.children()
    began = time.monotonic()
    status, _, body = celery_server.post("t/nap/30", timeout=15)
    elapsed = time.monotonic() - began
    assert (status, json.loads(body)["error"]) == (504, "processor 'Nap' ran past its timeout of 3s")
    assert 2.8 < elapsed < 5, elapsed
    assert worker.children() == children
    assert celery_server.post("t/nap/0")[0] == 200


def test_a_coroutine_that_never_yields_is_stopped_by_the_soft_time_limit_in_a_celery_child(celery_server):
    """Stuck's timeout is 1 s; the task's soft limit, 1 s later, interrupts its time.sleep."""
    began = time.monotonic()
    status, _, body = celery_server.post("t/stuck/30", timeout=15)
    elapsed = time.monotonic() - began
    assert (status, json.loads(body)["error"]) == (504, "processor 'Stuck' ran past its timeout of 1s")
    assert 1.8 < elapsed < 5, elapsed
    status, _, body = celery_server.post("t/same-loop")
    assert (status, json.loads(body)["same"]) == (200, True), "the child's loop is still usable"
