"""What the Qiniu platform sends an instance, and what processors should see of it (both executors)."""

import base64
import json

from support import PROJECTS

QINIU = PROJECTS / "qiniu"

# What Qiniu's own UFOPs are sent: each value URL-safe base64, with or without padding
# (MTM0OTg1Nw== is 1349857).
PLATFORM_HEADERS = {
    "X-Qiniu-Uid": "MTM0OTg1Nw==", "X-Qiniu-Bucket": "cGhvdG9z", "X-Qiniu-Key": "Y2F0cy_wn5CxLmpwZw",
    "X-Qiniu-Mode": "Mg", "X-Qiniu-Pipe-Cmds": "YXZ0aHVtYi9tcDR8bXl1Zm9wL2N1dA==",
}
DECODED = {"uid": 1349857, "bucket": "photos", "key": "cats/\N{CAT FACE}.jpg", "is_async": True,
           "pipeline": ["avthumb/mp4", "myufop/cut"]}


def described(server, headers):
    """What the project's `headers` processor saw of a request with `headers`."""
    status, _, body = server.post("q/headers", b"x", headers=headers)
    assert status == 200, body
    return json.loads(body)


def b64(text):
    """`text` in URL-safe base64 without padding, as Qiniu's parameters often are."""
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def answer_of(server, cmd):
    """(status, JSON body) of `cmd` on a small body."""
    status, _, body = server.post(cmd, b"x")
    return status, json.loads(body)
