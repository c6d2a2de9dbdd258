"""Responses: what process() returns becomes a Response with a status and a content type."""

import json

import pytest
from support import PROJECTS, Server, run_cli

from ufop_sdk import BadRequest, Overloaded, Response, UfopError
from ufop_sdk.response import error_response, to_response
from ufop_sdk.testing import run


def test_str_is_utf8_text():
    response = to_response("hello 七牛", "Hello")
    assert (response.status, response.content_type) == (200, "text/plain; charset=utf-8")
    assert response.body == "hello 七牛".encode()


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
def test_bytes_are_sent_as_they_are_with_a_sniffed_type(png, kind):
    response = to_response(kind(png), "Thumbnail")
    assert (response.status, response.content_type, response.body) == (200, "image/png", png)


@pytest.mark.parametrize("value", [{"width": 200, "name": "七牛"}, [1, "two", None], []])
def test_dicts_and_lists_are_json(value):
    response = to_response(value, "Info")
    assert (response.status, response.content_type) == (200, "application/json")
    assert json.loads(response.body) == value


@pytest.mark.parametrize(("value", "body"), [
    (("<p>hi</p>", "text/html; charset=utf-8"), b"<p>hi</p>"),
    ((b"<svg/>", "image/svg+xml"), b"<svg/>"),
    (({"a": 1}, "application/vnd.api+json"), b'{"a":1}'),
])
def test_a_pair_sets_the_content_type(value, body):
    response = to_response(value, "Render")
    assert (response.status, response.content_type, response.body) == (200, value[1], body)


def test_a_response_passes_through_and_a_missing_content_type_is_sniffed(png):
    made = Response(png, status=201, headers={"X-Frames": 1})
    response = to_response(made, "Thumbnail")
    assert (response.status, response.content_type, response.headers) == (201, "image/png", {"X-Frames": "1"})
    assert to_response(Response(b"x", content_type="text/csv"), "Export").content_type == "text/csv"


def test_none_is_204_no_content():
    response = to_response(None, "Delete")
    assert (response.status, response.body) == (204, b"")


@pytest.mark.parametrize(("value", "type_name"), [(42, "int"), (object(), "object"), ({1, 2}, "set")])
def test_an_unsupported_type_is_a_500_naming_the_processor_and_the_type(value, type_name):
    with pytest.raises(UfopError) as caught:
        to_response(value, "Thumbnail")
    assert caught.value.status == 500
    assert caught.value.message.startswith(f"processor 'Thumbnail' returned {type_name}, which cannot be")


@pytest.mark.parametrize("value", [
    {"when": object()},
    {"tags": {"a", "b"}},
    [b"bytes"],
    {"ratio": float("nan")},
    {"ratio": float("inf")},
], ids=["object", "set", "bytes", "nan", "infinity"])
def test_a_dict_or_list_that_is_not_json_is_a_500_naming_the_processor(value):
    with pytest.raises(UfopError) as caught:
        to_response(value, "Info")
    assert caught.value.status == 500
    kind = type(value).__name__
    assert caught.value.message.startswith(f"processor 'Info' returned a {kind} that is not JSON")


def test_json_and_text_constructors():
    assert Response.json({"ok": True}, status=201) == Response(b'{"ok":true}', 201, {}, "application/json")
    assert Response.text("七牛", headers={"X-A": "1"}) == Response(
        "七牛".encode(), 200, {"X-A": "1"}, "text/plain; charset=utf-8")


def test_error_response_is_json_with_the_error_and_request_id():
    response = error_response(BadRequest("invalid argument 'width'"), request_id="req-1")
    assert (response.status, response.content_type) == (400, "application/json")
    assert json.loads(response.body) == {"error": "invalid argument 'width'", "request_id": "req-1"}


def test_error_response_carries_a_traceback_only_when_given():
    response = error_response(UfopError("internal error"), traceback="Traceback ...")
    assert json.loads(response.body) == {"error": "internal error", "request_id": None,
                                         "traceback": "Traceback ..."}


