"""Media types: sniffing them from bytes and matching them against patterns."""

from fnmatch import fnmatchcase

import magic

# libmagic recognises every common format from its first few KiB; reading more
# only costs time on large inputs.
SNIFF_BYTES = 8192


def sniff_bytes(data):
    """Return the media type libmagic sees in `data`, e.g. ``"image/png"``."""
    return magic.from_buffer(bytes(data[:SNIFF_BYTES]), mime=True)


def sniff_file(buffer):
    """Sniff a seekable binary file from its start and leave it at position 0."""
    buffer.seek(0)
    head = buffer.read(SNIFF_BYTES)
    buffer.seek(0)
    return sniff_bytes(head)


def media_type_matches(pattern, media_type):
    """True if `media_type` fits `pattern` (``"image/*"``, ``"*/*"``, ``"text/plain"``)."""
    return fnmatchcase(media_type.lower(), pattern.lower())


def essence(content_type):
    """The ``type/subtype`` part of a Content-Type header value, or None."""
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip().lower() or None


def is_textual(content_type):
    """True for media types a terminal can show: text, JSON and XML."""
    kind = essence(content_type) or ""
    return (kind.startswith("text/") or kind in ("application/json", "application/xml")
            or kind.endswith(("+json", "+xml")))
