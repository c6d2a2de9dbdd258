"""Benchmark processors: the least work a processor can do."""

from ufop_sdk import Processor


class Hello(Processor):
    route = r"hello"

    def process(self, req):
        return "hello world"


class Size(Processor):
    """Reads the whole input in chunks and answers its size: the upload path's cost."""

    route = r"size"

    def process(self, req):
        total = 0
        for chunk in iter(lambda: req.buffer.read(1 << 20), b""):
            total += len(chunk)
        return {"size": total}


class Echo(Processor):
    """Answers with the input: the cost of moving bytes both ways."""

    route = r"echo"

    def process(self, req):
        return req.buffer.read(), "application/octet-stream"
