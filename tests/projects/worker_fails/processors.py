"""A project that imports in the server but not in its workers (a library only they need is missing)."""

import sys

from ufop_sdk import Processor

if sys.argv[0].endswith("worker_main.py"):
    raise ImportError("libvips.so.42: cannot open shared object file")


class Echo(Processor):
    route = r"echo"

    def process(self, req):
        return req.buffer.read()
