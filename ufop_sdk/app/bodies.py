"""Answers that are not bytes in memory: a file sent from disk (FileBody) and a stream of chunks (StreamBody).

`Response.body` is bytes, a FileBody or a StreamBody; `as_body` turns what a
processor returned (a path, an open binary file, an iterator of bytes) into one.
Both are closed by whoever sends them, once sent or abandoned.
"""

import collections.abc
import io
import os
import stat
from pathlib import PurePath

import attrs

CHUNK = 1 << 20  # what one read of a file answer, or of a readable that is not a file, takes


class AnswerCut(Exception):
    """An answer could not be sent to its end: its producer failed, it grew past
    UFOP_MAX_OUTPUT_BYTES, a file changed, or the worker died. Its connection is closed."""


@attrs.define(eq=False)
class FileBody:
    """An open binary file, sent from its current position: `length` bytes (fixed when it was taken)."""

    file: object = attrs.field(repr=False)
    length: int

    @classmethod
    def of(cls, file):
        """A FileBody of an open regular file, from where it is now; OSError for anything else
        (a pipe, a socket: sent as a stream)."""
        status = os.fstat(file.fileno())
        if not stat.S_ISREG(status.st_mode):
            raise io.UnsupportedOperation("not a regular file")
        return cls(file, max(0, status.st_size - file.tell()))

    def chunks(self, size=CHUNK):
        """The file's bytes, `size` at a time, up to `length` (it may have grown since).

        Each chunk is a view of one buffer, read into again for the next: use it
        (send it) before asking for the next. A fresh bytes object per read cost a
        mapping and its page faults each time: 0.79 of a bare sendfile server's
        throughput, against 1.00 with one buffer (1 GiB, benchmarks/file_answers.py,
        medians of the rounds' ratios, 2 shared vCPUs).
        """
        buffer = memoryview(bytearray(min(size, max(self.length, 1))))
        left = self.length
        while left > 0:
            read = self.file.readinto(buffer[:min(len(buffer), left)])
            if not read:
                return
            left -= read
            yield buffer[:read]

    def head(self, size):
        """Its first `size` bytes, the file left where it was."""
        return os.pread(self.file.fileno(), size, self.file.tell())

    def close(self):
        self.file.close()


@attrs.define(eq=False)
class StreamBody:
    """An iterator of bytes, sent as it yields (chunked); its length is not known in advance."""

    iterator: object = attrs.field(repr=False)

    def chunks(self, size=CHUNK):
        for chunk in self.iterator:
            if not isinstance(chunk, (bytes, bytearray, memoryview)):
                raise TypeError(f"a streamed answer yielded {type(chunk).__name__}, not bytes")
            if chunk:
                yield bytes(chunk)

    def close(self):
        close = getattr(self.iterator, "close", None)  # a generator's finally blocks run now
        if close is not None:
            close()


def is_streamable(value):
    """True for what `as_body` takes: a path, something readable, or an iterator (not str or bytes)."""
    return isinstance(value, (PurePath, collections.abc.Iterator)) or callable(getattr(value, "read", None))


def as_body(value):
    """A FileBody or StreamBody for a path, an open binary file or an iterator of bytes.

    Raises OSError for a path that cannot be opened, TypeError for a file opened in text mode.
    """
    if isinstance(value, PurePath):
        return FileBody.of(open(value, "rb"))  # noqa: SIM115 - closed by whoever sends it
    if callable(getattr(value, "read", None)):
        if isinstance(value, io.TextIOBase):
            raise TypeError("a file opened in text mode: open it with 'rb'")
        try:
            return FileBody.of(value)
        except (AttributeError, OSError, io.UnsupportedOperation):  # no descriptor: a BytesIO, a socket file
            return StreamBody(iter(lambda: value.read(CHUNK), b""))
    return StreamBody(value)


def close_body(body):
    """Close a FileBody or StreamBody; bytes need nothing."""
    if not isinstance(body, (bytes, bytearray)):
        body.close()


def read_body(body):
    """All of a body's bytes, in memory: for callers that keep an answer whole (ufop_sdk.testing)."""
    return body if isinstance(body, bytes) else b"".join(bytes(chunk) for chunk in body.chunks())
