"""The processes a worker's processors start, so that none outlives its request.

A worker makes itself its descendants' subreaper: a process orphaned below
it (``sleep 30 &`` from a shell, a daemon's double fork) becomes its child
instead of PID 1's. So every descendant is in the worker's tree, and after
each job the worker kills and reaps those the job started, leaving alone the
ones that existed when setup() had finished (a processor may keep a helper
across requests). The server uses `tree` to kill a worker's whole tree.

Linux only (``/proc``, ``prctl``); elsewhere nothing is tracked.
"""

import ctypes
import os
import signal

PR_SET_CHILD_SUBREAPER = 36
# Rounds of kill-and-reap after a job: each catches what was orphaned to the
# worker, or forked, while the round before was killing.
KILL_ROUNDS = 8


def track_descendants():
    """Become this process's descendants' subreaper and track them: a Descendants, or an
    Untracked that does nothing where ``/proc`` is missing."""
    try:
        tracker = Descendants()
    except OSError:
        return Untracked()
    become_subreaper()
    return tracker


def become_subreaper():
    """Make orphans below this process its children; False where that is not possible."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def children(pid):
    """The pids of `pid`'s children (every thread's), [] once it is gone."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    listed = b" ".join(_read(f"/proc/{pid}/task/{thread}/children") for thread in threads)
    return [int(child) for child in listed.split()]


def tree(pid):
    """Every descendant of `pid` that can be found, parents before their children."""
    found = []
    level = children(pid)
    while level:
        found += level
        level = [grandchild for child in level for grandchild in children(child)]
    return found


def kill(pids):
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass  # already gone


def _read(path):
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError:
        return b""


class Descendants:
    """This process's children and what is below them; see the module's docstring.

    Checking costs two system calls per job while the worker has one thread
    and no new child: the children of a single-threaded process are one
    ``/proc`` file, kept open and read again from its start.
    """

    def __init__(self):
        pid = os.getpid()
        self._threads = os.open(f"/proc/{pid}/task", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._main_children = os.open(f"/proc/{pid}/task/{pid}/children", os.O_RDONLY | os.O_CLOEXEC)
        self.kept = set()

    def keep_current(self):
        """What runs now lives on after jobs (called once setup() has run)."""
        self.kept = set(self._children())

    def kill_new(self):
        """Kill (SIGKILL) and reap every descendant the last job started."""
        for _ in range(KILL_ROUNDS):
            current = self._children()
            self.kept.intersection_update(current)  # a helper that ended no longer guards its pid
            new = [pid for pid in current if pid not in self.kept]
            if not new:
                return
            for pid in new:  # what one forks while this kills is orphaned to us: the next round's
                kill([pid, *tree(pid)])
            for pid in new:
                _reap(pid)

    def kill_all(self):
        """Kill and reap every descendant, helpers too (the worker is exiting)."""
        self.kept = set()
        self.kill_new()

    def _children(self):
        # A directory's link count is two plus its entries: one entry, one thread.
        if os.fstat(self._threads).st_nlink <= 3:
            return [int(pid) for pid in os.pread(self._main_children, 1 << 16, 0).split()]
        return children(os.getpid())


class Untracked:
    """Descendants' interface where they cannot be tracked: nothing is killed."""

    def keep_current(self):
        pass

    def kill_new(self):
        pass

    def kill_all(self):
        pass


def _reap(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass  # the processor reaped it itself
