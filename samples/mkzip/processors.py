"""Qiniu's mkzip as a custom ufop: many URLs in, one zip out.

    mkzip/2[/encoding/<b64 utf-8|gbk>]/url/<b64 URL>[/alias/<b64 name>]/url/<b64 URL>...
    mkzip/4[/encoding/<b64 utf-8|gbk>]    the input is an index: one /url/<b64>[/alias/<b64>] a line

An alias names the entry of the URL before it; without one the entry is the
last segment of the URL's path, percent-decoded. As in Qiniu's mkzip,
`encoding` is how the names are written in the zip: gbk for the unzip built
into Chinese Windows, utf-8 (the default) marked as such. Aliases are base64
of UTF-8 either way. The sources are fetched 16 at a time (`MKZIP_CONCURRENCY`)
under the server's guard and limits, and the zip is written to disk, never
held in memory, and sent from there.

    curl -X POST 'localhost:9100/handler?cmd=mkzip/mkzip/2/url/aHR0cHM6Ly9leGFtcGxlLmNvbS9hLnR4dA' -o a.zip
"""

import os
import shutil
import time
import urllib.parse
import zipfile

import attrs

from ufop_sdk import BadRequest, Processor, base64_text, key_values, records

MAX_URLS = 1000  # in a cmd, as Qiniu's mkzip/2
MAX_INDEX_URLS = int(os.environ.get("MKZIP_MAX_INDEX_URLS", 100_000))
CONCURRENCY = int(os.environ.get("MKZIP_CONCURRENCY", 16))
TIMEOUT = float(os.environ.get("MKZIP_TIMEOUT", 600))
ENCODINGS = ("utf-8", "utf8", "gbk")
CHUNK = 1 << 20


@attrs.frozen
class ZipEntry:
    url: str = base64_text()
    alias: str | None = base64_text(default=None)  # names the url before it


@attrs.frozen
class UrlOptions:
    entries: list = records(ZipEntry)
    encoding: str = base64_text(default="utf-8", choices=ENCODINGS)


@attrs.frozen
class IndexOptions:
    encoding: str = base64_text(default="utf-8", choices=ENCODINGS)


@attrs.frozen
class IndexLine:
    """One line of mkzip/4's index, parsed as a route's /key/value group is."""

    entry: ZipEntry = key_values(ZipEntry)


class MkzipUrls(Processor):
    route = r"mkzip/2(?P<options>/.+)"
    timeout = TIMEOUT
    max_cmd_bytes = 256 << 10  # a thousand URLs with aliases: about 140 KB (its route is linear)

    @attrs.frozen
    class Args:
        options: UrlOptions = key_values(UrlOptions)

    def process(self, req):
        entries = req.args.options.entries
        if not entries:
            raise BadRequest("missing argument 'url'")
        if len(entries) > MAX_URLS:
            raise BadRequest(f"invalid argument 'url': {len(entries)} given, at most {MAX_URLS}")
        return make_zip(req, entries, req.args.options.encoding)


class MkzipIndex(Processor):
    route = r"mkzip/4(?P<options>/.+)?"
    timeout = TIMEOUT

    @attrs.frozen
    class Args:
        options: IndexOptions = key_values(IndexOptions)

    def process(self, req):
        return make_zip(req, read_index(req.buffer), req.args.options.encoding)


def read_index(buffer):
    """The ZipEntry of each line of an index file; BadRequest naming the line."""
    entries = []
    for number, line in enumerate(buffer, 1):
        if not line.strip():
            continue
        try:
            entries.append(IndexLine(line.strip().decode("ascii")).entry)
        except UnicodeDecodeError:
            raise BadRequest(f"index line {number}: expected /url/<base64>[/alias/<base64>], "
                             f"got bytes that are not ASCII") from None
        except BadRequest as exc:
            raise BadRequest(f"index line {number}: {exc.message}") from None
        if len(entries) > MAX_INDEX_URLS:
            raise BadRequest(f"the index has more than {MAX_INDEX_URLS} URLs")
    if not entries:
        raise BadRequest("the index has no URL: expected one /url/<base64>[/alias/<base64>] a line")
    return entries


def make_zip(req, entries, encoding):
    """The zip of `entries`' URLs, as a file in the request's workdir; every name is checked before
    anything is fetched, and a source that fails is its error (502 naming it) before the answer."""
    names = entry_names(entries, encoding)
    sources = req.fetch_all([entry.url for entry in entries], concurrency=CONCURRENCY)
    members = ((name, source.file, source.size) for name, source in zip(names, sources, strict=True))
    path = req.workdir / "mkzip.zip"
    write_zip(path, members, encoding)
    return path, "application/zip"


def entry_names(entries, encoding):
    """The zip's entry names, in order; BadRequest naming a name that is missing, unsafe or taken."""
    urls_by_name = {}
    for entry in entries:
        name = entry.alias if entry.alias is not None else name_from_url(entry.url)
        check_name(name, entry.url, encoding)
        if name in urls_by_name:
            raise BadRequest(f"duplicate entry name {name!r}: for {urls_by_name[name]} and {entry.url}")
        urls_by_name[name] = entry.url
    return list(urls_by_name)


def name_from_url(url):
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.rpartition("/")[2])


def check_name(name, url, encoding):
    if not name:
        raise BadRequest(f"no entry name for {url}: its path ends without a file name; give it an alias")
    segments = name.split("/")
    if "\0" in name or {"", ".", ".."} & set(segments):
        raise BadRequest(f"entry name {name!r} (for {url}) must be a relative file path, "
                         f"without empty, '.' or '..' segments")
    if encoding == "gbk" and not _encodes(name, "gbk"):
        raise BadRequest(f"entry name {name!r} (for {url}) cannot be written in gbk")


def _encodes(text, encoding):
    try:
        text.encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def write_zip(path, members, encoding="utf-8"):
    """Write a zip of `members`, (name, binary file, size) each, to `path`, copying each file in pieces
    and closing it. ZIP64 where it is needed: an entry of 4 GiB or more, over 65535 entries."""
    info_class = GbkZipInfo if encoding == "gbk" else zipfile.ZipInfo
    stamp = time.localtime()[:6]
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
        for name, file, size in members:
            info = info_class(name, date_time=stamp)
            info.file_size = size  # known ahead: zipfile gives the entry a ZIP64 header if it needs one
            with file, archive.open(info, "w") as entry:
                shutil.copyfileobj(file, entry, CHUNK)


class GbkZipInfo(zipfile.ZipInfo):
    """An entry whose name is written in GBK, without the UTF-8 flag: the zip support built into
    Windows reads such names in the system's code page (GBK in Chinese Windows). zipfile has no
    option for it (it writes ASCII, else UTF-8), so this overrides its one encoding method."""

    def _encodeFilenameFlags(self):  # noqa: N802 - zipfile's name
        return self.filename.encode("gbk"), self.flag_bits
