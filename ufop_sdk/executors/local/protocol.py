"""The framing between the server and its local worker processes.

A frame is ``!IQ`` (header length, body length), a msgpack header (a map),
then the body bytes. Nothing is pickled: msgpack carries only plain data
(msgpack rather than JSON because it costs a tenth as much per frame), and
bodies are raw bytes. A large input's file descriptor travels beside its
frame (SCM_RIGHTS), not its bytes. The frames of an async processor's job
carry its ``"id"`` (a worker runs several at once); a plain job's need none.
"""

import array
import collections
import select
import socket
import struct

import msgpack

from ...app.jobs import Reply

PREFIX = struct.Struct("!IQ")
READ_SIZE = 1 << 16  # what one read takes while a frame's header is not yet in
FDS_SPACE = socket.CMSG_SPACE(8 * 4)  # room for 8 descriptors beside one read


def encode(header, body=b""):
    """The frame's first part: prefix and header. Send `body` right after it."""
    encoded = msgpack.packb(header)
    return PREFIX.pack(len(encoded), len(body)) + encoded


def job_header(job):
    """The header of the frame that sends `job` (a Job); its input goes as the body or a descriptor."""
    header = job.to_wire()
    header["op"] = "run"
    header["fd"] = job.file is not None
    return header


HEALTH_HEADER = {"op": "health"}
RETURNED_HEADER = {"op": "returned"}  # the job sent ahead, handed back unrun


def reply_header(response):
    """The header of the frame that answers with `response` (a Response, or a Reply); its body follows."""
    header = Reply.wire_of(response)
    header["op"] = "reply"
    return header


def async_job_header(job, job_id):
    """`job_header` for an async processor's job: its id is on the frame, and on every frame that
    answers it, as the worker runs several at once."""
    header = job_header(job)
    header["id"] = job_id
    return header


def async_reply_header(response, job_id):
    """`reply_header` for the async job `job_id`."""
    header = reply_header(response)
    header["id"] = job_id
    return header


def cancel_header(job_id):
    """The header of the frame that cancels the async job `job_id` (its client left)."""
    return {"op": "cancel", "id": job_id}


def decode_header(data):
    """A frame's header: a map, or ValueError (a malformed or hostile frame)."""
    header = msgpack.unpackb(data)
    if not isinstance(header, dict):
        raise ValueError("a frame's header must be a map")
    return header


class FrameReceiver:
    """Reads frames from a blocking socket. Several may arrive in one read, and a
    frame whose header says ``"fd": true`` takes the next descriptor that arrived.

    Small reads fill a buffer until a frame's header is in; the rest of a large
    body is then read at its exact size, so the kernel copies it straight into
    the bytes the processor gets, instead of through the buffer.
    """

    def __init__(self, sock):
        self.sock = sock
        self.buffer = bytearray()
        self.fds = collections.deque()
        self.readable = select.poll()
        self.readable.register(sock, select.POLLIN)

    def next(self, block=True):
        """The next frame as (header, body, fd or None), or None at end-of-file (or, unless `block`,
        when no frame's header is in yet)."""
        while (lengths := self._lengths()) is None:
            if not block and not self.readable.poll(0):
                return None
            data = self._receive(READ_SIZE)
            if not data:
                return None
            self.buffer += data
        header_end, end = lengths
        header = decode_header(self.buffer[PREFIX.size:header_end])
        if len(self.buffer) >= end:
            with memoryview(self.buffer) as view:
                body = view[header_end:end].tobytes()
            del self.buffer[:end]
        else:
            parts = [self.buffer[header_end:]] if len(self.buffer) > header_end else []
            missing = end - len(self.buffer)
            self.buffer = bytearray()
            while missing:
                data = self._receive(missing)
                if not data:
                    return None
                parts.append(data)
                missing -= len(data)
            body = b"".join(parts)  # a body read in one piece is returned as it is, not copied
        fd = self.fds.popleft() if header.get("fd") else None
        return header, body, fd

    def _lengths(self):
        """Where the buffered frame's header and body end, once its header is in."""
        if len(self.buffer) < PREFIX.size:
            return None
        header_length, body_length = PREFIX.unpack_from(self.buffer)
        header_end = PREFIX.size + header_length
        return None if len(self.buffer) < header_end else (header_end, header_end + body_length)

    def _receive(self, size):
        try:
            return self._receive_now(size, socket.MSG_DONTWAIT)
        except BlockingIOError:
            # Wait in poll() for input only: a recv() blocked on the socket is also woken
            # each time the server reads this worker's answer (the kernel's write-space
            # wake-up), a second sleep per job: 1.7 context switches a job instead of 1.
            self.readable.poll()
            return self._receive_now(size, 0)

    def _receive_now(self, size, flags):
        # Close-on-exec: an input's descriptor is the processor's, not its children's.
        # (socket.recv_fds drops its flags before Python 3.12, hence recvmsg.)
        data, ancillary, _, _ = self.sock.recvmsg(size, FDS_SPACE, flags | socket.MSG_CMSG_CLOEXEC)
        for level, kind, fds in ancillary:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                self.fds.extend(array.array("i", fds[:len(fds) - len(fds) % 4]))
        return data


def send(sock, header, body=b""):
    """Send one frame on a blocking socket: header and body in one system call when they fit."""
    frame = encode(header, body)
    sent = sock.sendmsg([frame, body])
    if sent < len(frame):
        sock.sendall(frame[sent:])
        sent = len(frame)
    if sent - len(frame) < len(body):
        sock.sendall(memoryview(body)[sent - len(frame):])
