"""The framing between the server and its local worker processes.

A frame is ``!IQ`` (header length, body length), a msgpack header (a map),
then the body bytes. Nothing is pickled: msgpack carries only plain data
(msgpack rather than JSON because it costs a tenth as much per frame), and
bodies are raw bytes. A large input's file descriptor travels beside its
frame (SCM_RIGHTS), not its bytes.
"""

import collections
import socket
import struct

import msgpack

PREFIX = struct.Struct("!IQ")


def encode(header, body=b""):
    """The frame's first part: prefix and header. Send `body` right after it."""
    encoded = msgpack.packb(header)
    return PREFIX.pack(len(encoded), len(body)) + encoded


def decode_header(data):
    """A frame's header: a map, or ValueError (a malformed or hostile frame)."""
    header = msgpack.unpackb(data)
    if not isinstance(header, dict):
        raise ValueError("a frame's header must be a map")
    return header


class FrameReceiver:
    """Reads frames from a blocking socket. Several may arrive in one read, and a
    frame whose header says ``"fd": true`` takes the next descriptor that arrived."""

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()
        self.fds = collections.deque()

    def next(self):
        """The next frame as (header, body, fd or None), or None at end-of-file."""
        while True:
            frame = self._parse()
            if frame is not None:
                return frame
            data, fds, _flags, _address = socket.recv_fds(self.sock, max(1 << 16, self._missing()), 8)
            if not data:
                return None
            self.buffer += data
            self.fds.extend(fds)

    def _missing(self):
        if len(self.buffer) < PREFIX.size:
            return PREFIX.size
        header_length, body_length = PREFIX.unpack_from(self.buffer)
        return PREFIX.size + header_length + body_length - len(self.buffer)

    def _parse(self):
        if len(self.buffer) < PREFIX.size:
            return None
        header_length, body_length = PREFIX.unpack_from(self.buffer)
        end = PREFIX.size + header_length + body_length
        if len(self.buffer) < end:
            return None
        header = decode_header(self.buffer[PREFIX.size:PREFIX.size + header_length])
        body = bytes(self.buffer[end - body_length:end])
        del self.buffer[:end]
        fd = self.fds.popleft() if header.get("fd") else None
        return header, body, fd


def send(sock, header, body=b""):
    """Send one frame on a blocking socket: header and body in one system call when they fit."""
    frame = encode(header, body)
    sent = sock.sendmsg([frame, body])
    if sent < len(frame):
        sock.sendall(frame[sent:])
        sent = len(frame)
    if sent - len(frame) < len(body):
        sock.sendall(memoryview(body)[sent - len(frame):])
