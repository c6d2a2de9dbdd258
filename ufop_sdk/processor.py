"""The Processor base class that a project's processors subclass."""


class Processor:
    """One kind of processing, chosen by a route over the cmd's parameters.

    Subclass it in your project's ``processors.py``::

        class Thumbnail(Processor):
            route = r"thumbnail/(?P<width>\\d+)x(?P<height>\\d+)"
            accepts = ("image/*",)
            timeout = 10

            def process(self, req):
                ...
                return image_bytes

    Class attributes:
        route: a regex matched with ``re.fullmatch`` against the cmd without
            the ufop name. Named groups become ``req.args``. A class without a
            route is a base for others and is never routed to.
        accepts: media-type patterns; input whose sniffed type matches none of
            them is refused with 415. Empty accepts everything.
        timeout: seconds the processor may run; None uses ``UFOP_TIMEOUT``.
        Args: an attrs class built from the named groups, so its converters
            and validators type and check them. None gives a plain mapping.
        max_cmd_bytes: the longest cmd (UTF-8 bytes) this route is tried on.
            Routes run on the server's event loop, so a longer cmd is refused
            (414) unless a processor that takes it says so, as mkzip's list
            of a thousand URLs does (UFOP_MAX_CMD_BYTES caps every one).
        prefetch: True (the default) gives ``req.buffer`` as a seekable file
            holding the whole input. False gives a forward-only stream read as
            the input arrives, with ``req.size`` None: a ``url`` source is
            downloaded only as far as it is read, in the worker, under the same
            guard and limits. See the README's "Streamed sources".
    """

    route = None
    accepts = ()
    timeout = None
    Args = None
    max_cmd_bytes = 4096
    prefetch = True

    def setup(self):
        """Runs once per worker process before its first request."""

    def health(self):
        """Called by the health check; raise to report the processor unhealthy."""

    def process(self, req):
        """Process `req` (a `Request`) and return the answer.

        Return ``str``, ``bytes``, a ``dict`` or ``list`` (JSON), a
        ``(value, content_type)`` pair, a `Response`, or None (204). Raise a
        `UfopError` subclass to answer with its status.
        """
        raise NotImplementedError(f"{type(self).__name__} must define process(self, req)")
