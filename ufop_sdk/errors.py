"""Errors that ufop-sdk raises and that processors may raise.

    Exception
    ├── UfopError                 answered to the client as JSON with .status
    │   ├── BadRequest            400  a cmd or argument the processor cannot take
    │   ├── Forbidden             403  the source URL is refused (SSRF guard)
    │   ├── NotFound              404  no route matches the cmd
    │   ├── PayloadTooLarge       413  the input is over a size limit
    │   ├── UnsupportedMediaType  415  the sniffed type is not in `accepts`
    │   ├── SourceError           502  the source URL could not be fetched
    │   ├── Overloaded            503  too many requests waiting, or no worker
    │   └── ProcessingTimeout     504  the processor ran past its timeout
    ├── ProjectError              the project cannot be loaded (import, routes)
    └── ConfigError               a setting has an invalid value

A `UfopError`'s message is public: it goes to the client as it is. Anything
else raised by a processor becomes a 500 whose public message names only the
processor; the details go to the log.
"""

from types import MappingProxyType

from .app.headers import checked_headers


class UfopError(Exception):
    """An error with an HTTP status and a message safe to show the client."""

    status = 500
    # A class's default extra response headers, e.g. Retry-After; read-only, as every
    # error of the class shares it: each error has its own copy, with `headers` added.
    headers = MappingProxyType({})

    def __init__(self, message, status=None, headers=None):
        """Raises ValueError for a header that cannot be sent (not latin-1, a control character)."""
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = int(status)
        self.headers = checked_headers({**type(self).headers, **(headers or {})})

    def __repr__(self):
        return f"{type(self).__name__}({self.message!r}, status={self.status})"


class BadRequest(UfopError):
    status = 400


class Forbidden(UfopError):
    status = 403


class NotFound(UfopError):
    status = 404


class PayloadTooLarge(UfopError):
    status = 413


class UnsupportedMediaType(UfopError):
    status = 415


class SourceError(UfopError):
    status = 502


class Overloaded(UfopError):
    status = 503
    headers = MappingProxyType({"Retry-After": "1"})


class ProcessingTimeout(UfopError):
    status = 504


class ProjectError(Exception):
    """The project's module cannot be imported or its processors are invalid."""


class ConfigError(Exception):
    """A setting from the environment, `.env` or a flag has an invalid value."""
