"""Processors whose answers Tornado could not write as they are, and one it can."""

from ufop_sdk import Processor, Response, UfopError


class CrlfContentType(Processor):
    route = r"crlf-content-type"

    def process(self, req):
        return b"x", "text/plain\r\nX-Injected: 1"


class CatHeader(Processor):
    """A header value outside latin-1, which the header block is encoded in."""

    route = r"cat-header"

    def process(self, req):
        return Response(b"hi", headers={"X-Name": "猫"})


class CatErrorHeader(Processor):
    route = r"cat-error-header"

    def process(self, req):
        raise UfopError("slow down", status=429, headers={"X-Name": "猫"})


class ErrorHeader(Processor):
    route = r"error-header"

    def process(self, req):
        raise UfopError("slow down", status=429, headers={"Retry-After": "7"})


class Latin1Header(Processor):
    route = r"latin1-header"

    def process(self, req):
        return Response(b"hi", headers={"X-Name": "café"}, content_type="text/plain; charset=latin-1")
