"""``ufop-sdk dev``: the same server, reloading when the project changes."""

import contextlib
import importlib.util
import logging
import os
import sys
from pathlib import Path

import click
import watchfiles

from ..app.project import load_app
from ..app.settings import Settings, load_env_file
from ..dev.bucket import BucketHandler
from ..dev.buckets import Bucket, Buckets
from ..dev.persistent import PfopHandler, PlaygroundJobsHandler, StatusHandler
from ..dev.platform import Platform
from ..dev.playground import PlaygroundHandler
from ..dev.upload import ResumableUploadHandler, UploadHandler
from ..errors import ConfigError, ProjectError
from ..http.handlers import MethodMatches
from . import serving
from .common import load_settings, project_options

log = logging.getLogger("ufop_sdk.dev")

# watchfiles waits 1.6 s for changes to settle by default; a save is one change.
DEBOUNCE_MS = 50
STEP_MS = 20


class BucketOption(click.ParamType):
    name = "bucket"

    def convert(self, value, param, ctx):
        try:
            return Bucket.from_option(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


@click.command("dev")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=int, default=None, help="Port [default: UFOP_PORT, else 9100].")
@click.option("--workers", type=int, default=None, help="Worker processes [default: as serve].")
@click.option("--bucket", "buckets", metavar="[NAME=]DIR", multiple=True, type=BucketOption(),
              help="A folder standing in for a bucket (named after it unless NAME= is given), for "
                   "GET /<key>?<fop>, pfop, status and form uploads as the platform answers them. "
                   "Repeatable.")
@project_options
def dev_command(host, port, workers, buckets, project, app):
    """Serve the project and reload it whenever a .py file or .env changes.

    A project that fails to load is answered with a 500 carrying the error and
    its traceback until it is fixed. Errors carry tracebacks, and sources may
    be fetched from any address (UFOP_BLOCKED_NETWORKS to change that).
    GET / is a playground page to try processors on files.

    With --bucket, the Qiniu platform's persistent processing is here too:
    POST /pfop, GET /status/get/prefop, saveas, notifyURL and form uploads
    at POST /, signed with QINIU_ACCESS_KEY and QINIU_SECRET_KEY when set.
    """
    flags = {"app": app, "host": host, "port": port, "workers": workers}
    settings = load_settings(project, **flags)
    _never_use_stale_bytecode(project)
    loaded, error = _try_load(settings)

    try:
        platform_buckets = Buckets(buckets)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--bucket") from None

    def background(server):
        server.load_error = error
        server.platform = Platform(platform_buckets, server)
        return [_reload_on_change(server, project, flags)]

    routes = [(r"/", PlaygroundHandler), (r"/pfop/?", PfopHandler), (r"/status/get/prefop", StatusHandler),
              (r"/_dev/jobs", PlaygroundJobsHandler)]
    if buckets:  # POST / is Qiniu's form upload; GET / stays the playground
        routes = [(MethodMatches("POST", r"/"), UploadHandler),
                  (MethodMatches("POST", ResumableUploadHandler.PATHS), ResumableUploadHandler),
                  *routes, (r"/(.+)", BucketHandler)]
    serving.build_executor_and_serve(settings, loaded, debug=True, default_blocked=(), background=background,
                extra_routes=routes)


def _never_use_stale_bytecode(project):
    """Keep edits from hiding behind cached bytecode.

    A .pyc is trusted when its source's size and modification second match,
    so a same-size edit within a second of the last import would be ignored.
    In dev, the project's .pyc files are removed and none are written (by this
    process or its workers), so its modules always compile from source.
    """
    sys.dont_write_bytecode = True
    os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    _remove_bytecode(str(path) for path in Path(project).rglob("*.py") if not _is_installed(path))


def _remove_bytecode(paths):
    for path in paths:
        if path.endswith(".py"):
            with contextlib.suppress(OSError, ValueError):
                os.unlink(importlib.util.cache_from_source(path))


def _is_installed(path):
    return any(part.startswith(".") or part in ("site-packages", "dist-packages", "node_modules")
               for part in path.parts)


def _try_load(settings):
    try:
        return load_app(settings), None
    except ProjectError as exc:
        log.error("%s", exc)
        return None, str(exc)


async def _reload_on_change(server, project, flags):
    watch_filter = watchfiles.PythonFilter(extra_extensions=(".env",))
    async for changes in watchfiles.awatch(project, watch_filter=watch_filter, debounce=DEBOUNCE_MS,
                                           step=STEP_MS):
        paths = sorted({path for _, path in changes})
        log.info("reloading: %s", ", ".join(paths))
        _remove_bytecode(paths)
        try:
            load_env_file(project)
            settings = Settings.load(project, **flags)
        except ConfigError as exc:
            server.app, server.load_error = None, str(exc)
            continue
        server.app, server.load_error = _try_load(settings)
        if server.app is not None:
            server.settings = settings
            server.executor.reload(settings)
