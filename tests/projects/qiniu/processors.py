"""Processors that show what Qiniu's conventions give a processor: headers and the X-Qiniu-* ones decoded."""

import attrs

from ufop_sdk import Processor


class Headers(Processor):
    route = r"headers"

    def process(self, req):
        return {"headers": dict(req.headers), "x-custom": req.headers.get("x-custom"),
                "qiniu": attrs.asdict(req.qiniu)}
