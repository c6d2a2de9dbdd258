"""File and streamed answers in Celery mode: in chunks through a real Redis, paced by the client.

A real redis-server, a real ``ufop-sdk worker`` and ``ufop-sdk serve`` in
Celery mode; the answers come from the celery project's FileAnswer and
Generate processors, which leave their progress in MARKER_DIR.
"""

import contextlib
import http.client
import importlib.util
import json
import os
import signal
import socket
import time

import pytest
from redis_support import Worker, wait_until
from support import PROJECTS, Server

from ufop_sdk.executors.celery.streams import CREDIT_MARGIN

CELERY = PROJECTS / "celery"


def _project_module():
    spec = importlib.util.spec_from_file_location("celery_project_processors", CELERY / "processors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The bytes the project's processors answer, to compare with what arrives.
_PROJECT = _project_module()
MIB, block, generated = _PROJECT.MIB, _PROJECT.block, _PROJECT.generated
LIMIT_MIB = 80  # UFOP_MAX_OUTPUT_BYTES of the server and the worker
FEW_MIB = 16  # what Redis may hold of one answer: its window (4 MiB) and wide margins


@pytest.fixture(scope="module")
def markers(tmp_path_factory):
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def baseline(redis_server):
    """Redis's used_memory before any answer went through it."""
    with redis_server.client() as client:
        return client.info("memory")["used_memory"]


def settings(markers, **more):
    return {"MARKER_DIR": str(markers), "UFOP_MAX_OUTPUT_BYTES": str(LIMIT_MIB * MIB), **more}


@pytest.fixture(scope="module")
def worker(redis_server, markers, baseline):
    with Worker(CELERY, redis_server.url(0), concurrency=2, env=settings(markers)) as worker:
        yield worker


@pytest.fixture(scope="module")
def server(redis_server, markers, worker):
    env = settings(markers, UFOP_BROKER_URL=redis_server.url(0))
    with Server(CELERY, "--host", "127.0.0.1", env=env) as server:
        yield server


def peak_growth(redis_server, baseline):
    """How far Redis's peak used_memory has been above `baseline`, in MiB."""
    with redis_server.client() as client:
        return (client.info("memory")["used_memory_peak"] - baseline) / MIB


def used_growth(redis_server, baseline):
    with redis_server.client() as client:
        return (client.info("memory")["used_memory"] - baseline) / MIB


def stream_keys(redis_server, db=0):
    return redis_server.keys("ufop:chunks:*", db) + redis_server.keys("ufop:credit:*", db)


def progress(markers, name):
    """How many MiB the generator `name` has yielded so far."""
    path = markers / f"{name}.progress"
    return int(path.read_text() or 0) if path.exists() else 0


def started_by(markers, name):
    """The pids of the processes that ran the generator `name` (Generate traces them)."""
    path = markers / f"{name}.started"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def closed(markers, name):
    return (markers / f"{name}.closed").exists()


def access_status(server, request_id):
    """The status of `request_id`'s access log line, once the buffered log is flushed."""
    lines = []

    def logged():
        lines[:] = [json.loads(line) for line in server.output().splitlines()
                    if line.startswith("{") and f'"request_id":"{request_id}"' in line]
        return lines

    server.wait_until(logged, 5, f"the access line of {request_id}")
    return lines[0]["status"]


@contextlib.contextmanager
def open_answer(server, cmd, request_id):
    """An HTTP response to read at the test's pace (its socket buffer is small); closed on exit."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.connect()
        connection.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        connection.request("POST", f"/handler?cmd={cmd}", b"", {"X-Request-Id": request_id})
        yield connection.getresponse()
    finally:
        connection.close()


def cut_off_answer(server, cmd, request_id):
    """What arrived of an answer whose connection was closed before its end."""
    with open_answer(server, cmd, request_id) as response, pytest.raises(http.client.IncompleteRead) as cut:
        response.read()
    return cut.value.partial


def test_a_64_mib_file_answer_arrives_whole_with_its_length_in_chunks_and_its_workdir_goes(
        server, redis_server, baseline, markers):
    status, headers, body = server.post("t/file-answer/file64/64", timeout=60)
    assert status == 200 and headers["Content-Type"] == "application/x-generated"
    assert headers["Content-Length"] == str(64 * MIB) and "Transfer-Encoding" not in headers
    assert body == generated(64)
    assert peak_growth(redis_server, baseline) < FEW_MIB, "Redis held the answer whole"
    workdir = (markers / "file64.workdir").read_text()
    wait_until(lambda: not os.path.exists(workdir), 5, "the workdir to be removed")
    wait_until(lambda: stream_keys(redis_server) == [], 5, "the stream's keys to go")


def test_a_generator_answer_arrives_chunked_and_whole_and_its_generator_is_closed(
        server, redis_server, baseline, markers):
    status, headers, body = server.post("t/generate/whole/64", timeout=60)
    assert status == 200 and headers["Transfer-Encoding"] == "chunked" and "Content-Length" not in headers
    assert body == generated(64)
    assert peak_growth(redis_server, baseline) < FEW_MIB, "Redis held the answer whole"
    wait_until(lambda: closed(markers, "whole"), 5, "the generator to be closed")
    wait_until(lambda: stream_keys(redis_server) == [], 5, "the stream's keys to go")


def test_a_generator_reading_its_input_as_its_answer_goes_reads_all_of_it(server):
    body = os.urandom(3 * MIB)  # over UFOP_INLINE_BYTES: it travels by its claim-check key
    status, headers, answer = server.post("t/echo-stream", body, timeout=30)
    assert status == 200 and headers["Transfer-Encoding"] == "chunked"
    assert answer == body


def test_a_slow_client_paces_the_worker_and_redis_holds_a_few_mib(server, redis_server, baseline, markers):
    received, ahead, held = 0, [], []
    with open_answer(server, "t/generate/slow/64", "slow-reader") as response:
        assert response.status == 200
        for index in range(64):
            assert response.read(MIB) == block(index)
            received += 1
            ahead.append(progress(markers, "slow") - received)
            held.append(used_growth(redis_server, baseline))
            time.sleep(0.05)  # about 20 MiB/s
        assert response.read() == b""
    assert max(ahead) < FEW_MIB, f"the generator ran ahead of its client by up to {max(ahead)} MiB"
    assert max(held) < FEW_MIB, f"Redis held up to {max(held):.1f} MiB more while the answer went"


def test_a_client_that_leaves_mid_stream_stops_the_generator_and_its_keys_go(server, redis_server, markers):
    with open_answer(server, "t/generate/leaving/200", "leaving") as response:
        assert response.status == 200 and response.read(2 * MIB) == block(0) + block(1)
    began = time.monotonic()
    wait_until(lambda: closed(markers, "leaving"), 10, "the generator to be closed")
    assert time.monotonic() - began < 10
    assert progress(markers, "leaving") < 2 + FEW_MIB, "the generator ran on after its client left"
    wait_until(lambda: stream_keys(redis_server) == [], 5, "the stream's keys to go")


def test_a_stream_past_max_output_bytes_is_cut_off_and_logged_as_500(server, redis_server, markers):
    assert len(cut_off_answer(server, "t/generate/endless/200", "too-long")) <= LIMIT_MIB * MIB
    assert access_status(server, "too-long") == 500
    assert "UFOP_MAX_OUTPUT_BYTES" in server.output()
    wait_until(lambda: closed(markers, "endless"), 5, "the generator to be closed")
    assert progress(markers, "endless") <= LIMIT_MIB + 1, "the generator ran on past the limit"
    wait_until(lambda: stream_keys(redis_server) == [], 5, "the stream's keys to go")


def test_a_generator_raising_mid_stream_is_cut_off_and_logged_as_500(server, redis_server, markers):
    assert cut_off_answer(server, "t/generate/failing/8/fail", "raising") == generated(8)
    assert access_status(server, "raising") == 500
    assert "RuntimeError: the generator failed on purpose" in server.output()
    wait_until(lambda: stream_keys(redis_server) == [], 5, "the stream's keys to go")


# Time: the processor's timeout covers process() and each chunk, not a slow client's whole answer.

def test_a_stream_to_a_slow_client_outlives_the_processors_timeout(server, worker, markers):
    began = time.monotonic()
    with open_answer(server, "t/brief/outliving/64", "outliving") as response:  # Brief's timeout: 2 s
        assert response.headers["Transfer-Encoding"] == "chunked"
        for index in range(64):
            assert response.read(MIB) == block(index)
            assert progress(markers, "outliving") < index + 1 + FEW_MIB, "the generator ran ahead"
            time.sleep(0.1)
        assert response.read() == b""
    assert time.monotonic() - began > 6, "the answer had to take longer than the task's time limits"
    assert access_status(server, "outliving") == 200
    assert closed(markers, "outliving")
    assert "time limit" not in worker.output()


def test_a_producer_stuck_mid_stream_past_its_timeout_is_killed_and_the_answer_cut_off(server, worker):
    began = time.monotonic()
    assert cut_off_answer(server, "t/brief/stuck/2/hang", "stuck") == generated(2)
    assert time.monotonic() - began < 15
    assert access_status(server, "stuck") == 500
    wait_until(lambda: "Hard time limit" in worker.output(), 5, "the worker to log its kill")
    worker.wait_for_children()


def test_a_worker_killed_mid_stream_cuts_the_answer_off_and_its_request_is_not_run_again(server, worker,
                                                                                           markers):
    with open_answer(server, "t/brief/killed/200", "killed") as response:
        assert response.read(MIB) == block(0)
        os.kill(started_by(markers, "killed")[0], signal.SIGKILL)
        with pytest.raises(http.client.IncompleteRead):
            response.read()
    assert access_status(server, "killed") == 500
    worker.wait_for_children()
    time.sleep(1)  # its task, delivered again at once, would have run by now
    assert len(started_by(markers, "killed")) == 1, "the request ran again"


def test_a_worker_whose_server_died_mid_stream_stops_its_producer_and_deletes_its_keys(redis_server, markers):
    url = redis_server.url(1)
    with Worker(CELERY, url, env=settings(markers, UFOP_WRITE_TIMEOUT="1")), \
            Server(CELERY, "--host", "127.0.0.1", env=settings(markers, UFOP_BROKER_URL=url)) as server, \
            open_answer(server, "t/generate/orphan/200", "orphan") as response:
        assert response.read(MIB) == block(0)
        server.process.kill()
        server.process.wait()
        began = time.monotonic()
        wait_until(lambda: closed(markers, "orphan"), 30, "the generator to be closed")
    assert time.monotonic() - began < 1 + CREDIT_MARGIN + 5  # UFOP_WRITE_TIMEOUT and the margin
    assert progress(markers, "orphan") < 1 + FEW_MIB
    assert stream_keys(redis_server, 1) == []
