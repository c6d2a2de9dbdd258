"""A forward-only input (``prefetch = False``): the stream itself, and what ``ufop_sdk.testing.run``
and ``ufop-sdk test`` give a streamed processor for a local file."""

import hashlib
import io
import json

import pytest
from support import PROJECTS, run_cli

from ufop_sdk.app.inputs import forward_only
from ufop_sdk.app.media import SNIFF_BYTES
from ufop_sdk.testing import run

STREAMED = PROJECTS / "streamed"


class Trickle(io.RawIOBase):
    """A source that gives at most 100 bytes a read, as a network may; it records being closed."""

    def __init__(self, data):
        self.data = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, buffer):
        return self.data.readinto(memoryview(buffer)[:100])


def test_a_forward_only_stream_reads_and_iterates_but_does_not_seek():
    data = b"line one\nline two\n" * 1000
    stream = forward_only(io.BytesIO(data))
    assert stream.readable() and not stream.seekable()
    assert stream.read(9) == b"line one\n"
    chunk = bytearray(9)
    assert stream.readinto(chunk) == 9 and bytes(chunk) == b"line two\n"
    assert next(stream) == b"line one\n"
    with pytest.raises(io.UnsupportedOperation):
        stream.seek(0)
    assert b"".join(stream) == data[27:]
    assert stream.read() == b""


def test_peek_gives_the_first_bytes_however_little_each_read_of_the_source_gives():
    data = bytes(range(256)) * 64
    stream = forward_only(Trickle(data))
    assert stream.peek(SNIFF_BYTES)[:SNIFF_BYTES] == data[:SNIFF_BYTES]
    assert stream.read() == data


def test_read_without_a_size_gives_every_byte_from_a_trickling_source():
    data = bytes(range(256)) * 64
    stream = forward_only(Trickle(data))
    assert stream.read(3) == data[:3]
    assert stream.read() == data[3:]


def test_closing_the_stream_closes_its_source():
    source = Trickle(b"abc")
    forward_only(source).close()
    assert source.closed


def test_the_source_is_closed_when_its_first_bytes_cannot_be_read():
    class Broken(Trickle):
        def readinto(self, buffer):
            raise OSError("gone")

    source = Broken(b"")
    with pytest.raises(OSError, match="gone"):
        forward_only(source)
    assert source.closed


def test_testing_run_gives_a_streamed_processor_a_forward_only_stream_over_bytes():
    answer = json.loads(run("head/5", b"hello world", project=STREAMED).body)
    assert (answer["read"], answer["size"], answer["seekable"]) == (5, None, False)
    assert (answer["sha256"], answer["content_type"]) == (hashlib.sha256(b"hello").hexdigest(), "text/plain")


def test_testing_run_streams_a_local_file_whole(tmp_path):
    path = tmp_path / "large.bin"
    path.write_bytes(bytes(range(256)) * (12 << 10))
    response = run("digest", path, project=STREAMED)
    data = path.read_bytes()
    assert json.loads(response.body) == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def test_testing_run_enforces_accepts_on_a_stream(png):
    assert run("picture", b"just text", project=STREAMED).status == 415
    assert run("picture", png, project=STREAMED).body == b"image/png"


def test_ufop_sdk_test_gives_a_streamed_processor_a_forward_only_stream(tmp_path):
    path = tmp_path / "input.txt"
    path.write_bytes(b"hello from a file")
    result = run_cli("test", path, "head/10", "--project", STREAMED)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert (answer["read"], answer["size"], answer["seekable"]) == (10, None, False)
    assert answer["sha256"] == hashlib.sha256(b"hello from").hexdigest()
