"""Faults under load in Celery mode: a worker child killed, and Redis restarted.

Real redis-server, real ``ufop-sdk worker`` and ``ufop-sdk serve`` subprocesses.
Figures go to test-artifacts/reliability/faults.json.
"""

import asyncio
import os
import signal
import time
from types import SimpleNamespace

import pytest
import redis
from harness import PROJECT, record, sized
from kombu import Exchange, Producer, Queue
from loadgen import Call, answers, echo, error_check, eventually, every, handler, load
from redis_support import RedisServer, Worker
from support import Server

from ufop_sdk.executors.celery.app import REDIS_TRANSPORT, make_celery_app

pytestmark = pytest.mark.reliability


def celery_server(broker_url, markers, **settings):
    env = {"UFOP_BROKER_URL": broker_url, "MARKER_DIR": str(markers), **settings}
    return Server(PROJECT, "--host", "127.0.0.1", env=env)


def celery_worker(broker_url, markers, **settings):
    return Worker(PROJECT, broker_url, concurrency=2, env={"MARKER_DIR": str(markers), **settings})


def runs(markers, name):
    """The pids that started the traced request `name`, in order."""
    path = markers / f"{name}.started"
    return [int(pid) for pid in path.read_text().split()] if path.exists() else []


def traced(k):
    name = f"victim-{k}"
    return Call("traced", handler(f"t/traced/{name}/0.5"), answers(200, f"traced {name}".encode()))


def test_a_worker_child_killed_under_load_loses_no_request(redis_server, tmp_path):
    url = redis_server.url(0)
    with celery_worker(url, tmp_path) as worker, celery_server(url, tmp_path) as server:
        calls = every(sized(400, 2000), 25, traced, lambda n: echo(b"beside a kill %d" % n))

        async def scenario():
            running = asyncio.ensure_future(load(server.port, calls, 16, timeout=30))
            await eventually(lambda: runs(tmp_path, "victim-0"), 15, "the first traced request to start")
            victim = runs(tmp_path, "victim-0")[0]
            assert victim in worker.children()
            os.kill(victim, signal.SIGKILL)
            return victim, await running

        victim, report = asyncio.run(asyncio.wait_for(scenario(), 120))
        assert report.problems() == []
        again = runs(tmp_path, "victim-0")
        assert len(again) == 2 and again[0] == victim and again[1] != victim, again
        worker.wait_for_children()
        assert victim not in worker.children()
        assert worker.process.poll() is None and server.process.poll() is None
    record("faults", {"celery_child_killed": {**report.figures(), "killed_pid": victim,
                                              "victim_runs": len(again)}})


def broker_down(answer):
    """A request sent while Redis was down: 503 at once, saying why."""
    problem = error_check(503, "the broker is unreachable")(answer)
    if problem is None and answer.headers.get("retry-after") != "1":
        problem = f"no Retry-After: {answer.headers}"
    if problem is None and answer.seconds > 5:  # not waiting on the broker; the machine is slow and shared
        problem = f"the 503 took {answer.seconds:.2f}s"
    return problem


