"""The older qiniu-ufop quickstart, in ufop-sdk's class style.

    ufop-sdk test any-file qq      ->  hello qq
    ufop-sdk test any-file         ->  hello world
    ufop-sdk test photo.png echo   ->  the file back, as image/png
"""

from ufop_sdk import Processor


class Echo(Processor):
    """Answers with the input, in the content type sniffed from it."""

    route = r"echo"

    def process(self, req):
        return req.buffer.read(), req.content_type


class Hello(Processor):
    """``qiniu/qq`` -> ``hello qq``; the bare ``qiniu`` -> ``hello world``."""

    route = r"(?P<name>[^/]+)?"

    def process(self, req):
        return f"hello {req.args.get('name', 'world')}"
