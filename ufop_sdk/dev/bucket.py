"""``dev --bucket DIR``: ``GET /<key>?<fop>[|<fop>...]`` as the Qiniu platform answers it.

Each step of the pipeline whose ufop name is this project's runs through the
same path as ``/handler``: the first on the file itself (its ``req.url`` is
the file's URL here), each later one on the previous step's output. The last
step's answer is returned; an error at step k is returned as it is, with the
step number in its message. Steps are split on the query's literal ``|``
before each is percent-decoded, so ``%7C`` is a ``|`` inside a cmd. Each step
gets the request's headers and the platform's X-Qiniu-Bucket, -Key and
-Pipe-Cmds (``req.qiniu``).
"""

import base64
import json
import os
import tempfile
from pathlib import Path
from urllib.parse import quote, unquote

import attrs
from tornado.iostream import StreamClosedError

from ..app.bodies import FileBody, close_body
from ..app.media import sniff_file
from ..errors import BadRequest, Forbidden, NotFound, UfopError
from ..http.handlers import JsonHandler
from ..http.streamed import body_chunks

MAX_STEPS = 30  # the platform's limit on a pipeline
CHUNK_BYTES = 64 << 10  # a file is sent in pieces of this size, never read whole


class NotThisUfop(UfopError):
    status = 501


class BucketHandler(JsonHandler):
    """Serves the files of `server.bucket`, through a pipeline when the query names one."""

    async def get(self, key):
        path = self._file(key)
        query = self.request.query
        with open(path, "rb") as file:
            if not query:
                await self._send_file(file)
                return
            url = f"{self.request.protocol}://{self.request.host}/{quote(key)}"
            steps = [unquote(step) for step in query.split("|")]
            headers = _platform_headers(self.request.headers, Path(self.server.bucket).name, key, steps)
            response = await self._pipeline(steps, file, url, headers)
        if isinstance(response.body, bytes):
            self.write_response(response)
            self.finish()
            return
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

    def _file(self, key):
        """The file `key` names, or raise: 403 for one outside the bucket, 404 for none."""
        root = Path(self.server.bucket).resolve()
        if "\0" in key:
            raise BadRequest("a key cannot contain NUL")
        try:
            path = (root / key).resolve()
            if root not in path.parents:
                raise Forbidden(f"key {key!r} is outside the bucket")
            if not path.is_file():
                raise NotFound(f"no such key {key!r} in the bucket")
        except (OSError, RuntimeError):  # a symlink loop, a name too long: no file by that key
            raise NotFound(f"no such key {key!r} in the bucket") from None
        return path

    async def _pipeline(self, steps, file, url, headers):
        if len(steps) > MAX_STEPS:
            raise BadRequest(f"a pipeline has at most {MAX_STEPS} steps, this one has {len(steps)}")
        body = None
        for number, cmd in enumerate(steps, start=1):
            reply = await self._step(number, cmd, body, file, url if number == 1 else None, headers)
            if number > 1 and file is not None:
                file.close()  # the spooled output of the step before
            if reply.status >= 400 or number == len(steps):
                return _numbered(reply, number, cmd) if reply.status >= 400 else reply
            body, file = reply.body, None
            if not isinstance(body, bytes):  # a file or stream: the next step reads it from a file
                body, file = None, await self._spooled(body)
        return reply

    async def _spooled(self, body):
        """A step's file or streamed output, copied into a temporary file (at its start) for the next."""
        file = tempfile.TemporaryFile(dir=self.server.settings.spool_dir)  # noqa: SIM115 - the next step closes it
        try:
            async for chunk in body_chunks(body):
                file.write(chunk)
        except BaseException:
            file.close()
            raise
        finally:
            close_body(body)
        file.seek(0)
        return file

    async def _step(self, number, cmd, body, file, url, headers):
        name = cmd.partition("/")[0]
        own = self.server.settings.name
        try:
            if not cmd:
                raise BadRequest("the step is empty")
            if own and name != own:
                raise NotThisUfop(f"{name!r} is another ufop: the dev server runs only {own!r}")
            match = self.server.resolve(cmd)
            return await self.server.process(match, cmd, self.request_id, body=body, file=file, url=url,
                                             headers=headers)
        except UfopError as exc:
            return self.server.error_response(exc, self.request_id)


def _platform_headers(client_headers, bucket, key, steps):
    """The client's headers and those the platform adds (req.qiniu): the bucket (the folder's name),
    the key and the pipeline, each URL-safe base64; a synchronous call, so no X-Qiniu-Mode."""
    platform = {"X-Qiniu-Bucket": bucket, "X-Qiniu-Key": key, "X-Qiniu-Pipe-Cmds": "|".join(steps)}
    encoded = {name: base64.urlsafe_b64encode(value.encode()).decode() for name, value in platform.items()}
    return {**{name: client_headers[name] for name in client_headers}, **encoded}


def _numbered(reply, number, cmd):
    """The error `reply` with "step k (cmd):" before its message."""
    if not isinstance(reply.body, bytes):
        return reply  # a file or stream: the processor's own, as it is
    try:
        payload = json.loads(reply.body)
        payload["error"] = f"step {number} ({cmd}): {payload['error']}"
    except (ValueError, KeyError, TypeError):
        return reply  # not our JSON error: the processor's own body, as it is
    return attrs.evolve(reply, body=json.dumps(payload, ensure_ascii=False).encode())
