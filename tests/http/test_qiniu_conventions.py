"""Qiniu's conventions over real HTTP, through the embedded pool of a real ``ufop-sdk serve``: req.headers,
req.qiniu and /key/value parameters."""

import pytest
from qiniu_support import DECODED, PLATFORM_HEADERS, QINIU, answer_of, b64, described
from support import Server

NOT_BASE64 = {name: "%%%" for name in PLATFORM_HEADERS}


@pytest.fixture(scope="module")
def server():
    with Server(QINIU) as server:
        yield server


def test_a_processor_reads_the_requests_headers_whatever_their_case(server):
    answer = described(server, {"X-CUSTOM": "one", "X-Other": "two"})
    assert answer["x-custom"] == "one"
    assert answer["headers"]["X-Other"] == "two"


def test_the_platforms_headers_are_decoded_from_url_safe_base64_with_or_without_padding(server):
    assert described(server, PLATFORM_HEADERS)["qiniu"] == DECODED


def test_missing_or_undecodable_platform_headers_are_none_not_an_error(server):
    nothing = dict.fromkeys(DECODED)
    assert described(server, {})["qiniu"] == nothing
    assert described(server, NOT_BASE64)["qiniu"] == nothing


def test_large_headers_travel_to_the_worker_whole(server):
    # The HTTP layer bounds the header block at 64 KiB; what it lets in reaches the processor.
    big = "v" * (40 << 10)
    assert described(server, {"X-Custom": big})["x-custom"] == big


def test_mkzip_pairs_parse_with_each_alias_belonging_to_the_url_before_it(server):
    cmd = f"q/mkzip/2/url/{b64('http://a/1.jpg')}/alias/{b64('one.jpg')}/url/{b64('http://b/2')}"
    assert answer_of(server, cmd) == (200, [["http://a/1.jpg", "one.jpg"], ["http://b/2", None]])


def test_key_value_options_in_any_order_after_a_positional_argument(server):
    status, answer = answer_of(server, f"q/frame/png/tag/{b64('a')}/w/320/offset/7/tag/{b64('b')}")
    assert (status, answer) == (200, {"format": "png", "offset": 7, "w": 320, "tag": ["a", "b"]})


@pytest.mark.parametrize(("cmd", "error"), [
    ("q/mkzip/2/url/%%%", "invalid argument 'url': expected URL-safe base64, got '%%%'"),
    ("q/frame/jpg/offset/1/size/2", "unknown argument 'size': expected one of offset, tag, w"),
    ("q/frame/jpg/w/10", "missing argument 'offset'"),
])
def test_a_bad_key_value_parameter_is_a_400_naming_the_key(server, cmd, error):
    status, answer = answer_of(server, cmd)
    assert (status, answer["error"]) == (400, error)
