"""``ufop-sdk worker``: a Celery worker running the project's processors."""

import sys

import click

from .common import LoadFailed, load_project, load_settings, project_options, require_celery_versions


@click.command("worker", context_settings={"ignore_unknown_options": True})
@click.option("--concurrency", type=int, default=None,
              help="Child processes [default: UFOP_WORKERS, CPU_COUNT, FLAVOR, else the CPUs].")
@project_options
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED, metavar="[-- CELERY_ARGS]...")
def worker_command(concurrency, project, app, celery_args):
    """Run the project's processors on a prefork Celery worker fed through UFOP_BROKER_URL.

    Each child process runs every processor's setup() once. The server logs
    every request, so the worker logs only warnings and errors. Arguments
    after `--` go to `celery worker` as they are, e.g. `-- --loglevel=INFO`.
    """
    settings = load_settings(project, app=app, workers=concurrency)
    if not settings.broker_url:
        raise LoadFailed("UFOP_BROKER_URL is not set: a worker takes its tasks from Redis, "
                         "e.g. UFOP_BROKER_URL=redis://localhost:6379/0 (without it, "
                         "`ufop-sdk serve` runs processors itself)")
    require_celery_versions()
    from celery.signals import worker_init  # only this command pays for Celery

    from ..executors.celery.app import PREFORK, RedisNames, make_celery_app

    celery = make_celery_app(settings, load_project(settings))
    celery.conf.worker_pool = PREFORK  # by name here: the --pool flag takes only Celery's own names
    # Celery.start() drops the exit code of its worker command (1 after an "Unrecoverable error"),
    # so we would exit 0 and a restart-on-failure supervisor would leave the worker down: the code
    # is read off the worker itself.
    workers = []

    def remember(sender, **_):
        workers.append(sender)

    worker_init.connect(remember, weak=False)
    queue = RedisNames.for_settings(settings).queue
    celery.start(["worker", f"--concurrency={settings.concurrency}", f"--queues={queue}",
                  "--loglevel=WARNING", "--without-gossip", "--without-mingle", *celery_args])
    sys.exit((workers[-1].exitcode if workers else None) or 0)
