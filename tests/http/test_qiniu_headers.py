"""req.headers and req.qiniu over real HTTP, through the embedded pool of a real ``ufop-sdk serve``."""

import pytest
from qiniu_support import DECODED, PLATFORM_HEADERS, QINIU, described
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
