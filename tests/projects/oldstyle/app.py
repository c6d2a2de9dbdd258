"""A UFOP written for qiniu-ufop 0.1.x, exactly as its users wrote them; run unchanged and migrated."""

import io

from tornado.httputil import HTTPHeaders

from qiniu_ufop import QiniuUFOP, Response

# A 1x1 PNG's signature and header chunk: enough for the content type to be sniffed.
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x02\x00\x00\x00"

ufop = QiniuUFOP()


@ufop.task(route=r"^/hello(?:/(?P<name>\w+)/?)?$")
def hello(buffer, args, content_type):
    """Greets the name, or the world."""
    return "hello " + args.get("name", "world")


@ufop.task(route=r"^/json")
def describe(buffer, args, content_type):
    return {"args": args, "content_type": content_type, "size": len(buffer.read())}


@ufop.task(route=r"^/created/(?P<id>\d+)$")
def created(buffer, args, content_type):
    headers = HTTPHeaders({"Content-Type": "text/html; charset=utf-8", "X-Custom": "made-" + args["id"]})
    return Response(code=201, headers=headers, body="<p>created " + args["id"] + "</p>")


@ufop.task(route=r"^/buffered$")
def buffered(buffer, args, content_type):
    return Response(buffer=io.BytesIO(b"buffered: " + buffer.read()))


@ufop.task(route=r"^/upper$")
def upper(buffer, args, content_type):
    return buffer.getvalue().upper(), "text/x-upper"


@ufop.task(route=r"^/png$")
def png(buffer, args, content_type):
    return PNG_HEADER


@ufop.task(route=r".*")
def echo(buffer, args, content_type):
    return buffer.read()
