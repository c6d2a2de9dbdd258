"""Getting a request's input from its ``url``: a bounded fetch behind an SSRF guard."""

import functools
import logging
import time
from fnmatch import fnmatchcase
from urllib.parse import urljoin, urlsplit

import attrs
from tornado.httpclient import HTTPRequest
from tornado.netutil import DefaultLoopResolver, Resolver
from tornado.simple_httpclient import HTTPTimeoutError, SimpleAsyncHTTPClient

from ..errors import BadRequest, Forbidden, PayloadTooLarge, ProcessingTimeout, SourceError, UfopError
from .networks import DEFAULT_BLOCKED_NETWORKS, EmptyNetworkList, is_blocked, localhost_addresses
from .spool import Spool

MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)

log = logging.getLogger("ufop_sdk.source")


@attrs.frozen
class SourcePolicy:
    """What may be fetched: blocked networks, allowed host names, size and time limits."""

    blocked_networks: tuple = DEFAULT_BLOCKED_NETWORKS
    allowed_hosts: tuple = ()
    max_bytes: int = 100 << 20
    timeout: float = 20.0
    spool_dir: object = None

    @classmethod
    def from_settings(cls, settings, default_blocked=DEFAULT_BLOCKED_NETWORKS):
        """The policy `settings` describe; `default_blocked` applies when UFOP_BLOCKED_NETWORKS is unset."""
        blocked = default_blocked if settings.blocked_networks is None else settings.blocked_networks
        if isinstance(blocked, EmptyNetworkList):
            _warn_empty_blocked_networks()
        return cls(blocked_networks=blocked, allowed_hosts=settings.allowed_source_hosts,
                   max_bytes=settings.max_source_bytes, timeout=settings.fetch_timeout,
                   spool_dir=settings.spool_dir)

    def is_blocked(self, address):
        return is_blocked(address, self.blocked_networks)

    def allowed_addresses(self, host, addresses):
        """The (family, sockaddr) pairs `host` resolved to, without the blocked ones; raises Forbidden
        when none is left. Checked on the addresses a connection will use, so that a name that
        resolves to 127.0.0.1 and a redirect to an internal host are both stopped."""
        allowed = [entry for entry in addresses if not self.is_blocked(entry[1][0])]
        if not allowed:
            raise Forbidden(f"source host {host!r} resolves to a blocked address "
                            f"({addresses[0][1][0]}); see UFOP_BLOCKED_NETWORKS")
        return allowed

    def check_url(self, url, redirected=False):
        """Raise for a URL that may not be fetched: Forbidden for a host not allowed; for a
        non-HTTP URL BadRequest, or SourceError when the source `redirected` to it."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            if redirected:
                raise SourceError(f"the source redirected to {url!r}, which is not an http or https URL")
            raise BadRequest(f"url must be an http or https URL, got {url!r}")
        host = parts.hostname.lower()
        if self.allowed_hosts and not any(fnmatchcase(host, p) for p in self.allowed_hosts):
            raise Forbidden(f"source host {host!r} is not in UFOP_ALLOWED_SOURCE_HOSTS")


@functools.cache  # once a process: a Celery worker builds a policy for every fetch
def _warn_empty_blocked_networks():
    log.warning("UFOP_BLOCKED_NETWORKS is empty, so sources may come from any address; "
                "set it to 'none' to say so, or to 'default,<networks>' to add to the default list")


class GuardedResolver(Resolver):
    """Resolves with `resolver` (the default one if None) and drops blocked addresses
    (SourcePolicy.allowed_addresses): Tornado connects only to what it returns."""

    def initialize(self, policy, resolver=None):
        self.policy = policy
        self.resolver = resolver or DefaultLoopResolver()

    async def resolve(self, host, port, family=0):
        addresses = localhost_addresses(host, port, family) or await self.resolver.resolve(host, port, family)
        return self.policy.allowed_addresses(host, addresses)


@attrs.frozen
class Fetched:
    spool: Spool
    content_type: object
    url: str = None  # after redirects


class SourceFetcher:
    """Downloads sources into Spools. One per server process; reuse it."""

    def __init__(self, policy, max_clients=64):
        self.policy = policy
        logging.getLogger("tornado.application").addFilter(_QUIET_REFUSALS)  # once: filters are a set
        self.client = SimpleAsyncHTTPClient(force_instance=True, resolver=GuardedResolver(policy=policy),
                                            max_clients=max_clients,
                                            # _Transfer enforces the limit, on decompressed
                                            # bytes too, and says 413; Tornado's would say 599.
                                            max_body_size=1 << 62)

    async def fetch(self, url, *, max_bytes=None, timeout=None):
        """Fetch `url` within the policy, whose size and time limits `max_bytes` and `timeout`
        replace when given; returns Fetched. Raises a UfopError."""
        policy = attrs.evolve(self.policy, max_bytes=max_bytes or self.policy.max_bytes,
                              timeout=timeout or self.policy.timeout)
        deadline = time.monotonic() + policy.timeout
        spool = Spool(policy.max_bytes, policy.spool_dir, what="source")
        try:
            for hop in range(MAX_REDIRECTS + 1):
                policy.check_url(url, redirected=hop > 0)
                response = await self._fetch_once(url, spool, deadline, policy)
                location = response.headers.get("Location")
                if response.code in REDIRECTS and location:
                    url = urljoin(url, location)
                    spool.reset()
                    continue
                if not 200 <= response.code < 300:
                    raise status_error(response.code, response.reason)
                return Fetched(spool, response.headers.get("Content-Type"), url)
            raise SourceError(f"the source redirected more than {MAX_REDIRECTS} times")
        except BaseException:
            spool.close()
            raise

    async def _fetch_once(self, url, spool, deadline, policy):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ProcessingTimeout(f"fetching the source took over {policy.timeout:g}s")
        transfer = _Transfer(spool, policy.max_bytes)
        request = HTTPRequest(url, follow_redirects=False, connect_timeout=remaining,
                              request_timeout=remaining, streaming_callback=transfer.chunk,
                              header_callback=transfer.header_line, decompress_response=True)
        try:
            response = await self.client.fetch(request, raise_error=False)
        except Exception as exc:  # noqa: BLE001 - connection failures, timeouts, our own refusals
            raise transfer.error or fetch_error(exc, url, policy.timeout) from None
        if response.code == 599:
            raise transfer.error or fetch_error(response.error, url, policy.timeout)
        return response

    def close(self):
        self.client.close()


class _Transfer:
    """One hop's callbacks. Tornado reports an exception raised in a callback as a
    closed connection, so the refusal is kept here to be raised as it is."""

    def __init__(self, spool, max_bytes):
        self.spool = spool
        self.max_bytes = max_bytes
        self.error = None

    def header_line(self, line):
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length" and value.strip().isdecimal():
            if int(value) > self.max_bytes:
                self._refuse(too_large(int(value), self.max_bytes))

    def chunk(self, data):
        try:
            self.spool.write(data)
        except UfopError as exc:
            self._refuse(exc)

    def _refuse(self, error):
        self.error = error
        error.is_refusal = True  # see _QuietRefusals
        raise error


class _QuietRefusals(logging.Filter):
    """Tornado logs any exception a callback raises as "Uncaught exception"; a
    refusal (a source too large, no room to spool it, no longer wanted) is
    raised on purpose and answered as the request's error, so it is not logged
    as a bug. Nor is what it leads to: when the request was cancelled (its
    client left), the closed connection it causes is logged as "Exception
    after Future was cancelled", with the refusal as its context."""

    def filter(self, record):
        error = record.exc_info[1] if record.exc_info else None
        while error is not None:
            if getattr(error, "is_refusal", False):
                return False
            error = error.__cause__ or error.__context__
        return True


_QUIET_REFUSALS = _QuietRefusals()


def status_error(code, reason):
    """What a source that answered other than 2xx is: a SourceError (502)."""
    return SourceError(f"the source answered {code} {reason}")


def too_large(length, max_bytes):
    """What a source whose Content-Length is over the limit is: PayloadTooLarge (413)."""
    return PayloadTooLarge(f"the source is {length} bytes, over the limit of {max_bytes} bytes")


def fetch_error(error, url, timeout):
    """The UfopError for a fetch of `url` that failed with `error`: a timeout (Tornado's or a
    socket's) is ProcessingTimeout (504), any other failure a SourceError (502) naming the host."""
    if isinstance(error, UfopError):
        return error
    if isinstance(error, (HTTPTimeoutError, TimeoutError)):
        return ProcessingTimeout(f"fetching the source took over {timeout:g}s")
    host = urlsplit(url).hostname
    return SourceError(f"cannot fetch the source from {host}: {error or 'connection failed'}")
