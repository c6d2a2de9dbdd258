"""``dev --bucket``: ``GET /<key>?<fop>[|<fop>...]`` as the Qiniu platform answers it (see pipelines.py).

Steps are split on the query's literal ``|`` before each is percent-decoded,
so ``%7C`` is a ``|`` inside a cmd. The host ``NAME.localhost`` reads bucket
NAME; any other host, the first bucket. A pipeline ending in ``saveas/...``
stores its output and answers ``{"key": ..., "hash": ...}`` (saveas.py).
"""

import os
from urllib.parse import quote, unquote

import attrs
from tornado.iostream import StreamClosedError

from ..app.bodies import FileBody, close_body
from ..app.media import sniff_file
from ..http.handlers import JsonHandler
from ..http.streamed import body_chunks
from .pipelines import platform_headers, run_pipeline
from .qiniu_auth import Unauthorized
from .saveas import SIGN, save_answer, split_saveas

CHUNK_BYTES = 64 << 10  # a file is sent in pieces of this size, never read whole


class BucketHandler(JsonHandler):
    """Serves a bucket's files, through a pipeline when the query names one."""

    async def get(self, key):
        buckets = self.server.platform.buckets
        bucket = buckets.for_host(self.request.host)
        path = bucket.file(key)
        query = self.request.query
        with open(path, "rb") as file:
            if not query:
                await self._send_file(file)
                return
            url = f"{self.request.protocol}://{self.request.host}/{quote(key)}"
            steps, saveas = split_saveas([unquote(step) for step in query.split("|")])
            if saveas:
                self._check_saveas(saveas)
            headers = platform_headers(self.request.headers, bucket.name, key, steps)
            response = await run_pipeline(self.server, self.request_id, steps, file, url, headers)
        if saveas and response.status < 400:
            key, hash_ = await save_answer(buckets[saveas.bucket], saveas.key, response.body)
            self.finish({"key": key, "hash": hash_})
        elif isinstance(response.body, bytes):
            self.write_response(response)
            self.finish()
        else:
            await self._send_response(response)

    def _check_saveas(self, saveas):
        """Refuse a saveas that cannot be stored, before any step runs. With credentials set, it
        must be signed: `sign` is the HMAC of the URL up to ``/sign/``, without its scheme, as the
        client sent it."""
        target = self.server.platform.buckets[saveas.bucket]
        if saveas.key is not None:
            target.check_writable(saveas.key)
        credentials = self.server.platform.credentials
        if credentials is None:
            return
        if saveas.sign is None:
            raise Unauthorized("a synchronous saveas must end with /sign/<AccessKey>:<sign> "
                               "while QINIU_ACCESS_KEY is set")
        signed = self.request.host + self.request.uri.rpartition(SIGN)[0]
        credentials.check_signed(saveas.sign, signed, "the saveas sign")

    async def _send_response(self, response):
        try:
            self.write_response(attrs.evolve(response, body=b""))
            self.clear_header("Content-Length")
            await self._send(body_chunks(response.body), getattr(response.body, "length", None))
        finally:
            close_body(response.body)

    async def _send_file(self, file):
        """Send `file` a piece at a time, each flushed before the next is read, as StaticFileHandler does."""
        self.set_header("Content-Type", sniff_file(file))
        await self._send(body_chunks(FileBody.of(file), CHUNK_BYTES), os.fstat(file.fileno()).st_size)

    async def _send(self, chunks, length):
        """Send the chunks (an async iterator), each flushed before the next is taken; chunked
        when `length` is None."""
        if length is not None:
            self.set_header("Content-Length", length)
        try:
            async for chunk in chunks:
                self.write(bytes(chunk))
                await self.flush()
        except StreamClosedError:
            return  # the client left: nothing to answer
        self.finish()
