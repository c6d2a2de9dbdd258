"""The Tornado application over real HTTP: /handler in body mode, /health, /metrics, errors."""

import http.client
import json
import re
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families
from support import PROJECTS, Server, access_line, post_concurrently

SERVER = PROJECTS / "server"
GENERATED_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


@pytest.fixture(scope="module")
def server():
    with Server(SERVER, "--host", "127.0.0.1") as server:
        yield server


def error_of(body):
    """The JSON error body every error has: {"error", "request_id"}."""
    payload = json.loads(body)
    assert set(payload) >= {"error", "request_id"}, payload
    return payload


def metric_samples(server):
    """The server's /metrics parsed as Prometheus text: {(name, sorted labels): value}."""
    status, headers, body = server.request("GET", "/metrics")
    assert status == 200
    assert headers["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            samples[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return samples


# Body mode: what the processor answers goes back as it is.

def test_text_body_is_echoed_as_text(server):
    status, headers, body = server.post("t/echo", b"hello world")
    assert (status, body) == (200, b"hello world")
    assert headers["Content-Type"].startswith("text/plain")


def test_binary_body_is_echoed_with_its_sniffed_type(server, png):
    status, headers, body = server.post("t/echo", png)
    assert (status, body) == (200, png)
    assert headers["Content-Type"] == "image/png"


def test_json_answer_describes_the_request(server, png):
    status, headers, body = server.post("t/describe/x", png)
    assert status == 200 and headers["Content-Type"] == "application/json"
    described = json.loads(body)
    assert described["args"] == {"label": "x"}
    assert described["content_type"] == "image/png"
    assert (described["cmd"], described["name"], described["params"]) == ("t/describe/x", "t", "describe/x")
    assert described["size"] == len(png) and described["url"] is None
    assert described["request_id"] == headers["X-Request-Id"]


def test_declared_content_type_comes_from_the_request(server):
    _, _, body = server.post("t/describe", b"{}", headers={"Content-Type": "application/x-thing; v=2"})
    assert json.loads(body)["declared_content_type"] == "application/x-thing; v=2"
    _, _, body = server.post("t/describe", b"{}")
    assert json.loads(body)["declared_content_type"] is None


def test_a_bare_ufop_name_is_a_valid_cmd(server):
    status, _, body = server.post("t")
    assert status == 404 and "no processor matches" in error_of(body)["error"]


@pytest.mark.parametrize("cmd, status, message", [
    ("t/fail/bad", 400, "this input is bad"),
    ("t/nothing", 404, "no processor matches"),
    pytest.param("t/fail/crash", 500, "internal error in processor 'Fail'",
                 marks=pytest.mark.expect_traceback),
])
def test_errors_have_their_status_and_a_json_body(server, cmd, status, message):
    answer_status, headers, body = server.post(cmd, b"x")
    assert answer_status == status
    assert headers["Content-Type"].startswith("application/json")
    payload = error_of(body)
    assert message in payload["error"]
    assert payload["request_id"] == headers["X-Request-Id"]


@pytest.mark.expect_traceback
def test_a_crash_body_has_no_traceback_and_no_path_but_the_log_does(server):
    status, _, body = server.post("t/fail/crash", b"x")
    assert status == 500
    text = body.decode()
    for leak in ("secret detail", "/etc/passwd", "Traceback", ".py", "RuntimeError"):
        assert leak not in text, text
    assert set(json.loads(body)) == {"error", "request_id"}
    server.wait_until(lambda: "secret detail /etc/passwd" in server.output(), 5, "the crash in the log")


def test_custom_status_headers_and_content_type(server):
    status, headers, body = server.post("t/custom")
    assert (status, body) == (201, b"<p>hi</p>")
    assert headers["X-Custom"] == "yes"
    assert headers["Content-Type"] == "text/html"


def test_none_answers_204_without_a_body(server):
    status, headers, body = server.post("t/empty", b"ignored")
    assert (status, body) == (204, b"")
    assert "Content-Length" not in headers or headers["Content-Length"] == "0"
    assert headers["X-Request-Id"]


def test_a_trailing_slash_is_accepted(server):
    status, _, body = server.request("POST", "/handler/?cmd=t/echo", b"slash")
    assert (status, body) == (200, b"slash")


# Requests that are not the platform's call.

@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_other_methods_are_405_json(server, method):
    status, headers, body = server.request(method, "/handler?cmd=t/echo", b"x" if method == "PUT" else None)
    assert status == 405
    assert "POST" in error_of(body)["error"]
    assert headers["X-Request-Id"]


@pytest.mark.parametrize("path", ["/handler", "/handler?cmd=", "/handler?url=http://example.com/"])
def test_a_missing_cmd_is_400(server, path):
    status, _, body = server.request("POST", path, b"x")
    assert status == 400
    assert "missing cmd" in error_of(body)["error"]


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_unknown_path_is_404_json(server, method):
    status, headers, body = server.request(method, "/nowhere/else", b"x" if method == "POST" else None)
    assert status == 404
    assert "/nowhere/else" in error_of(body)["error"]
    assert headers["Content-Type"].startswith("application/json")


# X-Request-Id on every answer.

@pytest.mark.parametrize("method, path", [
    ("POST", "/handler?cmd=t/echo"), ("POST", "/handler?cmd=t/fail/bad"), ("POST", "/handler?cmd=t/empty"),
    pytest.param("POST", "/handler?cmd=t/fail/crash", marks=pytest.mark.expect_traceback),
    ("POST", "/handler"), ("GET", "/handler"),
    ("GET", "/health"), ("GET", "/metrics"), ("GET", "/nowhere"),
])
def test_every_answer_echoes_the_inbound_request_id(server, method, path):
    status, headers, body = server.request(method, path, b"x" if method == "POST" else None,
                                           headers={"X-Request-Id": "abc-123.x:y_z"})
    assert headers["X-Request-Id"] == "abc-123.x:y_z", (status, body)
    if status >= 400:
        assert error_of(body)["request_id"] == "abc-123.x:y_z"


@pytest.mark.parametrize("inbound", ["has spaces", "a" * 129, "semi;colon", "<script>"])
def test_an_invalid_inbound_request_id_is_replaced(server, inbound):
    status, headers, body = server.post("t/fail/bad", b"x", headers={"X-Request-Id": inbound})
    assert status == 400
    replaced = headers["X-Request-Id"]
    assert replaced != inbound and GENERATED_ID.fullmatch(replaced)
    assert error_of(body)["request_id"] == replaced


def test_request_ids_are_new_for_each_request(server):
    ids = {server.post("t/echo", b"x")[1]["X-Request-Id"] for _ in range(5)}
    assert len(ids) == 5


# /metrics and /health.

def test_metrics_count_requests_by_processor_and_status(server):
    echo_200 = ("ufop_requests_total", (("processor", "Echo"), ("status", "200")))
    fail_400 = ("ufop_requests_total", (("processor", "Fail"), ("status", "400")))
    before = metric_samples(server)
    server.post("t/echo", b"1")
    server.post("t/echo", b"2")
    server.post("t/fail/bad", b"3")
    after = metric_samples(server)
    assert after[echo_200] - before.get(echo_200, 0) == 2
    assert after[fail_400] - before.get(fail_400, 0) == 1


def test_metrics_have_latency_histograms_by_stage(server):
    before = metric_samples(server)
    server.post("t/echo", b"timed")
    after = metric_samples(server)
    for stage in ("queue", "process", "total"):
        count = ("ufop_request_seconds_count", (("stage", stage),))
        assert after[count] - before.get(count, 0) == 1, stage
        assert ("ufop_request_seconds_bucket", (("le", "+Inf"), ("stage", stage))) in after
    assert ("ufop_request_seconds_count", (("stage", "fetch"),)) in after
    assert after["ufop_workers", (("state", "running"),)] == 2
    assert ("ufop_requests_in_flight", ()) in after


def test_metrics_carry_the_process_and_garbage_collector_metrics(server):
    samples = metric_samples(server)
    assert samples["process_resident_memory_bytes", ()] > 1 << 20
    assert ("python_gc_objects_collected_total", (("generation", "0"),)) in samples
    assert not [name for name, _ in samples if name.endswith("_created")]


def test_health_is_200_ok_json(server):
    status, headers, body = server.request("GET", "/health")
    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    payload = json.loads(body)
    assert payload["status"] == "ok" and payload["workers"] == 2
    assert "problems" not in payload


def test_health_is_503_naming_a_processor_whose_setup_failed():
    with Server(PROJECTS / "setup_fails", "--host", "127.0.0.1", workers=1, wait_healthy=False,
                expect_traceback=True) as server:  # setup() raises on purpose
        server.wait_until(lambda: server.health()[1].get("workers") == 1, 10, "the worker to start")
        status, payload = server.health()
        assert status == 503 and payload["status"] == "unhealthy"
        assert "model weights not found" in payload["problems"]["Model"]
        assert server.post("t/echo", b"still here")[::2] == (200, b"still here")
        status, _, body = server.post("t/model", b"x")
        assert status == 500 and "setup() failed" in error_of(body)["error"]


def test_health_is_503_naming_a_processor_whose_health_raises():
    with Server(PROJECTS / "health_fails", "--host", "127.0.0.1", workers=1, wait_healthy=False) as server:
        server.wait_until(lambda: server.health()[1].get("workers") == 1, 10, "the worker to start")
        status, payload = server.health()
        assert status == 503 and payload["status"] == "unhealthy"
        assert "database unreachable" in payload["problems"]["Database"]
        assert server.post("t/echo", b"still here")[::2] == (200, b"still here")


# Load.

def test_50_concurrent_requests_each_get_their_own_answer(server):
    bodies = [f"request {i} ".encode() * (i + 1) for i in range(50)]
    answers = post_concurrently(server, [("t/echo", body) for body in bodies])
    assert [(status, body) for status, _, body in answers] == [(200, body) for body in bodies]
    assert len({headers["X-Request-Id"] for _, headers, _ in answers}) == 50


def test_one_keep_alive_connection_carries_answers_and_errors(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for method, path, body, status in [
            ("POST", "/handler?cmd=t/echo", b"one", 200),
            ("POST", "/handler?cmd=t/fail/bad", b"two", 400),
            ("POST", "/handler?cmd=t/nothing", b"three" * 10000, 404),
            ("POST", "/handler", b"four", 400),
            ("GET", "/handler?cmd=t/echo", None, 405),
            ("POST", "/handler?cmd=t/empty", b"", 204),
            ("GET", "/health", None, 200),
            ("POST", "/nowhere", b"five", 404),
            ("POST", "/handler?cmd=t/echo", b"last", 200),
        ]:
            connection.request(method, path, body)
            response = connection.getresponse()
            answer = response.read()
            assert response.status == status, (method, path, answer)
            assert not response.will_close, (method, path)
        assert answer == b"last"
    finally:
        connection.close()


def test_a_query_that_is_not_utf8_is_400(server):
    status, _, body = server.request("POST", "/handler?cmd=t/describe/%ff", b"x")
    assert status == 400
    assert error_of(body)["error"]


def test_a_header_that_would_split_the_response_is_a_500_not_an_injection(server):
    status, headers, body = server.post("t/bad-header", b"x")
    assert "Set-Cookie" not in headers
    assert status == 500, body
    assert "BadHeader" in error_of(body)["error"]
    assert server.post("t/echo", b"after")[::2] == (200, b"after")


def test_a_cmd_over_the_default_256_kib_is_414_json_and_one_within_is_routed(server):
    began = time.monotonic()
    status, _, body = server.post("t/long/" + "a" * (256 << 10))
    assert status == 414, body[:200]
    assert error_of(body)["error"] == f"the cmd is {(256 << 10) + 7} bytes, over the limit of 262144 bytes"
    assert time.monotonic() - began < 5
    status, _, body = server.post("t/long/" + "a" * (250 << 10), headers={"X-Request-Id": "long-cmd"})
    assert status == 200  # 1000 mkzip URLs fit
    assert json.loads(body)["args"] == {"label": "a" * (250 << 10)}
    logged = access_line(server, "long-cmd")["cmd"]
    assert logged == "t/long/" + "a" * (4096 - 7) + f"... ({(250 << 10) + 7} characters)", "its head only"


def test_a_cmd_over_4_kib_is_routed_only_to_a_processor_that_takes_one(server):
    assert server.post("t/describe/" + "a" * (4096 - 11))[0] == 200
    status, _, body = server.post("t/describe/" + "a" * (4096 - 10))
    assert status == 414, body[:200]
    assert "no processor that takes a cmd this long matches it" in error_of(body)["error"]
    assert server.post("t/long/" + "a" * (4096 - 6))[0] == 200


def test_a_long_cmd_never_runs_a_route_that_did_not_ask_for_it(make_project):
    # This route backtracks quadratically: tried on a 200 KiB cmd it would hold the event loop for minutes.
    project = make_project("""
        from ufop_sdk import Processor

        class Backtracking(Processor):
            route = r"(?P<a>.+)/(?P<b>.+)x"

            def process(self, req):
                return "routed"
    """, env="UFOP_NAME=tests\n")
    with Server(project) as server:
        began = time.monotonic()
        status, _, body = server.post("tests/" + "a/" * (100 << 10) + "y")
        assert status == 414, body[:200]
        assert time.monotonic() - began < 5
        assert server.post("tests/a/bx")[::2] == (200, b"routed")


def test_a_cmd_within_the_limit_fully_percent_encoded_still_fits_the_request_line(server):
    encoded = "".join(f"%{byte:02X}" for byte in ("t/long/" + "a" * ((256 << 10) - 7)).encode())
    status, _, body = server.request("POST", "/handler?cmd=" + encoded)
    assert status == 200, body[:200]
    status, _, body = server.request("POST", "/handler?cmd=" + encoded + "%61")
    assert status == 414, body[:200]
    assert error_of(body)["error"].endswith("over the limit of 262144 bytes")


def test_ufop_max_cmd_bytes_sets_the_limit_and_a_longer_cmd_is_414_before_any_route_runs(make_project):
    # This route backtracks quadratically: routed, a 300 KiB cmd would hold the event loop for minutes.
    project = make_project("""
        from ufop_sdk import Processor

        class Backtracking(Processor):
            route = r"(?P<a>.+)/(?P<b>.+)x"
            max_cmd_bytes = 1 << 20

            def process(self, req):
                return "routed"
    """, env="UFOP_NAME=tests\n")
    with Server(project, env={"UFOP_MAX_CMD_BYTES": "300KiB"}) as limited:
        began = time.monotonic()
        status, _, body = limited.post("tests/" + "a/" * (150 << 10) + "y")
        assert status == 414, body[:200]
        assert "over the limit of 307200 bytes" in error_of(body)["error"]
        assert time.monotonic() - began < 5
        assert limited.post("tests/a/bx")[::2] == (200, b"routed")
        assert limited.health()[0] == 200


@pytest.mark.parametrize("query, cmd", [("cmd=t/describe/first&cmd=t/describe/second", "t/describe/first"),
                                        ("cmd=t/describe/a+b%21&", "t/describe/a b!"),
                                        ("flag&cmd=t/describe", "t/describe")])
def test_the_first_value_of_a_query_parameter_wins_percent_decoded(server, query, cmd):
    status, _, body = server.request("POST", "/handler?" + query, b"x")
    assert status == 200, body
    assert json.loads(body)["cmd"] == cmd


def test_a_query_of_too_many_parameters_is_400(server):
    query = "&".join(f"p{n}=1" for n in range(500)) + "&cmd=t/echo"
    status, _, body = server.request("POST", "/handler?" + query, b"x")
    assert status == 400
    assert "parameters" in error_of(body)["error"]
