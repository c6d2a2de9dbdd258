"""The runner: cmd -> route -> args -> accepts -> process -> Response, with every error a JSON Response."""

import asyncio
import io
import json
import time
from pathlib import Path

import attrs
import pytest
from support import PROJECTS

from ufop_sdk import BadRequest, NotFound, Processor, UfopError, integer, testing
from ufop_sdk.app.jobs import Job
from ufop_sdk.app.project import App
from ufop_sdk.app.routing import RouteTable
from ufop_sdk.app.runner import ProcessorRunner


def runner_for(*processors, debug=False):
    app = App("processors", Path("."), RouteTable(processors, default_timeout=30))
    return ProcessorRunner(app, debug=debug)


def run(runner, cmd, data=b"", **request):
    """Run `cmd` on `data` and return (status, parsed JSON body, processor name)."""
    outcome = runner.process_cmd(cmd, io.BytesIO(data), **request)
    return outcome.response.status, json.loads(outcome.response.body), outcome.processor


class Inspect(Processor):
    """Answers with what it was given."""

    route = r"inspect/(?P<width>\d+)(?:x(?P<height>\d+))?"

    def process(self, req):
        return {"args": dict(req.args), "content_type": req.content_type,
                "declared_content_type": req.declared_content_type, "cmd": req.cmd, "name": req.name,
                "params": req.params, "url": req.url, "size": req.size, "request_id": req.request_id,
                "position": req.buffer.tell()}


class Thumbnail(Processor):
    route = r"thumbnail/(?P<width>\d+)"
    accepts = ("image/*",)

    @attrs.frozen
    class Args:
        width: int = integer(1, 4096)

    def process(self, req):
        return {"width": req.args.width}


ERRORS = {
    "bad": BadRequest("width is too large"),
    "missing": NotFound("no preset called 'poster'"),
    "teapot": UfopError("I'm a teapot", status=418),
}


class Refuse(Processor):
    route = r"refuse/(?P<kind>\w+)"

    def process(self, req):
        raise ERRORS[req.args["kind"]]


class Crash(Processor):
    route = r"crash"

    def process(self, req):
        raise RuntimeError("password=hunter2")


class Answer(Processor):
    route = r"answer"

    def process(self, req):
        return 42


BROKEN_SETUP = "setup() failed: RuntimeError: model file missing"


class Broken(Processor):
    route = r"broken"

    def setup(self):
        raise RuntimeError("model file missing")


class Sick(Processor):
    route = r"sick"

    def health(self):
        raise OSError("disk full")


def test_the_request_carries_the_input_and_where_it_came_from(png):
    status, body, processor = run(runner_for(Inspect), "myufop/inspect/200x100", png,
                                  declared_content_type="application/octet-stream",
                                  url="https://example.com/a.png", request_id="req-1")
    assert (status, processor) == (200, "Inspect")
    assert body == {
        "args": {"width": "200", "height": "100"}, "content_type": "image/png",
        "declared_content_type": "application/octet-stream", "cmd": "myufop/inspect/200x100",
        "name": "myufop", "params": "inspect/200x100", "url": "https://example.com/a.png",
        "size": len(png), "request_id": "req-1", "position": 0,
    }


def test_optional_groups_that_did_not_match_are_not_args():
    status, body, _ = run(runner_for(Inspect), "myufop/inspect/200", b"text")
    assert status == 200
    assert (body["args"], body["content_type"], body["url"]) == ({"width": "200"}, "text/plain", None)


def test_args_are_typed_by_the_processors_args_class(png):
    runner = runner_for(Thumbnail)
    assert run(runner, "myufop/thumbnail/200", png) == (200, {"width": 200}, "Thumbnail")
    error = "invalid argument 'width': expected an integer 1-4096, got '0'"
    assert run(runner, "myufop/thumbnail/0", png, request_id="req-2") == (
        400, {"error": error, "request_id": "req-2"}, "Thumbnail")


def test_input_outside_accepts_is_415():
    error = "processor 'Thumbnail' accepts image/*, got text/plain"
    assert run(runner_for(Thumbnail), "myufop/thumbnail/200", b"just text") == (
        415, {"error": error, "request_id": None}, "Thumbnail")


@pytest.mark.parametrize(("cmd", "status", "error"), [
    ("myufop/nothing", 404, "no processor matches 'nothing' (cmd 'myufop/nothing')"),
    ("", 400, "missing cmd: expected <ufop-name>[/<params>]"),
])
def test_a_cmd_no_processor_takes_is_answered_without_a_processor(cmd, status, error):
    assert run(runner_for(Inspect), cmd) == (status, {"error": error, "request_id": None}, None)


@pytest.mark.parametrize(("kind", "status"), [("bad", 400), ("missing", 404), ("teapot", 418)])
def test_a_ufop_error_raised_by_a_processor_keeps_its_status_and_message(kind, status):
    assert run(runner_for(Refuse), f"myufop/refuse/{kind}", request_id="req-3") == (
        status, {"error": ERRORS[kind].message, "request_id": "req-3"}, "Refuse")


