"""Why a request's connection ended before its answer was written, and the status each is logged with."""

# The client closed the connection first (nginx's code).
CLIENT_LEFT = 499
# The server closed it: the client missed its deadline for sending the body, or for taking the answer.
SLOW_CLIENT = 408
# The server closed it: the grace period of a stop ended before the answer.
SERVER_STOPPED = 503


class ConnectionCut(Exception):
    """Set as a connection's error when the server closes it; `status` is what is logged."""

    def __init__(self, status):
        super().__init__(status)
        self.status = status


def cut_off_status(connection):
    """The status to log for a request whose connection (a connection.Connection) closed before its answer."""
    return connection.error.status if isinstance(connection.error, ConnectionCut) else CLIENT_LEFT
