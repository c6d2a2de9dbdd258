"""What ``dev`` emulates of the Qiniu platform: its buckets, the account's credentials, persistent jobs."""

import logging
import os

from .qiniu_auth import Credentials

log = logging.getLogger("ufop_sdk.dev")


class Platform:
    """`server.platform` in ``dev``: the buckets, and the credentials signatures are checked with.

    The credentials are read from the environment at each check, so an edit
    of the project's ``.env`` counts at the next reload, as settings do.
    """

    def __init__(self, buckets):
        self.buckets = buckets
        if self.credentials is None:
            log.warning("QINIU_ACCESS_KEY and QINIU_SECRET_KEY are unset: pfop, status and upload "
                        "requests are accepted with any signature")

    @property
    def credentials(self):
        return Credentials.from_environment(os.environ)
