"""Async processors in the embedded pool, through a real ``ufop-sdk serve``: many requests at once on one
worker's event loop, timeouts that cancel, coroutines that never yield, clients that leave."""

import json
import socket
import threading
import time

import pytest
from support import PROJECTS, Origin, Server, children_of, free_port, post_concurrently, run_cli

ASYNC = PROJECTS / "async_processors"


@pytest.fixture(scope="module")
def markers(tmp_path_factory):
    """Where the project's processors leave their traces (MARKER_DIR)."""
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def one_worker(markers):
    env = {"MARKER_DIR": str(markers), "UFOP_BLOCKED_NETWORKS": "192.0.2.0/24",  # loopback origins allowed
           "UFOP_MAX_OUTPUT_BYTES": str(4 << 20)}
    with Server(ASYNC, "--host", "127.0.0.1", env=env, workers=1) as server:
        yield server


def workers_of(server):
    return set(children_of(server.process.pid))


def wait_for_one_healthy_worker(server, replaced=()):
    def healed():
        status, health = server.health()
        workers = workers_of(server)
        return status == 200 and health["workers"] == 1 and len(workers) == 1 and not workers & set(replaced)

    server.wait_until(healed, 15, "one healthy worker")


def traces(markers, name, point):
    path = markers / f"{name}.{point}"
    return path.read_text().split() if path.exists() else []


def test_sixteen_sleeping_requests_answer_together_on_one_worker_with_concurrency_16(one_worker):
    began = time.monotonic()
    answers = post_concurrently(one_worker, [("t/nap/1", b"")] * 16)
    elapsed = time.monotonic() - began
    assert [status for status, _, _ in answers] == [200] * 16
    assert len({json.loads(body)["pid"] for _, _, body in answers}) == 1, "all on the one worker"
    assert elapsed < 4, f"16 one-second naps took {elapsed:.1f}s (one after another: 16s)"


def test_a_worker_runs_no_more_async_requests_at_once_than_the_processors_concurrency(one_worker):
    """Nap's concurrency is 16: the 17th request waits for a place."""
    began = time.monotonic()
    answers = post_concurrently(one_worker, [("t/nap/1.5", b"")] * 17)
    elapsed = time.monotonic() - began
    assert [status for status, _, _ in answers] == [200] * 17
    assert 2.5 < elapsed < 8, f"the 17th of 17 naps of 1.5s waited for a place: {elapsed:.1f}s"
    status, health = one_worker.health()
    assert (status, health["busy"], health["pending"]) == (200, 0, 0)


def test_health_counts_the_worker_running_async_requests_as_busy(one_worker):
    with_naps = post_concurrently_in_background(one_worker, [("t/nap/2", b"")] * 4)
    one_worker.wait_until(lambda: one_worker.health()[1]["pending"] == 4, 5, "the naps to start")
    status, health = one_worker.health()
    assert (status, health["workers"], health["busy"]) == (200, 1, 1)
    assert [status for status, _, _ in with_naps()] == [200] * 4


def post_concurrently_in_background(server, requests):
    """Start `requests` at once; returns a function that waits for their answers."""
    answers = []
    thread = threading.Thread(target=lambda: answers.extend(post_concurrently(server, requests)))
    thread.start()

    def wait():
        thread.join(30)
        return answers

    return wait


# t/answer/<kind> on b"input": the status and how the body starts (Celery mode's tests use it too)
ANSWERS = [
    ("bytes", 200, b"input"),
    ("text", 200, b"hello"),
    ("response", 201, b"made"),
    ("file", 200, b"from a file"),
    ("stream", 200, b"one two three"),
    ("none", 204, b""),
    ("refused", 400, b'{"error":"refused on purpose"'),
]


@pytest.mark.parametrize(("kind", "status", "body"), ANSWERS)
def test_an_async_process_answers_with_every_kind_of_value(one_worker, kind, status, body):
    answer_status, _, answer_body = one_worker.post(f"t/answer/{kind}", b"input")
    assert (answer_status, answer_body[:len(body)]) == (status, body)


def test_a_stream_from_an_async_process_is_written_to_a_file_and_sent_whole_with_its_length(one_worker):
    status, headers, body = one_worker.post("t/answer/chunks")
    assert (status, headers["Content-Length"]) == (200, str(48 * 65536))
    assert body == b"".join(bytes([n]) * 65536 for n in range(48))


