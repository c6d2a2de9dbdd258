"""What `req.fetch` and `req.fetch_all` use during one request, and what they leave to close after it;
and the streamed source of a processor with ``prefetch = False``.

The fetcher itself (sources/blocking.py's BlockingFetcher, on Tornado) is
given by whoever runs the processors (a worker, ``ufop-sdk test``,
ufop_sdk.testing), so this module imports no HTTP client.
"""

from .inputs import forward_only


class RequestFetches:
    """One request's fetches through `fetcher` (None where none was given); `close()` at its end."""

    def __init__(self, fetcher):
        self.fetcher = fetcher
        self._opened = []  # files handed out, and fetch_all's generators (closing one cancels its fetches)

    def fetch(self, url, *, max_bytes=None, timeout=None):
        fetched = self._engine().fetch(url, max_bytes=max_bytes, timeout=timeout)
        self._opened.append(fetched.file)
        return fetched

    def fetch_all(self, urls, *, concurrency=8, max_bytes=None, timeout=None):
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"fetch_all: expected a concurrency of 1 or more, got {concurrency!r}")
        results = self._engine().fetch_all(urls, concurrency=concurrency, max_bytes=max_bytes,
                                           timeout=timeout)
        self._opened.append(results)
        return self._keeping(results)

    def open_stream(self, url):
        """The ``url`` source as a forward-only stream (see inputs.py), read from the origin as it is
        read, and its declared Content-Type. Raises a UfopError as a source's fetch does."""
        source = self._engine().open_stream(url)
        self._opened.append(source)  # closed at the request's end, however far it was read
        return forward_only(source), source.content_type

    def close(self):
        """Close every file handed out and cancel fetches still running; never raises."""
        opened, self._opened = self._opened, []
        for thing in reversed(opened):
            try:
                thing.close()
            except Exception:  # noqa: BLE001, S110 - a file the processor closed or broke; nothing to add
                pass

    def _keeping(self, results):
        for fetched in results:
            self._opened.append(fetched.file)
            yield fetched

    def _engine(self):
        if self.fetcher is None:
            raise RuntimeError("req.fetch is not available: this Request was not built by a ProcessorRunner "
                               "given a fetcher")
        return self.fetcher
