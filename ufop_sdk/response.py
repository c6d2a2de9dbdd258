"""The Response sent back to the client, and turning return values into one."""

import json
import re

import attrs

from .errors import UfopError
from .media import sniff_bytes

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_UNSAFE_VALUE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


def _to_json_bytes(obj):
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode("utf-8")


@attrs.define
class Response:
    """What goes back to the client: status, content type, headers and body.

    ``content_type`` None means "sniff it from the body". Headers are extra
    response headers; the content type is set from ``content_type``.
    """

    body: bytes = attrs.field(default=b"", validator=attrs.validators.instance_of(bytes), repr=False)
    status: int = attrs.field(default=200, validator=[attrs.validators.instance_of(int),
                                                      attrs.validators.ge(100), attrs.validators.le(599)])
    headers: dict = attrs.field(factory=dict)
    content_type: str | None = None

    @classmethod
    def json(cls, obj, status=200, headers=None):
        return cls(_to_json_bytes(obj), status, dict(headers or {}), JSON)

    @classmethod
    def text(cls, s, status=200, headers=None):
        return cls(s.encode("utf-8"), status, dict(headers or {}), TEXT)

    def __repr__(self):
        return f"Response(status={self.status}, content_type={self.content_type!r}, {len(self.body)} bytes)"


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
    """Turn what ``process()`` returned into a Response with a content type.

    Raises UfopError (500) naming the processor for a type it cannot send.
    """
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str):
        response = to_response(value[0], processor_name)
        response.content_type = value[1]
        return response
    if isinstance(value, Response):
        if value.content_type is None:
            value.content_type = sniff_bytes(value.body)
        value.headers = {str(name): str(field) for name, field in value.headers.items()}
        for name, field in value.headers.items():
            if not _TOKEN.fullmatch(name) or _UNSAFE_VALUE.search(field):
                raise UfopError(f"processor {processor_name!r} returned an invalid header {name!r}")
        return value
    if value is None:
        return Response(b"", 204, {}, None)
    if isinstance(value, str):
        return Response.text(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        body = bytes(value)
        return Response(body, 200, {}, sniff_bytes(body))
    if isinstance(value, (dict, list)):
        try:
            return Response.json(value)
        except (TypeError, ValueError) as exc:
            raise UfopError(f"processor {processor_name!r} returned a {type(value).__name__} "
                            f"that is not JSON: {exc}") from exc
    raise UfopError(
        f"processor {processor_name!r} returned {type(value).__name__}, which cannot be sent: "
        "return str, bytes, dict, list, (value, content_type), Response or None"
    )
