"""The server's reader of one worker's frames (the framing is protocol.py's)."""

import asyncio
import socket

from . import protocol

INITIAL_BUFFER = 64 << 10
MIN_FREE = 16 << 10
SHRINK_ABOVE = 4 << 20


class FrameReader(asyncio.BufferedProtocol):
    """Receives a worker's frames straight into one buffer (recv_into, no copies per read)."""

    def __init__(self, worker):
        self.worker = worker
        self.buffer = bytearray(INITIAL_BUFFER)
        self.filled = 0

    def get_buffer(self, sizehint):
        if len(self.buffer) - self.filled < MIN_FREE:
            self._grow(2 * len(self.buffer))
        return memoryview(self.buffer)[self.filled:]

    def buffer_updated(self, nbytes):
        self.filled += nbytes
        start = 0
        while self.filled - start >= protocol.PREFIX.size:
            header_length, body_length = protocol.PREFIX.unpack_from(self.buffer, start)
            header_end = start + protocol.PREFIX.size + header_length
            end = header_end + body_length
            if self.filled < end:
                if len(self.buffer) - start < end - start:
                    self._grow(end - start, start)
                    self.filled -= start
                    return
                break
            with memoryview(self.buffer) as view:
                header = protocol.decode_header(view[start + protocol.PREFIX.size:header_end])
                body = bytes(view[header_end:end])
            start = end
            self.worker.frame_received(header, body)
        if start:
            self.buffer[:self.filled - start] = self.buffer[start:self.filled]
            self.filled -= start
        if self.filled == 0 and len(self.buffer) > SHRINK_ABOVE:
            self.buffer = bytearray(INITIAL_BUFFER)

    def read_left(self, sock):
        """Take in what `sock` (the transport's own socket) holds now, without waiting."""
        while True:
            try:
                count = sock.recv_into(self.get_buffer(-1), 0, socket.MSG_DONTWAIT)
            except OSError:  # nothing more now (BlockingIOError), or the socket is gone
                return
            if not count:
                return
            self.buffer_updated(count)

    def _grow(self, size, start=0):
        # A new buffer rather than a resize: the loop may still hold a view of the old one.
        bigger = bytearray(max(size, INITIAL_BUFFER))
        bigger[:self.filled - start] = memoryview(self.buffer)[start:self.filled]
        self.buffer = bigger

    def connection_lost(self, exc):
        self.worker.connection_lost()
