"""Jobs sent ahead to a busy worker, behind a light processor's job, under a real server (pace.py)."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

from support import PROJECTS, Server

from ufop_sdk.executors.local.pace import LIGHT_STREAK

SEND_AHEAD = PROJECTS / "send_ahead"


def sent_ahead(server):
    """ufop_jobs_sent_ahead_total, from /metrics."""
    metrics = server.request("GET", "/metrics")[2].decode()
    return int(float(metrics.split("\nufop_jobs_sent_ahead_total ")[1].split()[0]))


def warm_up(server, processor_cmd="t/paced/fast/warm", times=LIGHT_STREAK):
    """Answers of `processor_cmd`, one at a time: the pool learns its pace."""
    return [server.post(processor_cmd, b"x", timeout=10) for _ in range(times)]


def post_later(server, delay, cmd, timeout=30):
    """POST `cmd` after `delay` seconds, in a thread: a dict that gets the answer and its seconds."""
    result = {}

    def post():
        time.sleep(delay)
        began = time.monotonic()
        result["answer"] = server.post(cmd, b"-", timeout=timeout)
        result["seconds"] = time.monotonic() - began

    thread = threading.Thread(target=post)
    thread.start()
    result["thread"] = thread
    return result


def test_light_jobs_under_load_are_sent_ahead_and_each_gets_its_own_answer():
    with Server(SEND_AHEAD, "--host", "127.0.0.1", workers=2) as server:
        warm_up(server)
        requests = [(f"t/paced/fast/n{number}", f"body{number}".encode()) for number in range(300)]
        with ThreadPoolExecutor(max_workers=12) as pool:
            answers = list(pool.map(lambda request: server.post(*request, timeout=30), requests))
        pids = set()
        for (cmd, body), (status, _, answer) in zip(requests, answers, strict=True):
            label, echoed, pid = answer.decode().split()
            assert (status, label, echoed) == (200, cmd.rsplit("/", 1)[1], body.decode())
            pids.add(pid)
        assert len(pids) == 2
        assert sent_ahead(server) > 0


def test_no_job_is_sent_ahead_behind_a_processor_whose_jobs_take_longer():
    with Server(SEND_AHEAD, "--host", "127.0.0.1", workers=1) as server:
        warm_up(server, "t/slow/0.05", times=3)  # 50 ms a job: not light
        slow = post_later(server, 0, "t/slow/1")
        fast = post_later(server, 0.3, "t/paced/fast/queued")
        for request in (slow, fast):
            request["thread"].join(30)
        assert slow["answer"][0] == fast["answer"][0] == 200
        assert sent_ahead(server) == 0


def test_one_slow_answer_and_a_processor_is_no_longer_light():
    with Server(SEND_AHEAD, "--host", "127.0.0.1", workers=1) as server:
        warm_up(server)
        assert server.post("t/paced/sleep/0.1", b"-")[0] == 200
        sleeping = post_later(server, 0, "t/paced/sleep/1")
        fast = post_later(server, 0.3, "t/paced/fast/queued")
        for request in (sleeping, fast):
            request["thread"].join(30)
        assert sleeping["answer"][0] == fast["answer"][0] == 200
        assert sent_ahead(server) == 0


def test_a_job_sent_ahead_behind_one_past_its_timeout_runs_on_the_replacement_worker():
    with Server(SEND_AHEAD, "--host", "127.0.0.1", workers=1) as server:
        first_pid = warm_up(server)[-1][2].split()[-1]
        stuck = post_later(server, 0, "t/paced/sleep/30")  # light until it answers; killed at 2 s
        fast = post_later(server, 0.3, "t/paced/fast/after")
        for request in (stuck, fast):
            request["thread"].join(30)
        assert stuck["answer"][0] == 504
        status, _, body = fast["answer"]
        label, _, pid = body.decode().split()
        assert (status, label) == (200, "after")
        assert pid != first_pid.decode()  # it waited behind the stuck job, then ran on the new worker
        assert fast["seconds"] > 1.5
        assert sent_ahead(server) == 1


def test_a_job_sent_ahead_behind_a_stream_is_handed_back_and_run_by_the_next_free_worker():
    with Server(SEND_AHEAD, "--host", "127.0.0.1", workers=2) as server:
        warm_up(server)
        warm_up(server, "t/slow/0.05", times=3)
        streaming = post_later(server, 0, "t/paced/stream/6")  # 0.3 s, then ten chunks over 6 s
        slow = post_later(server, 0.05, "t/slow/1")  # the other worker, behind which nothing goes ahead
        fast = post_later(server, 0.15, "t/paced/fast/returned")  # sent ahead behind the stream's job
        for request in (streaming, slow, fast):
            request["thread"].join(30)
        assert streaming["answer"][0] == 200
        assert streaming["answer"][2] == b"".join(f"chunk {number}\n".encode() for number in range(10))
        assert streaming["seconds"] > 6
        assert fast["answer"][0] == 200 and fast["answer"][2].startswith(b"returned ")
        assert fast["seconds"] < 4  # it ran once `slow` was done, not after the stream
        assert sent_ahead(server) == 1
