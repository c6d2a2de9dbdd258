"""``dev --bucket [NAME=]DIR``: folders standing in for Qiniu buckets, a key per file.

A key maps to the file at that relative path. Reading never leaves the
folder (a symlink pointing out is refused); writing (saveas, uploads) never
follows a symlink out, never writes through ``.``/``..`` parts, and replaces
the file whole (written aside, then renamed), so a reader sees the old file
or the new one. Each bucket keeps dev's own state (persistent jobs, files
being written) in its hidden folder STATE_FOLDER, which is never a key.
"""

import contextlib
import os
import tempfile
from pathlib import Path
from urllib.parse import quote

import attrs

from ..errors import BadRequest, Forbidden, NotFound, UfopError

STATE_FOLDER = ".ufop-dev"


class NoSuchBucket(UfopError):
    status = 631  # Qiniu's status for a bucket that does not exist


class NoSuchKey(UfopError):
    status = 612  # Qiniu's status (pfop, status) for a key or job that does not exist


@attrs.frozen
class Bucket:
    name: str
    root: Path = attrs.field(converter=lambda path: Path(path).resolve())

    @classmethod
    def from_option(cls, value):
        """A bucket from ``--bucket``'s value: ``NAME=DIR``, or ``DIR`` named after the folder."""
        name, equals, folder = value.partition("=")
        if not equals:
            name, folder = Path(value).resolve().name, value
        if not name or "/" in name or ":" in name:
            raise ValueError(f"{value!r}: a bucket name cannot be empty or hold '/' or ':'")
        if not Path(folder).is_dir():
            raise ValueError(f"{folder!r} is not a folder")
        return cls(name, folder)

    @property
    def state(self):
        """dev's own folder in this bucket, made on first use."""
        folder = self.root / STATE_FOLDER
        folder.mkdir(mode=0o700, exist_ok=True)
        return folder

    def file(self, key):
        """The file `key` names, to read; raises 400, 403 (outside the bucket) or 404."""
        _check_key(key)
        try:
            path = (self.root / key).resolve()
            self._check_inside(path, key)
            if not path.is_file():
                raise NotFound(f"no such key {key!r} in bucket {self.name!r}")
        except (OSError, RuntimeError):  # a symlink loop, a name too long: no file by that key
            raise NotFound(f"no such key {key!r} in bucket {self.name!r}") from None
        return path

    @contextlib.contextmanager
    def incoming(self):
        """A new binary file in the state folder, to become a key by `commit`; removed if it does not."""
        with tempfile.NamedTemporaryFile(dir=self.state, prefix="incoming-", delete=False) as file:
            try:
                yield file
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(file.name)

    def commit(self, file, key):
        """Make the `incoming` file `key`'s contents, replacing any before (400/403 for a bad key)."""
        path = self.check_writable(key)
        file.flush()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._check_inside(path.parent.resolve(), key, parent=True)  # a folder made meanwhile, linked out
        os.replace(file.name, path)  # replaces a symlink by that name, never what it points to

    def check_writable(self, key):
        """The path `key` is written at; raises 400 or 403 when it cannot be written there."""
        _check_key(key)
        parts = key.split("/")
        if "" in parts or "." in parts or ".." in parts:
            raise BadRequest(f"key {key!r} has an empty, '.' or '..' part: dev stores keys as paths")
        path = self.root / key
        self._check_inside(path.parent.resolve(), key, parent=True)
        if path.is_dir() and not path.is_symlink():
            raise BadRequest(f"key {key!r} names a folder in bucket {self.name!r}")
        return path

    def _check_inside(self, path, key, parent=False):
        if not (parent and path == self.root) and self.root not in path.parents:
            raise Forbidden(f"key {key!r} is outside bucket {self.name!r}")
        if (self.root / STATE_FOLDER) in (path, *path.parents):
            raise Forbidden(f"key {key!r} is inside dev's own state folder {STATE_FOLDER}")


def _check_key(key):
    if not key:
        raise BadRequest("a key cannot be empty")
    if "\0" in key:
        raise BadRequest("a key cannot contain NUL")


class Buckets:
    """The buckets ``dev`` serves, by name; the first is the one ``GET /<key>`` reads by default."""

    def __init__(self, buckets):
        self.by_name = {}
        for bucket in buckets:
            if bucket.name in self.by_name:
                raise ValueError(f"two buckets are named {bucket.name!r}: name them with NAME=DIR")
            self.by_name[bucket.name] = bucket

    def __bool__(self):
        return bool(self.by_name)

    def __iter__(self):
        return iter(self.by_name.values())

    def __getitem__(self, name):
        try:
            return self.by_name[name]
        except KeyError:
            served = ", ".join(map(repr, self.by_name)) or "none (--bucket NAME=DIR)"
            raise NoSuchBucket(f"no such bucket {name!r}: dev serves {served}") from None

    def url(self, bucket, key, request):
        """The URL ``GET /<key>`` serves `bucket`'s `key` at, on the server `request` came to."""
        host = request.host
        if bucket is not self.for_host(host):
            port = _name_and_port(host)[1]
            host = f"{bucket.name}.localhost{port}"
        return f"{request.protocol}://{host}/{quote(key)}"

    def for_host(self, host):
        """The bucket a ``GET /<key>`` reads: ``NAME.localhost`` names one, any other host the first."""
        name, _ = _name_and_port(host)
        if name.endswith(".localhost") and name.removesuffix(".localhost") in self.by_name:
            return self.by_name[name.removesuffix(".localhost")]
        return next(iter(self.by_name.values()))


def _name_and_port(host):
    """("name", ":port") of a Host header's value; the port "" when it has none."""
    name, colon, port = host.rpartition(":")
    return (name, colon + port) if colon and port.isdecimal() else (host, "")
