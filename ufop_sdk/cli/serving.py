"""What ``serve`` and ``dev`` share: building the executor and the ServerState, and serving until stopped."""

import sys

import click
import uvloop

from ..app.logs import configure_logging
from ..executors.local.pool import LocalPool
from ..http.lifecycle import serve_until_stopped
from ..http.state import ServerState
from ..sources.fetch import SourceFetcher, SourcePolicy
from .common import EXIT_FAILED, require_celery_versions


def make_executor(settings, app, debug):
    """The executor `settings` ask for: Celery workers when a broker is set, else the embedded pool.

    ``dev`` (`debug`) always runs local workers, which it can reload.
    """
    if settings.broker_url and not debug:
        require_celery_versions()
        from ..executors.celery.executor import CeleryExecutor  # only Celery mode pays for importing Celery

        return CeleryExecutor(settings, app)
    return LocalPool(settings, debug=debug)


def build_executor_and_serve(settings, app, *, debug, default_blocked, background=lambda server: (),
                             extra_routes=()):
    """Build the executor, the fetcher and the ServerState, and serve until stopped; exits 1 when the port
    cannot be bound.

    `background(server)` gives coroutines to run alongside (see serve_until_stopped).
    """
    access_log = configure_logging(settings.log_dir)

    async def main():
        executor = make_executor(settings, app, debug)
        policy = SourcePolicy.from_settings(settings, default_blocked)
        fetcher = SourceFetcher(policy, max_clients=settings.pending_limit)
        server = ServerState(settings=settings, app=app, executor=executor, fetcher=fetcher,
                             access_log=access_log, debug=debug)
        await serve_until_stopped(server, settings.host, settings.port, background=background(server),
                                  extra_routes=extra_routes)

    try:
        # uvloop: the connection layer's transports cost less CPU per request, and leave no reference
        # cycle per connection for the garbage collector, as asyncio's own do.
        uvloop.run(main())
    except OSError as exc:
        click.echo(f"Error: cannot serve on {settings.host}:{settings.port}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_FAILED)
