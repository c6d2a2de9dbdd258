"""A project whose Model cannot set up: /health must say so, Echo still answers."""

from ufop_sdk import Processor


class Echo(Processor):
    route = r"echo"

    def process(self, req):
        return req.buffer.read(), req.content_type


class Model(Processor):
    route = r"model"

    def setup(self):
        raise RuntimeError("model weights not found")

    def process(self, req):
        return "never"
