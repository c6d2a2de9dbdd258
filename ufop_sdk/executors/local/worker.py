"""The server's side of one local worker process: its socket, its process, and the job it runs.

A worker runs one job at a time: jobs wait in the pool's one queue and go
to the first worker that is free, so a short job never waits behind a long
one in a busy worker's socket. The one exception is a job sent ahead to a
worker running a light processor's job (pace.py): it waits there, and its
timeout starts when that job is answered; if that job streams its answer
instead, the worker returns it unrun, and it goes back to the head of the
queue. Otherwise a job's timeout starts when it is sent. An
async processor's jobs are the exception: a worker runs up to its
concurrency of them at once (worker_loop.py), each known by an id, and each
with its own deadline, its timeout and CANCEL_GRACE (the worker answers 504
itself at the timeout; past the grace its loop is stuck, and it is killed).

Each worker leads a session of its own, and its death is noticed from the
process itself (a pidfd the loop watches), not only from end-of-file on its
socket, which a child it forked may hold open. Killing a worker kills its
process group and every descendant that can be found.
"""

import array
import asyncio
import functools
import itertools
import os
import signal
import socket
import subprocess
import threading
import time

from ...app.bodies import FileBody
from ...app.jobs import CANCEL_GRACE
from . import descendants, protocol
from .streams import WorkerStream

SEND_BUFFER = 4 << 20
INITIAL_BUFFER = 64 << 10
MIN_FREE = 16 << 10
SHRINK_ABOVE = 4 << 20


class WorkerLost(Exception):
    """The worker's socket closed before it was ready: it died, or it was killed."""


class Entry:
    """A Job's place in the pool: its timeout, the Future awaiting its Reply, when it queued and started.

    A job of None is a health check; `checking` is the processor whose health() it runs now.
    """

    __slots__ = ("job", "timeout", "future", "queued", "started", "timed_out", "checking")
    is_async = False

    def __init__(self, job, timeout, future):
        self.job = job
        self.timeout = timeout
        self.future = future
        self.queued = time.monotonic()
        self.started = None
        self.timed_out = False
        self.checking = None


class AsyncEntry(Entry):
    """An async processor's job: its id on its worker, its deadline, and, if its worker was killed
    for another job's sake, that job's processor (`cut_short_by`)."""

    __slots__ = ("id", "deadline", "cut_short_by")
    is_async = True

    def __init__(self, job, timeout, future):
        super().__init__(job, timeout, future)
        self.id = None
        self.deadline = None
        self.cut_short_by = None


