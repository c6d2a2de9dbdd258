"""What every answer of dev's platform endpoints (upload, pfop, status) has, as Qiniu's answer: X-Reqid."""

from ..errors import UfopError

# Qiniu's answers carry their request id here; the official SDK takes an answer without it as failed.
REQUEST_ID_HEADER = "X-Reqid"


class NotEmulated(UfopError):
    """A part of the platform dev does not emulate: a known answer, not a fault of the server."""

    status = 501


class QiniuAnswers:
    """A mixin before a JsonHandler: X-Reqid on every answer, errors too; NotEmulated is logged
    without a traceback."""

    def initialize(self, server):
        super().initialize(server)
        self.set_header(REQUEST_ID_HEADER, self.request_id)

    def set_default_headers(self):  # again after an error clears the headers
        super().set_default_headers()
        if hasattr(self, "request_id"):
            self.set_header(REQUEST_ID_HEADER, self.request_id)

    def log_exception(self, typ, value, tb):
        if not isinstance(value, NotEmulated):
            super().log_exception(typ, value, tb)
