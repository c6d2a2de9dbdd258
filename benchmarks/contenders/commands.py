"""The work every contender does, the same as the benchmark's ufop-sdk processors.

`hello` answers what benchmarks/projects/trivial answers; `thumbnail/<w>x<h>`
runs samples/thumbnail's own process() (the benchmark puts the repository and
the sample on the path). A cmd is `<ufop name>/<command>`, as UFOP sends it.
"""

import io
import re
from types import SimpleNamespace

HELLO = b"hello world"
TEXT = "text/plain; charset=utf-8"
THUMBNAIL = re.compile(r"thumbnail/(\d+)x(\d+)")
NOT_FOUND = (404, b'{"error": "no such command"}', "application/json")


def answer(cmd, body):
    """(status, body, content type) for `cmd` with the request's `body`."""
    command = cmd.partition("/")[2]  # without the UFOP name: `bench-ufop/hello` -> `hello`
    if command == "hello":
        return 200, HELLO, TEXT
    match = THUMBNAIL.fullmatch(command)
    if match:
        return 200, *thumbnail(match[1], match[2], body)
    return NOT_FOUND


def thumbnail(width, height, body):
    """The sample's process(): (JPEG bytes, content type). Imported on first use, so the trivial
    contenders never load Pillow."""
    import processors as sample  # samples/thumbnail/processors.py

    args = sample.Thumbnail.Args(mode="thumbnail", width=width, height=height)
    return sample.Thumbnail().process(SimpleNamespace(args=args, buffer=io.BytesIO(body)))
