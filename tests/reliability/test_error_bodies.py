"""Every kind of error `serve` answers, each a JSON body with no traceback, source path or secret in it;
and /health of an unhealthy instance too. The messages go to test-artifacts/reliability/security.json."""

import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

import pytest
from harness import PROJECT, assert_no_leak, record
from hostile import error_of
from support import PROJECTS, Origin, Server, free_port, post_concurrently

pytestmark = pytest.mark.reliability


@pytest.fixture(scope="module")
def errors_server():
    env = {"UFOP_BLOCKED_NETWORKS": "127.0.0.2/32", "UFOP_FETCH_TIMEOUT": "1", "UFOP_MAX_BODY_BYTES": "64KiB",
           "UFOP_MAX_SOURCE_BYTES": "64KiB", "UFOP_MAX_PENDING": "4"}
    with Server(PROJECT, "--host", "127.0.0.1", env=env, workers=2) as server:
        yield server


def error_cases(origin):
    """(kind, method, target, body, status) for every error `serve` gives."""
    def post(cmd, **query):
        return "/handler?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in {"cmd": cmd, **query}.items())

    return [
        ("missing cmd", "POST", "/handler", b"", 400),
        ("query not UTF-8", "POST", "/handler?cmd=t/%ff", b"", 400),
        ("control character in the cmd", "POST", post("t/a\nb"), b"", 400),
        ("the processor's BadRequest", "POST", post("t/fail/bad"), b"x", 400),
        ("an invalid argument", "POST", post("t/typed/abc/png"), b"", 400),
        ("a url that is not http", "POST", post("t/echo", url="file:///etc/passwd"), b"", 400),
        ("a source at a blocked address", "POST", post("t/echo", url="http://127.0.0.2:9/x"), b"", 403),
        ("no route for the cmd", "POST", post("t/nothing"), b"", 404),
        ("no such path", "GET", "/nowhere", b"", 404),
        ("GET /handler", "GET", post("t/echo"), b"", 405),
        ("POST /health", "POST", "/health", b"", 405),
        ("a body over the limit", "POST", post("t/echo"), b"x" * (65 << 10), 413),
        ("a source over the limit", "POST", post("t/echo", url=origin.url("/big")), b"", 413),
        ("a type the processor does not accept", "POST", post("t/picture"), b"plain text", 415),
        ("the processor raising", "POST", post("t/fail/crash"), b"x", 500),
        ("the worker dying", "POST", post("t/exit"), b"x", 500),
        ("a header that would split the answer", "POST", post("t/bad-header"), b"", 500),
        ("an answer that is not JSON", "POST", post("t/not-json"), b"", 500),
        ("an answer that cannot be sent", "POST", post("t/unsendable"), b"", 500),
        ("a source refusing connections", "POST", post("t/echo", url=f"http://127.0.0.1:{free_port()}/x"),
         b"", 502),
        ("a source answering 404", "POST", post("t/echo", url=origin.url("/missing")), b"", 502),
        ("a source redirecting forever", "POST", post("t/echo", url=origin.url("/loop")), b"", 502),
        ("the processor past its timeout", "POST", post("t/sleep/30"), b"", 504),
        ("a source too slow", "POST", post("t/echo", url=origin.url("/slow")), b"", 504),
    ]


@pytest.mark.expect_traceback  # "the processor raising" raises on purpose
def test_no_error_body_carries_a_traceback_or_a_path(errors_server):
    messages = {}
    with Origin() as origin:
        origin.serve("/big", b"x" * (65 << 10))
        origin.redirect("/loop", "/loop")
        origin.serve("/slow", b"late", delay=3)
        cases = error_cases(origin)
        with ThreadPoolExecutor(3) as pool:  # under UFOP_MAX_PENDING=4
            answers = list(pool.map(lambda case: errors_server.request(case[1], case[2], case[3], timeout=15),
                                    cases))
    for (kind, _, _, _, expected), (status, headers, body) in zip(cases, answers, strict=True):
        assert status == expected, (kind, status, body[:300])
        messages[f"{status} {kind}"] = error_of(status, headers, body)
    answers = post_concurrently(errors_server, [("t/sleep/1", b"")] * 8, timeout=15)
    overloaded = [answer for answer in answers if answer[0] == 503]
    assert len(overloaded) >= 4, [answer[0] for answer in answers]
    messages["503 too many requests in progress"] = error_of(*overloaded[0])
    record("security", {"error_bodies": messages})
    assert errors_server.process.poll() is None and errors_server.health()[0] == 200
    assert errors_server.post("t/echo", b"still here")[::2] == (200, b"still here")


@pytest.mark.parametrize("project, cmd, status, problem", [
    (PROJECTS / "setup_fails", "t/model", 500, "Model"),
    (PROJECTS / "worker_fails", "t/echo", 503, "workers"),
], ids=["a processor whose setup failed", "workers that cannot start"])
def test_no_unhealthy_instance_leaks_a_traceback_or_a_path(project, cmd, status, problem):
    # setup() and the import fail on purpose, with a traceback in the log
    with Server(project, "--host", "127.0.0.1", workers=1, wait_healthy=False,
                expect_traceback=True) as server:
        server.wait_until(lambda: problem in server.health()[1].get("problems", {}), 10,
                          "the failure to show in /health")
        answer = server.post(cmd, b"x", timeout=10)
        assert answer[0] == status, answer
        message = error_of(*answer)
        health_status, health = server.health()
    assert health_status == 503
    assert_no_leak(json.dumps(health))
    record("security", {"unhealthy": {project.name: {"answer": f"{status} {message}",
                                                     "health": health["problems"]}}})
