"""Media types: sniffed from the bytes, matched against a processor's ``accepts`` patterns."""

import io

import pytest

from ufop_sdk.app.media import is_textual, media_type_matches, sniff_bytes, sniff_file


@pytest.mark.parametrize(("data", "media_type"), [
    (b"GIF89a" + bytes(20), "image/gif"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "image/jpeg"),
    (b"hello world\n", "text/plain"),
    (b'{"width": 200}', "application/json"),
    (b"", "application/x-empty"),
])
def test_sniff_bytes(data, media_type):
    assert sniff_bytes(data) == media_type


def test_sniff_bytes_knows_a_png(png):
    assert sniff_bytes(png) == "image/png"
    assert sniff_bytes(memoryview(png)) == "image/png"


def test_sniff_file_reads_from_the_start_and_leaves_the_file_at_the_start(png):
    buffer = io.BytesIO(png + bytes(100_000))
    buffer.seek(50)
    assert sniff_file(buffer) == "image/png"
    assert buffer.tell() == 0


@pytest.mark.parametrize(("pattern", "media_type", "matches"), [
    ("image/*", "image/png", True),
    ("image/*", "image/svg+xml", True),
    ("image/*", "text/plain", False),
    ("image/*", "application/image", False),
    ("*/*", "application/octet-stream", True),
    ("text/plain", "text/plain", True),
    ("text/plain", "text/plain-ish", False),
    ("text/plain", "text/html", False),
    ("IMAGE/PNG", "image/png", True),
    ("image/png", "Image/PNG", True),
])
def test_media_type_matches(pattern, media_type, matches):
    assert media_type_matches(pattern, media_type) is matches


@pytest.mark.parametrize(("content_type", "textual"), [
    ("text/plain; charset=utf-8", True),
    ("text/csv", True),
    ("application/json", True),
    ("Application/JSON", True),
    ("application/xml", True),
    ("application/ld+json", True),
    ("image/svg+xml", True),
    ("image/png", False),
    ("application/octet-stream", False),
    ("application/jsonp", False),
    ("", False),
    (None, False),
])
def test_is_textual(content_type, textual):
    assert is_textual(content_type) is textual
