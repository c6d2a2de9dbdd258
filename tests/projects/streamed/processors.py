"""Processors with ``prefetch = False``: each reads its input as a forward-only stream."""

import hashlib
import os

from ufop_sdk import BadRequest, Processor


class Head(Processor):
    """Reads the first `count` bytes and stops: the rest of the source must never be downloaded."""

    route = r"head/(?P<count>\d+)"
    prefetch = False

    def process(self, req):
        data = req.buffer.read(int(req.args["count"]))
        return {"read": len(data), "sha256": hashlib.sha256(data).hexdigest(), "size": req.size,
                "seekable": req.buffer.seekable(), "content_type": req.content_type,
                "declared_content_type": req.declared_content_type, "url": req.url, "pid": os.getpid()}


class Echo(Processor):
    """Reads the whole input by iterating over the stream and answers it."""

    route = r"echo"
    prefetch = False

    def process(self, req):
        return b"".join(req.buffer), req.content_type


class Digest(Processor):
    """Reads the whole input with readinto, a chunk at a time, and answers its length and digest."""

    route = r"digest"
    prefetch = False

    def process(self, req):
        digest, chunk, total = hashlib.sha256(), bytearray(1 << 16), 0
        while count := req.buffer.readinto(chunk):
            digest.update(memoryview(chunk)[:count])
            total += count
        return {"length": total, "sha256": digest.hexdigest()}


class Untouched(Processor):
    """Never reads its input."""

    route = r"untouched"
    prefetch = False

    def process(self, req):
        return "not read"


class PicturesOnly(Processor):
    route = r"picture"
    accepts = ("image/*",)
    prefetch = False

    def process(self, req):
        return req.content_type


class HastyDigest(Digest):
    """Digest with a 1 s timeout: a source that stalls is cut by the processor's own timeout."""

    route = r"hasty-digest"
    timeout = 1


class Keeper(Processor):
    """Reads 10 bytes and keeps the stream, as it should not (then fails, for keep/fail): the end of
    the request closes it all the same."""

    route = r"keep(?P<fail>/fail)?"
    prefetch = False

    def setup(self):
        self.kept = []

    def process(self, req):
        req.buffer.read(10)
        self.kept.append(req.buffer)
        if req.args.get("fail"):
            raise BadRequest("failed after reading")
        return "kept"


class Relay(Processor):
    """Answers a stream that reads its input as it is sent: source in, answer out, never whole."""

    route = r"relay"
    prefetch = False

    def process(self, req):
        return iter(lambda: req.buffer.read(64 << 10), b""), "application/octet-stream"
