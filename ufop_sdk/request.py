"""The Request a processor receives, and what its `fetch` gives."""

import functools
from typing import Any, BinaryIO

import attrs

from .app.fetches import RequestFetches
from .app.workdir import Workdir
from .qiniu import Headers, QiniuInfo, as_headers


@attrs.frozen
class Request:
    """One input to process, built in the worker process that runs it.

    Attributes:
        buffer: the input, a binary seekable file at position 0 (a spooled
            temporary file or a BytesIO; read it, don't keep it). With the
            processor's ``prefetch = False``, a forward-only binary stream
            (``read``, ``readinto``, ``peek``, iteration; not seekable), read
            from the source as it is read, and closed when the request ends.
        args: the route's named groups that took part, as a mapping, or an
            instance of the processor's ``Args`` class built from them.
        content_type: the media type sniffed from the bytes, e.g. ``image/png``
            (from the first 8 KiB, with ``prefetch = False`` as without).
        declared_content_type: the Content-Type the client or the source gave,
            or None.
        cmd: the cmd as received, e.g. ``myufop/thumbnail/200x200``.
        name: the ufop name, the cmd's first segment.
        params: the cmd after the name, which the route matched.
        url: the ``url`` parameter as received, before any redirect, or None.
        size: the input's length in bytes; None with ``prefetch = False``.
        request_id: the id of this request in logs and error bodies.
        headers: the request's headers, a read-only mapping whose names match whatever their case.

    And ``qiniu``, the platform's X-Qiniu-* headers decoded (a QiniuInfo; each None when missing or bad),
    and ``workdir``, a folder of the request's own for the files it makes.

    Only small values travel between processes: the server hands a worker a
    file path and these fields, and the worker builds the Request there.
    """

    buffer: BinaryIO = attrs.field(repr=False)
    args: Any
    content_type: str
    cmd: str
    name: str
    params: str
    size: int | None
    declared_content_type: str | None = None
    url: str | None = None
    request_id: str | None = None
    # req.fetch's engine for this request (app/fetches.py's RequestFetches), given by the runner
    fetches: RequestFetches = attrs.field(factory=lambda: RequestFetches(None), repr=False, eq=False)
    headers: Headers = attrs.field(factory=Headers, converter=as_headers, repr=False)
    # req.workdir's folder (app/workdir.py), given by the runner, which removes it after the answer
    scratch: Workdir = attrs.field(factory=Workdir, repr=False, eq=False)

    @property
    def workdir(self):
        """A temporary folder (a Path) of this request's own, under UFOP_SPOOL_DIR, made when first
        asked for and removed with all it holds once the answer has been sent, whatever happened.
        Write outputs there (ffmpeg's, a zip's) and return the path: it is sent from disk."""
        return self.scratch.path

    @functools.cached_property
    def qiniu(self):
        """The platform's X-Qiniu-* headers, decoded (a QiniuInfo) once, when first asked."""
        return QiniuInfo.from_headers(self.headers)

    def fetch(self, url, *, max_bytes=None, timeout=None):
        """Download `url` under the guard the request's own source has (UFOP_BLOCKED_NETWORKS,
        UFOP_ALLOWED_SOURCE_HOSTS); returns a FetchedUrl whose file is closed when the request ends.

        `max_bytes` and `timeout` replace UFOP_MAX_SOURCE_BYTES and UFOP_FETCH_TIMEOUT. Raises
        Forbidden (403) for a refused address, SourceError (502) naming the URL for an origin that
        cannot be reached or answers other than 2xx, PayloadTooLarge (413), ProcessingTimeout (504).
        """
        return self.fetches.fetch(url, max_bytes=max_bytes, timeout=timeout)

    def fetch_all(self, urls, *, concurrency=8, max_bytes=None, timeout=None):
        """Fetch `urls`, `concurrency` at a time; yields their FetchedUrl in the order given.

        The first failure (in any order) is raised at once, and the fetches not yet
        yielded are cancelled: those not started never start, the others drop what they
        received and close their connection when the next bytes arrive (or at their timeout).
        """
        return self.fetches.fetch_all(urls, concurrency=concurrency, max_bytes=max_bytes, timeout=timeout)


@attrs.frozen
class FetchedUrl:
    """What `Request.fetch` gives: a downloaded URL.

    Attributes:
        file: the body, a binary seekable file at position 0 (closed when the request ends).
        size: its length in bytes.
        content_type: the media type sniffed from the bytes, as for inputs.
        declared_content_type: the origin's Content-Type, or None.
        url: the URL the body came from, after redirects.
    """

    file: BinaryIO = attrs.field(repr=False)
    size: int
    content_type: str
    declared_content_type: str | None
    url: str
