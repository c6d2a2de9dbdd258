"""Celery mode for real: redis-server, ``ufop-sdk worker`` subprocesses and ``ufop-sdk serve`` over Redis.

No eager mode, no fake Redis: every request below crosses a real broker to a
real worker process. Databases of one redis-server keep apart the groups of
workers that must not take each other's tasks.
"""

import base64
import hashlib
import json
import os
import pickle
import signal
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from redis_support import RedisServer, Worker, running_workers, wait_until
from support import PROJECTS, Origin, Server, post_concurrently, run_cli

CELERY = PROJECTS / "celery"
QUEUE = "ufop"  # the Celery queue, a Redis list of that name
PNG = "png"  # stands for the conftest's PNG in the table below


def project_server(markers, broker_url=None, **settings):
    """``ufop-sdk serve`` of the project: in Celery mode on `broker_url`, else embedded."""
    env = {"MARKER_DIR": str(markers), **settings, **({"UFOP_BROKER_URL": broker_url} if broker_url else {})}
    return Server(CELERY, "--host", "127.0.0.1", env=env)


def project_worker(markers, broker_url, concurrency=1, **settings):
    """``ufop-sdk worker`` of the project on `broker_url`."""
    return Worker(CELERY, broker_url, concurrency=concurrency, env={"MARKER_DIR": str(markers), **settings})


@pytest.fixture(scope="module")
def markers(tmp_path_factory):
    """Where the project's processors leave their traces (MARKER_DIR)."""
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def workers(redis_server, markers):
    """Two ``ufop-sdk worker`` processes of one child each, on database 0."""
    with running_workers(2, CELERY, redis_server.url(0), env={"MARKER_DIR": str(markers)}) as workers:
        yield workers


@pytest.fixture(scope="module")
def celery_server(redis_server, workers, markers):
    """``ufop-sdk serve`` in Celery mode, sending to `workers`."""
    with project_server(markers, redis_server.url(0)) as server:
        yield server


@pytest.fixture(scope="module")
def embedded_server(markers):
    """``ufop-sdk serve`` of the same project with its embedded workers."""
    with project_server(markers) as server:
        yield server


def error_of(body):
    payload = json.loads(body)
    assert set(payload) == {"error", "request_id"}, payload
    return payload["error"]


def traces(markers, name, point):
    """The pids that left `name`.`point` (one per run), in order."""
    path = markers / f"{name}.{point}"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def claim_check_reads(redis_server):
    """How many GET and GETDEL commands Redis has run: one per claim-check key read
    (the worker GETs an input, which goes with its answer; the server GETDELs an answer)."""
    with redis_server.client() as client:
        stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{command}", {}).get("calls", 0) for command in ("get", "getdel"))


def claim_check_keys(redis_server, db=0):
    return redis_server.keys("ufop:input:*", db) + redis_server.keys("ufop:output:*", db)


# The same answers as embedded mode.

SAME_ANSWERS = [
    pytest.param("t/echo", b"hello world", {}, 200, id="text"),
    pytest.param("t/echo", "h\u00e9llo w\u00f6rld \u4f60\u597d".encode(), {}, 200, id="utf8-text"),
    pytest.param("t/echo", b"", {}, 200, id="empty-body"),
    pytest.param("t/echo", PNG, {}, 200, id="png-keeps-bytes-and-sniffed-type"),
    pytest.param("t/echo", bytes(range(256)) * 1200, {}, 200, id="300kib-binary-by-reference"),
    pytest.param("t/describe/x", PNG, {}, 200, id="json-describe"),
    pytest.param("t/describe", b"{}", {"Content-Type": "application/x-thing; v=2"}, 200, id="declared-type"),
    pytest.param("t/resize/200/png", PNG, {}, 200, id="typed-args"),
    pytest.param("t/resize/abc/png", PNG, {}, 400, id="typed-args-bad-integer"),
    pytest.param("t/resize/200/gif", PNG, {}, 400, id="typed-args-bad-choice"),
    pytest.param("t/resize/200/png", b"not an image", {}, 415, id="accepts"),
    pytest.param("t/fail/bad", b"x", {}, 400, id="bad-request"),
    pytest.param("t/nothing", b"x", {}, 404, id="no-route"),
    pytest.param("t/fail/crash", b"x", {}, 500, id="processor-crash", marks=pytest.mark.expect_traceback),
    pytest.param("t/bad-header", b"", {}, 500, id="bad-header"),
    pytest.param("t/sleep/5", b"", {}, 504, id="past-timeout"),
    pytest.param("t/custom", b"", {}, 201, id="custom-status-and-header"),
    pytest.param("t/empty", b"ignored", {}, 204, id="none-is-204"),
]