class WorkerProcess:
    """One worker process and its socket. Create with `start`; the supervisor (supervisor.py) watches it.

    `supervisor.entry_answered(worker, entry, header, body)` runs for each answer,
    `supervisor.worker_lost(worker, running_entry)` once, when the socket closes,
    and `supervisor.worker_exited(worker, exit_code)` once, when the process has
    exited (and been reaped). `gone` is a Future done at that point.
    """

    def __init__(self, process, sock, generation, supervisor):
        self.process = process
        self.socket = sock
        self.generation = generation
        self.supervisor = supervisor
        self.running = None
        self.ahead = None  # the Entry sent ahead, to run once `running` is answered (pace.py)
        self.async_entries = {}  # id -> AsyncEntry: one async processor's jobs, running at once
        self._async_ids = itertools.count()
        self.ready = asyncio.get_running_loop().create_future()
        self.gone = asyncio.get_running_loop().create_future()
        self.deadline = None
        self.timed_out = False
        self.retired = False
        self.lost = False
        self.setup_failures = {}
        self.transport = None
        self.fds_socket = None  # where the worker sends file answers' descriptors
        self.stream = None  # the WorkerStream of the answer it is streaming
        self._pidfd = None

    @classmethod
    async def start(cls, command, generation, supervisor):
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        fds_parent, fds_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        # Room for a whole in-memory input in the socket, so sending it takes one
        # call and no copy in this process (the kernel caps it at wmem_max).
        parent.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        # Popen plus a pidfd on the loop (_watch_exit) rather than asyncio.create_subprocess_exec:
        # measured (2 shared vCPU, medians of 20) the spawn call takes 0.35 ms with Popen, 0.43 ms with
        # asyncio and its PidfdChildWatcher, 2.5 ms with 3.11's default ThreadedChildWatcher (a
        # thread per worker), against 94 ms from spawn to a ready worker; no job pays for either.
        # asyncio's watchers reap at once, and the group must be killed before the pid is reaped
        # (_exited), while it still names this worker; the watcher API is deprecated in 3.12.
        # billiard's pool forks this process (its loop, threads, sockets) or spawns with pickled
        # arguments; a worker here is a fresh interpreter that loads the project itself, handed its sockets.
        try:
            process = subprocess.Popen(
                [*command, "--fd", str(child.fileno()), "--fds-fd", str(fds_child.fileno())],
                pass_fds=[child.fileno(), fds_child.fileno()], start_new_session=True)
        except BaseException:
            parent.close()
            fds_parent.close()
            raise
        finally:
            child.close()
            fds_child.close()
        worker = cls(process, parent, generation, supervisor)
        fds_parent.setblocking(False)
        worker.fds_socket = fds_parent
        worker._watch_exit()
        worker.transport, _ = await asyncio.get_running_loop().create_unix_connection(
            lambda: FrameReader(worker), sock=parent)
        return worker

    @property
    def pid(self):
        return self.process.pid

    @property
    def busy(self):
        return self.running is not None or bool(self.async_entries)

    def can_hold(self, job):
        """Can `job` be sent ahead, to run after the plain job this worker runs? Only a plain job
        whose input is in memory, and only one."""
        running = self.running
        return (not self.lost and running is not None and running.job is not None and self.ahead is None
                and self.stream is None and job is not None and job.file is None and job.concurrency is None)

    def can_take(self, job):
        """Free for `job`? A file's descriptor only goes out when nothing is buffered before it,
        so that it travels with the first byte of its frame. A worker running async jobs takes
        only more of the same processor's, up to its concurrency (see `shares`)."""
        if self.lost or self.running is not None:
            return False
        if self.async_entries and not self.shares(job):
            return False
        return job is None or job.file is None or not self.transport.get_write_buffer_size()

    def shares(self, job):
        """Does this worker run jobs of `job`'s async processor, fewer than its concurrency?"""
        entries = self.async_entries
        return (bool(entries) and job is not None and job.concurrency is not None
                and len(entries) < job.concurrency
                and next(iter(entries.values())).job.processor == job.processor)

    def send(self, entry):
        """Send `entry`'s frame; False if it must wait (a descriptor, and the socket is full)."""
        if entry.is_async:
            return self._send_async(entry)
        job = entry.job
        if job is None:
            header, body = protocol.HEALTH_HEADER, b""
        else:
            header, body = protocol.job_header(job), job.body or b""
        if not self._write_frame(header, body, job):
            return False
        if self.running is not None:
            self.ahead = entry
            return True
        entry.started = time.monotonic()
        self.deadline = entry.started + entry.timeout
        self.running = entry
        return True

    def _write_frame(self, header, body, job):
        """Write one frame, with `job`'s input descriptor if it has one; False if it must wait."""
        buffers = [protocol.encode(header, body), body]
        if not self.transport.get_write_buffer_size():
            # Straight to the socket: header and body in one call and no copy,
            # and a descriptor with the frame's first byte. The transport
            # only takes what does not fit.
            fds = [job.file.fileno()] if job is not None and job.file is not None else []
            ancillary = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds))] if fds else []
            try:
                sent = self.socket.sendmsg(buffers, ancillary)
            except (BlockingIOError, InterruptedError):
                if fds:  # hardly ever: a free worker has read all it was sent
                    return False  # the next answer or job dispatches again; the queue timeout bounds it
                sent = 0
            except OSError:
                # The worker is gone (EPIPE) and the loop has not said so yet:
                # close now, so its connection_lost sends `entry` elsewhere.
                self.lost = True
                self.transport.abort()
                return False
            buffers = _unsent(buffers, sent)
        if buffers:
            self.transport.writelines(buffers)
        return True

    def _send_async(self, entry):
        entry.id = next(self._async_ids)
        job = entry.job
        if not self._write_frame(protocol.async_job_header(job, entry.id), job.body or b"", job):
            return False
        entry.started = time.monotonic()
        entry.deadline = entry.started + entry.timeout + CANCEL_GRACE
        self.async_entries[entry.id] = entry
        entry.future.add_done_callback(functools.partial(self._abandoned, entry))
        return True

    def _abandoned(self, entry, future):
        """A running async job's caller gave up (its client left): cancel its coroutine. The worker
        still answers it, which frees its place."""
        if future.cancelled() and self.async_entries.get(entry.id) is entry:
            self.tell(protocol.cancel_header(entry.id))

    def _async_answered(self, header, body):
        if "file" in header:  # its descriptor is on the second socket, whether or not its entry waits
            body = self._file_answer(header["file"])
        entry = self.async_entries.pop(header["id"], None)
        if entry is not None:
            self.supervisor.entry_answered(self, entry, header, body)
        elif not isinstance(body, bytes):
            body.close()

    def late_async_entries(self, now):
        """The async jobs past their deadline at `now`: their coroutine does not yield to the loop."""
        return [entry for entry in self.async_entries.values() if now > entry.deadline]

    def take_async_entries(self):
        """Every async job it runs, forgotten here (the worker is gone)."""
        entries, self.async_entries = list(self.async_entries.values()), {}
        return entries

    def frame_received(self, header, body):
        if not self.ready.done():
            self.ready.set_result(header)
            return
        if "id" in header:
            self._async_answered(header, body)
            return
        entry = self.running
        op = header["op"]
        if op == "chunk":
            self.restart_clock()
            self.stream.chunk(body)
        elif op == "end":
            self.stream.end(header["error"])
            self.stream = None
            self._free()
            self.supervisor.worker_free(self)
        elif op == "checking":
            entry.checking = header["processor"]
        elif op == "returned":  # the job sent ahead, unrun: this worker streams an answer
            returned = self.take_ahead()
            if returned is not None:
                self.supervisor.entry_returned(returned)
        elif "stream" in header:  # a streamed answer: the worker stays busy until its end
            body = self.stream = WorkerStream(self, header["stream"]["length"])
            self.restart_clock()
            self.supervisor.entry_answered(self, entry, header, body)
        else:
            if "file" in header:
                body = self._file_answer(header["file"])
            self._free()
            self.supervisor.entry_answered(self, entry, header, body)

    def _file_answer(self, place):
        """The file whose descriptor the worker sent on its second socket just before this frame."""
        _, fds, _, _ = socket.recv_fds(self.fds_socket, 1, 1, socket.MSG_CMSG_CLOEXEC)
        file = os.fdopen(fds[0], "rb")
        file.seek(place["offset"])
        return FileBody(file, place["length"])

    def _free(self):
        """The running job is answered: the job sent ahead, if any, runs from now on."""
        entry, self.ahead = self.ahead, None
        self.running = entry
        self.deadline = None
        if entry is not None:
            entry.started = time.monotonic()
            self.deadline = entry.started + entry.timeout

    def take_ahead(self):
        """The job sent ahead, forgotten here (the worker is gone before it ran), or None."""
        entry, self.ahead = self.ahead, None
        return entry

    def tell(self, header):
        """Send the worker a frame of the server's own (a stream's ``more`` or ``cancel``)."""
        if not self.lost and self.transport is not None and not self.transport.is_closing():
            self.transport.write(protocol.encode(header))

    def restart_clock(self):
        """The running job's timeout counts again from now (a stream made progress)."""
        if self.running is not None:
            self.deadline = time.monotonic() + self.running.timeout

    def connection_lost(self):
        self.lost = True
        if not self.ready.done():
            self.ready.set_exception(WorkerLost())
        entry, self.running = self.running, None
        self.deadline = None
        if self.stream is not None:  # its entry was answered: the stream fails, not the entry
            self.stream.failed("the worker ran past its timeout" if self.timed_out else "the worker died")
            self.stream, entry = None, None
        self.supervisor.worker_lost(self, entry)

    def kill(self):
        """SIGKILL the worker, its process group and every descendant found below it."""
        if self.process.returncode is not None:
            return  # reaped: its pid, and so its group's id, may be another's now
        below = descendants.tree(self.pid)
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except OSError:
            pass  # the group is empty
        descendants.kill(below)

    def close(self):
        """Close the socket: the worker sees end-of-file after its job, and exits."""
        self.retired = True
        if self.transport is not None:
            self.transport.close()
        if self.fds_socket is not None:
            self.fds_socket.close()

    def _watch_exit(self):
        """Call `_exited` once the process has exited (not yet reaped, so its pid stays its own)."""
        loop = asyncio.get_running_loop()
        try:
            self._pidfd = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # before Linux 5.3: a thread waits instead
            threading.Thread(target=self._wait_in_thread, args=(loop,), daemon=True).start()
        else:
            loop.add_reader(self._pidfd, self._exited)

    def _wait_in_thread(self, loop):
        try:
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        try:
            loop.call_soon_threadsafe(self._exited)
        except RuntimeError:
            pass  # the loop has closed: nothing waits for this worker any more

    def _exited(self):
        if self._pidfd is not None:
            asyncio.get_running_loop().remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self.kill()  # what it left in its group
        code = self.process.poll()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.abort()  # a child it forked may hold its socket: do not wait for end-of-file
        if not self.gone.done():
            self.gone.set_result(code)
        self.supervisor.worker_exited(self, code)


def _unsent(buffers, sent):
    """What of `buffers` is left after the first `sent` bytes went out."""
    for index, buffer in enumerate(buffers):
        if sent < len(buffer):
            return [memoryview(buffer)[sent:], *buffers[index + 1:]]
        sent -= len(buffer)
    return []


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

    def _grow(self, size, start=0):
        # A new buffer rather than a resize: the loop may still hold a view of the old one.
        bigger = bytearray(max(size, INITIAL_BUFFER))
        bigger[:self.filled - start] = memoryview(self.buffer)[start:self.filled]
        self.buffer = bigger

    def connection_lost(self, exc):
        self.worker.connection_lost()
