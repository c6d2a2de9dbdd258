"""A Qiniu pipeline ``cmd1|cmd2|...`` run on a bucket's file, as the platform runs it.

Each step whose ufop name is this project's runs through the same path as
``/handler`` (the same routes, limits and timeouts): the first on the file
itself, each later one on the previous step's output. The last step's
answer is returned; an error at step k is returned as it is, with the step
number in its message. Each step gets the request's headers and those the
platform adds (``req.qiniu``). Both the synchronous form (``GET
/<key>?<fop>``) and persistent jobs run pipelines here.
"""

import base64
import json
import tempfile

import attrs

from ..app.bodies import close_body
from ..errors import BadRequest, UfopError
from ..http.streamed import body_chunks

MAX_STEPS = 30  # the platform's limit on a pipeline


class NotThisUfop(UfopError):
    status = 501


def platform_headers(client_headers, bucket, key, steps, is_async=False):
    """The client's headers and those the platform adds (req.qiniu): the bucket, the key, the
    pipeline, and for a persistent job the mode ``2``; each URL-safe base64."""
    platform = {"X-Qiniu-Bucket": bucket, "X-Qiniu-Key": key, "X-Qiniu-Pipe-Cmds": "|".join(steps)}
    if is_async:
        platform["X-Qiniu-Mode"] = "2"
    encoded = {name: base64.urlsafe_b64encode(value.encode()).decode() for name, value in platform.items()}
    return {**{name: client_headers[name] for name in client_headers}, **encoded}


async def run_pipeline(server, request_id, steps, file, url, headers):
    """The Response of the last of `steps` (cmds), the first run on `file` (open at its start,
    served at `url`); an error response as soon as a step fails. Closes nothing it was given."""
    if len(steps) > MAX_STEPS:
        raise BadRequest(f"a pipeline has at most {MAX_STEPS} steps, this one has {len(steps)}")
    body = None
    for number, cmd in enumerate(steps, start=1):
        reply = await _step(server, request_id, cmd, body, file, url if number == 1 else None, headers)
        if number > 1 and file is not None:
            file.close()  # the spooled output of the step before
        if reply.status >= 400 or number == len(steps):
            return _numbered(reply, number, cmd) if reply.status >= 400 else reply
        body, file = reply.body, None
        if not isinstance(body, bytes):  # a file or stream: the next step reads it from a file
            body, file = None, await spooled(body, server.settings.spool_dir)
    return reply


async def spooled(body, folder):
    """A file or streamed answer, copied into a temporary file (at its start) in `folder`; closes `body`."""
    file = tempfile.TemporaryFile(dir=folder)  # noqa: SIM115 - the caller closes it
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


async def _step(server, request_id, cmd, body, file, url, headers):
    name = cmd.partition("/")[0]
    own = server.settings.name
    try:
        if not cmd:
            raise BadRequest("the step is empty")
        if own and name != own:
            raise NotThisUfop(f"{name!r} is another ufop: the dev server runs only {own!r}")
        match = server.resolve(cmd)
        return await server.process(match, cmd, request_id, body=body, file=file, url=url, headers=headers)
    except UfopError as exc:
        return server.error_response(exc, request_id)


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