def test_redis_restarted_under_load_answers_503_while_down_and_recovers(tmp_path):
    limits = {"UFOP_TIMEOUT": "1", "UFOP_GRACE": "2"}  # answers lost with Redis end within 2.5 s
    with RedisServer() as broker, celery_worker(broker.url(), tmp_path, **limits) as worker, \
            celery_server(broker.url(), tmp_path, **limits) as server:
        sent, moments = [], {}

        def calls():
            for n in range(10_000_000):
                if "stop" in moments:
                    return
                yield echo(b"through a restart %d" % n)

        def recovered():
            done = [a for a in sent if a.received and a.sent > moments["up"]]
            return len(done) >= 20 and all(a.status == 200 for a in done[-20:])

        async def scenario():
            running = asyncio.ensure_future(load(server.port, calls(), 8, timeout=15, answers=sent))
            await asyncio.sleep(1)
            moments["stopping"] = time.monotonic()
            await asyncio.to_thread(broker.stop)
            moments["down"] = time.monotonic()  # stopped: its port is closed
            await asyncio.sleep(5)  # past the 2.5 s deadline of the requests it caught
            moments["restarting"] = time.monotonic()
            await asyncio.to_thread(broker.start)
            moments["up"] = time.monotonic()
            try:
                await eventually(recovered, 45, "20 answers in a row to be 200 after Redis came back")
            except AssertionError as exc:
                moments["stop"] = time.monotonic()
                raise AssertionError(f"{exc}; the worker's exit code: {worker.process.poll()}; its log:\n"
                                     + _worst_lines(worker.output())) from None
            moments["recovered"] = time.monotonic()
            await asyncio.sleep(1)
            moments["stop"] = time.monotonic()
            return await running

        report = asyncio.run(asyncio.wait_for(scenario(), 90))
        assert server.process.poll() is None and worker.process.poll() is None
        first_health_after = server.health()  # checked last, below
        for number in range(5):
            body = f"after the restart {number}".encode()
            assert server.post("t/echo", body, timeout=5)[::2] == (200, body)

    def between(start, end):
        return [a for a in report.answers if moments[start] <= a.sent and a.received < moments[end]]

    before = [a for a in report.answers if a.received < moments["stopping"]]
    caught = [a for a in report.answers if a.sent < moments["down"] and a.received >= moments["stopping"]]
    while_down = between("down", "restarting")
    after = [a for a in report.answers if a.sent > moments["recovered"]]
    assert report.figures()["connection_errors"] == 0
    assert [a.problem() for a in before if a.problem()] == []
    for answer in caught:  # in flight as Redis stopped: answered, refused, or 504 at their deadline
        refused = answer.status in (503, 504) and answer.body.startswith(b'{"error"')
        assert answer.status == 200 or refused, (answer.status, answer.body)
    assert len(while_down) >= 8, "each connection should have been answered while Redis was down"
    assert [broker_down(a) for a in while_down if broker_down(a)][:5] == []
    assert len(after) > 20 and [a.problem() for a in after if a.problem()] == []
    record("faults", {"redis_restarted": {
        **report.figures(), "seconds_down": round(moments["restarting"] - moments["down"], 2),
        "seconds_to_recover_after_restart": round(moments["recovered"] - moments["up"], 2),
        "answered_while_down": len(while_down),
        "in_flight_when_it_stopped": _statuses(caught),
        "statuses_between_restart_and_recovery": _statuses(between("up", "recovered")),
        "first_health_after_recovery": first_health_after}})
    assert first_health_after[0] == 200, f"Redis is back and requests succeed, yet: {first_health_after}"


def test_a_connection_closed_with_redis_down_and_a_brpop_in_flight_closes_cleanly():
    """The sequence that stopped ``ufop-sdk worker`` about one Redis restart in four.

    With kombu's own Redis channel (5.7.0), the close in ``collect()`` fails reading the BRPOP in
    flight, leaving the channel open with its unacknowledged message; then close() restores it
    with the transport detached: AttributeError, which Celery takes for an unrecoverable error.
    """
    with RedisServer() as broker:
        settings = SimpleNamespace(broker_url=broker.url(), name=None)
        celery = make_celery_app(settings, SimpleNamespace(module_name="t", routes=[
            SimpleNamespace(name="Echo", timeout=1)]))
        connection = celery.connection_for_write()
        assert connection.transport_cls == REDIS_TRANSPORT
        tasks = Queue("tasks", Exchange("tasks"), "tasks")
        work = connection.default_channel
        tasks(work).declare()
        Producer(work).publish({"n": 1}, exchange="tasks", routing_key="tasks")
        taken = tasks(work).get(no_ack=False)
        work.basic_consume("tasks", no_ack=False, callback=lambda message: None, consumer_tag="worker")
        work.client.connection = work.client.connection_pool.get_connection()
        work._brpop_start()  # as the worker's event loop does
        # Celery's remote control: an auto-delete fanout queue on a second channel.
        Queue("control", Exchange("control", "fanout"), auto_delete=True)(connection.channel()).declare()
        assert work._in_poll and len(work.qos._delivered) == 1
        broker.stop()
        connection.collect(socket_timeout=5)  # what Celery's consumer does on a lost connection...
        connection.close()  # ...and then this
        assert work.closed
        with pytest.raises(redis.ConnectionError):  # acknowledged too late: Celery logs it, goes on
            taken.ack()


def test_a_worker_stopped_by_an_unrecoverable_error_exits_1(redis_server, tmp_path):
    """Celery.start() drops its worker's exit code: a supervisor must still see the failure."""
    worker = Worker(PROJECT, redis_server.url(), args=[f"--pidfile={tmp_path / 'missing' / 'worker.pid'}"])
    try:
        worker.start()
        assert worker.process.wait(30) == 1, worker.output()
        assert "Unrecoverable error" in worker.output()
    finally:
        worker.close()


def _worst_lines(log):
    lines = log.splitlines()
    worst = [n for n, line in enumerate(lines) if "CRITICAL" in line or "Unrecoverable" in line]
    return "\n".join(lines[worst[0]:worst[0] + 3] + ["..."] + lines[-8:]) if worst else "\n".join(lines[-30:])


def _statuses(answered):
    counts = {}
    for answer in answered:
        key = str(answer.status) if answer.error is None else "connection error"
        counts[key] = counts.get(key, 0) + 1
    return counts