def test_any_other_exception_is_a_500_naming_only_the_processor():
    outcome = runner_for(Crash).process_cmd("myufop/crash", io.BytesIO(b""), request_id="req-4")
    assert (outcome.response.status, outcome.processor) == (500, "Crash")
    assert json.loads(outcome.response.body) == {"error": "internal error in processor 'Crash'",
                                                 "request_id": "req-4"}
    assert b"hunter2" not in outcome.response.body


def test_in_debug_a_500_carries_the_traceback():
    status, body, _ = run(runner_for(Crash, debug=True), "myufop/crash")
    assert (status, body["error"]) == (500, "internal error in processor 'Crash'")
    assert body["traceback"].startswith("Traceback (most recent call last):")
    assert body["traceback"].rstrip().endswith("RuntimeError: password=hunter2")


def test_a_value_that_cannot_be_sent_is_a_500_naming_the_processor_and_type():
    status, body, processor = run(runner_for(Answer), "myufop/answer")
    assert (status, processor) == (500, "Answer")
    assert body["error"].startswith("processor 'Answer' returned int, which cannot be sent")


def test_setup_runs_once_per_runner_across_requests():
    setups = []

    class Model(Processor):
        route = r"predict"

        def setup(self):
            setups.append(self)

        def process(self, req):
            return "ok"

    runner = runner_for(Model)
    for _ in range(3):
        assert runner.process_cmd("myufop/predict", io.BytesIO(b"")).response.status == 200
    assert len(setups) == 1
    runner_for(Model).process_cmd("myufop/predict", io.BytesIO(b""))
    assert len(setups) == 2


def test_a_failed_setup_makes_only_that_processor_unavailable():
    runner = runner_for(Broken, Inspect)
    for _ in range(2):
        assert run(runner, "myufop/broken", request_id="req-5") == (
            500, {"error": "processor 'Broken' is unavailable: its setup() failed", "request_id": "req-5"},
            "Broken")
    assert run(runner, "myufop/inspect/1")[0] == 200
    assert runner.processors.failures == {"Broken": BROKEN_SETUP}
    assert runner.processors.health_problems() == {"Broken": BROKEN_SETUP}


def test_setup_all_sets_up_every_processor_and_returns_the_failures():
    runner = runner_for(Inspect, Broken)
    assert runner.processors.setup_all() == {"Broken": BROKEN_SETUP}


def test_health_problems_on_a_fresh_runner_name_the_failed_setup():
    assert runner_for(Broken).processors.health_problems() == {"Broken": BROKEN_SETUP}


def test_a_failing_health_check_is_a_health_problem():
    assert runner_for(Inspect).processors.health_problems() == {}
    problems = runner_for(Inspect, Sick).processors.health_problems()
    assert problems == {"Sick": "health() failed: OSError: disk full"}


class Waits(Processor):
    """Awaits, then says on which loop it ran; past its timeout its cancellation is noted."""

    route = r"waits/(?P<seconds>[0-9.]+)"
    timeout = 0.5
    cancelled = []

    async def process(self, req):
        try:
            await asyncio.sleep(float(req.args["seconds"]))
        except asyncio.CancelledError:
            Waits.cancelled.append(req.request_id)
            raise
        return {"loop": id(asyncio.get_running_loop())}


class OwnTimeout(Processor):
    """Its own asyncio.wait_for times out: its error, not a timeout of ours."""

    route = r"own-timeout"

    async def process(self, req):
        await asyncio.wait_for(asyncio.sleep(5), 0.01)


def test_an_async_process_runs_from_blocking_code_on_the_one_loop_its_runner_keeps():
    runner = runner_for(Waits)
    loops = {run(runner, "myufop/waits/0")[1]["loop"] for _ in range(3)}
    assert len(loops) == 1


def test_an_async_process_past_its_timeout_is_cancelled_and_a_504():
    began = time.monotonic()
    status, body, _ = run(runner_for(Waits), "myufop/waits/30", request_id="late")
    assert (status, body["error"]) == (504, "processor 'Waits' ran past its timeout of 0.5s")
    assert time.monotonic() - began < 3
    assert "late" in Waits.cancelled


def test_a_processors_own_asyncio_timeout_is_its_error_not_a_504():
    status, body, _ = run(runner_for(OwnTimeout), "myufop/own-timeout")
    assert (status, body["error"]) == (500, "internal error in processor 'OwnTimeout'")


def test_process_job_async_is_awaited_on_the_callers_loop_and_cancelled_with_its_caller():
    runner = runner_for(Waits)
    job = Job(cmd="myufop/waits/30", processor="Waits", groups={"seconds": "30"}, timeout=0.5,
              request_id="left")

    async def leave_early():
        running = asyncio.ensure_future(runner.process_job_async(job, io.BytesIO(b"")))
        await asyncio.sleep(0.1)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    asyncio.run(leave_early())
    assert "left" in Waits.cancelled


def test_ufop_sdk_testing_run_runs_an_async_processor():
    response = testing.run("answer/text", b"", project=PROJECTS / "async_processors")
    assert (response.status, response.body) == (200, b"hello")
