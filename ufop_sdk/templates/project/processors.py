"""The processors of $name: one class per kind of processing.

Try them without a server:

    ufop-sdk test any-file             # file info as JSON
    ufop-sdk test any-file hello/qq    # hello qq
"""

import hashlib

from ufop_sdk import Processor


class Info(Processor):
    """The bare name (``?$name``) or ``info``: what the input is, as JSON."""

    route = r"(?:info)?"

    def process(self, req):
        sha256 = hashlib.sha256()
        for chunk in iter(lambda: req.buffer.read(1 << 16), b""):
            sha256.update(chunk)
        return {"content_type": req.content_type, "size": req.size, "sha256": sha256.hexdigest()}


class Hello(Processor):
    """``hello`` -> ``hello world``; ``hello/qq`` -> ``hello qq``."""

    route = r"hello(?:/(?P<name>[^/]+))?"

    def process(self, req):
        return f"hello {req.args.get('name', 'world')}"
