"""``|saveas/<entry>[/sign/<AK>:<sign>]``: the last step of a pipeline, storing its output in a bucket.

`entry` is the URL-safe base64 of ``bucket:key`` (or of ``bucket``: the
output's etag is then its key, as for a persistent fop without saveas). The
synchronous form must be signed when credentials are set: `sign` is the
HMAC-SHA1 of the URL up to ``/sign/``, without its scheme.
"""

import base64
import binascii

import attrs

from ..app.bodies import close_body
from ..errors import BadRequest
from ..http.streamed import body_chunks
from .qiniu_auth import Etag

PREFIX = "saveas/"
SIGN = "/sign/"


@attrs.frozen
class SaveAs:
    bucket: str
    key: str | None  # None: the output's etag
    sign: str | None = None  # "<AK>:<sign>", the synchronous form's


def split_saveas(steps):
    """(the steps before a final ``saveas/...``, its SaveAs or None); raises BadRequest for a bad entry."""
    if not steps or not steps[-1].startswith(PREFIX):
        return steps, None
    entry, signed, sign = steps[-1][len(PREFIX):].partition(SIGN)
    try:
        target = base64.urlsafe_b64decode(entry + "=" * (-len(entry) % 4)).decode()
    except (binascii.Error, ValueError):
        raise BadRequest(f"saveas/{entry}: not URL-safe base64 of 'bucket:key'") from None
    bucket, colon, key = target.partition(":")
    if not bucket or (colon and not key):
        raise BadRequest(f"saveas names {target!r}: expected 'bucket:key' or 'bucket'")
    if len(steps) == 1:
        raise BadRequest("saveas needs a step before it whose output it saves")
    return steps[:-1], SaveAs(bucket, key or None, sign if signed else None)


async def save_answer(bucket, key, body):
    """Write an answer's body (bytes, a file or a stream) as `key` in `bucket` (its etag when `key` is
    None); returns (key, etag). The key is checked before anything is written."""
    if key is not None:
        bucket.check_writable(key)
    etag = Etag()
    with bucket.incoming() as file:
        if isinstance(body, bytes):
            _write(file, etag, body)
        else:
            try:
                async for chunk in body_chunks(body):
                    _write(file, etag, chunk)
            finally:
                close_body(body)
        key = etag.value() if key is None else key
        bucket.commit(file, key)
    return key, etag.value()


def _write(file, etag, chunk):
    file.write(chunk)
    etag.update(chunk)
