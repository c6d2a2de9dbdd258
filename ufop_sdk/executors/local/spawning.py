"""A local worker process's start and end: spawned in a session of its own with its two sockets,
its exit noticed from the process itself, and killed with everything below it.

Its death is noticed from a pidfd the loop watches, not only from end-of-file
on its socket, which a child it forked may hold open. Killing a worker kills
its process group and every descendant that can be found.
"""

import asyncio
import os
import signal
import socket
import subprocess
import threading

from . import descendants

SEND_BUFFER = 4 << 20


def spawn(command):
    """Start `command` with a socket pair for frames and one for descriptors: (Popen, the server's
    frames socket, the server's descriptors socket, non-blocking)."""
    parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    fds_parent, fds_child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    # Room for a whole in-memory input in the socket, so sending it takes one
    # call and no copy in this process (the kernel caps it at wmem_max).
    parent.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
    # Popen plus a pidfd on the loop (ExitWatch) rather than asyncio.create_subprocess_exec:
    # measured (2 shared vCPU, medians of 20) the spawn call takes 0.35 ms with Popen, 0.43 ms with
    # asyncio and its PidfdChildWatcher, 2.5 ms with 3.11's default ThreadedChildWatcher (a
    # thread per worker), against 94 ms from spawn to a ready worker; no job pays for either.
    # asyncio's watchers reap at once, and the group must be killed before the pid is reaped
    # (on exit), while it still names this worker; the watcher API is deprecated in 3.12.
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
    fds_parent.setblocking(False)
    return process, parent, fds_parent


def kill_tree(process):
    """SIGKILL `process` (a Popen leading its own session), its group and every descendant found
    below it."""
    if process.returncode is not None:
        return  # reaped: its pid, and so its group's id, may be another's now
    below = descendants.tree(process.pid)
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except OSError:
        pass  # the group is empty
    descendants.kill(below)


class ExitWatch:
    """Calls `on_exit()` on the running loop once process `pid` has exited, not yet reaped (so its
    pid, and its group's, still name it)."""

    def __init__(self, pid, on_exit):
        self.pid = pid
        self.on_exit = on_exit
        self.loop = asyncio.get_running_loop()
        try:
            self._pidfd = os.pidfd_open(pid)
        except (AttributeError, OSError):  # before Linux 5.3: a thread waits instead
            self._pidfd = None
            threading.Thread(target=self._wait_in_thread, daemon=True).start()
        else:
            self.loop.add_reader(self._pidfd, self._exited)

    def _wait_in_thread(self):
        try:
            os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOWAIT)
        except ChildProcessError:
            pass
        try:
            self.loop.call_soon_threadsafe(self._exited)
        except RuntimeError:
            pass  # the loop has closed: nothing waits for this worker any more

    def _exited(self):
        if self._pidfd is not None:
            self.loop.remove_reader(self._pidfd)
            os.close(self._pidfd)
            self._pidfd = None
        self.on_exit()
