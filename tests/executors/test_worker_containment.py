"""Processes a processor starts never outlive its request, and never hold its answer back.

Each worker runs in a session of its own and is its own children's
subreaper: a timeout kills the whole group, the server notices a worker's
death from the process itself (not only from its socket, which a forked
child still holds), and after each job the worker kills what the job left.
"""

import json
import os
import time
from pathlib import Path

import pytest
from support import PROJECTS, Server, children_of

PROJECT = PROJECTS / "containment"


@pytest.fixture(scope="module")
def markers(tmp_path_factory):
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="module")
def server(markers):
    with Server(PROJECT, "--host", "127.0.0.1", env={"MARKER_DIR": str(markers)}, workers=2) as server:
        yield server


def started_pid(server, markers, name):
    """The pid a processor wrote to its marker, once it has."""
    marker = markers / f"{name}.pid"
    server.wait_until(lambda: marker.exists() and marker.read_text().strip(), 5, f"{marker} to be written")
    return int(marker.read_text())


def assert_gone(pid, within=3):
    """`pid` neither runs nor lingers as a zombie (PID 1 here reaps what reaches it)."""
    deadline = time.monotonic() + within
    while Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"still there: {Path(f'/proc/{pid}/stat').read_text()}"
        time.sleep(0.05)


def wait_for_full_pool(server):
    server.wait_until(lambda: server.health()[0] == 200 and len(children_of(server.process.pid)) == 2, 15,
                      "a full pool")


@pytest.mark.parametrize("how", ["popen", "system", "fork"])
def test_a_processor_waiting_for_sleep_30_is_504_past_its_1s_timeout_and_the_sleep_is_killed(
        server, markers, how):
    wait_for_full_pool(server)
    began = time.monotonic()
    status, _, body = server.post(f"t/spawn/{how}/timeout-{how}", timeout=40)
    elapsed = time.monotonic() - began
    assert status == 504, body
    assert "timeout of 1s" in json.loads(body)["error"]
    assert 0.9 < elapsed < 6, elapsed
    assert_gone(started_pid(server, markers, f"timeout-{how}"))
    wait_for_full_pool(server)


def test_a_sleep_left_running_in_the_background_is_gone_once_the_answer_is_in(server, markers):
    status, _, body = server.post("t/background/left", timeout=10)
    assert status == 200, body
    pid = int(body)
    assert not Path(f"/proc/{pid}").exists(), open(f"/proc/{pid}/stat").read()
    assert int(body) == started_pid(server, markers, "left")


def test_a_worker_dying_beside_a_forked_child_is_500_at_once_and_the_child_killed(server, markers):
    wait_for_full_pool(server)
    began = time.monotonic()
    status, _, body = server.post("t/crash-beside-child/crashed", timeout=40)
    assert status == 500 and "died" in json.loads(body)["error"], body
    assert time.monotonic() - began < 5
    assert_gone(started_pid(server, markers, "crashed"))
    wait_for_full_pool(server)


def test_a_helper_that_setup_started_lives_across_requests(server):
    answers = [server.post("t/helper", timeout=10) for _ in range(4)]
    assert {status for status, _, _ in answers} == {200}
    assert all(body.endswith(b" alive") for _, _, body in answers), answers
    helpers = {int(body.split()[0]) for _, _, body in answers}
    assert len(helpers) <= 2, "one helper per worker, the same one each time"
    assert all(Path(f"/proc/{pid}").exists() for pid in helpers)


def test_a_workers_helpers_are_killed_with_it_when_the_server_stops(markers):
    with Server(PROJECT, "--host", "127.0.0.1", env={"MARKER_DIR": str(markers)}, workers=1) as server:
        helper = int(server.post("t/helper", timeout=10)[2].split()[0])
    assert_gone(helper, within=5)


def test_a_child_execd_with_close_fds_false_holds_no_socket_of_the_worker(server):
    status, _, body = server.post("t/childs-descriptors", timeout=10)
    assert status == 200, body
    assert b"socket:" not in body, body.decode()


def test_a_child_execd_with_close_fds_false_holds_no_descriptor_of_the_spooled_input(server):
    status, _, body = server.post("t/childs-descriptors", os.urandom(3 << 20), timeout=20)
    assert status == 200, body
    assert b"(deleted)" not in body and b"socket:" not in body, body.decode()