def comparable(answer):
    """What must be the same in both modes: all but the request id, date, length and pid."""
    status, headers, body = answer
    content_type = headers.get("Content-Type")
    others = {name: value for name, value in headers.items()
              if name not in ("Date", "X-Request-Id", "Content-Length", "Content-Type")}
    if content_type == "application/json":
        body = {key: value for key, value in json.loads(body).items() if key not in ("pid", "request_id")}
    return status, content_type, others, body


@pytest.mark.parametrize("cmd, body, headers, status", SAME_ANSWERS)
def test_answers_are_the_same_as_embedded_mode(embedded_server, celery_server, png, cmd, body, headers,
                                               status):
    body = png if body is PNG else body
    embedded = comparable(embedded_server.post(cmd, body, headers=headers, timeout=15))
    celery = comparable(celery_server.post(cmd, body, headers=headers, timeout=15))
    assert celery == embedded
    assert celery[0] == status, celery


def test_the_request_id_reaches_the_processor_on_the_worker(celery_server, workers):
    status, headers, body = celery_server.post("t/describe", b"x", headers={"X-Request-Id": "celery-id-1"})
    described = json.loads(body)
    assert status == 200 and headers["X-Request-Id"] == described["request_id"] == "celery-id-1"
    assert described["pid"] in [child for worker in workers for child in worker.children()]


# Payloads by reference (claim checks).

def test_a_20_mib_body_and_answer_travel_by_reference_and_leave_no_keys(celery_server, redis_server):
    # A zero first byte: random bytes may start with a signature libmagic knows ("MZ": x-dosexec).
    data = b"\0" + os.urandom((20 << 20) - 1)
    taken_before = claim_check_reads(redis_server)
    status, headers, body = celery_server.post("t/echo", data, timeout=60)
    assert status == 200 and headers["Content-Type"] == "application/octet-stream"
    assert len(body) == len(data) and body == data
    assert claim_check_reads(redis_server) - taken_before == 2, "the input and the answer each read once"
    assert claim_check_keys(redis_server) == []


def test_a_small_body_travels_inline(celery_server, redis_server):
    taken_before = claim_check_reads(redis_server)
    assert celery_server.post("t/echo", b"small")[::2] == (200, b"small")
    assert claim_check_reads(redis_server) == taken_before
    assert claim_check_keys(redis_server) == []


# Url mode: the worker fetches the source.

@pytest.fixture(scope="module")
def open_server(redis_server, markers):
    """A worker and a server that may fetch from loopback (UFOP_BLOCKED_NETWORKS=none), on database 1."""
    url, loopback = redis_server.url(1), {"UFOP_BLOCKED_NETWORKS": "none"}
    with project_worker(markers, url, **loopback), project_server(markers, url, **loopback) as server:
        yield server


def test_the_worker_fetches_a_url_source_itself(open_server, redis_server, png):
    source = os.urandom(1 << 20)
    with Origin() as origin:
        origin.serve("/photo.png", png, content_type="image/png")
        origin.serve("/large.bin", source, content_type="application/octet-stream")
        status, _, body = open_server.post("t/describe/u", url=origin.url("/photo.png"), timeout=15)
        assert status == 200, body
        described = json.loads(body)
        assert (described["url"], described["size"]) == (origin.url("/photo.png"), len(png))
        assert (described["content_type"], described["declared_content_type"]) == ("image/png", "image/png")
        taken_before = claim_check_reads(redis_server)
        status, _, body = open_server.post("t/echo", url=origin.url("/large.bin"), timeout=15)
        assert status == 200 and body == source
        assert claim_check_reads(redis_server) - taken_before == 1, "only the answer went through Redis"
        assert origin.requests == ["/photo.png", "/large.bin"]
    assert claim_check_keys(redis_server, db=1) == []


def test_by_default_the_worker_refuses_a_loopback_source(celery_server):
    with Origin() as origin:
        origin.serve("/secret.txt", b"internal", content_type="text/plain")
        status, _, body = celery_server.post("t/echo", url=origin.url("/secret.txt"), timeout=15)
        assert status == 403
        assert "blocked address" in error_of(body) and "UFOP_BLOCKED_NETWORKS" in error_of(body)
        assert origin.requests == []


# Two workers.

def test_two_workers_both_take_tasks(celery_server, workers):
    answers = post_concurrently(celery_server, [("t/whoami/0.1", b"")] * 20, timeout=20)
    assert [status for status, _, _ in answers] == [200] * 20
    answered = [json.loads(body) for _, _, body in answers]
    assert {answer["parent"] for answer in answered} == {worker.pid for worker in workers}
    children = {child for worker in workers for child in worker.children()}
    assert {answer["pid"] for answer in answered} == children and len(children) == 2


