"""Running persistent jobs in ``dev``: each fop in the background through the pipeline path of
``/handler``, at most MAX_RUNNING_FOPS at a time, then the notifyURL callback."""

import asyncio
import contextlib
import json
import logging

from ..app.bodies import close_body
from ..errors import UfopError
from .jobs import CALLBACK_FAILED, DONE, FAILED, RUNNING
from .pipelines import platform_headers, run_pipeline
from .qiniu_auth import etag
from .saveas import save_answer, split_saveas

MAX_RUNNING_FOPS = 3  # the fops of all jobs running at once; the rest wait, code 1
NOTIFY_ATTEMPTS = 3
NOTIFY_PAUSE_SECONDS = 1.0  # before the second attempt; twice that before the third
NOTIFY_TIMEOUT_SECONDS = 10.0

log = logging.getLogger("ufop_sdk.dev")


class FopFailed(UfopError):
    pass


class JobRunner:
    """Starts jobs (`start`) and keeps them in `store` as they change."""

    def __init__(self, server, store):
        self.server = server
        self.store = store
        self.slots = asyncio.Semaphore(MAX_RUNNING_FOPS)
        self.tasks = set()  # the running jobs' tasks, kept from the garbage collector

    def start(self, job, source_url):
        """Save `job` as waiting and run it in the background on the file at its bucket and key."""
        self.store.save(job)
        task = asyncio.ensure_future(self._run(job, source_url))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _run(self, job, source_url):
        await asyncio.gather(*(self._run_item(job, item, source_url) for item in job.items))
        code = FAILED if any(item.code == FAILED for item in job.items) else DONE
        # running until the callback is answered, as the platform reports it
        if job.notify_url and not await notify(self.server.fetcher, job.notify_url, job.status(code)):
            code = CALLBACK_FAILED
        job.code = code
        self.store.save(job)

    async def _run_item(self, job, item, source_url):
        async with self.slots:
            item.code = job.code = RUNNING
            self.store.save(job)
            try:
                item.key, item.hash, item.return_old = await self._fop(job, item.cmd, source_url)
                item.code = DONE
            except UfopError as exc:
                item.code, item.error = FAILED, str(exc)
            except Exception as exc:  # noqa: BLE001 - one fop's bug fails its item, never the job's others
                log.exception("persistent job %s: fop %r", job.id, item.cmd)
                item.code, item.error = FAILED, f"internal error: {exc}"
            self.store.save(job)

    async def _fop(self, job, cmd, source_url):
        """Run one fop; returns (key, hash, returnOld) of its output."""
        buckets = self.server.platform.buckets
        steps, saveas = split_saveas(cmd.split("|"))
        target = buckets[saveas.bucket if saveas else job.bucket]
        if saveas and saveas.key and not job.force:
            target.check_writable(saveas.key)  # a key dev cannot write (a '..' part) has no old output
            with contextlib.suppress(UfopError):
                with open(target.file(saveas.key), "rb") as old:
                    return saveas.key, await asyncio.to_thread(etag, old), 1
        with open(buckets[job.bucket].file(job.key), "rb") as file:
            headers = platform_headers({}, job.bucket, job.key, steps, is_async=True)
            reply = await run_pipeline(self.server, job.reqid, steps, file, source_url, headers)
        if reply.status >= 400:
            close_body(reply.body)
            raise FopFailed(_error_of(reply))
        key, hash_ = await save_answer(target, saveas.key if saveas else None, reply.body)
        return key, hash_, 0


def _error_of(reply):
    """What a failed step answered: its JSON error, else its status and the start of its body."""
    if isinstance(reply.body, bytes):
        try:
            return json.loads(reply.body)["error"]
        except (ValueError, KeyError, TypeError):
            return f"status {reply.status}: {reply.body[:200].decode('utf-8', 'replace')}"
    return f"status {reply.status}"


async def notify(fetcher, url, status):
    """POST `status` as JSON to `url` (through the fetcher's guard), tried NOTIFY_ATTEMPTS times;
    whether one attempt was answered 2xx."""
    body = json.dumps(status, ensure_ascii=False).encode()
    for attempt in range(1, NOTIFY_ATTEMPTS + 1):
        try:
            fetcher.policy.check_url(url)
            response = await fetcher.client.fetch(
                url, method="POST", body=body, headers={"Content-Type": "application/json"},
                raise_error=False, follow_redirects=False, request_timeout=NOTIFY_TIMEOUT_SECONDS)
            if 200 <= response.code < 300:
                return True
            problem = f"answered {response.code}"
        except Exception as exc:  # noqa: BLE001 - any failure to reach it is a failed attempt
            problem = str(exc)
        log.warning("notifyURL %s of job %s, attempt %d of %d: %s", url, status["id"], attempt,
                    NOTIFY_ATTEMPTS, problem)
        if attempt < NOTIFY_ATTEMPTS:
            await asyncio.sleep(NOTIFY_PAUSE_SECONDS * attempt)
    return False
