"""The embedded worker pool under a real server: hangs, crashes, a full queue, temp files."""

import json
import os
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from support import PROJECTS, Origin, Server, children_of, open_files, post_concurrently

SERVER = PROJECTS / "server"
POOL = PROJECTS / "pool"  # processors that sleep, leave markers, and a health() that can hang
NOT_LOOPBACK = {"UFOP_BLOCKED_NETWORKS": "192.0.2.0/24"}  # a test network: loopback sources allowed
LARGE = 5 << 20  # over the 1 MiB a spool keeps in memory


@pytest.fixture(scope="module")
def spool_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def server(spool_dir):
    with Server(SERVER, "--host", "127.0.0.1", env={"UFOP_SPOOL_DIR": str(spool_dir)}, workers=2) as server:
        yield server


@pytest.fixture(scope="module")
def markers(tmp_path_factory):
    """Where the pool project's processors leave markers."""
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def one_worker():
    """One worker, and at most two requests admitted at once."""
    with Server(SERVER, "--host", "127.0.0.1", env={"UFOP_MAX_PENDING": "2"}, workers=1) as server:
        yield server


def wait_for_full_pool(server, size, replaced=()):
    """Wait until /health is 200 with `size` workers, none of them a pid in `replaced`."""
    def healed():
        status, payload = server.health()
        workers = set(children_of(server.process.pid))
        return status == 200 and payload["workers"] == size and len(workers) == size \
            and not workers & set(replaced)

    server.wait_until(healed, 15, f"the pool to have {size} healthy workers again")


def assert_answers_normally(server, count):
    for number in range(count):
        body = f"after {number}".encode()
        assert server.post("t/echo", body, timeout=10)[::2] == (200, body)


def spool_files(server, spool_dir):
    """Descriptors the server and its workers hold on files in `spool_dir` (unnamed temp files too)."""
    pids = [server.process.pid, *children_of(server.process.pid)]
    return [target for pid in pids for target in open_files(pid) if target.startswith(str(spool_dir))]


# Hangs and crashes.

def test_a_processor_past_its_timeout_is_504_and_its_worker_replaced(server):
    wait_for_full_pool(server, 2)
    before = set(children_of(server.process.pid))
    began = time.monotonic()
    status, _, body = server.post("t/sleep/30", timeout=15)
    elapsed = time.monotonic() - began
    assert status == 504
    assert "timeout of 2s" in json.loads(body)["error"]
    assert 1.8 < elapsed < 4, elapsed
    assert_answers_normally(server, 5)
    wait_for_full_pool(server, 2)
    assert len(set(children_of(server.process.pid)) - before) == 1, "exactly one worker replaced"


@pytest.mark.parametrize("cmd", ["t/exit", "t/segfault"])
def test_a_worker_that_dies_fails_only_its_request_and_the_pool_heals(server, cmd):
    wait_for_full_pool(server, 2)
    before = set(children_of(server.process.pid))
    status, headers, body = server.post(cmd, b"x", timeout=15)
    assert status == 500
    payload = json.loads(body)
    assert "died" in payload["error"] and payload["request_id"] == headers["X-Request-Id"]
    assert "Traceback" not in body.decode()
    assert_answers_normally(server, 20)
    wait_for_full_pool(server, 2)
    assert len(before - set(children_of(server.process.pid))) == 1, "exactly one worker replaced"


def test_a_worker_killed_while_idle_is_replaced(server):
    wait_for_full_pool(server, 2)
    victim = children_of(server.process.pid)[0]
    os.kill(victim, 9)
    wait_for_full_pool(server, 2, replaced=[victim])
    assert_answers_normally(server, 5)


def test_requests_running_beside_a_crash_are_answered(server):
    wait_for_full_pool(server, 2)
    answers = post_concurrently(server, [("t/sleep/0.5", b""), ("t/exit", b""), ("t/sleep/0.5", b""),
                                         ("t/echo", b"beside")], timeout=15)
    assert [status for status, _, _ in answers] == [200, 500, 200, 200]
    assert answers[3][2] == b"beside"
    wait_for_full_pool(server, 2)