def test_an_endless_stream_from_an_async_process_is_cut_at_the_output_limit_with_a_500(one_worker):
    status, _, body = one_worker.post("t/answer/endless")
    assert (status, json.loads(body)["error"]) == (
        500, f"the answer grew past the limit of {4 << 20} bytes (UFOP_MAX_OUTPUT_BYTES)")


@pytest.mark.expect_traceback
def test_an_async_process_that_raises_is_a_json_500_and_its_worker_carries_on(one_worker):
    before = workers_of(one_worker)
    status, _, body = one_worker.post("t/answer/bug")
    assert (status, json.loads(body)["error"]) == (500, "internal error in processor 'Answers'")
    assert one_worker.post("t/answer/text")[::2] == (200, b"hello")
    assert workers_of(one_worker) == before


def test_an_async_process_past_its_timeout_is_cancelled_and_answered_504_by_its_own_worker(one_worker):
    wait_for_one_healthy_worker(one_worker)
    before = workers_of(one_worker)
    began = time.monotonic()
    status, _, body = one_worker.post("t/nap/30", timeout=15)
    elapsed = time.monotonic() - began
    assert (status, json.loads(body)["error"]) == (504, "processor 'Nap' ran past its timeout of 3s")
    assert 2.8 < elapsed < 5, elapsed
    assert workers_of(one_worker) == before, "the worker cancelled it: nothing was killed"
    assert one_worker.post("t/nap/0")[0] == 200


def test_a_coroutine_that_never_yields_is_killed_at_its_deadline_and_its_worker_replaced(one_worker):
    """Stuck's timeout is 1 s: its worker cannot cancel it, and the server kills the worker 1 s later."""
    wait_for_one_healthy_worker(one_worker)
    [worker] = workers_of(one_worker)
    began = time.monotonic()
    status, _, body = one_worker.post("t/stuck/30", timeout=15)
    elapsed = time.monotonic() - began
    assert (status, json.loads(body)["error"]) == (504, "processor 'Stuck' ran past its timeout of 1s")
    assert 1.8 < elapsed < 5, elapsed
    wait_for_one_healthy_worker(one_worker, replaced=[worker])
    assert not is_running(worker), "the stuck worker is gone"
    assert one_worker.post("t/echo", b"after")[::2] == (200, b"after")


