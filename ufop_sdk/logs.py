"""Logging for the server: one JSON line per request, and the library's own messages.

Lines go to stderr, and to ``<UFOP_LOG_DIR>/ufop.log`` when that is set (the
platform collects both). Request lines are buffered and flushed often, since a
write per request is a system call per request.
"""

import json
import logging
import logging.handlers
import sys

access_log = logging.getLogger("ufop_sdk.access")

FLUSH_SECONDS = 0.5
BUFFERED_LINES = 256


def configure_logging(log_dir=None, level=logging.INFO):
    """Send ufop_sdk's logs to stderr (and a file); returns the handler to flush periodically."""
    targets = [logging.StreamHandler(sys.stderr)]
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        targets.append(logging.handlers.WatchedFileHandler(log_dir / "ufop.log", encoding="utf-8"))
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s")
    for target in targets:
        target.setFormatter(formatter)
    library = logging.getLogger("ufop_sdk")
    library.handlers[:] = targets
    library.setLevel(level)
    library.propagate = False
    buffered = logging.handlers.MemoryHandler(BUFFERED_LINES, flushLevel=logging.ERROR,
                                              target=_Fanout(targets), flushOnClose=True)
    access_log.handlers[:] = [buffered]
    access_log.propagate = False
    return buffered


def log_request(**fields):
    """One line per request: id, cmd, processor, status, bytes and milliseconds per stage."""
    if access_log.isEnabledFor(logging.INFO):
        access_log.info("%s", _Line(fields))


class _Line:
    """Formats lazily: the JSON is built only when the line is written."""

    __slots__ = ("fields",)

    def __init__(self, fields):
        self.fields = fields

    def __str__(self):
        return json.dumps(self.fields, ensure_ascii=False, separators=(",", ":"))


class _Fanout(logging.Handler):
    def __init__(self, targets):
        super().__init__()
        self.targets = targets

    def emit(self, record):
        for target in self.targets:
            target.handle(record)

    def flush(self):
        for target in self.targets:
            target.flush()
