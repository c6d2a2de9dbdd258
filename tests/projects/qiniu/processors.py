"""Processors that show what Qiniu's conventions give a processor: headers and the X-Qiniu-* ones decoded."""

import attrs

from ufop_sdk import Processor, base64_text, integer, key_values, records, repeated


class Headers(Processor):
    route = r"headers"

    def process(self, req):
        return {"headers": dict(req.headers), "x-custom": req.headers.get("x-custom"),
                "qiniu": attrs.asdict(req.qiniu)}


@attrs.frozen
class ZipEntry:
    url: str = base64_text()
    alias: str | None = base64_text(default=None)


@attrs.frozen
class ZipOptions:
    entries: list = records(ZipEntry)


class Mkzip(Processor):
    """Qiniu's mkzip/2 grammar: /url/<b64>[/alias/<b64>], again and again; answers what it parsed."""

    route = r"mkzip/2(?P<options>/.+)"

    @attrs.frozen
    class Args:
        options: ZipOptions = key_values(ZipOptions)

    def process(self, req):
        return [[entry.url, entry.alias] for entry in req.args.options.entries]


@attrs.frozen
class FrameOptions:
    offset: int = integer(0, 3600)
    w: int = integer(1, 4096, default=0)
    tag: list = repeated(base64_text())


class Frame(Processor):
    """A vframe-like grammar: a format by position, then /key/value options in any order."""

    route = r"frame/(?P<format>jpg|png)(?P<options>/.*)?"

    @attrs.frozen
    class Args:
        format: str
        options: FrameOptions = key_values(FrameOptions)

    def process(self, req):
        return {"format": req.args.format, **attrs.asdict(req.args.options)}
