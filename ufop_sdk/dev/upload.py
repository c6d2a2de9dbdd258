"""``POST /`` in ``dev --bucket``: Qiniu's form upload, as its up host answers it.

The body is a multipart form: ``token`` (``<AK>:<sign>:<put policy>``), then
optionally ``key``, ``crc32`` and ``x:<name>`` variables, then ``file``. The
file's bytes go into the bucket's incoming file as they arrive, hashed on the
way (Qiniu's etag, the crc32), never held whole in memory; once the whole
body is in and the token lets it, the file becomes the key (Bucket.commit)
and the answer is ``{"hash": <etag>, "key": <key>}``.

The bucket is the one the put policy's ``scope`` names. With credentials
(QINIU_ACCESS_KEY, QINIU_SECRET_KEY), the token must carry the account's
signature; without, any signature passes. Either way the deadline must be
ahead and the scope must cover the key. Without a ``key`` field, the key is
the policy's ``saveKey`` taken as it is (dev expands none of its ``$(...)``
variables), else the file's etag, as Qiniu names it. As on Qiniu, a scope of
a whole bucket or a prefix, or ``insertOnly``, adds a file but replaces none
(614), unless the one there has the same contents. Variables (``x:``) are
taken and not used: dev answers no ``returnBody``.

An error found while the body arrives is answered once it is all in (the
rest is read and dropped, nothing stored), so a client still sending reads
the answer rather than a reset.
"""

import contextlib
import os
import zlib

from ..errors import BadRequest, UfopError
from ..http.dispatch import BodyLimit
from ..http.handlers import StreamedBodyHandler
from .answers import REQUEST_ID_HEADER, NotEmulated, QiniuAnswers
from .form import StreamedForm
from .qiniu_auth import Etag, Unauthorized, check_put_policy, etag, unverified_put_policy


class CrcMismatch(UfopError):
    status = 406  # Qiniu's status for a crc32 that does not match the file


class KeyExists(UfopError):
    status = 614  # Qiniu's status for a key an insert-only upload may not replace


class Received:
    """The file part as it arrives: written to the incoming `file`, its etag and crc32 computed on the way."""

    def __init__(self, file):
        self.file = file
        self.etag = Etag()
        self.crc32 = 0

    def write(self, data):
        self.file.write(data)
        self.etag.update(data)
        self.crc32 = zlib.crc32(data, self.crc32)


class UploadHandler(QiniuAnswers, StreamedBodyHandler):
    """Qiniu's form upload into one of dev's buckets; see the module's docstring."""

    @classmethod
    def body_limit(cls, settings):
        return BodyLimit(settings.max_upload_bytes, "UFOP_MAX_UPLOAD_BYTES sets the limit of an upload",
                         (REQUEST_ID_HEADER,))

    def initialize(self, server):
        super().initialize(server)
        self.files = contextlib.ExitStack()  # the incoming file, removed unless it became the key
        self.error = None  # the first error met while the body arrived, answered when it is all in
        self.form = self.policy = self.bucket = None

    def prepare(self):
        self._until_error(lambda: setattr(self, "form", StreamedForm(
            self.request.headers.get("Content-Type"), self._open_file)))

    def data_received(self, chunk):
        self._until_error(lambda: self.form.write(chunk))

    def post(self):
        self._until_error(lambda: self.form.finish())
        if self.error is not None:
            raise self.error
        token, received = _token(self.form.fields.get("token")), self.form.file
        if received is None:
            raise BadRequest("file not specified: the form has no file field")
        key = self._key(received)
        path = self._authorize(token, key)
        _check_crc32(self.form.fields.get("crc32"), received.crc32)
        self._check_insert(key, path, received)
        self.bucket.commit(received.file, key)
        self.set_header("Cache-Control", "no-store")
        self.finish({"hash": received.etag.value(), "key": key})

    def on_finish(self):
        self.files.close()

    def on_connection_close(self):
        self.files.close()
        super().on_connection_close()

    def _until_error(self, step):
        """Run `step` unless an error was met before; keep the first error for the answer."""
        if self.error is None:
            try:
                step()
            except UfopError as exc:
                self.error = exc
                self.files.close()  # the rest of the file is dropped, not stored

    def _open_file(self, fields):
        """The file part begins: find its bucket, refuse now what the fields so far refuse, open the sink."""
        self.policy = unverified_put_policy(_token(fields.get("token")))
        scope = self.policy.get("scope")
        if not isinstance(scope, str) or not scope:
            raise Unauthorized("the upload token's put policy names no scope (bucket or bucket:key)")
        self.bucket = self.server.platform.buckets[scope.partition(":")[0]]
        if fields.get("key") is not None:
            self._authorize(fields["token"], fields["key"])  # nothing written for a key it cannot store
        return Received(self.files.enter_context(self.bucket.incoming()))

    def _key(self, received):
        key = self.form.fields.get("key")
        if key is not None:
            return key
        save_key = self.policy.get("saveKey")
        if isinstance(save_key, str) and save_key:
            if "$(" in save_key:
                raise BadRequest(f"dev takes saveKey {save_key!r} as it is and expands no $(...) "
                                 "variables: send a key field instead")
            return save_key
        return received.etag.value()

    def _authorize(self, token, key):
        """The path `key` is stored at, once the token lets `key` into the bucket (401, 400, 403)."""
        credentials = self.server.platform.credentials
        if credentials is None:
            check_put_policy(self.policy, self.bucket.name, key)
        else:
            credentials.check_upload_token(token, self.bucket.name, key)
        return self.bucket.check_writable(key)

    def _check_insert(self, key, path, received):
        scope = self.policy["scope"]
        insert_only = (self.policy.get("insertOnly", 0) != 0 or ":" not in scope
                       or self.policy.get("isPrefixalScope") == 1)
        if insert_only and os.path.lexists(path) and not _same_contents(self.bucket, key, received):
            raise KeyExists(f"key {key!r} exists in bucket {self.bucket.name!r} and the token's policy "
                            "only adds files (a scope without a key, a prefix, or insertOnly)")


class ResumableUploadHandler(QiniuAnswers, StreamedBodyHandler):
    """Qiniu's resumable upload (v1 ``/mkblk``, ``/bput``, ``/mkfile``; v2 ``/buckets/.../uploads``),
    which the SDK's put_file uses for a file over ``default_upload_threshold`` (8 MiB): not
    emulated. Its first request is answered 501 with the way around, its body read and dropped."""

    PATHS = r"/(?:(?:mkblk|bput|mkfile)/.*|buckets/[^/]+/objects/.*)"
    body_limit = UploadHandler.body_limit

    def data_received(self, chunk):
        pass

    def post(self):
        raise NotEmulated("dev emulates Qiniu's form upload (POST /), not its resumable upload, which "
                          "put_file uses past qiniu.config's default_upload_threshold (8 MiB): raise it "
                          "with qiniu.config.set_default(default_upload_threshold=...), or use put_data")


def _token(token):
    if not token:
        raise Unauthorized("token not specified: the form needs a token field before the file")
    return token


def _check_crc32(field, crc32):
    if field is None:
        return
    if not field.strip().isdecimal():
        raise BadRequest(f"crc32 must be a decimal number, got {field!r}")
    if int(field) != crc32:
        raise CrcMismatch(f"crc32 {field} does not match the file's, {crc32}")


def _same_contents(bucket, key, received):
    try:
        with open(bucket.file(key), "rb") as existing:
            return etag(existing) == received.etag.value()
    except UfopError:  # a folder, or a link out of the bucket: not the same file
        return False
