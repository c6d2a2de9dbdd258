"""Persistent jobs as ``dev`` keeps them: one fop per item, and the JSON Qiniu's status call answers.

Each job is a file ``<input bucket>/.ufop-dev/jobs/<id>.json``, rewritten
whole (aside, then renamed) at each change, so a status survives a reload
and a restart of ``dev``. A job still waiting or running when ``dev``
stopped is loaded as failed: nothing runs it any more.
"""

import contextlib
import json
import logging
import os
import secrets
import tempfile
import time

import attrs

from .buckets import STATE_FOLDER, NoSuchKey

DONE, WAITING, RUNNING, FAILED, CALLBACK_FAILED = 0, 1, 2, 3, 4
DESCRIPTIONS = {  # Qiniu's own words for each code
    DONE: "The fop was completed successfully",
    WAITING: "The fop is waiting for execution",
    RUNNING: "The fop is executing now",
    FAILED: "The fop is failed",
    CALLBACK_FAILED: "The callback is failed",
}
STOPPED = "dev stopped before this fop ended"

log = logging.getLogger("ufop_sdk.dev")


@attrs.define
class Item:
    cmd: str
    code: int = WAITING
    error: str | None = None
    hash: str | None = None
    key: str | None = None
    return_old: int = 0

    def status(self):
        status = {"cmd": self.cmd, "code": self.code, "desc": DESCRIPTIONS[self.code]}
        if self.code == FAILED:
            status["error"] = self.error
        if self.key is not None:
            status.update(hash=self.hash, key=self.key)
        return {**status, "returnOld": self.return_old}


@attrs.define
class Job:
    id: str
    bucket: str
    key: str
    items: list
    reqid: str
    pipeline: str = ""
    notify_url: str | None = None
    force: bool = False
    code: int = WAITING
    created: float = attrs.field(factory=time.time)

    @classmethod
    def new(cls, bucket, key, fops, reqid, **options):
        return cls(f"dev.{secrets.token_hex(12)}", bucket, key, [Item(fop) for fop in fops], reqid, **options)

    @property
    def finished(self):
        return self.code in (DONE, FAILED, CALLBACK_FAILED)

    def status(self, code=None):
        """The JSON of ``GET /status/get/prefop``, and of the notifyURL callback (with the `code`
        the job is about to have)."""
        code = self.code if code is None else code
        return {"id": self.id, "pipeline": self.pipeline, "code": code, "desc": DESCRIPTIONS[code],
                "reqid": self.reqid, "inputBucket": self.bucket, "inputKey": self.key,
                "items": [item.status() for item in self.items]}

    def record(self):
        return attrs.asdict(self)

    @classmethod
    def from_record(cls, record):
        return cls(**{**record, "items": [Item(**item) for item in record["items"]]})

    def stopped(self):
        """Mark what was left unfinished when dev stopped as failed: its fops, or else its callback."""
        for item in self.items:
            if item.code in (WAITING, RUNNING):
                item.code, item.error = FAILED, STOPPED
        # every fop ended well: only the callback was still being tried, and it never got through
        self.code = FAILED if any(item.code == FAILED for item in self.items) else CALLBACK_FAILED


class JobStore:
    """Every job of the buckets, by id, each saved in its input bucket's state folder."""

    def __init__(self, buckets):
        self.buckets = buckets
        self.jobs = {}
        for bucket in buckets:
            for path in sorted(_folder(bucket, create=False).glob("*.json")):
                self._load(path)

    def __iter__(self):
        """The jobs, newest first."""
        return iter(sorted(self.jobs.values(), key=lambda job: job.created, reverse=True))

    def get(self, job_id):
        try:
            return self.jobs[job_id]
        except KeyError:
            raise NoSuchKey(f"no such persistent job {job_id!r}") from None

    def save(self, job):
        self.jobs[job.id] = job
        folder = _folder(self.buckets[job.bucket], create=True)
        with tempfile.NamedTemporaryFile("w", dir=folder, prefix=".", suffix=".tmp", delete=False) as file:
            try:
                json.dump(job.record(), file, ensure_ascii=False)
            except BaseException:
                os.unlink(file.name)
                raise
        os.replace(file.name, folder / f"{job.id}.json")

    def _load(self, path):
        try:
            job = Job.from_record(json.loads(path.read_text("utf-8")))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            log.warning("%s: not a job dev can read (%s); skipped", path, exc)
            return
        self.jobs[job.id] = job
        if not job.finished:
            job.stopped()
            with contextlib.suppress(OSError):
                self.save(job)


def _folder(bucket, create):
    folder = (bucket.state if create else bucket.root / STATE_FOLDER) / "jobs"
    if create:
        folder.mkdir(exist_ok=True)
    return folder
