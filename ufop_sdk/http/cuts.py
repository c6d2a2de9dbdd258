"""Why a request's connection ended before its answer was written, and the status each is logged with."""

# What the access log and /metrics say for a request whose client closed the
# connection before its answer was written (nginx's code).
CLIENT_LEFT = 499


class ConnectionCut(Exception):
    """Set as a stream's error when the server closes its connection; `status` is what is logged."""

    status = 500


class SlowClient(ConnectionCut):
    """The client missed its deadline for sending the body, or for taking the answer."""

    status = 408


class ServerStopped(ConnectionCut):
    """The grace period ended before the answer."""

    status = 503


def cut_off_status(stream):
    """The status to log for a request whose connection (`stream`) closed before its answer."""
    return stream.error.status if isinstance(stream.error, ConnectionCut) else CLIENT_LEFT
