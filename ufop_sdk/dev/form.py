"""A multipart/form-data body read as it arrives: small fields kept, the ``file`` part handed on.

Parsing is python-multipart's (Starlette's parser); this module keeps the
fields (each at most MAX_FIELD_BYTES) and gives the file part's bytes, as
they come, to the sink that `open_file(fields)` returns when the part
begins, with the fields sent before it. Nothing of the file is kept here.
"""

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from ..errors import BadRequest

MAX_FIELD_BYTES = 64 << 10  # a token, a key, a variable: far longer than any real one
FILE_FIELD = "file"


class StreamedForm:
    """The form of one request: `write` each chunk of the body, then `finish`.

    `fields` maps each field's name to its text; `file` is the sink of the
    file part once it has begun. Every method raises BadRequest for a
    malformed form, and passes on what `open_file` or the sink raise.
    """

    def __init__(self, content_type, open_file):
        self.fields = {}
        self.file = None
        self.ended = False  # the closing boundary was read
        self._open_file = open_file
        self._part = None  # (name, bytearray of a field's value, or None for the file)
        self._headers = {}
        self._header = [bytearray(), bytearray()]
        self._parser = MultipartParser(_boundary(content_type), {
            "on_part_begin": self._headers.clear,
            "on_header_field": lambda data, start, end: self._header[0].extend(data[start:end]),
            "on_header_value": lambda data, start, end: self._header[1].extend(data[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._part_begins,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        })

    def write(self, chunk):
        try:
            self._parser.write(chunk)
        except MultipartParseError as exc:
            raise BadRequest(f"the upload is not a well-formed multipart form: {exc}") from None

    def finish(self):
        if not self.ended:
            raise BadRequest("the multipart form ends before its closing boundary")

    def _header_end(self):
        name, value = (bytes(part) for part in self._header)
        self._headers[name.decode("latin-1").lower()] = value
        for part in self._header:
            part.clear()

    def _part_begins(self):
        _, options = parse_options_header(self._headers.get("content-disposition"))
        name = _text(options.get(b"name", b""), "a field name")
        if name == FILE_FIELD:
            if self.file is not None:
                raise BadRequest("the form has two file fields")
            self.file = self._open_file(self.fields)
            self._part = (name, None)
        else:
            self._part = (name, bytearray())

    def _part_data(self, data, start, end):
        name, value = self._part
        if value is None:
            self.file.write(memoryview(data)[start:end])
            return
        value.extend(memoryview(data)[start:end])
        if len(value) > MAX_FIELD_BYTES:
            raise BadRequest(f"the form field {name!r} is over {MAX_FIELD_BYTES} bytes")

    def _part_end(self):
        name, value = self._part
        if value is not None:
            self.fields[name] = _text(bytes(value), f"the form field {name!r}")
        self._part = None

    def _end(self):
        self.ended = True


def _boundary(content_type):
    kind, options = parse_options_header(content_type or "")
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise BadRequest("an upload is a multipart/form-data body with a boundary, got Content-Type "
                         f"{content_type!r}")
    return options[b"boundary"]


def _text(data, what):
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise BadRequest(f"{what} is not UTF-8") from None