# Timeouts.

def test_a_processor_past_its_timeout_is_504_and_stops(celery_server, markers):
    began = time.monotonic()
    status, _, body = celery_server.post("t/mark/overdue/4", timeout=15)
    assert status == 504 and "timeout of 2s" in error_of(body)
    assert 1.8 < time.monotonic() - began < 4.0
    time.sleep(max(0.0, began + 5 - time.monotonic()))  # past when it would have finished
    assert len(traces(markers, "overdue", "started")) == 1
    assert traces(markers, "overdue", "done") == [], "the processor kept running after its 504"


def test_a_processor_ignoring_its_soft_limit_is_killed(celery_server, workers, markers):
    began = time.monotonic()
    status, _, body = celery_server.post("t/stubborn/stubborn/4", timeout=15)
    assert status == 504 and "timeout of 2s" in error_of(body)
    assert time.monotonic() - began < 4.0
    time.sleep(max(0.0, began + 5 - time.monotonic()))
    assert len(traces(markers, "stubborn", "started")) == 1, "it must not be delivered again"
    assert traces(markers, "stubborn", "done") == [], "the processor kept running after its 504"
    for worker in workers:
        worker.wait_for_children()
    assert celery_server.post("t/echo", b"still here")[::2] == (200, b"still here")


def test_a_task_queued_past_its_deadline_is_never_run(celery_server, workers, markers):
    for worker in workers:
        worker.wait_for_children()
    with ThreadPoolExecutor(2) as pool:
        holding = [pool.submit(celery_server.post, "t/patient/holding/4.5", timeout=15) for _ in workers]
        wait_until(lambda: len(traces(markers, "holding", "started")) == 2, 2, "both workers to be busy")
        began = time.monotonic()
        status, _, body = celery_server.post("t/mark/queued/0.1", timeout=15)
        assert status == 504 and "timeout of 2s" in error_of(body)
        assert time.monotonic() - began < 4.0
        assert [future.result(15)[0] for future in holding] == [200, 200]
    time.sleep(1)  # the workers are free: the expired task would run now
    assert traces(markers, "queued", "started") == [], "a task answered 504 ran later"



@pytest.fixture(scope="module")
def lone(redis_server, markers):
    """One worker of one child and a server of their own, on database 3: a second task waits for the first."""
    url = redis_server.url(3)
    with project_worker(markers, url) as worker, project_server(markers, url) as server:
        yield worker, server


def revoke_broadcasts(subscription):
    """The revoke commands published to the workers (Celery's remote control) since the last call."""
    broadcasts = []
    while (message := subscription.get_message(timeout=0.1)) is not None:
        if message["type"] == "pmessage" and b"pidbox" in message["channel"]:
            command = base64.b64decode(json.loads(message["data"])["body"])  # kombu's envelope
            if b"revoke" in command:
                broadcasts.append(command)
    return broadcasts


def test_a_504_revokes_nothing_and_a_task_running_past_it_finishes_in_its_own_limits(lone, redis_server,
                                                                                       markers):
    """Queued 2.5 s behind another, a 1.9 s task (timeout 2 s) is still running at its 504 (3.5 s).

    Celery's documentation says never to terminate a task from code: its process may already run
    another request. The hard time limit ends an overrunning task; ``expires`` drops an unstarted one.
    """
    worker, server = lone
    children = worker.children()
    with redis_server.client() as client, client.pubsub() as subscription:
        subscription.psubscribe("*")
        with ThreadPoolExecutor(1) as pool:
            ahead = pool.submit(server.post, "t/patient/ahead/2.5", timeout=15)
            wait_until(lambda: traces(markers, "ahead", "started"), 3, "the first task to start",
                       worker.output)
            status, _, body = server.post("t/mark/behind/1.9", timeout=15)
            assert status == 504 and "timeout of 2s" in error_of(body)
            assert traces(markers, "behind", "started"), "the task had to be running at its 504"
            assert ahead.result(15)[0] == 200
        wait_until(lambda: traces(markers, "behind", "done"), 4, "the task running at its 504 to finish",
                   worker.output)
        assert revoke_broadcasts(subscription) == []
    assert worker.children() == children, "a worker child was killed"


# Pickle.

