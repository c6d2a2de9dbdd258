"""Logging for the server: one JSON line per request, and the library's own messages.

Both go to stderr, and to ``<UFOP_LOG_DIR>/ufop.log`` when that is set (the
platform collects both). Request lines are buffered and written together a
few times a second, since a write per request is a system call per request.
"""

import logging
import logging.handlers
import sys
import time
from json.encoder import encode_basestring

FLUSH_SECONDS = 0.25
BUFFERED_LINES = 512


class AccessLog:
    """Buffered JSON lines, one per request; `flush` writes them out."""

    def __init__(self, streams):
        self.streams = streams
        self.lines = []

    def request(self, request_id, cmd, processor, status, bytes_in, bytes_out, timings):
        """One request's line; `timings` are seconds by stage, logged as milliseconds.

        Formatted by hand rather than with json.dumps, at a third of its
        cost: only the strings need escaping, and they get JSON's own.
        """
        ms = ",".join([f'"{stage}":{seconds * 1000:.2f}' for stage, seconds in timings.items()])
        self.lines.append(
            f'{{"time":{time.time():.3f},"request_id":{_json_string(request_id)},"cmd":{_json_string(cmd)},'
            f'"processor":{_json_string(processor)},"status":{status},"bytes_in":{bytes_in},'
            f'"bytes_out":{bytes_out},"ms":{{{ms}}}}}')
        if len(self.lines) >= BUFFERED_LINES:
            self.flush()

    def flush(self):
        if not self.lines:
            return
        text = "\n".join(self.lines) + "\n"
        self.lines = []
        for stream in self.streams:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                pass  # a closed or full log must not fail requests


def _json_string(text):
    return "null" if text is None else encode_basestring(text)


def configure_logging(log_dir=None, level=logging.INFO):
    """Send ufop_sdk's messages to stderr (and a file); returns the AccessLog for requests."""
    streams = [sys.stderr]
    handlers = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        log_file = open(log_dir / "ufop.log", "a", encoding="utf-8")  # noqa: SIM115 - lives as long as the process
        streams.append(log_file)
        handlers.append(logging.StreamHandler(log_file))
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    for handler in handlers:
        handler.setFormatter(formatter)
    library = logging.getLogger("ufop_sdk")
    library.handlers[:] = handlers
    library.setLevel(level)
    library.propagate = False
    return AccessLog(streams)
