"""Responses: what process() returns becomes a Response with a status and a content type."""

import json

import pytest

from ufop_sdk import BadRequest, Response, UfopError
from ufop_sdk.response import error_response, to_response


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
    made = Response(png, status=201, headers={"X-Frames": "1"})
    response = to_response(made, "Thumbnail")
    assert response is made
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


@pytest.mark.parametrize("body", ["text", bytearray(b"x"), None])
def test_a_response_body_must_be_bytes(body):
    with pytest.raises(TypeError):
        Response(body)
    response = Response(b"ok")
    with pytest.raises(TypeError):
        response.body = body


def test_repr_shows_status_type_and_size():
    assert repr(Response(b"hello", content_type="text/plain")) == (
        "Response(status=200, content_type='text/plain', 5 bytes)")
