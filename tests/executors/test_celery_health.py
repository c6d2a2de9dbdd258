"""Celery mode's /health and worker figures tell the truth: workers' heartbeats, a supervised reply reader.

Real redis-server, real ``ufop-sdk worker`` and ``ufop-sdk serve`` subprocesses;
one test builds the server's CeleryExecutor in-process (on the same real Redis)
to end its reply reader, which nothing outside the process can do.
"""

import asyncio
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import msgpack
import pytest
from redis_support import Worker, wait_until
from support import PROJECTS, Server

from ufop_sdk.app.project import load_app
from ufop_sdk.app.settings import Settings
from ufop_sdk.executors.celery.executor import CeleryExecutor
from ufop_sdk.executors.celery.fleet import HEARTBEAT_TTL

CELERY = PROJECTS / "celery"


def celery_env(redis_server, db, name, tmp_path):
    return {"UFOP_BROKER_URL": redis_server.url(db), "UFOP_NAME": name, "MARKER_DIR": str(tmp_path)}


def starting_server(env):
    """``ufop-sdk serve`` in Celery mode, returned as soon as it answers /health at all."""
    return Server(CELERY, "--host", "127.0.0.1", env=env, wait_healthy=False)


def problems(server):
    status, health = server.health()
    return status, health.get("problems", {})


def test_health_is_503_until_a_worker_consumes_the_queue_and_again_soon_after_it_is_killed(
        redis_server, tmp_path):
    env = celery_env(redis_server, 6, "lonely", tmp_path)
    with starting_server(env) as server:
        status, found = problems(server)
        assert status == 503 and list(found) == ["workers"]
        assert "no worker consumes the queue 'ufop.lonely'" in found["workers"]
        with Worker(CELERY, env["UFOP_BROKER_URL"], concurrency=2, env=env) as worker:
            wait_until(lambda: server.health()[0] == 200, 10, "/health 200 once the worker is ready",
                       worker.output)
            assert server.post("t/echo", b"served")[::2] == (200, b"served")
            children = worker.children()
            os.kill(worker.pid, signal.SIGKILL)
            for child in children:
                os.kill(child, signal.SIGKILL)
            killed = time.monotonic()
            wait_until(lambda: problems(server)[0] == 503, HEARTBEAT_TTL + 5,
                       "/health 503 after the only worker was killed")
            assert HEARTBEAT_TTL - 2 < time.monotonic() - killed, "a killed worker's heartbeat outlives it"
            assert "no worker consumes" in problems(server)[1]["workers"]


def test_a_worker_stopped_cleanly_stops_counting_at_once(redis_server, tmp_path):
    env = celery_env(redis_server, 7, "leaving", tmp_path)
    with starting_server(env) as server:
        worker = Worker(CELERY, env["UFOP_BROKER_URL"], env=env)
        with worker:
            wait_until(lambda: server.health()[0] == 200, 10, "/health 200 once the worker is ready")
            worker.stop()  # SIGTERM: Celery's warm shutdown
            stopped = time.monotonic()
            assert problems(server)[0] == 503
            assert time.monotonic() - stopped < HEARTBEAT_TTL - 1, "it waited for the heartbeat to expire"


def test_a_worker_started_with_another_ufop_name_does_not_count(redis_server, tmp_path):
    """A UFOP_NAME that differs between serve and worker shows on /health, not as requests left waiting."""
    server_env = celery_env(redis_server, 8, "right-name", tmp_path)
    worker_env = {**server_env, "UFOP_NAME": "wrong-name"}
    with starting_server(server_env) as server, Worker(CELERY, server_env["UFOP_BROKER_URL"], env=worker_env):
        wait_until(lambda: redis_server.keys("ufop:wrong-name:worker:*", 8), 5, "the worker's heartbeat")
        status, found = problems(server)
        assert status == 503 and "no worker consumes the queue 'ufop.right-name'" in found["workers"]


def metric(server, line_start):
    _, _, body = server.request("GET", "/metrics")
    [line] = [line for line in body.decode().splitlines() if line.startswith(line_start)]
    return float(line.split()[-1])


def test_workers_and_busy_count_the_processes_of_every_live_worker(redis_server, tmp_path):
    env = celery_env(redis_server, 9, "counted", tmp_path)
    url = env["UFOP_BROKER_URL"]
    with Worker(CELERY, url, concurrency=2, env=env), Worker(CELERY, url, concurrency=1, env=env), \
            Server(CELERY, "--host", "127.0.0.1", env=env) as server:
        health = server.health()[1]
        assert (health["workers"], health["worker_nodes"]) == (3, 2)
        assert metric(server, 'ufop_workers{state="running"}') == 3
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(server.post, "t/patient/counted-busy/3", timeout=15)
            wait_until(lambda: server.health()[1]["busy"] == 1, 3, "busy 1 while a request runs")
            assert metric(server, 'ufop_workers{state="busy"}') == 1
            assert slow.result()[0] == 200
        wait_until(lambda: server.health()[1]["busy"] == 0, 4, "busy 0 once it is answered")


def test_malformed_items_in_the_reply_list_are_logged_and_skipped(redis_server, tmp_path):
    env = celery_env(redis_server, 10, "garbled", tmp_path)
    with Worker(CELERY, env["UFOP_BROKER_URL"], env=env), \
            Server(CELERY, "--host", "127.0.0.1", env=env) as server:
        reply_list = reply_list_of(redis_server, 10)
        with redis_server.client(10) as client:
            for item in (b"\xc1 not msgpack", msgpack.packb([1, 2]), msgpack.packb({"no": "id"})):
                client.lpush(reply_list, item)
        wait_until(lambda: server.output().count("skipped a malformed item") == 3, 5,
                   "three malformed items logged", server.output)
        assert server.post("t/echo", b"still answered", timeout=10)[::2] == (200, b"still answered")
        assert server.health()[0] == 200
        assert "Traceback" not in server.output()


def reply_list_of(redis_server, db):
    """The reply list the only server on `db` reads: the key of its next BLPOP."""
    with redis_server.client(db) as client, client.monitor() as monitor:
        for command in monitor.listen():
            words = command["command"].split()
            if words[0].upper() == "BLPOP" and command["db"] == db:
                return words[1]


@pytest.fixture
def executor(redis_server, tmp_path, monkeypatch):
    """The Celery executor a server on database 11 runs, built in this process."""
    monkeypatch.setenv("MARKER_DIR", str(tmp_path))
    settings = Settings.load(CELERY, environ={"UFOP_BROKER_URL": redis_server.url(11)})
    return CeleryExecutor(settings, load_app(settings))


def test_a_reply_reader_that_ends_is_reported_and_started_again(executor):
    async def scenario():
        await executor.start()
        try:
            await asyncio.sleep(0.3)
            assert "replies" not in await executor.health()
            executor.replies.task.cancel()
            await asyncio.sleep(0)
            assert "stopped" in (await executor.health())["replies"]
            await asyncio.sleep(1)
            assert "replies" not in await executor.health()
            waiting = executor.waiting["after-restart"] = asyncio.get_running_loop().create_future()
            answer = msgpack.packb({"id": "after-restart", "status": 200})
            await executor.redis.lpush(executor.reply_key, answer)
            assert (await asyncio.wait_for(waiting, 3))["status"] == 200
        finally:
            await executor.close()

    asyncio.run(scenario())
