"""The Request's Qiniu parts: Headers, QiniuInfo and URL-safe base64, as tables of good and bad inputs."""

import json
from pathlib import Path

import pytest

from ufop_sdk.qiniu import Headers, QiniuInfo, decode_base64, decode_base64_text
from ufop_sdk.testing import run

QINIU = Path(__file__).resolve().parent / "projects" / "qiniu"


def test_headers_are_read_only_and_match_names_whatever_their_case():
    headers = Headers({"Content-Type": "image/png", "X-Custom": "1"})
    assert headers["content-type"] == headers["CONTENT-TYPE"] == "image/png"
    assert "x-custom" in headers and 1 not in headers and headers.get("missing") is None
    assert list(headers) == ["Content-Type", "X-Custom"] and len(headers) == 2
    with pytest.raises(TypeError):
        headers["X-Custom"] = "2"
    assert repr(headers) == "Headers({'Content-Type': 'image/png', 'X-Custom': '1'})"


def test_a_header_given_twice_keeps_both_values_joined_as_http_joins_them():
    assert Headers([("Accept", "a"), ("accept", "b")]) == {"Accept": "a, b"}
    assert Headers({"Accept": "a", "ACCEPT": "b"})["accept"] == "a, b"


@pytest.mark.parametrize(("text", "expected"), [
    ("aGk", b"hi"), ("aGk=", b"hi"), ("-_8", b"\xfb\xff"), ("", b""), ("Pz8_", b"???"),
    ("Pz8/", b"???"),  # the standard alphabet too
])
def test_url_safe_base64_decodes_with_or_without_padding(text, expected):
    assert decode_base64(text) == expected


@pytest.mark.parametrize("text", ["a", "aGk==x", "a=Gk", "%%%", "aGk\N{SNOWMAN}", "aG k", b"aGk", None])
def test_what_is_not_url_safe_base64_is_a_value_error(text):
    with pytest.raises(ValueError, match="expected URL-safe base64"):
        decode_base64(text)


def test_base64_text_names_its_encoding_when_the_bytes_are_not_text():
    assert decode_base64_text("1tA", "gbk") == "\N{CJK UNIFIED IDEOGRAPH-4E2D}"
    with pytest.raises(ValueError, match="base64 of utf-8 text"):
        decode_base64_text("_w")


@pytest.mark.parametrize(("headers", "field", "expected"), [
    ({"x-qiniu-uid": "MTM0OTg1Nw"}, "uid", 1349857),
    ({"X-Qiniu-Uid": "LTE"}, "uid", None),  # -1: not a uid
    ({"X-Qiniu-Uid": "YWJj"}, "uid", None),  # abc
    ({"X-Qiniu-Bucket": "cGhvdG9z"}, "bucket", "photos"),
    ({"X-Qiniu-Key": "_w"}, "key", None),  # not UTF-8
    ({"X-Qiniu-Mode": "Mg=="}, "is_async", True),
    ({"X-Qiniu-Mode": "2"}, "is_async", True),  # bare, as it cannot be base64
    ({"X-Qiniu-Mode": "MQ"}, "is_async", False),
    ({}, "is_async", None),
    ({"X-Qiniu-Pipe-Cmds": "YXxi"}, "pipeline", ["a", "b"]),
    ({"X-Qiniu-Pipe-Cmds": "bXl1Zm9w"}, "pipeline", ["myufop"]),
    ({"X-Qiniu-Pipe-Cmds": "!"}, "pipeline", None),
])
def test_the_platforms_headers_decode_or_are_none(headers, field, expected):
    assert getattr(QiniuInfo.from_headers(Headers(headers)), field) == expected


def test_testing_run_passes_headers_to_the_processor():
    response = run("headers", b"x", project=QINIU, headers={"X-Custom": "1", "X-Qiniu-Uid": "Nw"})
    assert response.status == 200, response.body
    answer = json.loads(response.body)
    assert (answer["x-custom"], answer["qiniu"]["uid"]) == ("1", 7)
