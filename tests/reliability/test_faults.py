"""Faults under load in `serve`'s embedded pool: each fails only the requests it touches.

Worker crashes (exit and SIGSEGV), hangs past the timeout, processors raising,
a setup() raising, and SIGTERM, each while traffic flows (a spool with no room
is test_spool_full.py). Figures go to test-artifacts/reliability/faults.json.
"""

import asyncio
import json
import re
import signal
import time
from pathlib import Path

import pytest
from harness import PROJECT, assert_no_leak, record, sized
from loadgen import Call, answers, echo, every, fails, handler, load, run_load
from support import PROJECTS, Server, children_of

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def server():
    with Server(PROJECT, "--host", "127.0.0.1", workers=2) as server:
        yield server


def pool_is_full(server, size=2):
    status, payload = server.health()
    return status == 200 and payload["workers"] == size and len(children_of(server.process.pid)) == size


def log_lines(server, since, pattern):
    return re.findall(pattern, server.output()[since:])


def test_worker_crashes_under_load_fail_only_their_own_requests(server):
    server.wait_until(lambda: pool_is_full(server), 15, "a full pool")
    since = len(server.output())
    crashes, period = sized(10, 40), 30
    calls = every(crashes * period, period,
                  lambda n: fails("t/exit" if n % 2 else "t/segfault", 500, "the worker running processor",
                                  kind="exit" if n % 2 else "segfault"),
                  lambda n: echo(b"beside a crash %d" % n))
    report = run_load(server.port, calls, connections=16)
    assert report.problems() == []
    server.wait_until(lambda: len(log_lines(server, since, r"worker \d+ died")) >= crashes, 10,
                      "every death to be logged")
    deaths = sorted(log_lines(server, since, r"worker \d+ died \(exit code (-?\d+)\)"))
    assert deaths == sorted(["7"] * (crashes // 2) + ["-11"] * (crashes // 2)), "a death per crash, no other"
    server.wait_until(lambda: pool_is_full(server), 15, "the pool to heal")
    record("faults", {"worker_crash": {**report.figures(), "crashes": crashes,
                                       "deaths_logged": len(deaths)}})


def test_hangs_past_the_timeout_under_load_are_504_and_cost_only_themselves(server):
    server.wait_until(lambda: pool_is_full(server), 15, "a full pool")
    since = len(server.output())
    hangs, period = sized(4, 12), 60
    calls = every(hangs * period, period, lambda n: fails("t/sleep/30", 504, "ran past its timeout of 2s",
                                                          kind="hang"),
                  lambda n: echo(b"beside a hang %d" % n))
    report = run_load(server.port, calls, connections=8)
    assert report.problems() == []
    hung = [answer.seconds for answer in report.answers if answer.call.kind == "hang"]
    others = [answer.seconds for answer in report.answers if answer.call.kind == "echo"]
    assert all(1.9 < seconds < 6 for seconds in hung), hung
    # An echo waits in the pool's queue only while both workers hang (a hang lasts one timeout).
    assert max(others) < 5, max(others)
    assert len(log_lines(server, since, r"ran past its job's timeout: killing it")) == hangs
    server.wait_until(lambda: pool_is_full(server), 15, "the pool to heal")
    record("faults", {"hang": {**report.figures(), "hangs": hangs,
                               "hang_seconds": [round(s, 2) for s in hung],
                               "longest_wait_beside_a_hang_seconds": round(max(others), 2)}})


@pytest.mark.expect_traceback  # t/fail/crash raises on purpose
def test_a_processor_raising_under_load_costs_only_its_requests(server):
    server.wait_until(lambda: pool_is_full(server), 15, "a full pool")
    workers = sorted(children_of(server.process.pid))
    since = len(server.output())
    raising, period = sized(60, 300), 5
    calls = every(raising * period, period,
                  lambda n: fails("t/fail/crash", 500, "internal error in processor 'Fail'", kind="raise"),
                  lambda n: echo(b"beside a raise %d" % n))
    report = run_load(server.port, calls, connections=16)
    assert report.problems() == []
    for answer in report.answers:
        assert_no_leak(answer.body.decode(errors="replace"))
    assert sorted(children_of(server.process.pid)) == workers, "raising must not cost a worker"
    server.wait_until(lambda: len(log_lines(server, since, r"processor Fail raised")) == raising, 5,
                      "each raise to be logged, with its traceback, for the operator")
    assert "SECRET-DETAIL" in server.output()[since:]
    record("faults", {"processor_raising": {**report.figures(), "raised": raising}})


def test_a_setup_raising_makes_health_503_saying_why_while_other_processors_answer():
    with Server(PROJECTS / "setup_fails", "--host", "127.0.0.1", workers=2, wait_healthy=False,
                expect_traceback=True) as server:  # setup() raises on purpose
        server.wait_until(lambda: server.health()[1]["workers"] == 2, 10, "both workers to start")
        status, payload = server.health()
        assert payload["status"] == "unhealthy"
        assert payload["problems"] == {"Model": "setup() failed: RuntimeError: model weights not found"}
        workers = sorted(children_of(server.process.pid))
        calls = every(sized(300, 1500), 4,
                      lambda n: fails("t/model", 500, "processor 'Model' is unavailable: its setup() failed",
                                      kind="model"),
                      lambda n: echo(b"beside a failed setup %d" % n))
        report = run_load(server.port, calls, connections=16)
        assert report.problems() == []
        assert server.health() == (status, payload), "the reason stays the same under load"
        assert sorted(children_of(server.process.pid)) == workers
        assert server.process.poll() is None
    record("faults", {"setup_raising": {**report.figures(), "health": payload}})


# SIGTERM.

SLEEP = Call("sleep", handler("t/sleep/0.3"), answers(200, b"slept 0.3"))
KEEP_SENDING = 0.5  # seconds clients go on after SIGTERM, as a platform does before it notices


def access_lines(server):
    return {line["request_id"]: line for line in map(json.loads, re.findall(r"^\{.*\}$", server.output(),
                                                                                  re.MULTILINE))}


def test_sigterm_under_load_answers_every_request_in_flight_then_exits_0():
    server = Server(PROJECT, "--host", "127.0.0.1", env={"UFOP_GRACE": "10"}, workers=2)
    with server:
        workers = children_of(server.process.pid)
        terminated = []

        def calls():
            for n in range(1_000_000):
                if terminated and time.monotonic() > terminated[0] + KEEP_SENDING:
                    return
                yield SLEEP if n % 7 == 0 else echo(b"around a SIGTERM %d" % n)

        async def scenario():
            running = asyncio.ensure_future(load(server.port, calls(), 32, timeout=20))
            await asyncio.sleep(1.5)
            terminated.append(time.monotonic())
            server.process.send_signal(signal.SIGTERM)
            return await running

        report = asyncio.run(asyncio.wait_for(scenario(), 60))
        code = server.process.wait(15)
        exited = time.monotonic() - terminated[0]
        logged = access_lines(server)
        output = server.output()
    before = [answer for answer in report.answers if answer.sent < terminated[0]]
    after = [answer for answer in report.answers if answer.sent >= terminated[0]]
    in_flight = [answer for answer in before if answer.received > terminated[0]]
    assert len(in_flight) >= 16, "the SIGTERM should have found requests in flight"
    assert [answer.problem() for answer in before if answer.problem()] == []
    unanswered = [answer for answer in after if answer.error]
    for answer in unanswered:  # refused, or closed before the server read it: never started, then dropped
        assert "Refused" in answer.error or "IncompleteRead" in answer.error, answer.error
        assert answer.request_id not in logged, f"{answer.request_id} was started, then dropped"
    # New work after SIGTERM is told the server is stopping (503, Retry-After), and never started.
    told = [answer for answer in after if not answer.error and answer.status == 503]
    for answer in told:
        assert b"the server is stopping" in answer.body and answer.headers.get("retry-after"), answer.body
        assert answer.headers.get("connection") == "close", answer.headers
        assert logged[answer.request_id]["status"] == 503 and "process" not in logged[answer.request_id]["ms"]
    answered = [answer for answer in after if not answer.error and answer.status != 503]
    assert [answer.problem() for answer in answered if answer.problem()] == []
    assert code == 0 and exited < 10, (code, exited)
    assert "Traceback" not in output, output[-3000:]
    assert not [pid for pid in workers if Path(f"/proc/{pid}").exists()], "workers outlived the server"
    record("faults", {"sigterm": {
        "connections": 32, "answered_before_sigterm_and_in_flight_at_it": len(in_flight),
        "sent_after_sigterm": len(after), "answered_after_sigterm": len(after) - len(unanswered),
        "told_503_stopping_after_sigterm": len(told),
        "unanswered_after_sigterm_never_started": len(unanswered), "exit_code": code,
        "seconds_to_exit": round(exited, 2), "statuses": report.statuses()}})
