"""The server's side of a worker's streamed answer: the chunks as they arrive, and the credit sent back.

The HTTP writer awaits `next()` and reports with `taken(n)` what its client
has taken; every QUANTUM bytes taken go back to the worker as a ``more``
frame (see answers.py). While the worker has spent its credit it waits on
the client, not on its processor, so its deadline is lifted until more
credit goes out.
"""

import asyncio
import collections

from ...app.bodies import AnswerCut
from .answers import WINDOW

QUANTUM = WINDOW // 4


class WorkerStream:
    """Chunks of one streamed answer from `worker`, in order; `length` when the worker knows it (a file).
    `number` is the worker's for this stream, on every frame sent back about it."""

    def __init__(self, worker, length=None, number=None):
        self.worker = worker
        self.length = length
        self.number = number
        self.chunks = collections.deque()
        self.waiter = None
        self.ended = False
        self.error = None
        self.outstanding = 0  # sent by the worker, not yet taken by the client
        self.untold = 0  # taken by the client, not yet told to the worker

    # From the worker (WorkerProcess.frame_received)

    def chunk(self, data):
        self.chunks.append(data)
        self.outstanding += len(data)
        if self.outstanding >= WINDOW:
            self.worker.deadline = None  # it waits for our credit, not on its processor
        self._wake()

    def end(self, error=None):
        self.ended = True
        self.error = AnswerCut(error) if error else None
        self._wake()

    def failed(self, error):
        """The worker died (or was killed past its deadline) before its ``end``."""
        if not self.ended:
            self.end(str(error))

    # For the HTTP writer

    async def next(self):
        """The next chunk; None at the end. Raises AnswerCut if the answer was cut off."""
        while not self.chunks and not self.ended:
            self.waiter = asyncio.get_running_loop().create_future()
            await self.waiter
        if self.chunks:
            return self.chunks.popleft()
        if self.error is not None:
            raise self.error
        return None

    def taken(self, nbytes):
        """The client has taken `nbytes` more: credit goes back to the worker by QUANTUM."""
        self.outstanding -= nbytes
        self.untold += nbytes
        if self.untold >= QUANTUM and not self.ended:
            self.worker.tell({"op": "more", "bytes": self.untold, "stream": self.number})
            self.worker.restart_clock()
            self.untold = 0

    def close(self):
        """The writer is done with it: if the worker still produces, its client left: cancel it."""
        self.chunks.clear()
        if not self.ended:
            self.worker.tell({"op": "cancel", "stream": self.number})

    def _wake(self):
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)