# The queue.

def test_a_full_queue_answers_503_with_retry_after_and_loses_nothing(one_worker):
    began = time.monotonic()
    answers = post_concurrently(one_worker, [("t/sleep/1.5", b"")] * 6, timeout=15)
    assert time.monotonic() - began < 8
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200, 200, 503, 503, 503, 503], statuses
    for status, headers, body in answers:
        assert headers["X-Request-Id"]
        if status == 503:
            assert int(headers["Retry-After"]) >= 1
            assert "too many requests" in json.loads(body)["error"]
        else:
            assert body == b"slept 1.5"
    assert_answers_normally(one_worker, 3)
    status, payload = one_worker.health()
    assert status == 200 and payload["pending"] == 0


def test_time_spent_queued_does_not_count_against_the_timeout(one_worker):
    began = time.monotonic()
    answers = post_concurrently(one_worker, [("t/sleep/1.5", b"")] * 2, timeout=15)
    assert [(status, body) for status, _, body in answers] == [(200, b"slept 1.5")] * 2
    assert time.monotonic() - began > 2.9, "the two requests should have run one after the other"


# Temporary files.

def test_a_large_body_is_spooled_to_disk_and_then_gone(server, spool_dir):
    data = os.urandom(LARGE)
    status, headers, body = server.post("t/echo", data, timeout=20)
    assert status == 200 and body == data
    assert headers["Content-Type"] == "application/octet-stream"
    assert list(spool_dir.iterdir()) == []
    assert spool_files(server, spool_dir) == []


def test_the_spool_is_held_only_while_the_request_runs(server, spool_dir):
    wait_for_full_pool(server, 2)
    answer = []
    sender = threading.Thread(target=lambda: answer.append(server.post("t/sleep/1", os.urandom(LARGE))))
    sender.start()
    try:
        server.wait_until(lambda: spool_files(server, spool_dir), 5, "the body to be spooled under "
                          f"{spool_dir}")
    finally:
        sender.join(15)
    assert answer and answer[0][0] == 200
    server.wait_until(lambda: not spool_files(server, spool_dir), 10, "the spool to be closed")


@pytest.mark.parametrize("cmd, status", [("t/exit", 500), ("t/sleep/30", 504)])
def test_no_spool_is_left_after_a_worker_is_killed(server, spool_dir, cmd, status):
    wait_for_full_pool(server, 2)
    assert server.post(cmd, os.urandom(LARGE), timeout=15)[0] == status
    wait_for_full_pool(server, 2)
    assert spool_files(server, spool_dir) == []
    assert list(spool_dir.iterdir()) == []
    assert_answers_normally(server, 3)


