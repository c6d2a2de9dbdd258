"""Jobs sent ahead to a busy worker, behind a light processor's job, under a real server (pace.py)."""

import http.client
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

from support import PROJECTS, Server, clean_environment

from ufop_sdk.app.jobs import Job
from ufop_sdk.executors.local import protocol
from ufop_sdk.executors.local.pace import LIGHT_SECONDS, LIGHT_STREAK

SEND_AHEAD = PROJECTS / "send_ahead"


def sent_ahead(server):
    """ufop_jobs_sent_ahead_total, from /metrics."""
    metrics = server.request("GET", "/metrics")[2].decode()
    return int(float(metrics.split("\nufop_jobs_sent_ahead_total ")[1].split()[0]))


def warm_up(server, processor_cmd="t/paced/fast/warm", times=LIGHT_STREAK):
    """Answers of `processor_cmd`, one at a time: the pool learns its pace."""
    return [server.post(processor_cmd, b"x", timeout=10) for _ in range(times)]


def post_together(server, *cmds, timeout=30):
    """POST each of `cmds` at once, in this order, each on a connection of its own: a dict per cmd that
    gets its answer and seconds. The requests go out within a few ms of each other: a job sent
    ahead must follow the one it waits behind within RUNNING_AT_MOST."""
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout) for _ in cmds]
    for connection in connections:
        connection.connect()
    results = [{} for _ in cmds]
    began = time.monotonic()
    for connection, cmd in zip(connections, cmds, strict=True):
        connection.request("POST", "/handler?" + urllib.parse.urlencode({"cmd": cmd}), b"-")

    def read(connection, result):
        response = connection.getresponse()
        result["answer"] = (response.status, dict(response.getheaders()), response.read())
        result["seconds"] = time.monotonic() - began
        connection.close()

    threads = [threading.Thread(target=read, args=pair) for pair in zip(connections, results, strict=True)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return results


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
        warm_up(server, f"t/slow/{LIGHT_SECONDS * 2.5}")  # just past the limit, as many times as it takes
        slow, fast = post_together(server, "t/slow/1", "t/paced/fast/queued")
        assert slow["answer"][0] == fast["answer"][0] == 200
        assert sent_ahead(server) == 0


def test_one_slow_answer_and_a_processor_is_no_longer_light():
    with Server(SEND_AHEAD, "--host", "127.0.0.1", workers=1) as server:
        warm_up(server)
        assert server.post("t/paced/sleep/0.1", b"-")[0] == 200
        sleeping, fast = post_together(server, "t/paced/sleep/1", "t/paced/fast/queued")
        assert sleeping["answer"][0] == fast["answer"][0] == 200
        assert sent_ahead(server) == 0


def test_a_job_sent_ahead_behind_one_past_its_timeout_runs_on_the_replacement_worker():
    with Server(SEND_AHEAD, "--host", "127.0.0.1", workers=1) as server:
        first_pid = warm_up(server)[-1][2].split()[-1]
        # light until it answers (killed at 2 s), and the fast one sent ahead behind it
        stuck, fast = post_together(server, "t/paced/sleep/30", "t/paced/fast/after")
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
        # one worker runs `slow`, behind which nothing goes ahead; the other the stream's job (0.3 s,
        # then ten chunks over 6 s), behind which the fast one is sent ahead
        slow, streaming, fast = post_together(server, "t/slow/1", "t/paced/stream/6", "t/paced/fast/returned")
        assert slow["answer"][0] == 200
        assert streaming["answer"][0] == 200
        assert streaming["answer"][2] == b"".join(f"chunk {number}\n".encode() for number in range(10))
        assert streaming["seconds"] > 6
        assert fast["answer"][0] == 200 and fast["answer"][2].startswith(b"returned ")
        assert fast["seconds"] < 4  # it ran once `slow` was done, not after the stream
        assert sent_ahead(server) == 1


def test_a_worker_that_dies_in_the_job_sent_ahead_still_delivers_the_answer_it_wrote_before():
    with Server(SEND_AHEAD, "--host", "127.0.0.1", workers=1) as server:
        warm_up(server)
        for attempt in range(5):  # the answer's end and the worker's exit race on the server's loop
            big, exits = post_together(server, "t/paced/big/2", "t/paced/exit/3")  # exits, sent ahead
            assert big["answer"][0] == 200 and len(big["answer"][2]) == 2 << 20, attempt
            assert exits["answer"][0] == 500, attempt
            server.wait_until(lambda: server.health()[0] == 200, 15, "a replacement worker")
            warm_up(server)
        assert sent_ahead(server) >= 5


def run_frame(cmd, processor):
    job = Job(cmd=cmd, processor=processor, groups={}, timeout=5, request_id=cmd, body=b"x")
    return protocol.encode(protocol.job_header(job), b"x") + b"x"


def test_a_cancel_meant_for_an_earlier_stream_does_not_cut_the_stream_of_the_job_sent_ahead():
    """The server's side played by hand against a real worker: job A streams one chunk and works on
    after it; job B, sent ahead, arrives after A's last chunk (so it is not handed back); A's client
    leaves, and its cancel reaches the worker behind B's frame, while B streams."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    worker = subprocess.Popen(
        [sys.executable, "-m", "ufop_sdk.executors.local.worker_main", "--fd", str(theirs.fileno()),
         "--project", str(SEND_AHEAD), "--app", "processors", "--timeout", "5"],
        pass_fds=[theirs.fileno()], env=clean_environment())
    theirs.close()
    ours.settimeout(30)
    frames = protocol.FrameReceiver(ours)
    try:
        assert frames.next()[0]["op"] == "ready"
        ours.sendall(run_frame("t/tail", "TailWork"))
        time.sleep(0.2)
        ours.sendall(run_frame("t/three", "ThreeChunks"))
        header = frames.next()[0]
        assert frames.next()[0]["op"] == "chunk"
        ours.sendall(protocol.encode({"op": "cancel", "stream": header["stream"].get("number")}))
        ends = []
        while len(ends) < 2:
            header, body, _ = frames.next()
            assert header["op"] != "returned"
            if header["op"] == "end":
                ends.append(header["error"])
        assert ends[1] is None  # B's stream ended whole
    finally:
        ours.close()
        worker.kill()
        worker.wait(10)