@pytest.mark.parametrize("body", ["text", 42, None])
def test_a_response_body_must_be_bytes(body):
    with pytest.raises(TypeError):
        Response(body)
    response = Response(b"ok")
    with pytest.raises(TypeError):
        response.body = body


@pytest.mark.parametrize("kind", [bytearray, memoryview])
def test_a_response_body_of_bytearray_or_memoryview_becomes_bytes_as_a_bare_return_does(kind):
    assert Response(kind(b"pixels")).body == b"pixels"
    response = Response()
    response.body = kind(b"later")
    assert response.body == b"later" and type(response.body) is bytes


@pytest.mark.parametrize("status", [99, 100, 101, 103, 199, 600])
def test_a_status_outside_200_to_599_is_refused_since_a_1xx_is_not_a_final_answer(status):
    with pytest.raises(ValueError, match="status"):
        Response(b"", status)


@pytest.mark.parametrize("status", [200, 204, 302, 404, 599])
def test_a_status_from_200_to_599_is_taken(status):
    assert Response(b"", status).status == status


# A module-level Response, as a processor may keep one for a constant answer.
CONSTANT = Response(b"constant", headers={"X-Count": 1})


@pytest.mark.parametrize("returned", [CONSTANT, (CONSTANT, "text/x-constant")], ids=["response", "pair"])
def test_a_returned_response_is_left_as_the_processor_made_it(returned):
    answered = to_response(returned, "Constant")
    assert answered.content_type in ("text/plain", "text/x-constant") and answered.headers == {"X-Count": "1"}
    assert (CONSTANT.content_type, CONSTANT.headers) == (None, {"X-Count": 1})
    assert answered is not CONSTANT


# Content types and headers Tornado would refuse to write: each a 500 naming the processor.
UNSENDABLE = {
    "pair content type with CRLF": (b"x", "text/plain\r\nX-Injected: 1"),
    "pair content type with LF": ("x", "text/plain\nX-Injected: 1"),
    "pair content type not latin-1": (b"x", "text/plain; name=猫"),
    "response content type with NUL": Response(b"x", content_type="text/plain\0"),
    "response content type not a str": Response(b"x", content_type=b"text/plain"),
    "header value not latin-1": Response(b"hi", headers={"X-Name": "猫"}),
    "header value with CRLF": Response(b"hi", headers={"X-Injected": "a\r\nSet-Cookie: evil=1"}),
    "header value with a control character": Response(b"hi", headers={"X-Bell": "ding\x07"}),
    "header value with DEL": Response(b"hi", headers={"X-Del": "a\x7fb"}),
    "header name with a space": Response(b"hi", headers={"X Name": "v"}),
    "header name with a colon": Response(b"hi", headers={"X-Name:": "v"}),
    "header name not latin-1": Response(b"hi", headers={"X-猫": "v"}),
    "header name empty": Response(b"hi", headers={"": "v"}),
}


@pytest.mark.parametrize("value", UNSENDABLE.values(), ids=UNSENDABLE.keys())
def test_an_unsendable_content_type_or_header_is_a_500_naming_the_processor(value):
    with pytest.raises(UfopError) as caught:
        to_response(value, "Render")
    assert caught.value.status == 500
    assert caught.value.message.startswith("processor 'Render' returned ")


def test_a_latin1_header_value_with_a_tab_is_sendable():
    response = to_response(Response(b"hi", headers={"X-Name": "café\tcrème"}), "Render")
    assert response.headers == {"X-Name": "café\tcrème"}


# Errors' headers.

def test_each_error_has_its_own_headers_so_changing_one_changes_no_other():
    first, second = UfopError("first"), BadRequest("second")
    first.headers["X-Changed"] = "yes"
    assert second.headers == {} and UfopError("third").headers == {} and UfopError.headers == {}
    busy = Overloaded("busy")
    busy.headers["Retry-After"] = "9"
    assert Overloaded("busy too").headers == {"Retry-After": "1"}


def test_an_error_takes_headers_added_to_its_class_defaults():
    assert Overloaded("busy", headers={"Retry-After": 5, "X-Queue": "full"}).headers == {
        "Retry-After": "5", "X-Queue": "full"}
    response = error_response(BadRequest("slow down", status=429, headers={"Retry-After": "7"}))
    assert (response.status, response.headers) == (429, {"Retry-After": "7"})


