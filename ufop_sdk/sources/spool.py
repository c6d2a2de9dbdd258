"""Spool: an input received in chunks, in memory while small, then on disk."""

import errno
import tempfile

from ..errors import PayloadTooLarge, UfopError

# Small inputs stay in memory and travel to the worker inline; larger ones go
# to an unnamed temporary file whose descriptor the worker receives.
MEMORY_LIMIT = 1 << 20


class Spool:
    """Collects an input of at most `max_bytes`, refusing more with PayloadTooLarge.

    The file on disk has no name, so the kernel removes it when the last
    descriptor closes, whatever happens to the request.

    Not tempfile.SpooledTemporaryFile: the server must know whether the input
    is still in memory (inline to the worker, or its descriptor) and take its
    bytes without a copy, which that class keeps private (``_rolled``,
    ``_file``). Measured against it (2 vCPU, Python 3.11): 0.5 vs 1.4 µs for a
    1-byte body, 5.8 vs 7.1 µs for 250 KiB in 4 chunks, 1.07 vs 1.12 ms for 4 MiB.
    """

    def __init__(self, max_bytes, directory=None, memory_limit=MEMORY_LIMIT, what="body"):
        self.max_bytes = max_bytes
        self.directory = directory
        self.memory_limit = memory_limit
        self.what = what
        self.size = 0
        self._chunks = []
        self._file = None
        self._closed = False

    def write(self, chunk):
        if self._closed:  # a download still arriving for a request that is over (its client left)
            raise UfopError(f"the {self.what} is no longer wanted", status=499)
        self.size += len(chunk)
        if self.size > self.max_bytes:
            raise PayloadTooLarge(f"the {self.what} is over the limit of {self.max_bytes} bytes")
        try:
            if self._file is None:
                self._chunks.append(chunk)
                if self.size > self.memory_limit:
                    self._roll_over()
            else:
                self._file.write(chunk)
        except OSError as exc:
            raise _storage_error(exc) from None

    def reset(self):
        """Drop what was received, to start again (a redirect's new body)."""
        self._release()
        self.size = 0

    @property
    def in_memory(self):
        return self._file is None

    def getvalue(self):
        """The bytes received, when in memory."""
        return b"".join(self._chunks)

    def file(self):
        """The temporary file, flushed and at position 0 (rolls over if in memory)."""
        try:
            if self._file is None:
                self._roll_over()
            self._file.flush()
        except OSError as exc:
            raise _storage_error(exc) from None
        self._file.seek(0)
        return self._file

    def close(self):
        """Let go of what was received, and take no more; never raises."""
        self._release()
        self._closed = True

    def _release(self):
        """Drop what was received; never raises (a full disk cannot flush, and need not)."""
        self._chunks = []
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass  # the file has no name: the kernel frees it with its descriptor
            self._file = None

    def _roll_over(self):
        self._file = tempfile.TemporaryFile(dir=self.directory, prefix="ufop-spool-")
        for chunk in self._chunks:
            self._file.write(chunk)
        self._chunks = []

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()


def _storage_error(exc):
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return UfopError("no space left to store the input", status=507)
    return UfopError("cannot store the input", status=503)
