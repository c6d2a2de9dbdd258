"""Big answers for benchmarks/file_answers.py: the file BENCH_FILE, from disk or as a stream."""

import os
from pathlib import Path

from ufop_sdk import Processor

CHUNK = 1 << 20


class File(Processor):
    """BENCH_FILE, answered as a file (sent from disk, with its Content-Length)."""

    route = "file"
    timeout = 120

    def process(self, req):
        return Path(os.environ["BENCH_FILE"])


class Stream(Processor):
    """BENCH_FILE's bytes, answered by a generator (chunked)."""

    route = "stream"
    timeout = 120

    def process(self, req):
        with open(os.environ["BENCH_FILE"], "rb") as file:
            yield from iter(lambda: file.read(CHUNK), b"")