def test_the_class_default_headers_cannot_be_changed_in_place():
    with pytest.raises(TypeError):
        Overloaded.headers["Retry-After"] = "60"


@pytest.mark.parametrize("headers", [{"X-Name": "猫"}, {"X-Injected": "a\r\nb"}, {"bad name": "v"}])
def test_an_error_with_an_unsendable_header_is_refused_where_it_is_raised(headers):
    with pytest.raises(ValueError, match="header"):
        UfopError("x", headers=headers)


def test_repr_shows_status_type_and_size():
    assert repr(Response(b"hello", content_type="text/plain")) == (
        "Response(status=200, content_type='text/plain', 5 bytes)")


# Through a real server, `ufop-sdk test` and ufop_sdk.testing.run: the same 500 naming the processor.

UNSENDABLE_PROJECT = PROJECTS / "unsendable"
# An error raised with an unsendable header fails where it is raised: the processor's internal error.
UNSENDABLE_CMDS = {"crlf-content-type": "CrlfContentType", "cat-header": "CatHeader",
                   "cat-error-header": "CatErrorHeader"}


def names_the_processor(error, processor):
    return error.startswith((f"processor {processor!r} returned ",
                             f"internal error in processor {processor!r}"))


@pytest.fixture(scope="module")
def unsendable_server():
    with Server(UNSENDABLE_PROJECT, "--host", "127.0.0.1", workers=1) as server:
        yield server


# The processor's own ValueError is logged with its traceback, on purpose.
SERVER_CASES = [pytest.param(cmd, processor, id=cmd, marks=[pytest.mark.expect_traceback]
                             if cmd == "cat-error-header" else [])
                for cmd, processor in UNSENDABLE_CMDS.items()]


@pytest.mark.parametrize(("cmd", "processor"), SERVER_CASES)
def test_the_server_answers_an_unsendable_answer_with_a_json_500_naming_the_processor_and_logs_500(
        unsendable_server, cmd, processor):
    status, headers, body = unsendable_server.post(f"u/{cmd}", b"x")
    assert (status, headers["Content-Type"]) == (500, "application/json"), body
    assert names_the_processor(json.loads(body)["error"], processor)
    assert "X-Injected" not in headers and "X-Name" not in headers
    unsendable_server.wait_until(lambda: f'"cmd":"u/{cmd}","processor":"{processor}","status":500'
                                 in unsendable_server.output(), 5, "the access log line")


def test_the_server_sends_a_latin1_header_and_an_errors_own_headers(unsendable_server):
    status, headers, body = unsendable_server.request("POST", "/handler?cmd=u/latin1-header", b"x")
    assert (status, headers["X-Name"], body) == (200, "café", b"hi")
    status, headers, body = unsendable_server.post("u/error-header", b"x")
    assert (status, headers["Retry-After"], json.loads(body)["error"]) == (429, "7", "slow down")


@pytest.mark.parametrize(("cmd", "processor"), UNSENDABLE_CMDS.items(), ids=UNSENDABLE_CMDS.keys())
def test_ufop_sdk_test_reports_an_unsendable_answer_as_the_same_500(tmp_path, cmd, processor):
    source = tmp_path / "input"
    source.write_bytes(b"x")
    result = run_cli("test", source, cmd, "--project", UNSENDABLE_PROJECT, timeout=30)
    status, _, error = result.stderr.decode().partition(" ")
    assert result.returncode != 0 and status == "500", result.stderr
    assert names_the_processor(json.loads(error.splitlines()[0])["error"], processor)


@pytest.mark.parametrize(("cmd", "processor"), UNSENDABLE_CMDS.items(), ids=UNSENDABLE_CMDS.keys())
def test_testing_run_reports_an_unsendable_answer_as_the_same_500(cmd, processor):
    response = run(cmd, b"x", project=UNSENDABLE_PROJECT)
    assert (response.status, response.content_type) == (500, "application/json")
    assert names_the_processor(json.loads(response.body)["error"], processor)
