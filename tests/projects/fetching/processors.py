"""Processors that fetch other URLs with req.fetch and req.fetch_all; the body lists the URLs, one a line."""

import hashlib
import time

from ufop_sdk import Processor

KEPT = []  # files a processor kept past its request, to see that they were closed


def urls_of(req):
    return req.buffer.read().decode().split()


def described(fetched):
    return {"url": fetched.url, "size": fetched.size, "content_type": fetched.content_type,
            "declared_content_type": fetched.declared_content_type, "position": fetched.file.tell(),
            "seekable": fetched.file.seekable(), "sha256": hashlib.sha256(fetched.file.read()).hexdigest()}


class Fetch(Processor):
    route = r"fetch(?:/max/(?P<max_bytes>\d+))?(?:/timeout/(?P<timeout>[0-9.]+))?"

    def process(self, req):
        max_bytes = int(req.args["max_bytes"]) if "max_bytes" in req.args else None
        timeout = float(req.args["timeout"]) if "timeout" in req.args else None
        return [described(req.fetch(url, max_bytes=max_bytes, timeout=timeout)) for url in urls_of(req)]


class FetchPastTimeout(Processor):
    """Waits on a fetch longer than the processor may run."""

    route = r"fetch_past_timeout"
    timeout = 1

    def process(self, req):
        return described(req.fetch(urls_of(req)[0], timeout=60))


class FetchAll(Processor):
    route = r"fetch_all/(?P<concurrency>\d+)"

    def process(self, req):
        began = time.monotonic()
        results = [[fetched.url, fetched.size] for fetched in
                   req.fetch_all(urls_of(req), concurrency=int(req.args["concurrency"]))]
        return {"results": results, "seconds": time.monotonic() - began}


class FirstOf(Processor):
    """Reads only the first of the URLs, leaving fetch_all's loop early."""

    route = r"first_of"

    def process(self, req):
        for fetched in req.fetch_all(urls_of(req), concurrency=1):
            return fetched.file.read()


class Keep(Processor):
    route = r"keep"

    def process(self, req):
        KEPT.extend(fetched.file for fetched in req.fetch_all(urls_of(req)))
        return "kept"


class Kept(Processor):
    route = r"kept"

    def process(self, req):
        return {"closed": [file.closed for file in KEPT]}
