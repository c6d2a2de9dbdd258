"""The Response sent back to the client, and turning return values into one."""

import json

import attrs

from .app.bodies import FileBody, StreamBody, as_body, is_streamable
from .app.headers import checked_headers, header_problem
from .app.media import SNIFF_BYTES, sniff_bytes
from .errors import UfopError

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
UNKNOWN = "application/octet-stream"  # a streamed answer's, unless it says


def _as_body(value):
    """bytearray and memoryview become bytes, as a bare return of them does; a path, an open file or
    an iterator a FileBody or StreamBody (app/bodies.py); anything else is left to the validator."""
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (bytes, FileBody, StreamBody)) or not is_streamable(value):
        return value
    return as_body(value)


def _to_json_bytes(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


@attrs.define
class Response:
    """What goes back to the client: status, content type, headers and body.

    The body is bytes, or an answer sent without being held in memory: a
    path or an open binary file (sent from disk with its length), or an
    iterator of bytes (streamed, chunked). ``content_type`` None means "sniff
    it from the body" (a stream's is application/octet-stream). Headers are extra
    response headers; the content type is set from ``content_type``. The
    status is a final one, 200-599: a 1xx is an interim answer that HTTP
    follows with another, so sent as the answer it leaves the client waiting.
    """

    body: bytes = attrs.field(default=b"", converter=_as_body, repr=False,
                              validator=attrs.validators.instance_of((bytes, FileBody, StreamBody)))
    status: int = attrs.field(default=200, validator=[attrs.validators.instance_of(int),
                                                      attrs.validators.ge(200), attrs.validators.le(599)])
    headers: dict = attrs.field(factory=dict)
    content_type: str | None = None

    @classmethod
    def json(cls, obj, status=200, headers=None):
        return cls(_to_json_bytes(obj), status, dict(headers or {}), JSON)

    @classmethod
    def text(cls, s, status=200, headers=None):
        return cls(s.encode("utf-8"), status, dict(headers or {}), TEXT)

    def __repr__(self):
        size = f"{len(self.body)} bytes" if isinstance(self.body, bytes) else type(self.body).__name__
        return f"Response(status={self.status}, content_type={self.content_type!r}, {size})"


def error_response(error, request_id=None, traceback=None):
    """The JSON body every error reaching a client has: ``{"error", "request_id"}``.

    `traceback` is added only where the caller allows it (``dev``, ``test``).
    """
    payload = {"error": error.message, "request_id": request_id}
    if traceback:
        payload["traceback"] = traceback
    status = error.status if 400 <= error.status <= 599 else 500
    return Response.json(payload, status=status, headers=error.headers)


def to_response(value, processor_name):
    """Turn what ``process()`` returned into a new Response with a content type.

    Raises UfopError (500) naming the processor for a type it cannot send, or
    a content type or header that cannot be sent. A returned Response is not changed.
    """
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
        return _checked(attrs.evolve(to_response(value[0], processor_name), content_type=value[1]),
                        processor_name)
    if isinstance(value, Response):
        return _checked(value, processor_name)
    if value is None:
        return Response(b"", 204, {}, None)
    if isinstance(value, str):
        return Response.text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        body = bytes(value)
        return Response(body, 200, {}, sniff_bytes(body))
    if isinstance(value, (dict, list)):
        return json_response(value, processor_name)
    if is_streamable(value):
        return _checked(Response(_streamed(value, processor_name)), processor_name)
    raise UfopError(
        f"processor {processor_name!r} returned {type(value).__name__}, which cannot be sent: "
        "return str, bytes, dict, list, a path, an open binary file, an iterator of bytes, "
        "(value, content_type), Response or None"
    )


def _streamed(value, processor_name):
    try:
        return as_body(value)
    except (OSError, TypeError) as exc:
        raise UfopError(f"processor {processor_name!r} returned a file that cannot be sent: {exc}") from None


def json_response(value, processor_name, encode=_to_json_bytes, content_type=JSON):
    """A 200 Response of `value` as JSON, `encode` making the bytes; raises UfopError naming the
    processor when `value` is not JSON."""
    try:
        return Response(encode(value), 200, {}, content_type)
    except (TypeError, ValueError) as exc:
        raise UfopError(f"processor {processor_name!r} returned a {type(value).__name__} "
                        f"that is not JSON: {exc}") from exc


def _checked(response, processor_name):
    """A copy of `response` with its content type sniffed if None and its headers as str; raises
    UfopError naming the processor for a content type or header Tornado would refuse to write."""
    content_type = _sniffed(response.body) if response.content_type is None else response.content_type
    problem = (header_problem("Content-Type", content_type) if isinstance(content_type, str)
               else f"a content type that is not a str: {content_type!r}")
    try:
        headers = checked_headers(response.headers)
    except ValueError as exc:
        problem = problem or str(exc)
    if problem:
        raise UfopError(f"processor {processor_name!r} returned {problem}")
    return attrs.evolve(response, headers=headers, content_type=content_type)


def _sniffed(body):
    if isinstance(body, bytes):
        return sniff_bytes(body)
    return sniff_bytes(body.head(SNIFF_BYTES)) if isinstance(body, FileBody) else UNKNOWN
