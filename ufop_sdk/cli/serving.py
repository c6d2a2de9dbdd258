"""What ``serve`` and ``dev`` share: building the Service and running it."""

import asyncio
import sys

import click

from ..executors.local import LocalPool
from ..lifecycle import run_server
from ..logs import configure_logging
from ..server import Service
from ..source import SourceFetcher, SourcePolicy
from .common import EXIT_FAILED


def make_executor(settings, debug):
    """The executor `settings` ask for: the embedded pool unless a broker is set."""
    return LocalPool(settings, debug=debug)


def source_policy(settings, default_blocked):
    blocked = default_blocked if settings.blocked_networks is None else settings.blocked_networks
    return SourcePolicy(blocked_networks=blocked, allowed_hosts=settings.allowed_source_hosts,
                        max_bytes=settings.max_source_bytes, timeout=settings.fetch_timeout,
                        spool_dir=settings.spool_dir)


def run(settings, app, *, debug, default_blocked, background=lambda service: ()):
    """Serve until stopped; exits 1 when the port cannot be bound."""
    access_log = configure_logging(settings.log_dir)

    async def main():
        executor = make_executor(settings, debug)
        fetcher = SourceFetcher(source_policy(settings, default_blocked), max_clients=settings.pending_limit)
        service = Service(settings=settings, app=app, executor=executor, fetcher=fetcher,
                          access_log=access_log, debug=debug)
        await run_server(service, settings.host, settings.port, background=background(service))

    try:
        asyncio.run(main())
    except OSError as exc:
        click.echo(f"Error: cannot serve on {settings.host}:{settings.port}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_FAILED)
