"""What can be sent as a response header: the rules Tornado applies when it writes one.

Checked when a processor's answer is built, so an unsendable header is a 500
naming the processor rather than a connection reset while writing.
"""

import re

# RFC 9110's token, for names; for values what tornado.web.RequestHandler accepts
# (_VALID_HEADER_CHARS): tab, printable ASCII and the rest of latin-1, since the
# header block is encoded as latin-1, and never CR or LF, which would end the header.
_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[\x09\x20-\x7e\x80-\xff]*")


def header_problem(name, value):
    """Why the header `name: value` (both str) cannot be sent, or None if it can."""
    if not _NAME.fullmatch(name):
        return f"an invalid header name {name!r}"
    if not _VALUE.fullmatch(value):
        return f"an invalid value for header {name!r}: {value!r} (latin-1 without control characters)"
    return None


def checked_headers(headers):
    """`headers` as a new dict, str() of each name and value; raises ValueError for one not sendable."""
    converted = {str(name): str(value) for name, value in dict(headers or {}).items()}
    for name, value in converted.items():
        problem = header_problem(name, value)
        if problem:
            raise ValueError(problem)
    return converted