def is_running(pid):
    """True while `pid` is a live process (not gone, not a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rpartition(")")[2].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_a_child_process_an_async_process_awaits_past_its_timeout_is_killed_with_its_504(one_worker,
                                                                                         markers):
    wait_for_one_healthy_worker(one_worker)
    before = workers_of(one_worker)
    began = time.monotonic()
    status, _, body = one_worker.post("t/spawns/30", timeout=15)
    assert (status, json.loads(body)["error"]) == (504, "processor 'Spawns' ran past its timeout of 1s")
    assert time.monotonic() - began < 3
    assert not is_running(int((markers / "spawned").read_text())), "the child was killed before the answer"
    assert workers_of(one_worker) == before
    assert "Unknown child process" not in one_worker.output(), "asyncio's watcher found it reaped: not news"


def test_a_request_beside_a_stuck_coroutine_fails_with_its_worker_and_says_why(one_worker):
    wait_for_one_healthy_worker(one_worker)
    answers = post_concurrently_in_background(one_worker, [("t/stuck/30", b"")])
    one_worker.wait_until(lambda: one_worker.health()[1]["pending"] == 1, 5, "the stuck request to start")
    time.sleep(0.5)
    status, _, body = one_worker.post("t/stuck/0", timeout=15)
    assert status == 500
    assert json.loads(body)["error"] == ("the worker running processor 'Stuck' was killed: another of its "
                                         "requests ran past its timeout without yielding to the event loop")
    assert answers()[0][0] == 504
    wait_for_one_healthy_worker(one_worker)


def test_a_client_that_leaves_cancels_its_coroutine_and_frees_its_place(one_worker, markers):
    wait_for_one_healthy_worker(one_worker)
    sock = socket.create_connection(("127.0.0.1", one_worker.port), timeout=10)
    sock.sendall(b"POST /handler?cmd=t/watched/leaver/20 HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    one_worker.wait_until(lambda: traces(markers, "leaver", "started"), 10, "the coroutine to start")
    sock.close()
    one_worker.wait_until(lambda: traces(markers, "leaver", "cancelled"), 5, "the coroutine to be cancelled")
    one_worker.wait_until(lambda: one_worker.health()[1]["busy"] == 0, 5, "its place to be free")
    assert traces(markers, "leaver", "done") == []
    assert one_worker.post("t/echo", b"after")[::2] == (200, b"after")


def test_async_requests_share_one_worker_and_leave_the_other_free_for_plain_ones(markers):
    with Server(ASYNC, "--host", "127.0.0.1", env={"MARKER_DIR": str(markers)}, workers=2) as server:
        naps = post_concurrently_in_background(server, [("t/nap/2", b"")] * 4)
        server.wait_until(lambda: server.health()[1]["pending"] == 4, 5, "the naps to start")
        began = time.monotonic()
        assert server.post("t/echo", b"plain")[::2] == (200, b"plain")
        assert time.monotonic() - began < 1, "the plain request did not wait for the naps"
        assert server.health()[1]["busy"] == 1
        assert len({json.loads(body)["pid"] for _, _, body in naps()}) == 1


def test_an_async_process_fetches_in_a_thread_while_its_loop_runs_on(one_worker):
    with Origin() as origin:
        origin.serve("/slow.txt", b"fetched", content_type="text/plain", delay=1)
        began = time.monotonic()
        answers = post_concurrently(one_worker, [("t/fetches", origin.url("/slow.txt").encode())] * 4)
        elapsed = time.monotonic() - began
    assert [(status, body) for status, _, body in answers] == [(200, b"fetched")] * 4
    assert elapsed < 3.5, f"4 fetches of 1 s each took {elapsed:.1f}s (one after another: 4s)"


def test_an_async_process_streaming_its_source_reads_its_head_as_a_body_or_a_url(one_worker):
    with Origin() as origin:
        origin.serve("/big.bin", b"0123456789" * 100_000)
        assert one_worker.post("t/head/5", url=origin.url("/big.bin"))[::2] == (200, b"01234")
    assert one_worker.post("t/head/3", b"abcdef")[::2] == (200, b"abc")


def test_ufop_sdk_dev_serves_async_processors(markers):
    with Server(ASYNC, "--host", "127.0.0.1", command="dev", env={"MARKER_DIR": str(markers)},
                workers=1) as server:
        began = time.monotonic()
        answers = post_concurrently(server, [("t/nap/1", b"")] * 8)
        assert [status for status, _, _ in answers] == [200] * 8
        assert time.monotonic() - began < 4


def test_ufop_sdk_test_runs_an_async_processor(markers):
    result = run_cli("test", ASYNC / "processors.py", "answer/text", "--project", ASYNC,
                     env={"MARKER_DIR": str(markers)})
    assert (result.returncode, result.stdout) == (0, b"hello"), result.stderr


@pytest.mark.parametrize(("declaration", "complaint"), [
    ("concurrency = 4\n    def process(self, req): return b''",
     "processor Plain: concurrency = 4 needs `async def process`"),
    ("concurrency = 0\n    async def process(self, req): return b''",
     "processor Plain: concurrency must be a positive integer, got 0"),
    ("async def setup(self): pass\n    async def process(self, req): return b''",
     "processor Plain: setup() must be a plain def, not async def"),
], ids=["plain-process-with-concurrency", "zero-concurrency", "async-setup"])
@pytest.mark.parametrize("command", ["serve", "test", "routes"])
def test_an_async_declaration_that_cannot_run_stops_every_command_at_load(tmp_path, command, declaration,
                                                                          complaint):
    (tmp_path / "processors.py").write_text(
        f"from ufop_sdk import Processor\nclass Plain(Processor):\n    route = 'a'\n    {declaration}\n")
    (tmp_path / "input").write_bytes(b"x")
    arguments = {"serve": ["serve", "--port", free_port()], "test": ["test", tmp_path / "input", "a"],
                 "routes": ["routes"]}[command]
    result = run_cli(*arguments, "--project", tmp_path, timeout=30)
    assert result.returncode == 2, result.stderr
    assert complaint in result.stderr.decode()
    assert b"Traceback" not in result.stderr
