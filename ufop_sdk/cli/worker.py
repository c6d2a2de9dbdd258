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

    from ..executors.celery.app import make_celery_app
    from ..executors.celery.names import RedisNames
    from ..executors.celery.transport import PREFORK

    celery = make_celery_app(settings, load_project(settings))
    celery.conf.worker_pool = PREFORK  # by name here: the --pool flag takes only Celery's own names
    # The exit code is Celery's own: the `app.Worker` instance's `exitcode` (1 after an "Unrecoverable
    # error", so a restart-on-failure supervisor restarts it). The instance is made by Celery's
    # `celery worker` command, not here: app.Worker takes keyword options, not argv, and the
    # `-- CELERY_ARGS` pass-through needs that command's parsing (option types, --detach, --uid,
    # node names in --logfile/--pidfile) before it calls app.Worker(...).start(). The command ends
    # with ctx.exit(worker.exitcode), which Celery.start() does not return (Celery 5.7), so the
    # instance is taken from the public worker_init signal, whose sender it is.
    workers = []

    def remember(sender, **_):
        workers.append(sender)

    worker_init.connect(remember, weak=False)
    queue = RedisNames.for_settings(settings).queue
    celery.start(["worker", f"--concurrency={settings.concurrency}", f"--queues={queue}",
                  "--loglevel=WARNING", "--without-gossip", "--without-mingle", *celery_args])
    sys.exit((workers[-1].exitcode if workers else None) or 0)