def test_a_client_hanging_up_mid_upload_leaves_no_spool(server, spool_dir):
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /handler?cmd=t/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: %d\r\n\r\n" % LARGE)
        sock.sendall(os.urandom(LARGE // 2))
        server.wait_until(lambda: spool_files(server, spool_dir), 5, "the upload to be spooled")
    server.wait_until(lambda: not spool_files(server, spool_dir), 10, "the spool to be closed")
    assert_answers_normally(server, 3)


def test_a_client_hanging_up_while_its_request_runs_leaves_no_spool(server, spool_dir):
    wait_for_full_pool(server, 2)
    with pytest.raises(TimeoutError):
        server.post("t/sleep/1", os.urandom(LARGE), timeout=0.5)
    server.wait_until(lambda: server.health()[1]["busy"] == 0, 5, "the request to end")
    server.wait_until(lambda: not spool_files(server, spool_dir), 10, "the spool to be closed")
    assert_answers_normally(server, 3)


def test_a_client_hanging_up_while_its_request_waits_costs_no_other_request_and_its_job_never_runs(markers):
    """Its spooled input is kept until the pool lets go of the job, which never runs."""
    head = b"POST /handler?cmd=%s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
    with Server(POOL, "--host", "127.0.0.1", env={"MARKER_DIR": str(markers)}, workers=1) as server, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as running, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as next_up, \
            socket.create_connection(("127.0.0.1", server.port), timeout=10) as waiting:
        running.sendall(head % (b"t/sleep/1", 0))
        next_up.sendall(head % (b"t/sleep/0.5", 0))
        time.sleep(0.2)
        waiting.sendall(head % (b"t/mark/hung-up-while-queued", LARGE) + os.urandom(LARGE))
        time.sleep(0.2)
        waiting.close()  # hangs up while its job waits in the pool
        for sock, expected in ((running, b"slept 1"), (next_up, b"slept 0.5")):
            answer = b""
            while not answer.endswith(expected):
                answer += sock.recv(65536) or b"<closed>"
                assert not answer.endswith(b"<closed>"), answer
            assert answer.startswith(b"HTTP/1.1 200"), answer
        assert_answers_normally(server, 3)
        assert server.health()[1]["workers"] == 1
        assert "died" not in server.output() and "Traceback" not in server.output()
    assert not (markers / "hung-up-while-queued").exists(), "the job of a client that hung up ran"


# A pool that cannot start.

@pytest.fixture(scope="module")
def broken_pool():
    """A project whose workers fail to import it (the server itself can)."""
    with Server(PROJECTS / "worker_fails", "--host", "127.0.0.1", workers=1, wait_healthy=False,
                expect_traceback=True) as server:  # the import fails on purpose, traceback logged
        server.wait_until(lambda: "libvips" in json.dumps(server.health()[1]), 10,
                          "the workers' failure to show in /health")
        yield server


def test_workers_that_cannot_start_make_requests_503_at_once(broken_pool):
    began = time.monotonic()
    status, headers, body = broken_pool.post("t/echo", b"x", timeout=10)
    assert status == 503 and int(headers["Retry-After"]) >= 1
    assert time.monotonic() - began < 5
    assert "no worker" in json.loads(body)["error"]
    assert "Traceback" not in body.decode()


def test_workers_that_cannot_start_make_health_503_with_the_reason_and_no_traceback(broken_pool):
    status, payload = broken_pool.health()
    assert status == 503 and payload["workers"] == 0
    reason = payload["problems"]["workers"]
    assert "libvips.so.42" in reason
    for leak in ("Traceback", "/work/", ".py"):
        assert leak not in reason, f"{leak!r} in the /health body: {reason[:300]}..."


# Scheduling: one queue, one job per worker, a bounded wait.

@pytest.fixture(scope="module")
def pool_server(markers):
    with Server(POOL, "--host", "127.0.0.1", env={"MARKER_DIR": str(markers)}, workers=2) as server:
        yield server


def answered_after(server, cmd, began, seconds_later):
    """POST `cmd` `seconds_later` after `began`; returns (status, seconds from `began` to the answer)."""
    time.sleep(max(0.0, began + seconds_later - time.monotonic()))
    status = server.post(cmd, timeout=20)[0]
    return status, time.monotonic() - began


def test_a_short_job_runs_on_the_first_free_worker_not_behind_a_long_one(pool_server):
    """A 3 s job on one worker, a 0.5 s job on the other: two 0 s jobs wait for the 0.5 s one only."""
    wait_for_full_pool(pool_server, 2)
    began = time.monotonic()
    with ThreadPoolExecutor(4) as threads:
        long = threads.submit(answered_after, pool_server, "t/sleep/3", began, 0)
        short = threads.submit(answered_after, pool_server, "t/sleep/0.5", began, 0.2)
        instant = [threads.submit(answered_after, pool_server, "t/sleep/0", began, 0.4) for _ in range(2)]
        long_status, long_seconds = long.result(20)
        waits = [future.result(20) for future in instant]
    assert short.result()[0] == long_status == 200 and {status for status, _ in waits} == {200}
    assert long_seconds > 2.9
    for _, seconds in waits:
        assert seconds < long_seconds - 1.5, (waits, long_seconds)


def test_a_job_queued_past_the_queue_timeout_is_503_with_retry_after_and_never_runs(markers):
    env = {"MARKER_DIR": str(markers), "UFOP_QUEUE_TIMEOUT": "1"}
    with Server(POOL, "--host", "127.0.0.1", env=env, workers=1) as server, ThreadPoolExecutor(1) as threads:
        running = threads.submit(server.post, "t/sleep/3", timeout=20)
        time.sleep(0.3)
        began = time.monotonic()
        status, headers, body = server.post("t/mark/queued-too-long", timeout=20)
        waited = time.monotonic() - began
        assert status == 503 and int(headers["Retry-After"]) >= 1, body
        assert "no worker was free for 1s" in json.loads(body)["error"]
        assert 0.9 < waited < 4, waited
        assert running.result(20)[0] == 200
        assert server.post("t/sleep/0", timeout=10)[0] == 200
        assert server.health()[1]["pending"] == 0
    assert not (markers / "queued-too-long").exists(), "a job answered 503 must never run"


def test_a_hanging_health_is_503_naming_its_processor_and_the_worker_is_replaced(pool_server, markers):
    wait_for_full_pool(pool_server, 2)
    before = set(children_of(pool_server.process.pid))
    (markers / "hang-health").write_text("")
    try:
        began = time.monotonic()
        status, payload = pool_server.health()
        assert time.monotonic() - began < 10
    finally:
        (markers / "hang-health").unlink()
    assert status == 503, payload
    assert payload["problems"] == {"Patient": "health() timed out after 5s"}
    wait_for_full_pool(pool_server, 2)
    assert len(before - set(children_of(pool_server.process.pid))) == 1, "the hung worker is replaced"


def test_a_url_request_over_the_pending_limit_is_503_without_a_download(markers):
    env = {"MARKER_DIR": str(markers), "UFOP_MAX_PENDING": "1", **NOT_LOOPBACK}
    with Server(POOL, "--host", "127.0.0.1", env=env, workers=1) as server, Origin() as origin, \
            ThreadPoolExecutor(1) as threads:
        origin.serve("/source.txt", b"source")
        running = threads.submit(server.post, "t/sleep/1.5", timeout=20)
        server.wait_until(lambda: server.health()[1]["pending"] == 1, 5, "the sleep to be admitted")
        status, headers, body = server.post("t/mark/over-limit", url=origin.url("/source.txt"), timeout=10)
        assert status == 503 and "too many requests" in json.loads(body)["error"], body
        assert origin.requests == [], "nothing is downloaded for a request that is refused"
        assert running.result(20)[0] == 200
    assert not (markers / "over-limit").exists()


def test_a_url_request_whose_fetch_fails_gives_its_place_back(markers):
    env = {"MARKER_DIR": str(markers), "UFOP_MAX_PENDING": "1", **NOT_LOOPBACK}
    with Server(POOL, "--host", "127.0.0.1", env=env, workers=1) as server, Origin() as origin:
        origin.serve("/source.txt", b"source")
        for _ in range(3):
            assert server.post("t/sleep/0", url=origin.url("/missing"), timeout=10)[0] == 502
            assert server.health()[1]["pending"] == 0
        assert server.post("t/sleep/0", url=origin.url("/source.txt"), timeout=10)[0] == 200
        assert server.health()[1]["pending"] == 0


def test_a_worker_that_cannot_be_started_is_logged_reported_by_health_and_fails_requests_at_once(tmp_path):
    python = tmp_path / "python3"
    python.symlink_to(sys.executable)
    with Server(SERVER, "--host", "127.0.0.1", workers=1, python=python) as server:
        python.unlink()  # its workers' interpreter: the next one cannot start
        os.kill(children_of(server.process.pid)[0], 9)
        server.wait_until(lambda: "cannot start a worker" in json.dumps(server.health()[1]), 10,
                          "the failure to show in /health")
        status, payload = server.health()
        assert status == 503 and "No such file or directory" in payload["problems"]["workers"], payload
        began = time.monotonic()
        status, _, body = server.post("t/echo", b"x", timeout=10)
        assert status == 503 and "cannot start a worker" in json.loads(body)["error"], body
        assert time.monotonic() - began < 3
        assert "cannot start a worker" in server.output()
