"""`req.workdir`: a request's own temporary folder, made when first asked for, removed after its answer."""

import shutil
import tempfile
from pathlib import Path


class Workdir:
    """A folder under `root` (UFOP_SPOOL_DIR; None: the system's temporary folder), made on first use."""

    def __init__(self, root=None):
        self.root = root
        self._path = None

    @property
    def path(self):
        if self._path is None:
            self._path = Path(tempfile.mkdtemp(prefix="ufop-work-", dir=self.root))
        return self._path

    def close(self):
        """Remove the folder and everything in it; never raises. An answer already opened from it
        (a FileBody) can still be read: its file is unlinked, not gone."""
        if self._path is not None:
            shutil.rmtree(self._path, ignore_errors=True)
            self._path = None
