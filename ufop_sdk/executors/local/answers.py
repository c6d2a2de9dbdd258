"""The worker's side of sending an answer: bytes in one frame, a file by its descriptor, a stream in chunks.

A file answer's descriptor goes to the server on the worker's second socket
(the server's reader of the first cannot take descriptors), just before
the frame that announces it; the server then sends the file to its client
itself, and nothing of it passes through this process.

A streamed answer is a ``reply`` frame with ``"stream": true``, then one
``chunk`` frame per piece and an ``end`` frame (with ``"error"`` when it
was cut off). At most WINDOW bytes are unacknowledged: past that the
worker waits for the server's ``more`` frame, sent as its client takes
the chunks, so a slow client paces the producer. A ``cancel`` frame (the
client left) stops it. Both name the stream's number, so one meant for an
earlier stream (it crossed that stream's ``end``) is skipped, even behind
the frame of a job sent ahead that streams in turn. A job the server sent
ahead (pool.py) that arrives during a stream is handed back unrun, in a
``returned`` frame: it would otherwise wait for the whole stream, while
another worker may be free.
"""

import array
import itertools
import logging
import os
import socket

from ...app.bodies import FileBody
from . import protocol

log = logging.getLogger("ufop_sdk.worker")

WINDOW = 4 << 20
_stream_numbers = itertools.count()  # this worker's streamed answers


class Cancelled(Exception):
    """The server cancelled the stream: its client left."""


def send_answer(sock, frames, fds_sock, response, limit, seconds):
    """Send `response` (a Response), which took `seconds` to make, to the server; `frames` reads its
    ``more`` and ``cancel`` frames."""
    body = response.body
    header = protocol.reply_header(response)
    header["seconds"] = seconds  # the job's own time, without the server's: how light it is (pace.py)
    if isinstance(body, bytes):
        protocol.send(sock, header, body)
    elif isinstance(body, FileBody) and fds_sock is not None:
        send_file(sock, fds_sock, header, body)
    else:
        _send_stream(sock, frames, header, body, limit)


def send_file(sock, fds_sock, header, body):
    """Send the FileBody `body`'s descriptor on `fds_sock`, then the frame `header` announcing it."""
    fd = body.file.fileno()
    fds_sock.sendmsg([b"f"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]))])
    header["file"] = {"offset": body.file.tell(), "length": body.length}
    protocol.send(sock, header)


def _send_stream(sock, frames, header, body, limit):
    number = next(_stream_numbers)
    header["stream"] = {"length": getattr(body, "length", None), "number": number}
    protocol.send(sock, header)
    credit = WINDOW
    sent = 0
    error = None
    try:
        for chunk in body.chunks():
            sent += len(chunk)
            if sent > limit:
                error = f"the answer grew past the limit of {limit} bytes (UFOP_MAX_OUTPUT_BYTES)"
                break
            credit = _wait_for_credit(sock, frames, credit, number)
            protocol.send(sock, {"op": "chunk"}, chunk)
            credit -= len(chunk)
    except Cancelled:
        error = "cancelled: the client left"
    except Exception as exc:  # noqa: BLE001 - the processor's iterator failed mid-answer
        log.exception("the streamed answer failed after %d bytes", sent)
        error = f"the streamed answer failed after {sent} bytes: {type(exc).__name__}: {exc}"
    protocol.send(sock, {"op": "end", "error": error, "bytes": sent})


def _wait_for_credit(sock, frames, credit, number):
    """`credit` plus what stream `number`'s ``more`` frames gave; waits while it is spent. Raises
    Cancelled, and BrokenPipeError when the server is gone. A job sent ahead is returned.

    (A ``more`` or ``cancel`` that crosses the ``end`` is read by the worker's loop, which skips it.)
    """
    while True:
        frame = frames.next(block=credit <= 0)
        if frame is None:
            if credit <= 0:
                raise BrokenPipeError("the server closed the socket")
            return credit
        header, _, fd = frame
        if header["op"] == "run":
            if fd is not None:
                os.close(fd)
            protocol.send(sock, protocol.RETURNED_HEADER)
        elif header.get("stream") != number:
            continue  # meant for an earlier stream
        elif header["op"] == "cancel":
            raise Cancelled()
        else:
            credit += header["bytes"]
