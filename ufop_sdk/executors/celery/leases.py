"""A streaming task's lease on time: how a long answer to a slow client outlives its task's time limit.

The task's time limits (the processor's timeout: soft, then hard a second
later) cover process(). A file or streamed answer is then sent for as long
as it makes progress: while it streams, its pool child holds a lease, a
file whose modification time is the moment by which it promises to make
progress (the next chunk pushed, or credit come). The pool (transport.py's
QuickPool, in the worker's main process) skips the soft limit of a child
whose lease is current and puts off the hard one until the lease runs out;
a child past its lease is killed, as past its hard limit.

A file per child, named by its pid, in a folder named by the worker's pid:
the worker and its children find it without being told.
"""

import os
import tempfile
import time
from pathlib import Path


def _folder(worker_pid):
    return Path(tempfile.gettempdir()) / f"ufop-leases-{worker_pid}"


class Lease:
    """This pool child's lease, held while it streams an answer (see the module's docstring)."""

    def __init__(self):
        self.path = _folder(os.getppid()) / str(os.getpid())

    def hold(self, seconds):
        """Promise progress within `seconds` from now. Without the worker's folder (a pool other
        than ours made this process) there is no lease: the task's time limits hold."""
        until = time.time() + seconds
        try:
            os.utime(self.path, (until, until))
        except FileNotFoundError:
            try:
                self.path.touch()
                os.utime(self.path, (until, until))
            except FileNotFoundError:
                pass

    def end(self):
        self.path.unlink(missing_ok=True)


def lease_left(child_pid):
    """Seconds left on the lease of the child `child_pid` of this process (the worker); 0 for none."""
    try:
        until = os.stat(_folder(os.getpid()) / str(child_pid)).st_mtime
    except OSError:
        return 0.0
    return max(0.0, until - time.time())


def make_lease_folder():
    """This worker's lease folder (only it and its children may write there)."""
    folder = _folder(os.getpid())
    folder.mkdir(mode=0o700, exist_ok=True)
    status = folder.stat()
    # /tmp is shared: a folder someone else made under this name could hand out leases past time limits
    if status.st_uid != os.getuid() or status.st_mode & 0o077:
        raise PermissionError(f"{folder} is not this worker's own (owner {status.st_uid}, mode "
                              f"{status.st_mode & 0o777:o}): remove it")


def forget_leases():
    """Remove this worker's lease folder (when its pool stops)."""
    folder = _folder(os.getpid())
    for path in folder.glob("*"):
        path.unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:
        pass