class _Exploit:
    """Unpickling it runs a shell command (pickling it runs nothing)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)


def pickle_task_message(task, marker):
    """A Celery protocol 2 message, as kombu's Redis transport stores it, with a pickled body."""
    task_id = str(uuid.uuid4())
    body = pickle.dumps(((_Exploit(marker),), {}, {"callbacks": None, "errbacks": None, "chain": None,
                                                  "chord": None}))
    return json.dumps({
        "body": base64.b64encode(body).decode(), "content-encoding": "binary",
        "content-type": "application/x-python-serialize",
        "headers": {"lang": "py", "task": task, "id": task_id, "root_id": task_id, "parent_id": None,
                    "group": None, "retries": 0, "eta": None, "expires": None, "timelimit": [None, None],
                    "argsrepr": "(exploit,)", "kwargsrepr": "{}", "origin": "attacker"},
        "properties": {"correlation_id": task_id, "reply_to": "", "delivery_mode": 2, "priority": 0,
                       "delivery_info": {"exchange": "", "routing_key": QUEUE}, "body_encoding": "base64",
                       "delivery_tag": str(uuid.uuid4())},
    })


def test_the_exploit_would_work_if_unpickled(tmp_path):
    marker = tmp_path / "unpickled"
    message = json.loads(pickle_task_message("ufop.Echo", marker))
    pickle.loads(base64.b64decode(message["body"]))  # what a worker accepting pickle would do
    assert marker.exists()


def test_a_pickle_message_on_the_queue_is_never_deserialized(celery_server, redis_server, workers, markers):
    marker = markers / "pickle-was-loaded"
    with redis_server.client() as client:
        client.lpush(QUEUE, pickle_task_message("ufop.Echo", marker))
        wait_until(lambda: client.llen(QUEUE) == 0, 5, "a worker to take the message")
    wait_until(lambda: any("Refusing to deserialize" in worker.output() for worker in workers), 5,
               "a worker to refuse the message", lambda: "".join(worker.output() for worker in workers))
    time.sleep(0.5)
    assert not marker.exists(), "the worker unpickled the message"
    for worker in workers:
        assert worker.process.poll() is None
        worker.wait_for_children()
    assert celery_server.post("t/echo", b"after pickle")[::2] == (200, b"after pickle")


# A full queue.

def test_a_full_queue_answers_503_with_retry_after(redis_server, workers, markers):
    with project_server(markers, redis_server.url(0), UFOP_MAX_PENDING="2") as server:
        answers = post_concurrently(server, [("t/patient/full/1.5", b"")] * 6, timeout=15)
        statuses = sorted(status for status, _, _ in answers)
        assert statuses == [200, 200, 503, 503, 503, 503], statuses
        for status, headers, body in answers:
            if status == 503:
                assert int(headers["Retry-After"]) >= 1
                assert "too many requests" in error_of(body)
            else:
                assert body == b"slept 1.5"
        status, health = server.health()
        assert (status, health["status"], health["pending"]) == (200, "ok", 0)


# The command.

def test_worker_without_a_broker_url_exits_2_saying_so():
    result = run_cli("worker", "--project", CELERY)
    assert result.returncode == 2
    assert b"UFOP_BROKER_URL is not set" in result.stderr
    assert b"Traceback" not in result.stderr


def test_worker_help():
    result = run_cli("worker", "--help")
    assert result.returncode == 0
    assert b"--concurrency" in result.stdout and b"UFOP_BROKER_URL" in result.stdout


def test_the_worker_runs_as_root_without_c_force_root(workers, celery_server):
    if os.geteuid() != 0:
        pytest.skip("the tests do not run as root here")
    for worker in workers:
        environment = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
        assert not any(variable.startswith(b"C_FORCE_ROOT=") for variable in environment)
        assert "\nUid:\t0\t" in Path(f"/proc/{worker.pid}/status").read_text()
    assert celery_server.post("t/echo", b"as root")[::2] == (200, b"as root")


# Workers that die.

@pytest.fixture(scope="module")
def fragile(redis_server, markers):
    """A worker of two children that the tests kill, with its own server, on database 2."""
    url = redis_server.url(2)
    with project_worker(markers, url, concurrency=2) as worker, project_server(markers, url) as server:
        yield worker, server


def test_a_task_that_kills_its_worker_every_time_fails_after_three_runs(fragile, markers):
    worker, server = fragile
    worker.wait_for_children()
    began = time.monotonic()
    status, headers, body = server.post("t/die/thrice", timeout=30)
    assert time.monotonic() - began < 20, "three deaths, each noticed within Celery's 5 s pool check"
    assert status == 500
    message = error_of(body)
    assert "died 3 times" in message and "'Die'" in message
    assert json.loads(body)["request_id"] == headers["X-Request-Id"]
    time.sleep(1)  # it is not delivered again
    assert len(traces(markers, "thrice", "started")) == 3
    worker.wait_for_children()
    assert server.post("t/echo", b"after deaths")[::2] == (200, b"after deaths")


