"""A project whose Database reports itself unhealthy from health()."""

from ufop_sdk import Processor


class Echo(Processor):
    route = r"echo"

    def process(self, req):
        return req.buffer.read(), req.content_type


class Database(Processor):
    route = r"query"

    def health(self):
        raise ConnectionError("database unreachable")

    def process(self, req):
        return "rows"
