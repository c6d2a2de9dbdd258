"""What every command shares: exit codes, project options and loading the project."""

import functools
from pathlib import Path

import click

from ..app.project import load_app
from ..app.settings import Settings, load_env_file
from ..errors import ConfigError, ProjectError
from ..executors.celery.versions import UntestedVersions, require_tested_versions

EXIT_OK = 0
EXIT_FAILED = 1  # the work ran and failed (a processor error, a failed file)
EXIT_USAGE = 2  # bad flags, settings or project: nothing ran


class LoadFailed(click.ClickException):
    """The project or its settings could not be loaded; nothing ran."""

    exit_code = EXIT_USAGE


def project_options(command):
    """Adds ``--project DIR`` and ``--app MODULE`` (``-A``, as qiniu-ufop's commands took it) to a command."""

    @click.option("--project", "project", type=click.Path(file_okay=False, path_type=Path),
                  default=".", show_default=True, help="The project folder.")
    @click.option("-A", "--app", "app", metavar="MODULE", default=None,
                  help="The module holding the processors [default: UFOP_APP, else processors].")
    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, **kwargs)

    return wrapper


def load_settings(project, **flags):
    """Settings for `project` with `flags` on top, or exit 2 naming the bad value.

    The project's ``.env`` goes into this process's environment first (see
    settings.load_env_file), so the project imports here as in its workers.
    """
    try:
        load_env_file(project)
        return Settings.load(project, **flags)
    except ConfigError as exc:
        raise LoadFailed(str(exc)) from None


def load_project(settings):
    """The project's App, or exit 2 saying what to fix."""
    try:
        return load_app(settings)
    except ProjectError as exc:
        raise LoadFailed(str(exc)) from None


def require_celery_versions():
    """Exit 2 when the installed Celery or kombu is outside the series Celery mode is tested with."""
    try:
        require_tested_versions()
    except UntestedVersions as exc:
        raise LoadFailed(str(exc)) from None
