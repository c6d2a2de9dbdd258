"""The file-answer benchmark's processor: answers the file BENCH_FILE names, from disk."""

import os
from pathlib import Path

from ufop_sdk import Processor


class File(Processor):
    route = r"file"
    timeout = 600

    def process(self, req):
        return Path(os.environ["BENCH_FILE"]), "application/octet-stream"


class Stream(Processor):
    """BENCH_FILE's bytes from a generator: a streamed (chunked) answer."""

    route = r"stream"
    timeout = 600

    def process(self, req):
        with open(os.environ["BENCH_FILE"], "rb") as file:
            yield from iter(lambda: file.read(1 << 20), b"")
