"""The Request a processor receives."""

from typing import Any, BinaryIO

import attrs

from .qiniu import Headers, QiniuInfo, as_headers


@attrs.frozen
class Request:
    """One input to process, built in the worker process that runs it.

    Attributes:
        buffer: the input, a binary seekable file at position 0 (a spooled
            temporary file or a BytesIO; read it, don't keep it).
        args: the route's named groups that took part, as a mapping, or an
            instance of the processor's ``Args`` class built from them.
        content_type: the media type sniffed from the bytes, e.g. ``image/png``.
        declared_content_type: the Content-Type the client or the source gave,
            or None.
        cmd: the cmd as received, e.g. ``myufop/thumbnail/200x200``.
        name: the ufop name, the cmd's first segment.
        params: the cmd after the name, which the route matched.
        url: the ``url`` parameter as received, before any redirect, or None.
        size: the input's length in bytes.
        request_id: the id of this request in logs and error bodies.
        headers: the request's headers, a read-only mapping whose names match whatever their case.

    And ``qiniu``, the platform's X-Qiniu-* headers decoded (a QiniuInfo; each None when missing or bad).

    Only small values travel between processes: the server hands a worker a
    file path and these fields, and the worker builds the Request there.
    """

    buffer: BinaryIO = attrs.field(repr=False)
    args: Any
    content_type: str
    cmd: str
    name: str
    params: str
    size: int
    declared_content_type: str | None = None
    url: str | None = None
    request_id: str | None = None
    headers: Headers = attrs.field(factory=Headers, converter=as_headers, repr=False)

    @property
    def qiniu(self):
        """The platform's X-Qiniu-* headers, decoded (a QiniuInfo), when asked: most processors never do."""
        return QiniuInfo.from_headers(self.headers)
