"""What every answer of dev's platform endpoints has, as Qiniu's hosts answer: X-Reqid, Qiniu's statuses."""

from ..errors import UfopError

# Qiniu's answers carry their request id here; the official SDK takes an answer without it as failed.
REQUEST_ID_HEADER = "X-Reqid"


class NotEmulated(UfopError):
    """A part of the platform dev does not emulate: a known answer, not a fault of the server."""

    status = 501


def is_qiniu_status(status):
    """Qiniu's own 6xx statuses (612 no such key, 614 key exists, 631 no such bucket): the client's errors."""
    return 600 <= status < 700


class QiniuAnswers:
    """A mixin before a JsonHandler: X-Reqid on every answer, errors too, and a 6xx UfopError
    answered with its own status (the JSON error body keeps 400-599); neither it nor NotEmulated is
    logged with a traceback."""

    def initialize(self, server):
        super().initialize(server)
        self.set_header(REQUEST_ID_HEADER, self.request_id)

    def set_default_headers(self):  # again after an error clears the headers
        super().set_default_headers()
        if hasattr(self, "request_id"):
            self.set_header(REQUEST_ID_HEADER, self.request_id)

    def write_error_body(self, error):
        super().write_error_body(error)
        if is_qiniu_status(error.status):
            self.set_status(error.status)

    def log_exception(self, typ, value, tb):
        if isinstance(value, NotEmulated) or isinstance(value, UfopError) and is_qiniu_status(value.status):
            return  # the client's error, not the server's fault
        super().log_exception(typ, value, tb)
