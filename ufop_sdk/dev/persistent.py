"""``POST /pfop`` and ``GET /status/get/prefop`` in ``dev``, as Qiniu's API host answers them.

Both are signed with the account's management token when credentials are
set (see qiniu_auth.py), and every answer, errors too, is JSON with the
``X-Reqid`` header the official SDK requires.
"""

from urllib.parse import urlsplit

from ..errors import BadRequest, Forbidden, NotFound, UfopError
from ..http.handlers import JsonHandler
from .answers import QiniuAnswers
from .buckets import NoSuchKey
from .jobs import Job

FORCED = ("1", "true")


class PlatformHandler(QiniuAnswers, JsonHandler):
    """A handler of the platform's API: X-Reqid on every answer, the management token checked first."""

    def prepare(self):
        credentials = self.server.platform.credentials
        if credentials is not None:
            credentials.check_management(self.request.headers.get("Authorization"), self.request.uri,
                                         self.request.body, self.request.headers.get("Content-Type"))

    def required(self, name, arguments, strip=True):
        value = arguments(name, "", strip=strip)
        if not value.strip():
            raise BadRequest(f"the {name!r} field is missing")
        return value


class PfopHandler(PlatformHandler):
    """Starts a persistent job: each of `fops` (``;``-separated) on the bucket's key."""

    def post(self):
        platform = self.server.platform
        fields = self.get_body_argument
        if fields("workflowTemplateID", ""):
            raise BadRequest("dev runs fops, not workflow templates: send 'fops'")
        bucket = platform.buckets[self.required("bucket", fields)]
        key = self.required("key", fields, strip=False)  # " a.txt " is a key of its own
        fops = [fop for fop in self.required("fops", fields).split(";") if fop.strip()]
        if not fops:
            raise BadRequest("'fops' holds no fop")
        try:
            bucket.file(key)
        except NotFound:
            raise NoSuchKey(f"no such key {key!r} in bucket {bucket.name!r}") from None
        notify_url = fields("notifyURL", "").strip() or None
        if notify_url:
            try:
                self.server.fetcher.policy.check_url(notify_url)
            except UfopError as exc:
                raise BadRequest(f"notifyURL: {exc}") from None
        job = Job.new(bucket.name, key, fops, self.request_id, pipeline=fields("pipeline", ""),
                      notify_url=notify_url, force=fields("force", "") in FORCED)
        platform.runner.start(job, platform.buckets.url(bucket, key, self.request))
        self.finish({"persistentId": job.id})


class StatusHandler(PlatformHandler):
    """A persistent job's status, in Qiniu's shape (jobs.py)."""

    def get(self):
        self.finish(self.server.platform.jobs.get(self.required("id", self.get_query_argument)).status())


class PlaygroundJobsHandler(PfopHandler):
    """``/_dev/jobs``, the playground's: GET lists every job, newest first; POST starts one as
    ``/pfop`` does, unsigned (the playground is dev's own page and holds no secret key)."""

    def prepare(self):
        """Unsigned, so refused to other sites' pages: a form on any page the developer opens could
        otherwise start jobs whose saveas (force=1) overwrites the bucket's files."""
        origin = self.request.headers.get("Origin")
        if self.request.method == "POST" and origin and urlsplit(origin).netloc != self.request.host:
            raise Forbidden(f"jobs are started from dev's own page, not from {origin}")

    def get(self):
        self.finish({"jobs": [{**job.status(), "created": job.created} for job in self.server.platform.jobs]})
