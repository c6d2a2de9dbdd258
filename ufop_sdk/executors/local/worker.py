"""The server's side of one local worker process: its socket, its process, and the job it runs.

A worker runs one job at a time: jobs wait in the pool's one queue and go
to the first worker that is free, so a short job never waits behind a long
one in a busy worker's socket. The one exception is a job sent ahead to a
worker running a light processor's job (pace.py): it waits there, and its
timeout starts when that job is answered; if that job streams its answer
instead, the worker returns it unrun, and it goes back to the head of the
queue. Otherwise a job's timeout starts when it is sent. An async
processor's jobs run several at once (async_jobs.py). The process itself is
spawning.py's: started in a session of its own, watched, killed whole.
"""

import array
import asyncio
import functools
import os
import socket
import time

from ...app.bodies import FileBody
from . import protocol
from .async_jobs import AsyncJobs
from .frame_reader import FrameReader
from .pace import RUNNING_AT_MOST
from .spawning import ExitWatch, kill_tree, spawn
from .streams import WorkerStream


class WorkerLost(Exception):
    """The worker's socket closed before it was ready: it died, or it was killed."""


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
        self.async_jobs = AsyncJobs()
        self.ready = asyncio.get_running_loop().create_future()
        self.gone = asyncio.get_running_loop().create_future()
        self.deadline = None
        self.timed_out = False
        self.retired = False
        self.lost = False
        self.setup_failures = {}
        self.transport = None
        self.reader = None  # its FrameReader
        self.fds_socket = None  # where the worker sends file answers' descriptors
        self.stream = None  # the WorkerStream of the answer it is streaming

    @classmethod
    async def start(cls, command, generation, supervisor):
        process, sock, fds_socket = spawn(command)
        worker = cls(process, sock, generation, supervisor)
        worker.fds_socket = fds_socket
        ExitWatch(process.pid, worker._exited)
        worker.transport, worker.reader = await asyncio.get_running_loop().create_unix_connection(
            lambda: FrameReader(worker), sock=sock)
        return worker

    @property
    def pid(self):
        return self.process.pid

    @property
    def busy(self):
        return self.running is not None or bool(self.async_jobs)

    def can_hold(self, job):
        """Can `job` be sent ahead, to run after the plain job this worker runs? Only a plain job
        whose input is in memory, only one, and only behind a job that has run for less than
        RUNNING_AT_MOST so far (one that hangs would hold it until its timeout)."""
        running = self.running
        return (not self.lost and not self.timed_out and running is not None and running.job is not None
                and self.ahead is None and self.stream is None and job is not None and job.file is None
                and job.concurrency is None and time.monotonic() - running.started < RUNNING_AT_MOST)

    def can_take(self, job):
        """Free for `job`? A file's descriptor only goes out when nothing is buffered before it,
        so that it travels with the first byte of its frame. A worker running async jobs takes
        only more of the same processor's, up to its concurrency (AsyncJobs.shares)."""
        if self.lost or self.running is not None:
            return False
        if self.async_jobs and not self.async_jobs.shares(job):
            return False
        return job is None or job.file is None or not self.transport.get_write_buffer_size()

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
        job = entry.job
        if not self._write_frame(self.async_jobs.header(entry), job.body or b"", job):
            return False
        self.async_jobs.sent(entry)
        entry.future.add_done_callback(functools.partial(self._abandoned, entry))
        return True

    def _abandoned(self, entry, future):
        """A running async job's caller gave up (its client left): cancel its coroutine. The worker
        still answers it, which frees its place."""
        if future.cancelled() and self.async_jobs.runs(entry):
            self.tell(protocol.cancel_header(entry.id))

    def _async_answered(self, header, body):
        if "file" in header:  # its descriptor is on the second socket, whether or not its entry waits
            body = self._file_answer(header["file"])
        entry = self.async_jobs.answered(header)
        if entry is not None:
            self.supervisor.entry_answered(self, entry, header, body)
        elif not isinstance(body, bytes):
            body.close()

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
            stream = header["stream"]
            body = self.stream = WorkerStream(self, stream["length"], stream["number"])
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
        kill_tree(self.process)

    def close(self):
        """Close the socket: the worker sees end-of-file after its job, and exits."""
        self.retired = True
        if self.transport is not None:
            self.transport.close()
        if self.fds_socket is not None:
            self.fds_socket.close()

    def _exited(self):
        self.kill()  # what it left in its group
        code = self.process.poll()
        if self.transport is not None and not self.transport.is_closing():
            # What it wrote before it died is read first: the answer of a job it finished, before a job
            # sent ahead crashed it, must not be taken for that job dying.
            self.lost = True
            self.reader.read_left(self.socket)
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
