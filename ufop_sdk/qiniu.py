"""What the Qiniu platform tells an instance: the request's headers, and its X-Qiniu-* ones decoded.

`Headers` is ``req.headers``: read-only, case-insensitive. `QiniuInfo` is
``req.qiniu``: the X-Qiniu-* headers, each URL-safe base64 on the wire. A
header that is missing or does not decode is None, never an error::

    req.qiniu.uid       # 1349857, from X-Qiniu-Uid: MTM0OTg1Nw==
    req.qiniu.pipeline  # ["avthumb/mp4", "myufop/cut"], from X-Qiniu-Pipe-Cmds
"""

import base64
import binascii
from collections.abc import Mapping

import attrs

UID, BUCKET, KEY = "X-Qiniu-Uid", "X-Qiniu-Bucket", "X-Qiniu-Key"
MODE, PIPELINE = "X-Qiniu-Mode", "X-Qiniu-Pipe-Cmds"
ASYNC_MODE = "2"  # pfop: the platform runs the fop persistently


def decode_base64(text):
    """The bytes URL-safe base64 `text` (str, padding optional) stands for; ValueError if it is not that.

    The standard alphabet (``+/``) is taken too: the two differ only in those characters.
    """
    if not isinstance(text, str) or not text.isascii():
        raise ValueError("expected URL-safe base64")
    try:
        return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
    except binascii.Error:
        raise ValueError("expected URL-safe base64") from None


def decode_base64_text(text, encoding="utf-8"):
    """The text URL-safe base64 `text` stands for; ValueError if it is not base64 of `encoding` text."""
    try:
        return decode_base64(text).decode(encoding)
    except UnicodeDecodeError:
        raise ValueError(f"expected URL-safe base64 of {encoding} text") from None


class Headers(Mapping):
    """A request's headers: a read-only mapping whose names match whatever their case.

    Built from a mapping or from (name, value) pairs; a name given twice keeps
    both values, joined with ", " as HTTP joins them.
    """

    __slots__ = ("_names", "_values")

    def __init__(self, headers=()):
        if isinstance(headers, dict):
            # The common case (a Job's headers, names already unique): a third of the loop's cost.
            self._names = {name.lower(): name for name in headers}
            if len(self._names) == len(headers):
                self._values = {name.lower(): value for name, value in headers.items()}
                return
        self._names, self._values = {}, {}
        for name, value in headers.items() if isinstance(headers, Mapping) else headers:
            folded = name.lower()
            if folded in self._values:
                self._values[folded] += ", " + value
            else:
                self._names[folded], self._values[folded] = name, value

    def __getitem__(self, name):
        if not isinstance(name, str):
            raise KeyError(name)
        return self._values[name.lower()]

    def __iter__(self):
        return iter(self._names.values())

    def __len__(self):
        return len(self._values)

    def __repr__(self):
        return f"Headers({dict(self.items())!r})"


def as_headers(headers):
    """`headers` as a Headers (itself when it is one)."""
    return headers if isinstance(headers, Headers) else Headers(headers)


def _decoded(headers, name):
    """The text header `name` stands for, or None when it is missing or not URL-safe base64 of UTF-8."""
    value = headers.get(name)
    if value is None:
        return None
    try:
        return decode_base64_text(value.strip())
    except ValueError:
        return None


def _number(text):
    return int(text) if text is not None and text.isascii() and text.isdecimal() else None


@attrs.frozen
class QiniuInfo:
    """What the platform says about a request in its X-Qiniu-* headers (each None when missing or bad).

    Attributes:
        uid: the calling account's numeric uid (X-Qiniu-Uid).
        bucket: the source's bucket (X-Qiniu-Bucket).
        key: the source's key (X-Qiniu-Key).
        is_async: True when X-Qiniu-Mode is "2" (pfop), False when it is something else, None without it
            (a bare ``2``, which cannot be base64, is taken as it is).
        pipeline: the whole pipeline's cmds, in order (X-Qiniu-Pipe-Cmds, ``cmd1|cmd2|...``).
    """

    uid: int | None = None
    bucket: str | None = None
    key: str | None = None
    is_async: bool | None = None
    pipeline: list | None = None

    @classmethod
    def from_headers(cls, headers):
        """Decode the X-Qiniu-* headers of `headers` (a Headers or any mapping with case-insensitive get)."""
        mode = ASYNC_MODE if headers.get(MODE) == ASYNC_MODE else _decoded(headers, MODE)
        pipeline = _decoded(headers, PIPELINE)
        return cls(uid=_number(_decoded(headers, UID)), bucket=_decoded(headers, BUCKET),
                   key=_decoded(headers, KEY), is_async=None if mode is None else mode == ASYNC_MODE,
                   pipeline=None if pipeline is None else pipeline.split("|"))