def test_a_large_input_survives_its_worker_dying_and_is_processed_on_redelivery(fragile, markers):
    """Over UFOP_INLINE_BYTES the input waits in Redis (a claim check): it must still be there
    when the task whose worker died is delivered again."""
    worker, server = fragile
    worker.wait_for_children()
    body = os.urandom(1 << 20)
    status, _, answer = server.post("t/die-once/large-input", body, timeout=30)
    assert status == 200, answer
    assert json.loads(answer) == {"size": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert len(traces(markers, "large-input", "started")) == 2
    worker.wait_for_children()


def kill_mid_task(worker, server, markers, processor, name):
    """POST ``processor/name/1.5``, SIGKILL the child as it starts; returns the answer and its runs' pids."""
    worker.wait_for_children()
    with ThreadPoolExecutor(1) as pool:
        answer = pool.submit(server.post, f"t/{processor}/{name}/1.5", timeout=20)
        wait_until(lambda: traces(markers, name, "started"), 3, "the task to start", worker.output)
        victim = traces(markers, name, "started")[0]
        assert victim in worker.children()
        os.kill(victim, signal.SIGKILL)
        status, _, body = answer.result(20)
    runs = traces(markers, name, "started")
    assert runs[0] == victim
    return status, body, runs


def test_a_task_whose_worker_child_is_killed_runs_again(fragile, markers):
    worker, server = fragile
    status, body, runs = kill_mid_task(worker, server, markers, "patient", "killed")
    assert (status, body) == (200, b"slept 1.5"), worker.output()[-3000:]
    assert len(runs) == 2 and runs[1] != runs[0]
    assert traces(markers, "killed", "done") == [runs[1]]


def test_short_tasks_whose_worker_child_is_killed_run_again_within_their_deadline(fragile, markers):
    """Mark's timeout is 2 s: its run again must come within the 1.5 s the kill leaves it."""
    worker, server = fragile
    for attempt in range(3):
        began = time.monotonic()
        status, body, runs = kill_mid_task(worker, server, markers, "mark", f"killed-short-{attempt}")
        assert (status, body) == (200, b"slept 1.5"), \
            f"attempt {attempt}, after {time.monotonic() - began:.1f}s:\n{worker.output()[-3000:]}"
        assert len(runs) == 2


# The broker goes away and comes back.

@pytest.fixture
def own_broker(markers):
    """A redis-server of its own, with a worker of two children and a server on it."""
    with RedisServer() as broker, project_worker(markers, broker.url(), concurrency=2) as worker:
        # UFOP_GRACE: stopping the server does not wait long for answers that may never come
        with project_server(markers, broker.url(), UFOP_GRACE="2") as server:
            yield broker, worker, server


def answers_echo(server):
    try:
        return server.post("t/echo", b"back", timeout=3)[::2] == (200, b"back")
    except OSError:
        return False


def test_with_redis_stopped_requests_are_503_and_recover_after_restart(own_broker, markers):
    broker, worker, server = own_broker
    assert server.post("t/echo", b"before")[::2] == (200, b"before")
    with ThreadPoolExecutor(2) as pool:
        running = [pool.submit(server.post, f"t/mark/outage-{number}/1", timeout=15) for number in (1, 2)]
        wait_until(lambda: all(traces(markers, f"outage-{number}", "started") for number in (1, 2)), 3,
                   "both tasks to start", worker.output)
        broker.stop()
        began = time.monotonic()
        status, headers, body = server.post("t/echo", b"during", timeout=5)
        assert time.monotonic() - began < 3, "the 503 waited on the broker"
        assert status == 503 and int(headers["Retry-After"]) >= 1
        assert "broker" in error_of(body)
        health_status, health = server.health()
        assert health_status == 503 and "broker" in health["problems"]
        # Their answers cannot come back while Redis is down: each ends at its deadline.
        assert [future.result(10)[0] for future in running] == [504, 504]
    broker.start()
    wait_until(lambda: answers_echo(server), 15, "requests to succeed again after Redis restarted",
               lambda: f"{worker.output()[-5000:]}\n{server.output()[-2000:]}")
    for number in range(5):
        body = f"after {number}".encode()
        assert server.post("t/echo", body, timeout=5)[::2] == (200, body)
    assert server.health()[0] == 200, server.health()
    assert worker.process.poll() is None and server.process.poll() is None
