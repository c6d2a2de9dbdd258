"""`req.workdir`: a request's own temporary folder, made when first asked for, removed after its answer.

Each process makes its requests' folders inside one of its own,
``ufop-proc-<pid>`` under UFOP_SPOOL_DIR, so what a killed process left
(a timeout, a crash) can be found and removed: the local pool removes a
worker's folder when it has exited, and any process removes the folders of
processes that no longer run when it makes its own (a Celery child after the
one its time limit killed).
"""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

PREFIX = "ufop-proc-"


class Workdir:
    """A folder under `root` (UFOP_SPOOL_DIR; None: the system's temporary folder), made on first use."""

    def __init__(self, root=None):
        self.root = root
        self._path = None

    @property
    def path(self):
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix="ufop-work-", dir=process_folder(self.root)))
        return self._path

    def close(self):
        """Remove the folder and everything in it; never raises. An answer already opened from it
        (a FileBody) can still be read: its file is unlinked, not gone."""
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None


_made = {}  # (spool, pid) -> the folder this process made there


def process_folder(spool):
    """This process's folder under `spool` (made, and those of gone processes removed, the first time)."""
    key = (spool, os.getpid())
    if key not in _made:
        base = Path(spool or tempfile.gettempdir())
        remove_gone(base)
        folder = folder_of(base, os.getpid())
        folder.mkdir(exist_ok=True)
        atexit.register(shutil.rmtree, folder, True)  # a process that ends well takes its folder with it
        _made[key] = folder
    return _made[key]


def folder_of(spool, pid):
    """The folder the process `pid` makes its requests' folders in under `spool`."""
    return Path(spool or tempfile.gettempdir()) / f"{PREFIX}{pid}"


def remove_gone(spool):
    """Remove the folders of processes that no longer run; never raises."""
    try:
        folders = list(Path(spool).glob(f"{PREFIX}*"))
    except OSError:
        return
    for folder in folders:
        pid = folder.name[len(PREFIX):]
        if pid.isdecimal() and not _running(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _running(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's
    return True
