"""A ``url`` source read as the processor reads it (``prefetch = False``): a guarded GET whose body
is taken from the socket only when asked for.

http.client on a blocking socket, in the processor's own thread: a read that
waits is the backpressure (the TCP window closes, so the origin stops
sending), the socket's timeout is the stall timeout, and closing the stream
closes the connection. Tornado's client, which fetches prefetched sources,
would need a loop thread and a bounded queue between it and the processor,
and it bounds a request's whole body by one timeout, where a stream read at
the processor's pace needs one per read.

The SSRF guard is the one prefetched sources have: `SourcePolicy.check_url`
on every hop, and `SourcePolicy.allowed_addresses` on the addresses this
module itself resolves and connects to (so no second lookup can answer
differently: no DNS rebinding gap).
"""

import http.client
import io
import socket
import time
import zlib
from urllib.parse import urljoin, urlsplit

from ..errors import PayloadTooLarge, ProcessingTimeout, SourceError, UfopError
from .fetch import MAX_REDIRECTS, REDIRECTS, fetch_error, status_error, too_large
from .networks import localhost_addresses

REQUEST_HEADERS = {"User-Agent": "ufop-sdk", "Accept-Encoding": "gzip"}
STREAM_READ = 64 << 10  # what one read of a gzip-encoded body takes from the connection


def open_stream(url, policy):
    """A SourceStream over the body of `url`, once its origin answered 2xx (redirects followed).

    `policy` is a SourcePolicy: its timeout bounds connecting and the answer's
    head, over every hop, and then each read. Raises Forbidden (403), BadRequest
    (400), SourceError (502), PayloadTooLarge (413, by Content-Length) or
    ProcessingTimeout (504), as a prefetched source's fetch does.
    """
    deadline = time.monotonic() + policy.timeout
    for hop in range(MAX_REDIRECTS + 1):
        policy.check_url(url, redirected=hop > 0)
        response = _get(url, policy, deadline)
        location = response.getheader("Location")
        if response.status in REDIRECTS and location:
            response.close()
            url = urljoin(url, location)
            continue
        try:
            _check(response, policy)
        except BaseException:
            response.close()
            raise
        return SourceStream(response, url, policy)
    raise SourceError(f"the source redirected more than {MAX_REDIRECTS} times")


class SourceStream(io.RawIOBase):
    """The body of a source's 2xx answer, read from its connection as asked for.

    `content_type` is the origin's Content-Type (or None) and `url` the URL
    after redirects. A read raises PayloadTooLarge (413) past the policy's
    max_bytes, ProcessingTimeout (504) when nothing arrives for its timeout,
    and SourceError (502) when the origin breaks off.
    """

    def __init__(self, response, url, policy):
        self.response = response
        # As Tornado's client does for a prefetched source: asked for, and decoded, whatever it says.
        gzipped = (response.getheader("Content-Encoding") or "").strip().lower() == "gzip"
        self.body = _Gunzipped(response) if gzipped else response
        self.url = url
        self.content_type = response.getheader("Content-Type")
        self.max_bytes = policy.max_bytes
        self.timeout = policy.timeout
        self.received = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        # One byte over the limit is enough to know it is over: never more is taken.
        with memoryview(buffer) as view:
            try:
                count = self.body.readinto(view[:self.max_bytes - self.received + 1])
            except TimeoutError:
                raise ProcessingTimeout(f"the source sent nothing for {self.timeout:g}s") from None
            except (OSError, http.client.HTTPException, zlib.error) as exc:
                raise SourceError(f"the source broke off after {self.received} bytes: "
                                  f"{exc or type(exc).__name__}") from None
        if not count and self.response.length:
            # http.client counts down what the Content-Length announced, but its readinto ends a
            # body cut short as if it were whole (only its read() raises IncompleteRead).
            raise SourceError(f"the source broke off after {self.received} bytes, "
                              f"{self.response.length} bytes short of its Content-Length")
        self.received += count
        if self.received > self.max_bytes:
            raise PayloadTooLarge(f"the source is over the limit of {self.max_bytes} bytes")
        return count

    def close(self):
        """Close the connection, whether or not the body was read to its end."""
        if not self.closed:
            self.response.close()
        super().close()


