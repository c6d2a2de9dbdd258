"""Writing an answer that is not in memory: a file from disk, or a worker's stream, as its client takes it.

One chunk is in the connection's buffer at a time: the next is read (or awaited
from the worker) only once the one before it has gone to the kernel, so a
slow client paces the producer and the server holds about a MiB of the
answer, whatever its size.
"""

from ..app.bodies import CHUNK, AnswerCut, FileBody
from .replies import response_head


async def write_streamed(connection, response, request_id, closing, limit, progress):
    """Send `response`, whose body is a FileBody or a stream (``length``, ``next()``, ``taken(n)``).

    `progress(n)` is called as the client takes each chunk. Returns the bytes sent. Raises
    tornado's StreamClosedError (the client left),
    or AnswerCut (its producer failed, or it grew past `limit` bytes); the caller then closes the connection.
    """
    body = response.body
    await connection.write_headers(*response_head(response, request_id, closing, body.length))
    sent = 0
    async for chunk in body_chunks(body):
        sent += len(chunk)
        if sent > limit:
            raise AnswerCut(f"the answer grew past the limit of {limit} bytes (UFOP_MAX_OUTPUT_BYTES)")
        # One write at a time, each awaited until the kernel has taken it: the socket's own buffer
        # keeps the kernel sending meanwhile.
        await connection.write(chunk)
        progress(len(chunk))
    if body.length is not None and sent != body.length:
        raise AnswerCut(f"the file answer changed while it was sent: {sent} of {body.length} bytes")
    return sent


async def body_chunks(body, size=CHUNK):
    """The chunks of a FileBody, or of an executor's stream, which is told each one was `taken`
    when the next is asked for (its consumer has sent it by then)."""
    if isinstance(body, FileBody):
        # Read on the loop: a file just written is read from the page cache
        for chunk in body.chunks(size):
            yield chunk
        return
    while (chunk := await body.next()) is not None:
        yield chunk
        body.taken(len(chunk))
