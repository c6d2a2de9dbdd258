"""The Qiniu platform's signatures, checked as its API and upload hosts check them (for `dev`'s emulation).

Two kinds, as the official SDK (`qiniu` on PyPI) makes them:

- a management token, ``Authorization: QBox <AK>:<sign>`` on pfop and status
  calls: `sign` is the URL-safe base64 of HMAC-SHA1, keyed by the secret key,
  of the request's path and query, a newline, and the body when it is a form;
- an upload token, ``<AK>:<sign>:<policy>``: `policy` is the URL-safe base64 of
  a JSON put policy (``scope`` ``bucket`` or ``bucket:key``, ``deadline`` in
  Unix seconds, ``isPrefixalScope``), and `sign` its HMAC-SHA1.

Also the etag an upload is answered with (Qiniu's ``qetag``). Plain hmac,
hashlib and base64: the SDK makes tokens and does not check them.
"""

import base64
import binascii
import hashlib
import hmac
import json
import time

import attrs

from ..errors import UfopError

FORM = "application/x-www-form-urlencoded"
ETAG_BLOCK = 4 << 20


class Unauthorized(UfopError):
    status = 401


@attrs.frozen
class Credentials:
    """An account's access key and secret key (QINIU_ACCESS_KEY, QINIU_SECRET_KEY)."""

    access_key: str
    secret_key: str = attrs.field(repr=False)

    @classmethod
    def from_environment(cls, environ):
        """The credentials in `environ`, or None when either is unset (dev then accepts any signature)."""
        access_key, secret_key = environ.get("QINIU_ACCESS_KEY"), environ.get("QINIU_SECRET_KEY")
        return cls(access_key, secret_key) if access_key and secret_key else None

    def sign(self, data):
        """URL-safe base64 of HMAC-SHA1 of `data` (bytes or str) under the secret key."""
        data = data.encode() if isinstance(data, str) else data
        digest = hmac.new(self.secret_key.encode(), data, hashlib.sha1).digest()
        return base64.urlsafe_b64encode(digest).decode()

    def check_management(self, authorization, path_and_query, body=b"", content_type=None):
        """Raise Unauthorized unless `authorization` is a QBox token of this account for the request."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme != "QBox" or not token:
            raise Unauthorized("expected an Authorization header 'QBox <AccessKey>:<sign>' "
                               "(a management token)")
        data = path_and_query.encode() + b"\n"
        if body and (content_type or "").split(";")[0].strip().lower() == FORM:
            data += body
        self.check_signed(token, data, "the management token")

    def check_upload_token(self, token, bucket, key, now=None):
        """The put policy of an upload `token` that lets `key` into `bucket`; raises Unauthorized."""
        access_and_sign, encoded = _split_upload_token(token)
        self.check_signed(access_and_sign, encoded.encode(), "the upload token")
        return check_put_policy(_decoded_policy(encoded), bucket, key, now)

    def check_signed(self, token, data, what):
        """Raise Unauthorized unless `token` is ``<AK>:<sign>`` of this account for `data`."""
        access_key, _, sign = token.partition(":")
        if access_key != self.access_key:
            raise Unauthorized(f"{what} names another access key")
        if not hmac.compare_digest(sign.encode(), self.sign(data).encode()):
            raise Unauthorized(f"{what}'s signature does not match")


def unverified_put_policy(token):
    """The put policy an upload `token` carries, its signature unchecked: dev without credentials
    takes any signature, yet the policy names the bucket. Raises Unauthorized when it does not decode."""
    return _decoded_policy(_split_upload_token(token)[1])


def check_put_policy(policy, bucket, key, now=None):
    """`policy` when its deadline is ahead and its scope covers `key` in `bucket`; raises Unauthorized."""
    deadline = policy.get("deadline")
    if not isinstance(deadline, int) or deadline < (time.time() if now is None else now):
        raise Unauthorized("the upload token has expired")
    if not _covers(policy.get("scope"), policy.get("isPrefixalScope") == 1, bucket, key):
        raise Unauthorized(f"the upload token's scope {policy.get('scope')!r} does not cover "
                           f"{bucket}:{key}")
    return policy


def _split_upload_token(token):
    access_and_sign, _, encoded = (token or "").rpartition(":")
    if not access_and_sign or not encoded:
        raise Unauthorized("the upload token is not '<AccessKey>:<sign>:<policy>'")
    return access_and_sign, encoded


def _decoded_policy(encoded):
    try:
        policy = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise Unauthorized("the upload token's policy is not URL-safe base64 of JSON") from None
    if not isinstance(policy, dict):
        raise Unauthorized("the upload token's policy is not a JSON object")
    return policy


def _covers(scope, prefixal, bucket, key):
    if not isinstance(scope, str):
        return False
    scope_bucket, colon, scope_key = scope.partition(":")
    if scope_bucket != bucket:
        return False
    if not colon:
        return True
    return key.startswith(scope_key) if prefixal else key == scope_key


class Etag:
    """Qiniu's etag, fed as the bytes arrive: the SHA-1 of the content (up to 4 MiB), or of its
    4 MiB blocks' SHA-1s, behind a byte saying which, in URL-safe base64."""

    def __init__(self):
        self.blocks = []
        self.block = hashlib.sha1()
        self.filled = 0

    def update(self, data):
        view = memoryview(data)
        while view:
            room = ETAG_BLOCK - self.filled
            self.block.update(view[:room])
            self.filled += min(room, len(view))
            view = view[room:]
            if self.filled == ETAG_BLOCK:
                self.blocks.append(self.block.digest())
                self.block, self.filled = hashlib.sha1(), 0

    def value(self):
        blocks = self.blocks + ([self.block.digest()] if self.filled or not self.blocks else [])
        if len(blocks) == 1:
            digest = b"\x16" + blocks[0]
        else:
            digest = b"\x96" + hashlib.sha1(b"".join(blocks)).digest()
        return base64.urlsafe_b64encode(digest).decode()


def etag(file):
    """The Etag of a binary file, read from where it stands."""
    value = Etag()
    for block in iter(lambda: file.read(ETAG_BLOCK), b""):
        value.update(block)
    return value.value()