class _Gunzipped:
    """The decoded bytes of a gzip-encoded body, decoded as they are read: the limit counts them
    (a small body that expands to gigabytes is refused as it grows), not what came over the wire."""

    def __init__(self, response):
        self.response = response
        self.decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)

    def readinto(self, view):
        """Up to len(`view`) decoded bytes into `view`: their count, 0 at the end. Raises zlib.error."""
        while not self.decoder.eof:
            encoded = self.decoder.unconsumed_tail or self.response.read1(STREAM_READ)
            if not encoded:
                break  # the body ended: what it held is decoded, as Tornado gives a cut-off one
            decoded = self.decoder.decompress(encoded, len(view))
            if decoded:
                view[:len(decoded)] = decoded
                return len(decoded)
        return 0


def _check(response, policy):
    """Raise for an answer that is not a source: not 2xx, or a Content-Length over the limit."""
    if not 200 <= response.status < 300:
        raise status_error(response.status, response.reason)
    length = response.getheader("Content-Length", "")
    if length.isdecimal() and int(length) > policy.max_bytes:
        raise too_large(int(length), policy.max_bytes)


def _get(url, policy, deadline):
    """Send GET `url` on a guarded connection; its answer's head, within `deadline`."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ProcessingTimeout(f"fetching the source took over {policy.timeout:g}s")
    parts = urlsplit(url)
    try:
        connection = _connection(parts, policy, remaining)
    except (ValueError, http.client.HTTPException) as exc:  # a port that is not one
        raise fetch_error(exc, url, policy.timeout) from None
    try:
        connection.request("GET", _target(parts), headers=REQUEST_HEADERS)
        sock = connection.sock  # getresponse() may let go of it (an answer that closes the connection)
        response = connection.getresponse()
        sock.settimeout(policy.timeout)  # from now on, the longest a read may wait: a stall
    except (OSError, ValueError, http.client.HTTPException, UfopError) as exc:
        connection.close()
        raise fetch_error(exc, url, policy.timeout) from None
    except BaseException:  # the processor's time is up (Celery's soft limit): closed all the same
        connection.close()
        raise
    return response


def _connection(parts, policy, timeout):
    """A guarded connection (not yet connected) to the host and port of `parts`, a split URL."""
    kind = GuardedHTTPSConnection if parts.scheme == "https" else GuardedHTTPConnection
    # The port given apart, always: http.client would read an IPv6 literal's last group as one.
    connection = kind(parts.hostname, parts.port or kind.default_port, timeout=timeout)
    connection.policy = policy
    return connection


def _target(parts):
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


class GuardedHTTPConnection(http.client.HTTPConnection):
    """An HTTPConnection that connects only to an address its `policy` allows (set it after making it)."""

    policy = None

    def connect(self):
        self.sock = guarded_connection(self.policy, self.host, self.port, self.timeout)


class GuardedHTTPSConnection(http.client.HTTPSConnection, GuardedHTTPConnection):
    """HTTPS over GuardedHTTPConnection's socket: HTTPSConnection.connect wraps what its super() made,
    with the host name for SNI and the certificate's check."""


def guarded_connection(policy, host, port, timeout):
    """A TCP socket connected to the first address of `host` that `policy` allows and that answers.

    Raises Forbidden when every address is blocked, OSError when none can be reached.
    """
    addresses = localhost_addresses(host, port) or [
        (family, address)
        for family, _, _, _, address in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]
    allowed = policy.allowed_addresses(host, addresses)
    error = None
    for family, address in allowed:
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(address)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        return sock
    raise error
