"""What ``dev`` emulates of the Qiniu platform: its buckets, the account's credentials, persistent jobs."""

import logging
import os

from .job_runner import JobRunner
from .jobs import JobStore
from .qiniu_auth import Credentials

log = logging.getLogger("ufop_sdk.dev")


class Platform:
    """`server.platform` in ``dev``: the buckets, the credentials signatures are checked with, and
    the persistent jobs (`jobs`, started by `runner`).

    The credentials are read from the environment at each check, so an edit
    of the project's ``.env`` counts at the next reload, as settings do.
    """

    def __init__(self, buckets, server):
        self.buckets = buckets
        self.jobs = JobStore(buckets)
        self.runner = JobRunner(server, self.jobs)
        if self.credentials is None:
            log.warning("QINIU_ACCESS_KEY and QINIU_SECRET_KEY are unset: pfop, status and upload "
                        "requests are accepted with any signature")

    @property
    def credentials(self):
        return Credentials.from_environment(os.environ)
