"""The framing between the server and its local worker processes.

A frame is ``!IQ`` (header length, body length), a JSON header, then the body
bytes. Nothing is pickled: headers are JSON and bodies are raw bytes. A large
input's file descriptor travels beside its frame (SCM_RIGHTS), not its bytes.
"""

import json
import socket
import struct

PREFIX = struct.Struct("!IQ")


def encode(header, body=b""):
    """The frame's first part: prefix and header. Send `body` right after it."""
    encoded = json.dumps(header, separators=(",", ":")).encode()
    return PREFIX.pack(len(encoded), len(body)) + encoded


def decode_header(data):
    return json.loads(data)


def receive(sock):
    """Read one frame from a blocking socket: (header, body, fds), or None at end-of-file."""
    data, fds, _flags, _address = socket.recv_fds(sock, 1 << 16, 1)
    if not data:
        return None
    buffer = bytearray(data)
    if not _read_at_least(sock, buffer, PREFIX.size):
        return None
    header_length, body_length = PREFIX.unpack_from(buffer)
    total = PREFIX.size + header_length + body_length
    if not _read_at_least(sock, buffer, total):
        return None
    header = json.loads(buffer[PREFIX.size:PREFIX.size + header_length])
    body = memoryview(buffer)[PREFIX.size + header_length:total]
    return header, body, fds


def send(sock, header, body=b""):
    """Send one frame on a blocking socket: header and body in one system call when they fit."""
    frame = encode(header, body)
    sent = sock.sendmsg([frame, body])
    if sent < len(frame):
        sock.sendall(frame[sent:])
        sent = len(frame)
    if sent - len(frame) < len(body):
        sock.sendall(memoryview(body)[sent - len(frame):])


def _read_at_least(sock, buffer, size):
    while len(buffer) < size:
        chunk = sock.recv(min(size - len(buffer), 1 << 20))
        if not chunk:
            return False
        buffer += chunk
    return True
